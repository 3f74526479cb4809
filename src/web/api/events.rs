//! The events API (the seed's): track one event or a batch, list them, count them. Writes take
//! an API key with `write`; reads with `read`. The SDK receivers (PostHog, Segment) live in
//! `web::capture` and end in the same [`store_events`].

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine;
use chrono_tz::Tz;
use serde_json::{Value, json};

use crate::app::App;
use crate::domain::events::{self, EventBatchError, EventLimits, RequestContext};
use crate::domain::roles::Scope;
use crate::domain::timebucket;
use crate::store::events::queries::{self, Cursor, EventQuery};
use crate::store::events::{PreparedEvents, WriteOutcome};
use crate::web::api::{json_bytes, parse_json, parse_query_repeating};
use crate::web::auth::{ApiKeyAuth, ClientIp};
use crate::web::error::ApiError;

/// Events one list request returns unless `limit` says otherwise, and the most it may ask.
pub const DEFAULT_LIST_LIMIT: usize = 100;
pub const MAX_LIST_LIMIT: usize = 1_000;
/// The widest time range one read may ask for (about five years).
pub const MAX_RANGE_MICROS: i64 = 1_830 * 86_400_000_000;

pub fn limits(app: &App) -> EventLimits {
    EventLimits {
        max_events: app.config.ingest.max_events_per_request as usize,
        max_event_bytes: app.config.ingest.max_event_bytes as usize,
        max_future_micros: app.config.ingest.max_future_secs as i64 * 1_000_000,
    }
}

/// What the request tells about its sender: the address and the user agent.
pub fn request_context(headers: &HeaderMap, ip: &ClientIp) -> RequestContext {
    RequestContext {
        now_micros: chrono::Utc::now().timestamp_micros(),
        ip: (!ip.0.is_empty()).then(|| ip.0.clone()),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|s| s.chars().take(events::MAX_USER_AGENT_LEN).collect()),
    }
}

/// Parses (with `parse`) and stores a batch of events for `org_id`: the parse and the
/// conversion to columns run on the blocking pool (they grow with the request), the write on
/// the event writer. Returns once the events are committed.
/// `parse` may return something more (the events' uuids, say) for the answer.
pub(crate) async fn store_events<T: Send + 'static>(
    app: &App,
    org_id: i64,
    parse: impl FnOnce() -> Result<(Vec<events::Event>, T), ApiError> + Send + 'static,
) -> Result<(WriteOutcome, T), ApiError> {
    let received = chrono::Utc::now().timestamp_micros();
    let (prepared, extra) = app
        .parse_work(move || -> Result<(PreparedEvents, T), ApiError> {
            let (events, extra) = parse()?;
            Ok((PreparedEvents::new(org_id, &events, received)?, extra))
        })
        .await??;
    Ok((app.store_events(prepared).await?, extra))
}

/// A refused batch as the API answers it: the first bad event named in `field`, all of them
/// (up to 100) in `details`.
pub fn batch_error(e: EventBatchError) -> ApiError {
    match e {
        EventBatchError::Shape(m) => ApiError::new(StatusCode::BAD_REQUEST, "bad_shape", m),
        EventBatchError::Empty => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty_batch",
            "the batch holds no events",
        )
        .field("events"),
        EventBatchError::TooMany { count, max } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!("the batch holds {count} events; at most {max} are accepted per request"),
        )
        .field("events"),
        EventBatchError::Items(items) => {
            let first = &items[0];
            let field = if first.field.is_empty() {
                format!("events[{}]", first.index)
            } else {
                format!("events[{}].{}", first.index, first.field)
            };
            let message = format!(
                "{} of the events are invalid; nothing was stored. First: {field}: {}",
                items.len(),
                first.reason
            );
            let mut err =
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_events", message)
                    .field(field);
            err.details = items;
            err
        }
    }
}

/// `POST /api/v1/events`: one event.
pub async fn track(
    State(app): State<App>,
    auth: ApiKeyAuth,
    ip: ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    auth.require(Scope::Write)?;
    let body = json_bytes(&headers, body)?;
    let ctx = request_context(&headers, &ip);
    let limits = limits(&app);
    let (outcome, uuid) = store_events(&app, auth.org.id, move || {
        let value = parse_json(&body)?;
        if events::json_len_exceeds(&value, limits.max_event_bytes) {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "event_too_large",
                format!("the event is larger than {} bytes", limits.max_event_bytes),
            ));
        }
        let event =
            events::parse_native_event(value, &ctx, &limits).map_err(|(field, reason)| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_event",
                    format!("{field}: {reason}; nothing was stored"),
                )
                .field(field)
            })?;
        let uuid = events::uuid_text(&event.uuid);
        Ok((vec![event], uuid))
    })
    .await?;
    Ok((
        StatusCode::OK,
        Json(json!({ "accepted": outcome.stored, "duplicates": outcome.duplicates, "uuid": uuid })),
    ))
}

