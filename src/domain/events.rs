//! Product events: what one is, how an incoming one is validated, and the filters analyses
//! apply to them. Pure: no I/O; the caller supplies the clock and the request's context.
//!
//! The native API (`POST /api/v1/events`, `/events/batch`) and the SDK receivers (PostHog,
//! Segment: `domain::capture`) all end in [`Event`]; a batch is all-or-nothing, so validation
//! collects every bad event (index, field, reason) instead of stopping at the first.

use chrono::{DateTime, NaiveDateTime};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub use crate::domain::ingest::{ItemError, MIN_TIMESTAMP_MICROS};

/// Longest event name, distinct id or session id (PostHog trims distinct ids to 200).
pub const MAX_ID_LEN: usize = 200;
/// Longest property key.
pub const MAX_KEY_LEN: usize = 200;
/// Most properties in one event, nested ones included.
pub const MAX_PROPERTIES: usize = 1_000;
/// Deepest nesting of objects and arrays inside `properties`.
pub const MAX_DEPTH: usize = 8;
/// Longest user agent kept.
pub const MAX_USER_AGENT_LEN: usize = 1_000;

/// One stored event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// The dedup key: an event re-sent with the same uuid is stored once.
    pub uuid: [u8; 16],
    pub name: String,
    /// Who did it: a user id or an anonymous device id (identity merges map it to a person).
    pub distinct_id: String,
    /// Microseconds since the Unix epoch, UTC.
    pub ts_micros: i64,
    pub session_id: Option<String>,
    pub props: Map<String, Value>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// What the request adds to every event in it.
