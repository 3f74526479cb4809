//! Drop-in receivers for the analytics SDKs users already ship, so they only change the host:
//! PostHog capture (v0 and v1) and Segment's HTTP tracking API. They authenticate with the
//! org's project write key (ingest only: nothing is readable with it), answer as the provider
//! does, allow any origin (browsers send from the user's site), and end in the same
//! all-or-nothing event write as the native API.

use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{Value, json};

use tower_http::cors::{Any, CorsLayer};

use crate::app::App;
use crate::domain::capture::{self, SegmentCall};
use crate::domain::events::uuid_text;
use crate::services::Services;
use crate::store::meta::project_keys;
use crate::web::api::events::{batch_error, limits, request_context, store_events};
use crate::web::api::{parse_json, parse_query};
use crate::web::auth::ClientIp;
use crate::web::error::ApiError;
use crate::web::rate_limit::{RateLimits, RouteClass, VerdictSlot, charge_with};

/// The receivers' routes, any origin allowed (CORS on these routes alone).
pub fn routes() -> Router<Services> {
    let mut router = Router::new();
    for path in ["/batch", "/capture", "/e", "/track", "/i/v0/e"] {
        router = router
            .route(path, get(posthog).post(posthog))
            .route(&format!("{path}/"), get(posthog).post(posthog));
    }
    router
        .route("/i/v1/analytics/events", post(posthog_v1))
        .route("/i/v1/analytics/events/", post(posthog_v1))
        .route("/v1/{call}", post(segment))
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
                .allow_headers(Any)
                .max_age(Duration::from_secs(86_400)),
        )
}

/// Paths served here: cross-site requests are their normal case (the same-origin check for
/// forms leaves them alone).
pub fn is_capture_path(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    matches!(
        path,
        "/batch" | "/capture" | "/e" | "/track" | "/i/v0/e" | "/i/v1/analytics/events"
    ) || path.starts_with("/v1/")
}

/// The limits of one decoded body: what `ingest.max_body_bytes` allows, so a small gzip body
/// cannot expand without bound.
fn inflate(reader: impl Read, max: usize) -> Result<Vec<u8>, ApiError> {
    let mut out = Vec::new();
    reader
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| bad("the compressed body could not be decompressed"))?;
    if out.len() > max {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "the decompressed body is larger than ingest.max_body_bytes",
        ));
    }
    Ok(out)
}

fn bad(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_body", message)
}

/// The JSON bytes of a capture body: gzip is recognised by its first bytes whatever the
/// headers say (as PostHog does), deflate (zlib) by `Content-Encoding`; a form or query
/// `data=` field holds JSON or base64 of it.
fn decode(
    headers: &HeaderMap,
    body: &[u8],
    query: &[(String, String)],
    max: usize,
) -> Result<Vec<u8>, ApiError> {
    let compression = query
        .iter()
        .find(|(k, _)| k == "compression")
        .map(|(_, v)| v.as_str());
    if compression == Some("lz64") {
        return Err(bad(
            "lz64 compression is not supported; send gzip or plain JSON",
        ));
    }
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/x-www-form-urlencoded"));
    let mut bytes: Vec<u8> = if body.starts_with(&[0x1f, 0x8b]) {
        inflate(flate2::read::MultiGzDecoder::new(body), max)?
    } else if headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|e| e.eq_ignore_ascii_case("deflate"))
    {
        inflate(flate2::read::ZlibDecoder::new(body), max)?
    } else {
        body.to_vec()
    };
    let data_field = if form || bytes.starts_with(b"data=") {
        let text = String::from_utf8(std::mem::take(&mut bytes))
            .map_err(|_| bad("the form body is not UTF-8"))?;
        parse_query(&text.replace('+', " "))?
            .into_iter()
            .find(|(k, _)| k == "data")
            .map(|(_, v)| v)
    } else if bytes.is_empty() {
        query
            .iter()
            .find(|(k, _)| k == "data")
            .map(|(_, v)| v.clone())
    } else {
        None
    };
    if let Some(data) = data_field {
        let trimmed = data.trim();
        bytes = if trimmed.starts_with('{') || trimmed.starts_with('[') {
            trimmed.as_bytes().to_vec()
        } else {
            let engine = base64::engine::general_purpose::STANDARD;
            let decoded = engine
                .decode(trimmed.replace(' ', "+"))
                .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(trimmed))
                .map_err(|_| bad("`data` is neither JSON nor base64 of JSON"))?;
            if decoded.starts_with(&[0x1f, 0x8b]) {
                inflate(flate2::read::MultiGzDecoder::new(&decoded[..]), max)?
            } else {
                decoded
            }
        };
    }
    if bytes.is_empty() {
        return Err(bad("the request carries no events"));
    }
    Ok(bytes)
}

/// The org of a project write key, charged to the ingest budget of that key and address.
async fn org_for_key(
    app: &App,
    limits: &RateLimits,
    slot: &VerdictSlot,
    ip: &ClientIp,
    key: Option<String>,
) -> Result<i64, ApiError> {
    let Some(key) = key else {
        return Err(ApiError::unauthorized(
            "send the project write key (Settings → API keys) as api_key or token",
        ));
    };
    if key.starts_with("vk_") {
        return Err(ApiError::unauthorized(
            "that is an API key, which must stay secret; SDKs take the project write key (vpk_…)",
        ));
    }
    let org_id = app
        .meta
        .call(move |c| project_keys::org_of(c, &key))
        .await?
        .ok_or_else(|| ApiError::unauthorized("the project write key is not valid"))?;
    charge_with(
        limits,
        slot,
        RouteClass::Ingest,
        &format!("capture:{org_id}:{}", ip.0),
    )?;
    Ok(org_id)
}