/// `POST /api/v1/events/batch`: a list of events or `{"events": [...]}`, all or nothing.
pub async fn track_batch(
    State(app): State<App>,
    auth: ApiKeyAuth,
    ip: ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Write)?;
    let body = json_bytes(&headers, body)?;
    let ctx = request_context(&headers, &ip);
    let limits = limits(&app);
    let (outcome, ()) = store_events(&app, auth.org.id, move || {
        let value = parse_json(&body)?;
        let events = events::parse_native_batch(value, &ctx, &limits).map_err(batch_error)?;
        Ok((events, ()))
    })
    .await?;
    Ok(Json(
        json!({ "accepted": outcome.stored, "duplicates": outcome.duplicates }),
    ))
}

fn encode_cursor(c: &Cursor) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}:{}", c.ts_micros, c.uuid))
}

fn decode_cursor(s: &str) -> Option<Cursor> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (ts, uuid) = text.split_once(':')?;
    let uuid = uuid::Uuid::parse_str(uuid).ok()?.to_string();
    Some(Cursor {
        ts_micros: ts.parse().ok()?,
        uuid,
    })
}

/// The parameters that choose events, shared by the list and the stats.
const FILTER_PARAMS: &[&str] = &[
    "from",
    "to",
    "name",
    "event",
    "distinct_id",
    "user_id",
    "person",
    "properties",
];

/// The filters of the list and stats endpoints.
struct ListParams {
    query: EventQuery,
    limit: usize,
    cursor: Option<Cursor>,
}

fn parse_list_params(
    raw: Option<&str>,
    org_id: i64,
    tz: Tz,
    accepted: &[&str],
) -> Result<ListParams, ApiError> {
    let now = chrono::Utc::now().timestamp_micros();
    let (mut from, mut to) = (None, None);
    let mut out = ListParams {
        query: EventQuery {
            org_id,
            ..EventQuery::default()
        },
        limit: DEFAULT_LIST_LIMIT,
        cursor: None,
    };
    for (name, value) in parse_query_repeating(raw.unwrap_or(""), &["name", "event"])? {
        if !accepted.contains(&name.as_str()) {
            return Err(ApiError::bad_request(
                &name,
                format!("unknown parameter `{name}`; use {}", accepted.join(", ")),
            ));
        }
        match name.as_str() {
            "from" | "to" => {
                let t = timebucket::parse_time(&value, tz)
                    .ok_or_else(|| ApiError::bad_request(&name, timebucket::TIME_PARAM_RULE))?;
                if name == "from" {
                    from = Some(t);
                } else {
                    to = Some(t);
                }
            }
            "name" | "event" => {
                let n = events::id_string(&Value::String(value))
                    .map_err(|m| ApiError::bad_request(&name, m))?;
                if out.query.names.len() == 50 {
                    return Err(ApiError::bad_request(&name, "at most 50 event names"));
                }
                out.query.names.push(n);
            }
            "person" => {
                out.query.person = Some(
                    events::id_string(&Value::String(value))
                        .map_err(|m| ApiError::bad_request(&name, m))?,
                );
            }
            "distinct_id" | "user_id" => {
                out.query.distinct_id = Some(
                    events::id_string(&Value::String(value))
                        .map_err(|m| ApiError::bad_request(&name, m))?,
                );
            }
            "properties" => {
                let parsed: Value = serde_json::from_str(&value).map_err(|_| {
                    ApiError::bad_request(
                        "properties",
                        "must be a JSON list such as [{\"key\":\"plan\",\"op\":\"eq\",\"value\":\"pro\"}]",
                    )
                })?;
                out.query.filters = events::parse_filters(&parsed, "properties")
                    .map_err(|(field, reason)| ApiError::bad_request(&field, reason))?;
            }
            "limit" => {
                out.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LIST_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "limit",
                            format!("must be a whole number from 1 to {MAX_LIST_LIMIT}"),
                        )
                    })?;
            }
            _ => {
                out.cursor = Some(decode_cursor(&value).ok_or_else(|| {
                    ApiError::bad_request("cursor", "is not a cursor this API gave out")
                })?);
            }
        }
    }
    out.query.to_micros = to.unwrap_or(now + 1);
    out.query.from_micros = from.unwrap_or(out.query.to_micros - 30 * 86_400_000_000);
    if out.query.from_micros >= out.query.to_micros {
        return Err(ApiError::bad_request("from", "must be before `to`"));
    }
    if out.query.to_micros - out.query.from_micros > MAX_RANGE_MICROS {
        return Err(ApiError::bad_request(
            "from",
            "the range from `from` to `to` may span at most 1,830 days",
        ));
    }
    Ok(out)
}

fn time_text(micros: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true))
}

