//! The JSON API under `/api/v1`, one module per feature. Clients authenticate with API keys
//! ([`crate::web::auth::ApiKeyAuth`]); errors are JSON naming the field ([`crate::web::error::ApiError`]).

pub mod alerts;
pub mod analytics;
pub mod events;
pub mod health;
pub mod import;
pub mod insights;
pub mod integrations;
pub mod metrics;
pub mod people;
pub mod reads;
pub mod saved_insights;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};

use crate::web::auth::ApiKeyAuth;
use crate::web::error::ApiError;

/// The largest number of buckets one series request may produce.
pub const MAX_BUCKETS: i64 = 20_000;

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with `Content-Type: application/json`",
        ))
    }
}

/// Reads a JSON body, mapping every failure to a clear 4xx.
pub(crate) fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, ApiError> {
    parse_json(&json_bytes(headers, body)?)
}

/// The bytes of a JSON body (its content type checked, size errors named), not yet parsed: a
/// large body is parsed off the async runtime by the caller.
pub(crate) fn json_bytes(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, ApiError> {
    require_json(headers)?;
    body_bytes(body)
}

/// The bytes of a body of any content type, size errors named.
pub(crate) fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is larger than ingest.max_body_bytes; split it into smaller batches",
            )
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_body", "the request body could not be read")
        }
    })
}

/// Parses JSON bytes, naming what is wrong.
pub(crate) fn parse_json(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )
    })
}
pub(crate) fn parse_query(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    parse_query_repeating(raw, &[])
}

/// [`parse_query`] letting the parameters in `repeatable` appear more than once.
pub(crate) fn parse_query_repeating(
    raw: &str,
    repeatable: &[&str],
) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k)
            .ok_or_else(|| ApiError::bad_request(k, "is not valid percent-encoding"))?;
        let v = percent_decode(v)
            .ok_or_else(|| ApiError::bad_request(&k, "is not valid percent-encoding"))?;
        if !repeatable.contains(&k.as_str())
            && out.iter().any(|(seen, _): &(String, String)| *seen == k)
        {
            return Err(ApiError::bad_request(&k, "is given more than once"));
        }
        out.push((k, v));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}
/// `GET /api/v1/org`: which org and scopes this key has, and the org's project write key (what
/// the analytics SDKs are given).
pub async fn whoami(
    axum::extract::State(app): axum::extract::State<crate::app::App>,
    auth: ApiKeyAuth,
) -> Result<Json<Value>, ApiError> {
    let org_id = auth.org.id;
    let write_key = app
        .meta
        .call(move |c| crate::store::meta::project_keys::get_or_create(c, org_id))
        .await?;
    Ok(Json(json!({
        "org": { "slug": auth.org.slug, "name": auth.org.name, "time_zone": auth.org.time_zone, "currency": auth.org.currency },
        "key": { "name": auth.key.name, "prefix": auth.key.prefix, "scopes": auth.key.scopes },
        "write_key": write_key,
    })))
}

/// Fallback for unknown API paths: JSON, not HTML.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such API endpoint; see the README for the API")
}