/// PostHog v0: `/batch`, `/capture`, `/e`, `/track`, `/i/v0/e` (each with or without a trailing
/// slash, GET or POST). Answers `{"status": 1}`.
pub async fn posthog(
    State(app): State<App>,
    Extension(rate): Extension<Arc<RateLimits>>,
    Extension(slot): Extension<VerdictSlot>,
    ip: ClientIp,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(|_| bad("the request body could not be read"))?;
    let query = parse_query(raw.as_deref().unwrap_or(""))?;
    let max = app.config.ingest.max_body_bytes as usize;
    let ctx = request_context(&headers, &ip);
    let limits = limits(&app);
    let sent_at = query
        .iter()
        .find(|(k, _)| k == "_")
        .and_then(|(_, v)| v.parse::<i64>().ok())
        .map(|ms| ms * 1_000);
    // Decoding and reading the token are cheap next to the events' parse, which runs off the
    // runtime with the write; the token decides the org first.
    let (value, key) = app
        .parse_work(move || -> Result<(Value, Option<String>), ApiError> {
            let bytes = decode(&headers, &body, &query, max)?;
            let value = parse_json(&bytes)?;
            let key = capture::posthog_token(&value)
                .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "multiple_tokens", m))?
                .or_else(|| {
                    query
                        .iter()
                        .find(|(k, _)| k == "token" || k == "api_key")
                        .map(|(_, v)| v.clone())
                });
            Ok((value, key))
        })
        .await??;
    let org_id = org_for_key(&app, &rate, &slot, &ip, key).await?;
    store_events(&app, org_id, move || {
        let events = capture::posthog_v0(&value, sent_at, &ctx, &limits).map_err(batch_error)?;
        Ok((events, ()))
    })
    .await?;
    Ok(Json(json!({ "status": 1 })))
}

/// PostHog v1: `POST /i/v1/analytics/events` with `Authorization: Bearer <project key>`;
/// answers a result per event uuid (re-sent ones are "ok" too: they are stored).
pub async fn posthog_v1(
    State(app): State<App>,
    Extension(rate): Extension<Arc<RateLimits>>,
    Extension(slot): Extension<VerdictSlot>,
    ip: ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|v| v.trim().to_string());
    let org_id = org_for_key(&app, &rate, &slot, &ip, key).await?;
    let body = body.map_err(|_| bad("the request body could not be read"))?;
    let max = app.config.ingest.max_body_bytes as usize;
    let ctx = request_context(&headers, &ip);
    let limits = limits(&app);
    // v1 SDKs leave `$lib` out of the properties and name themselves in a header instead.
    let sdk = headers
        .get("posthog-sdk-info")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once('/'))
        .map(|(lib, version)| (lib.trim().to_string(), version.trim().to_string()));
    let (_, uuids) = store_events(&app, org_id, move || {
        let bytes = decode(&headers, &body, &[], max)?;
        let value = parse_json(&bytes)?;
        let mut events = capture::posthog_v1(&value, &ctx, &limits).map_err(batch_error)?;
        if let Some((lib, version)) = &sdk {
            for e in &mut events {
                e.props
                    .entry("$lib")
                    .or_insert_with(|| Value::String(lib.clone()));
                e.props
                    .entry("$lib_version")
                    .or_insert_with(|| Value::String(version.clone()));
            }
        }
        let uuids: Vec<String> = events.iter().map(|e| uuid_text(&e.uuid)).collect();
        Ok((events, uuids))
    })
    .await?;
    let results: serde_json::Map<String, Value> = uuids
        .into_iter()
        .map(|u| (u, json!({"result": "ok"})))
        .collect();
    Ok(Json(json!({ "results": results })))
}

/// The write key of a Segment request: Basic auth with the key as the user name (the password
/// empty), else `writeKey` in the body.
fn segment_basic_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split(':').next()?.trim().to_string();
    (!user.is_empty()).then_some(user)
}

/// Segment: `POST /v1/batch` and `/v1/{track,identify,page,screen,group,alias}`. Answers
/// `{"success": true}`; 400 for bad JSON, bad messages or Segment's size limits.
pub async fn segment(
    State(app): State<App>,
    Extension(rate): Extension<Arc<RateLimits>>,
    Extension(slot): Extension<VerdictSlot>,
    ip: ClientIp,
    Path(call): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let call = match call.trim_end_matches('/') {
        "batch" | "import" => None,
        other => Some(SegmentCall::parse(other).ok_or_else(|| {
            ApiError::not_found(
                "unknown Segment call; use batch, track, identify, page, screen, group or alias",
            )
        })?),
    };
    let body = body.map_err(|_| bad("the request body could not be read"))?;
    let ctx = request_context(&headers, &ip);
    let limits = limits(&app);
    let basic = segment_basic_key(&headers);
    let (value, key) = app
        .parse_work(move || -> Result<(Value, Option<String>), ApiError> {
            let bytes = decode(&headers, &body, &[], capture::SEGMENT_MAX_BATCH_BYTES)?;
            if bytes.len() > capture::SEGMENT_MAX_BATCH_BYTES {
                return Err(bad("the batch is larger than Segment's 500 KB"));
            }
            let value = parse_json(&bytes)?;
            let key = basic.or_else(|| capture::segment_write_key(&value));
            Ok((value, key))
        })
        .await??;
    let org_id = org_for_key(&app, &rate, &slot, &ip, key).await?;
    store_events(&app, org_id, move || {
        let events = capture::segment(&value, call, &ctx, &limits).map_err(|e| {
            // Segment answers 400 to every message it refuses.
            let mut err = batch_error(e);
            err.status = StatusCode::BAD_REQUEST;
            err
        })?;
        Ok((events, ()))
    })
    .await?;
    Ok(Json(json!({ "success": true })).into_response())
}