fn event_json(e: &queries::StoredEvent) -> Value {
    let props = serde_json::from_str::<Value>(&e.props_json).unwrap_or_else(|_| json!({}));
    json!({
        "uuid": e.uuid,
        "name": e.name,
        "distinct_id": e.distinct_id,
        "timestamp": time_text(e.ts_micros),
        "session_id": e.session_id,
        "properties": props,
        "ip": e.ip,
        "user_agent": e.user_agent,
    })
}

/// `GET /api/v1/events`: newest first; `name` (repeatable), `distinct_id`, `properties` (a JSON
/// list of filters), `from`, `to` (default the last 30 days), `limit`, `cursor` (from the
/// previous page's `next_cursor`).
pub async fn list(
    State(app): State<App>,
    auth: ApiKeyAuth,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let tz: Tz = auth.org.time_zone.parse().unwrap_or(chrono_tz::UTC);
    let params = parse_list_params(
        raw.as_deref(),
        auth.org.id,
        tz,
        &[FILTER_PARAMS, &["limit", "cursor"]].concat(),
    )?;
    let limit = params.limit;
    let rows = app
        .events
        .read(move |c| queries::list(c, &params.query, params.cursor.as_ref(), limit + 1))
        .await?;
    let more = rows.len() > limit;
    let page = &rows[..rows.len().min(limit)];
    let next_cursor = if more {
        page.last().map(|e| {
            encode_cursor(&Cursor {
                ts_micros: e.ts_micros,
                uuid: e.uuid.clone(),
            })
        })
    } else {
        None
    };
    Ok(Json(json!({
        "events": page.iter().map(event_json).collect::<Vec<_>>(),
        "next_cursor": next_cursor,
    })))
}

/// `GET /api/v1/events/stats`: totals and per-name counts over the range (default 30 days).
pub async fn stats(
    State(app): State<App>,
    auth: ApiKeyAuth,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let tz: Tz = auth.org.time_zone.parse().unwrap_or(chrono_tz::UTC);
    let params = parse_list_params(raw.as_deref(), auth.org.id, tz, FILTER_PARAMS)?;
    let (from, to) = (params.query.from_micros, params.query.to_micros);
    let stats = app
        .events
        .read(move |c| queries::stats(c, &params.query))
        .await?;
    Ok(Json(json!({
        "from": time_text(from),
        "to": time_text(to),
        "total": stats.total,
        "unique_users": stats.unique_users,
        "events": stats.by_name.iter().map(|n| json!({
            "name": n.name,
            "count": n.count,
            "unique_users": n.unique_users,
            "first_seen": time_text(n.first_micros),
            "last_seen": time_text(n.last_micros),
        })).collect::<Vec<_>>(),
    })))
}

/// `GET /api/v1/persons/{distinct_id}`: the person this id belongs to, every id merged into it,
/// its properties (from `$set` / `$set_once`) and whether it is identified. Its events:
/// `GET /api/v1/events?person=…`.
pub async fn person(
    State(app): State<App>,
    auth: ApiKeyAuth,
    axum::extract::Path(distinct_id): axum::extract::Path<String>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let distinct_id = events::id_string(&Value::String(distinct_id))
        .map_err(|m| ApiError::bad_request("distinct_id", m))?;
    let org_id = auth.org.id;
    let id = distinct_id.clone();
    let found = app
        .events
        .read(move |c| crate::store::events::identity::person(c, org_id, &id))
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("no person with the distinct id {distinct_id:?}"))
        })?;
    let props: Value = serde_json::from_str(&found.props_json).unwrap_or_else(|_| json!({}));
    Ok(Json(json!({
        "person_key": found.person_key,
        "distinct_ids": found.distinct_ids,
        "properties": props,
        "identified": found.identified,
    })))
}

/// `GET /api/v1/events/catalogue`: every event name with its volume (all time and the last 30
/// days), first and last time, and the properties it carries with their types; and the
/// person properties.
pub async fn catalogue(State(app): State<App>, auth: ApiKeyAuth) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let org_id = auth.org.id;
    let now = chrono::Utc::now().timestamp_micros();
    let cat = app
        .events
        .read(move |c| crate::store::events::catalogue::catalogue(c, org_id, now))
        .await?;
    let property = |p: &crate::store::events::catalogue::PropertyDefinition| {
        json!({
            "key": p.key,
            "types": p.types,
            "first_seen": time_text(p.first_seen_micros),
            "last_seen": time_text(p.last_seen_micros),
        })
    };
    Ok(Json(json!({
        "events": cat.events.iter().map(|e| json!({
            "name": e.name,
            "count": e.count,
            "count_30d": e.count_30d,
            "first_seen": time_text(e.first_seen_micros),
            "last_seen": time_text(e.last_seen_micros),
            "properties": e.properties.iter().map(property).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "person_properties": cat.person_properties.iter().map(property).collect::<Vec<_>>(),
        "truncated": cat.truncated,
    })))
}
