//! The web error layer: store and domain errors become a status and a message a user can act
//! on; internal causes are logged, never sent.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Serialize;
use serde_json::json;

use crate::domain::ingest::ItemError;
use crate::store::StoreError;

/// JSON API error: `{"error": {"code", "message", "field", "details"?}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
    pub details: Vec<ItemError>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            details: Vec::new(),
        }
    }

    pub fn field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    pub fn bad_request(field: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_parameter", message).field(field)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
}

#[derive(Serialize)]
struct Body<'a> {
    code: &'a str,
    message: &'a str,
    field: Option<&'a str>,
    #[serde(skip_serializing_if = "<[ItemError]>::is_empty")]
    details: &'a [ItemError],
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": Body {
            code: self.code,
            message: &self.message,
            field: self.field.as_deref(),
            details: &self.details,
        }});
        (self.status, axum::Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound => ApiError::not_found("not found"),
            StoreError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error; the server log has the cause",
                )
            }
        }
    }
}

/// HTML page error.
#[derive(Debug)]
pub enum PageError {
    /// No session: go to the login page, then come back.
    Login {
        next: String,
    },
    NotFound,
    Forbidden(String),
    BadRequest(String),
    TooManyRequests(u64),
    /// Over the session's request budget; the rate-limit layer adds `Retry-After`.
    RateLimited(String),
    Internal,
}

impl From<StoreError> for PageError {
    fn from(e: StoreError) -> PageError {
        match e {
            StoreError::NotFound => PageError::NotFound,
            StoreError::Conflict(m) => PageError::BadRequest(m),
            other => {
                tracing::error!(error = %other, "store error");
                PageError::Internal
            }
        }
    }
}

impl From<askama::Error> for PageError {
    fn from(e: askama::Error) -> PageError {
        tracing::error!(error = %e, "template error");
        PageError::Internal
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t} · Vitals</title><link rel=\"stylesheet\" href=\"/assets/app.css\"></head>\
         <body><main class=\"narrow\"><h1>{t}</h1><p>{m}</p><p><a href=\"/\">Back to Vitals</a></p></main></body></html>",
        t = escape(title),
        m = escape(message)
    );
    (status, Html(html)).into_response()
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        match self {
            PageError::Login { next } => {
                let target = format!("/login?next={}", crate::domain::url::urlencode(&next));
                Redirect::to(&target).into_response()
            }
            PageError::NotFound => error_page(
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here, or you do not have access to it.",
            ),
            PageError::Forbidden(m) => error_page(StatusCode::FORBIDDEN, "Not allowed", &m),
            PageError::BadRequest(m) => error_page(StatusCode::BAD_REQUEST, "Cannot do that", &m),
            PageError::TooManyRequests(secs) => {
                let mut r = error_page(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many attempts",
                    &format!(
                        "Too many failed logins. Try again in {} minutes.",
                        secs.div_ceil(60)
                    ),
                );
                if let Ok(v) = secs.to_string().parse() {
                    r.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
                }
                r
            }
            PageError::RateLimited(m) => error_page(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
                &format!("This session sent {m}."),
            ),
            PageError::Internal => error_page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The server log has the details.",
            ),
        }
    }
}