#[derive(Debug, Clone, Default)]
pub struct RequestContext {
    pub now_micros: i64,
    /// The client's address (after trusted proxies), used when an event names none.
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct EventLimits {
    pub max_events: usize,
    /// Largest event (its JSON), as the sender wrote it.
    pub max_event_bytes: usize,
    pub max_future_micros: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventBatchError {
    /// The body is not an event, a list, or `{"events": [...]}`.
    Shape(String),
    Empty,
    TooMany {
        count: usize,
        max: usize,
    },
    Items(Vec<ItemError>),
}

type FieldError = (String, String);

fn field_error(field: &str, reason: impl Into<String>) -> FieldError {
    (field.to_string(), reason.into())
}

/// The uuid for an event id as sent: a UUID in any of its text forms is used as it is; any
/// other string (Segment's `messageId` may be anything) maps to a stable UUID derived from it,
/// so a retry with the same id still deduplicates. `None` draws a fresh random one (an event
/// sent without an id cannot be recognised when re-sent, as in PostHog).
pub fn event_uuid(id: Option<&str>) -> [u8; 16] {
    match id.map(str::trim).filter(|s| !s.is_empty()) {
        Some(s) => match uuid::Uuid::parse_str(s) {
            Ok(u) => *u.as_bytes(),
            Err(_) => {
                let digest = Sha256::digest(s.as_bytes());
                let mut bytes = [0u8; 16];
                bytes.copy_from_slice(&digest[..16]);
                // RFC 9562 version 8 (custom), variant 10.
                bytes[6] = (bytes[6] & 0x0f) | 0x80;
                bytes[8] = (bytes[8] & 0x3f) | 0x80;
                bytes
            }
        },
        None => *uuid::Uuid::new_v4().as_bytes(),
    }
}

pub fn uuid_text(bytes: &[u8; 16]) -> String {
    uuid::Uuid::from_bytes(*bytes).to_string()
}

/// Parses an event time: RFC 3339 (a missing offset reads as UTC, as PostHog and Segment do),
/// or a number of Unix milliseconds (what JavaScript's `Date.now()` gives; PostHog's `$time`).
pub fn parse_time(value: &Value) -> Result<i64, String> {
    let micros = match value {
        Value::String(s) => {
            let s = s.trim();
            if let Ok(t) = DateTime::parse_from_rfc3339(s) {
                t.timestamp_micros()
            } else if let Ok(t) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
                t.and_utc().timestamp_micros()
            } else {
                return Err(format!(
                    "{s:?} is not an RFC 3339 time such as 2026-01-31T12:00:00Z"
                ));
            }
        }
        Value::Number(n) => {
            let Some(ms) = n.as_f64().filter(|v| v.is_finite() && v.abs() < 1e15) else {
                return Err("is not a valid number of Unix milliseconds".into());
            };
            (ms * 1_000.0).round() as i64
        }
        _ => return Err("must be an RFC 3339 string or Unix milliseconds".into()),
    };
    if micros < MIN_TIMESTAMP_MICROS {
        return Err("lies before 2000-01-01".into());
    }
    Ok(micros)
}

/// Checks a time against the clock: not before 2000, not further ahead than allowed.
pub fn check_time(micros: i64, ctx: &RequestContext, limits: &EventLimits) -> Result<(), String> {
    if micros > ctx.now_micros + limits.max_future_micros {
        return Err(format!(
            "lies more than {} s in the future",
            limits.max_future_micros / 1_000_000
        ));
    }
    Ok(())
}

/// An id (event name, distinct id, session id): a non-empty string of at most
/// [`MAX_ID_LEN`] characters without control characters. Numbers are accepted as their text
/// (SDKs send numeric user ids).
pub fn id_string(value: &Value) -> Result<String, String> {
    let s = match value {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => return Err("must be a string".into()),
    };
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.chars().count() > MAX_ID_LEN {
        return Err(format!("is longer than {MAX_ID_LEN} characters"));
    }
    if s.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(s)
}

/// Checks `properties`: an object, nested at most [`MAX_DEPTH`] deep, at most
/// [`MAX_PROPERTIES`] keys in all, keys non-empty and at most [`MAX_KEY_LEN`] long. Returns the
/// path of the first offending key in the error. (Paths are built only on the way out of an
/// error: this runs for every property of every event.)
pub fn check_properties(props: &Map<String, Value>) -> Result<(), FieldError> {
    let mut count = 0usize;
    check_object(props, 1, &mut count).map_err(|(path, reason)| {
        if path.is_empty() {
            ("properties".to_string(), reason)
        } else {
            (format!("properties.{path}"), reason)
        }
    })
}

fn prefixed(key: &str, (path, reason): FieldError) -> FieldError {
    if path.is_empty() {
        (key.to_string(), reason)
    } else {
        (format!("{key}.{path}"), reason)
    }
}

fn check_object(
    map: &Map<String, Value>,
    depth: usize,
    count: &mut usize,
) -> Result<(), FieldError> {
    if depth > MAX_DEPTH {
        return Err(field_error(
            "",
            format!("nests deeper than {MAX_DEPTH} levels"),
        ));
    }
    for (key, value) in map {
        *count += 1;
        if *count > MAX_PROPERTIES {
            return Err(field_error(
                "",
                format!("holds more than {MAX_PROPERTIES} properties"),
            ));
        }
        if key.is_empty() || key.len() > MAX_KEY_LEN * 4 || key.chars().count() > MAX_KEY_LEN {
            return Err(field_error(
                key,
                format!("keys must be 1 to {MAX_KEY_LEN} characters"),
            ));
        }
        check_value(value, depth, count).map_err(|e| prefixed(key, e))?;
    }
    Ok(())
}

fn check_value(value: &Value, depth: usize, count: &mut usize) -> Result<(), FieldError> {
    match value {
        Value::Object(m) => check_object(m, depth + 1, count),
        Value::Array(items) => {
            if depth + 1 > MAX_DEPTH {
                return Err(field_error(
                    "",
                    format!("nests deeper than {MAX_DEPTH} levels"),
                ));
            }
            for item in items {
                check_value(item, depth + 1, count)?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Whether a value's JSON text would be longer than `limit` bytes, from the lengths of its
/// parts (no text is written; escapes are not counted, so it errs towards accepting).
pub fn json_len_exceeds(value: &Value, limit: usize) -> bool {
    fn len(v: &Value, budget: &mut isize) {
        if *budget < 0 {
            return;
        }
        *budget -= match v {
            Value::Null => 4,
            Value::Bool(_) => 5,
            Value::Number(n) => match n.as_i64() {
                Some(i) => {
                    i.unsigned_abs()
                        .checked_ilog10()
                        .map_or(1, |d| d as isize + 1)
                        + 1
                }
                None => 24,
            },
            Value::String(s) => s.len() as isize + 2,
            Value::Array(items) => {
                *budget -= 2 + items.len() as isize;
                for item in items {
                    len(item, budget);
                }
                0
            }
            Value::Object(map) => {
                *budget -= 2;
                for (k, item) in map {
                    *budget -= k.len() as isize + 4;
                    len(item, budget);
                }
                0
            }
        };
    }
    let mut budget = limit as isize;
    len(value, &mut budget);
    budget < 0
}

/// Lays out an all-or-nothing batch: the items of a list, `{"events": [...]}` or (`single`)
/// one event, each turned into an event by `parse_one` (which names its own fields).
/// The items come by reference or by value (`T`), so a parser may move properties out.
pub fn parse_items<T: std::borrow::Borrow<Value>>(
    items: impl ExactSizeIterator<Item = T>,
    limits: &EventLimits,
    mut parse_one: impl FnMut(T) -> Result<Event, FieldError>,
) -> Result<Vec<Event>, EventBatchError> {
    if items.len() == 0 {
        return Err(EventBatchError::Empty);
    }
    if items.len() > limits.max_events {
        return Err(EventBatchError::TooMany {
            count: items.len(),
            max: limits.max_events,
        });
    }
    let mut events = Vec::with_capacity(items.len());
    let mut errors = Vec::new();
    for (index, item) in items.enumerate() {
        let parsed = if json_len_exceeds(item.borrow(), limits.max_event_bytes) {
            Err(field_error(
                "",
                format!("the event is larger than {} bytes", limits.max_event_bytes),
            ))
        } else {
            parse_one(item)
        };
        match parsed {
            Ok(e) => events.push(e),
            Err((field, reason)) => {
                if errors.len() < 100 {
                    errors.push(ItemError {
                        index,
                        field,
                        reason,
                    });
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(events)
    } else {
        Err(EventBatchError::Items(errors))
    }
}

const NATIVE_FIELDS: &[&str] = &[
    "name",
    "event",
    "distinct_id",
    "user_id",
    "session_id",
    "timestamp",
    "uuid",
    "properties",
    "ip",
    "user_agent",
];

/// A batch for the native API: a list of events or `{"events": [...]}`.
pub fn parse_native_batch(
    body: Value,
    ctx: &RequestContext,
    limits: &EventLimits,
) -> Result<Vec<Event>, EventBatchError> {
    let items: Vec<Value> = match body {
        Value::Array(items) => items,
        Value::Object(mut map) if map.contains_key("events") => {
            let others = map.len() > 1;
            match map.remove("events") {
                Some(Value::Array(_)) if others => {
                    return Err(EventBatchError::Shape(
                        "a batch is {\"events\": [...]} with no other fields".into(),
                    ));
                }
                Some(Value::Array(items)) => items,
                _ => return Err(EventBatchError::Shape("`events` must be a list".into())),
            }
        }
        _ => {
            return Err(EventBatchError::Shape(
                "the body must be a list of events or {\"events\": [...]}".into(),
            ));
        }
    };
    parse_items(items.into_iter(), limits, |item| {
        parse_native_event(item, ctx, limits)
    })
}

/// One event in the native shape (the seed's): `name` (or `event`), `distinct_id` (or
/// `user_id`), optional `session_id`, `timestamp` (default: now), `uuid`, `properties`, `ip`,
/// `user_agent`.
pub fn parse_native_event(
    item: Value,
    ctx: &RequestContext,
    limits: &EventLimits,
) -> Result<Event, FieldError> {
    let Value::Object(mut map) = item else {
        return Err(field_error(
            "",
            "must be an object with name and distinct_id",
        ));
    };
    if let Some(key) = map.keys().find(|k| !NATIVE_FIELDS.contains(&k.as_str())) {
        return Err(field_error(
            key,
            format!("unknown field; allowed: {}", NATIVE_FIELDS.join(", ")),
        ));
    }
    let (name_key, name) = match (map.get("name"), map.get("event")) {
        (Some(v), _) => ("name", v),
        (None, Some(v)) => ("event", v),
        (None, None) => return Err(field_error("name", "is required")),
    };
    let name = id_string(name).map_err(|r| field_error(name_key, r))?;
    let (id_key, distinct) = match (map.get("distinct_id"), map.get("user_id")) {
        (Some(v), _) => ("distinct_id", v),
        (None, Some(v)) => ("user_id", v),
        (None, None) => {
            return Err(field_error(
                "distinct_id",
                "is required (the user or device the event is about)",
            ));
        }
    };
    let distinct_id = id_string(distinct).map_err(|r| field_error(id_key, r))?;
    let session_id = match map.get("session_id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(id_string(v).map_err(|r| field_error("session_id", r))?),
    };
    let ts_micros = match map.get("timestamp") {
        None | Some(Value::Null) => ctx.now_micros,
        Some(v) => {
            let t = parse_time(v).map_err(|r| field_error("timestamp", r))?;
            check_time(t, ctx, limits).map_err(|r| field_error("timestamp", r))?;
            t
        }
    };
    let uuid = match map.get("uuid") {
        None | Some(Value::Null) => event_uuid(None),
        Some(Value::String(s)) => {
            let parsed = uuid::Uuid::parse_str(s.trim())
                .map_err(|_| field_error("uuid", "must be a UUID such as 0190d6b2-…"))?;
            *parsed.as_bytes()
        }
        Some(_) => return Err(field_error("uuid", "must be a UUID string")),
    };
    // Moved out, not copied: the properties are most of an event's bytes.
    let props = match map.remove("properties") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => {
            check_properties(&m)?;
            m
        }
        Some(_) => return Err(field_error("properties", "must be an object")),
    };
    let ip = optional_text(map.get("ip"), "ip", 64)?.or_else(|| ctx.ip.clone());
    let user_agent = optional_text(map.get("user_agent"), "user_agent", MAX_USER_AGENT_LEN)?
        .or_else(|| ctx.user_agent.clone());
    Ok(Event {
        uuid,
        name,
        distinct_id,
        ts_micros,
        session_id,
        props,
        ip,
        user_agent,
    })
}

fn optional_text(
    value: Option<&Value>,
    field: &str,
    max: usize,
) -> Result<Option<String>, FieldError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.chars().count() <= max => Ok(Some(s.clone())),
        Some(Value::String(_)) => Err(field_error(
            field,
            format!("is longer than {max} characters"),
        )),
        Some(_) => Err(field_error(field, "must be a string")),
    }
}

/// How a property filter compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterOp {
    Eq,
    Neq,
    Contains,
    NotContains,
    Gt,
    Gte,
    Lt,
    Lte,
    IsSet,
    IsNotSet,
}

impl FilterOp {
    pub fn parse(s: &str) -> Option<FilterOp> {
        Some(match s {
            "eq" | "exact" | "equals" | "=" => FilterOp::Eq,
            "neq" | "is_not" | "not" | "!=" => FilterOp::Neq,
            "contains" | "icontains" => FilterOp::Contains,
            "not_contains" | "not_icontains" => FilterOp::NotContains,
            "gt" | ">" => FilterOp::Gt,
            "gte" | ">=" => FilterOp::Gte,
            "lt" | "<" => FilterOp::Lt,
            "lte" | "<=" => FilterOp::Lte,
            "is_set" => FilterOp::IsSet,
            "is_not_set" => FilterOp::IsNotSet,
            _ => return None,
        })
    }

    fn needs_number(self) -> bool {
        matches!(
            self,
            FilterOp::Gt | FilterOp::Gte | FilterOp::Lt | FilterOp::Lte
        )
    }
}

/// A filter on one event property: `properties.<key> <op> <value>`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PropertyFilter {
    pub key: String,
    /// A person property (`"type": "person"`, as PostHog's filters say) rather than the
    /// event's own.
    pub person: bool,
    pub op: FilterOp,
    /// The text compared with (`eq`, `neq`, `contains`, `not_contains`), or the number
    /// (`gt`…`lte`); none for `is_set` / `is_not_set`.
    pub value: Option<FilterValue>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum FilterValue {
    Text(String),
    Number(f64),
}

/// Most filters one request may apply.
pub const MAX_FILTERS: usize = 20;

/// Parses a list of filters, `[{"key": "plan", "op": "eq", "value": "pro"}, …]` (PostHog's
/// `operator` is accepted for `op`), naming the first bad one by its position.
pub fn parse_filters(value: &Value, field: &str) -> Result<Vec<PropertyFilter>, FieldError> {
    let Value::Array(items) = value else {
        return Err(field_error(field, "must be a list of {key, op, value}"));
    };
    if items.len() > MAX_FILTERS {
        return Err(field_error(field, format!("at most {MAX_FILTERS} filters")));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_filter(item).map_err(|r| field_error(&format!("{field}[{i}]"), r)))
        .collect()
}

fn parse_filter(item: &Value) -> Result<PropertyFilter, String> {
    let Value::Object(map) = item else {
        return Err("must be an object {key, op, value}".into());
    };
    let key = match map.get("key") {
        Some(Value::String(k)) if !k.is_empty() && k.chars().count() <= MAX_KEY_LEN => k.clone(),
        Some(_) => return Err(format!("key must be 1 to {MAX_KEY_LEN} characters")),
        None => return Err("key is required".into()),
    };
    let person = match map.get("type") {
        None | Some(Value::Null) => false,
        Some(Value::String(t)) if t == "event" => false,
        Some(Value::String(t)) if t == "person" => true,
        Some(_) => return Err("type must be event or person".into()),
    };
    let op = match map.get("op").or_else(|| map.get("operator")) {
        None => FilterOp::Eq,
        Some(Value::String(s)) => FilterOp::parse(s).ok_or_else(|| {
            format!("op {s:?} is not one of eq, neq, contains, not_contains, gt, gte, lt, lte, is_set, is_not_set")
        })?,
        Some(_) => return Err("op must be a string".into()),
    };
    let value = match (op, map.get("value")) {
        (FilterOp::IsSet | FilterOp::IsNotSet, _) => None,
        (op, Some(Value::Number(n))) if op.needs_number() => {
            Some(FilterValue::Number(n.as_f64().unwrap_or(0.0)))
        }
        (op, Some(Value::String(s))) if op.needs_number() => Some(FilterValue::Number(
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| "value must be a number for gt, gte, lt and lte".to_string())?,
        )),
        (_, Some(Value::String(s))) if s.chars().count() <= 1_000 => {
            Some(FilterValue::Text(s.clone()))
        }
        (_, Some(Value::Number(n))) => Some(FilterValue::Text(n.to_string())),
        (_, Some(Value::Bool(b))) => Some(FilterValue::Text(b.to_string())),
        (_, None) => return Err("value is required".into()),
        (_, Some(_)) => return Err("value must be a string, number or boolean".into()),
    };
    Ok(PropertyFilter {
        key,
        person,
        op,
        value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> RequestContext {
        RequestContext {
            now_micros: 1_780_000_000_000_000,
            ip: Some("203.0.113.9".into()),
            user_agent: Some("curl/8".into()),
        }
    }

    fn limits() -> EventLimits {
        EventLimits {
            max_events: 3,
            max_event_bytes: 1_000,
            max_future_micros: 3_600_000_000,
        }
    }

    #[test]
    fn a_native_event_keeps_what_was_sent_and_fills_the_rest_from_the_request() {
        let e = parse_native_event(
            json!({"name": "signup", "user_id": 42, "timestamp": "2026-05-01T10:00:00+02:00",
                    "uuid": "0190D6B2-0000-7000-8000-000000000001",
                    "properties": {"plan": "pro", "n": {"deep": [1, 2]}}}),
            &ctx(),
            &limits(),
        )
        .unwrap();
        assert_eq!(e.name, "signup");
        assert_eq!(e.distinct_id, "42");
        // 10:00 at +02:00 is 08:00 UTC: 1777622400 s.
        assert_eq!(e.ts_micros, 1_777_622_400_000_000);
        assert_eq!(uuid_text(&e.uuid), "0190d6b2-0000-7000-8000-000000000001");
        assert_eq!(e.props["plan"], "pro");
        assert_eq!(e.ip.as_deref(), Some("203.0.113.9"));
        assert_eq!(e.user_agent.as_deref(), Some("curl/8"));
    }

    #[test]
    fn every_bad_event_of_a_batch_is_named_and_nothing_passes() {
        let body = json!({"events": [
            {"name": "ok", "distinct_id": "u"},
            {"distinct_id": "u"},
            {"name": "x", "distinct_id": "u", "timestamp": "yesterday"},
            {"name": "x", "distinct_id": "u", "colour": 1},
        ]});
        let mut l = limits();
        l.max_events = 10;
        let Err(EventBatchError::Items(items)) = parse_native_batch(body, &ctx(), &l) else {
            panic!("expected item errors");
        };
        let named: Vec<(usize, &str)> = items.iter().map(|i| (i.index, i.field.as_str())).collect();
        assert_eq!(named, vec![(1, "name"), (2, "timestamp"), (3, "colour")]);
    }

    #[test]
    fn batch_size_event_size_depth_and_future_times_are_bounded() {
        let one = json!({"name": "a", "distinct_id": "u"});
        let four = json!([one, one, one, one]);
        assert_eq!(
            parse_native_batch(four, &ctx(), &limits()),
            Err(EventBatchError::TooMany { count: 4, max: 3 })
        );
        assert_eq!(
            parse_native_batch(json!([]), &ctx(), &limits()),
            Err(EventBatchError::Empty)
        );
        let big =
            json!([{"name": "a", "distinct_id": "u", "properties": {"s": "x".repeat(2_000)}}]);
        let Err(EventBatchError::Items(items)) = parse_native_batch(big, &ctx(), &limits()) else {
            panic!("expected the big event refused");
        };
        assert!(items[0].reason.contains("larger than 1000 bytes"));
        let mut deep = json!(1);
        for _ in 0..9 {
            deep = json!({ "k": deep });
        }
        let err = parse_native_event(
            json!({"name": "a", "distinct_id": "u", "properties": deep}),
            &ctx(),
            &limits(),
        )
        .unwrap_err();
        assert!(err.1.contains("deeper than 8"), "{err:?}");
        // Two hours ahead with one hour allowed.
        let err = parse_native_event(
            json!({"name": "a", "distinct_id": "u", "timestamp": 1_780_007_200_000u64}),
            &ctx(),
            &limits(),
        )
        .unwrap_err();
        assert_eq!(err.0, "timestamp");
    }

    #[test]
    fn event_ids_map_to_stable_uuids() {
        let a = event_uuid(Some("ajs-next-1712345-abc"));
        assert_eq!(a, event_uuid(Some("ajs-next-1712345-abc")));
        assert_ne!(a, event_uuid(Some("ajs-next-1712345-abd")));
        assert_eq!(a[6] >> 4, 8, "version 8");
        assert_ne!(event_uuid(None), event_uuid(None));
        assert_eq!(
            uuid_text(&event_uuid(Some("{0190d6b2-0000-7000-8000-000000000001}"))),
            "0190d6b2-0000-7000-8000-000000000001"
        );
    }

    #[test]
    fn times_read_as_rfc3339_naive_utc_or_milliseconds() {
        assert_eq!(
            parse_time(&json!("2026-01-01T00:00:00Z")),
            Ok(1_767_225_600_000_000)
        );
        assert_eq!(
            parse_time(&json!("2026-01-01T00:00:00.5")),
            Ok(1_767_225_600_500_000)
        );
        assert_eq!(
            parse_time(&json!(1_767_225_600_000u64)),
            Ok(1_767_225_600_000_000)
        );
        assert!(
            parse_time(&json!(1_767_225_600u64)).is_err(),
            "seconds read as ms are before 2000"
        );
        assert!(parse_time(&json!(true)).is_err());
    }

    #[test]
    fn filters_parse_with_their_operators_and_name_the_bad_one() {
        let f = parse_filters(
            &json!([{"key": "plan", "value": "pro"}, {"key": "amount", "operator": "gt", "value": "9.5"},
                    {"key": "coupon", "op": "is_set"}]),
            "filters",
        )
        .unwrap();
        assert_eq!(f[0].op, FilterOp::Eq);
        assert_eq!(f[1].value, Some(FilterValue::Number(9.5)));
        assert_eq!(f[2].value, None);
        let err = parse_filters(
            &json!([{"key": "a", "value": 1}, {"key": "b", "op": "gt", "value": "x"}]),
            "filters",
        )
        .unwrap_err();
        assert_eq!(err.0, "filters[1]");
        // A person property is marked as such; the type must be one of the two.
        let f = parse_filters(&json!([{"key": "plan", "type": "person", "value": "pro"}, {"key": "x", "type": "event", "value": 1}]), "f").unwrap();
        assert!(f[0].person && !f[1].person);
        let err = parse_filters(
            &json!([{"key": "plan", "type": "group", "value": "pro"}]),
            "f",
        )
        .unwrap_err();
        assert_eq!(err.0, "f[0]");
    }
}
