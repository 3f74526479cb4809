//! What the analytics SDKs users already ship send, read into [`Event`]s: PostHog's capture
//! (v0: `/batch`, `/capture`, `/e`, `/i/v0/e`; v1: `/i/v1/analytics/events`) and Segment's HTTP
//! tracking API (`/v1/batch`, `/v1/track`, …). Pure: the web layer has decoded the body.
//!
//! Shapes follow the providers' references (see `../shared/REFERENCES.md` §1b): PostHog's
//! `rust/capture` v0 request union and Segment's message spec. As on the native API, a batch is
//! all-or-nothing and every bad event is named.

use serde_json::{Map, Value};

use crate::domain::events::{
    self, Event, EventBatchError, EventLimits, MAX_ID_LEN, RequestContext, check_properties,
    check_time, event_uuid, parse_items, parse_time,
};

type FieldError = (String, String);

fn field_error(field: &str, reason: impl Into<String>) -> FieldError {
    (field.to_string(), reason.into())
}

/// Segment's own limits: 32 KB per message, 500 KB per batch.
pub const SEGMENT_MAX_MESSAGE_BYTES: usize = 32 * 1024;
pub const SEGMENT_MAX_BATCH_BYTES: usize = 500 * 1024;

/// A distinct id as PostHog reads it: strings trimmed, numbers and containers as their JSON,
/// at most 200 characters (longer ones are cut, as PostHog does).
fn posthog_distinct_id(value: &Value) -> Option<String> {
    let text = match value {
        Value::Null => return None,
        Value::String(s) => s.trim().to_string(),
        other => other.to_string(),
    };
    let text: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_ID_LEN)
        .collect();
    (!text.is_empty()).then_some(text)
}

/// The PostHog project key a v0 body carries: `api_key` or `token` at the top, else on each
/// event (`api_key`, `token`, `$token`, or `properties.token`). Every event must carry the
/// same one, as PostHog requires.
pub fn posthog_token(body: &Value) -> Result<Option<String>, String> {
    fn own(map: &Map<String, Value>) -> Option<String> {
        ["api_key", "token", "$token"]
            .iter()
            .find_map(|k| map.get(*k).and_then(Value::as_str))
            .or_else(|| {
                map.get("properties")
                    .and_then(|p| p.get("token"))
                    .and_then(Value::as_str)
            })
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }
    let (top, items): (Option<String>, &[Value]) = match body {
        Value::Array(items) => (None, items),
        Value::Object(map) => match map.get("batch") {
            Some(Value::Array(items)) => (own(map), items),
            _ => (own(map), &[]),
        },
        _ => return Ok(None),
    };
    if top.is_some() {
        return Ok(top);
    }
    let mut found: Option<String> = None;
    for item in items {
        if let Some(t) = item.as_object().and_then(own) {
            match &found {
                Some(f) if *f != t => {
                    return Err("the events of one batch carry different project keys".into());
                }
                _ => found = Some(t),
            }
        }
    }
    Ok(found)
}

/// The events of a PostHog v0 body: a list (posthog-js), `{"api_key", "batch": [...],
/// "sent_at"}` (the server SDKs), or one event. `sent_at_micros` (from the body or the `_`
/// query parameter) corrects the sender's clock skew, as PostHog does.
pub fn posthog_v0(
    body: &Value,
    query_sent_at_micros: Option<i64>,
    ctx: &RequestContext,
    limits: &EventLimits,
) -> Result<Vec<Event>, EventBatchError> {
    let single;
    let (items, sent_at): (&[Value], Option<&Value>) = match body {
        Value::Array(items) => (items, None),
        Value::Object(map) => match map.get("batch") {
            Some(Value::Array(items)) => (items, map.get("sent_at").or_else(|| map.get("sentAt"))),
            Some(_) => return Err(EventBatchError::Shape("`batch` must be a list".into())),
            None => {
                single = [body.clone()];
                (&single[..], map.get("sent_at"))
            }
        },
        _ => {
            return Err(EventBatchError::Shape(
                "the body must be an event, a list of events or {\"batch\": [...]}".into(),
            ));
        }
    };
    let sent_at = match sent_at {
        Some(v) if !v.is_null() => {
            Some(parse_time(v).map_err(|r| EventBatchError::Shape(format!("sent_at {r}")))?)
        }
        _ => query_sent_at_micros,
    };
    parse_items(items.iter(), limits, |item| {
        posthog_event(item, sent_at, ctx, limits)
    })
}

/// The events of a PostHog v1 body: `{"created_at", "batch": [...]}`; every event has a uuid
/// and an RFC 3339 timestamp with its offset.
pub fn posthog_v1(
    body: &Value,
    ctx: &RequestContext,
    limits: &EventLimits,
) -> Result<Vec<Event>, EventBatchError> {
    let Some(Value::Array(items)) = body.get("batch") else {
        return Err(EventBatchError::Shape(
            "the body must be {\"created_at\": …, \"batch\": [...]}".into(),
        ));
    };
    parse_items(items.iter(), limits, |item| {
        let map = item
            .as_object()
            .ok_or_else(|| field_error("", "must be an object"))?;
        if !map.get("uuid").is_some_and(Value::is_string) {
            return Err(field_error("uuid", "is required"));
        }
        if !map.get("timestamp").is_some_and(Value::is_string) {
            return Err(field_error(
                "timestamp",
                "is required (RFC 3339 with an offset)",
            ));
        }
        let skew_off = map
            .get("options")
            .and_then(|o| o.get("disable_skew_correction"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let created = body.get("created_at").and_then(|v| parse_time(v).ok());
        let mut event = posthog_event(item, if skew_off { None } else { created }, ctx, limits)?;
        if let Some(s) = map.get("session_id").and_then(Value::as_str) {
            event.session_id = Some(s.chars().take(MAX_ID_LEN).collect());
            event
                .props
                .insert("$session_id".into(), Value::String(s.into()));
        }
        if let Some(w) = map.get("window_id").and_then(Value::as_str) {
            event
                .props
                .insert("$window_id".into(), Value::String(w.into()));
        }
        Ok(event)
    })
}

/// The keys an event carries that are not its properties, and that are not kept.
const POSTHOG_CREDENTIALS: &[&str] = &["token", "$token", "api_key", "distinct_id"];

fn posthog_event(
    item: &Value,
    sent_at_micros: Option<i64>,
    ctx: &RequestContext,
    limits: &EventLimits,
) -> Result<Event, FieldError> {
    let Value::Object(map) = item else {
        return Err(field_error(
            "",
            "must be an object with event and distinct_id",
        ));
    };
    let name = match map.get("event") {
        Some(v) => events::id_string(v).map_err(|r| field_error("event", r))?,
        None => return Err(field_error("event", "is required")),
    };
    let mut props = match map.get("properties") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(_) => return Err(field_error("properties", "must be an object")),
    };
    let distinct_id = map
        .get("distinct_id")
        .or_else(|| map.get("$distinct_id"))
        .and_then(posthog_distinct_id)
        .or_else(|| props.get("distinct_id").and_then(posthog_distinct_id))
        .ok_or_else(|| field_error("distinct_id", "is required"))?;
    for key in POSTHOG_CREDENTIALS {
        props.remove(*key);
    }
    // Server SDKs send `$set` / `$set_once` beside the properties; PostHog reads them as
    // properties.
    for key in ["$set", "$set_once"] {
        if let Some(v) = map.get(key)
            && !props.contains_key(key)
        {
            props.insert(key.into(), v.clone());
        }
    }
    check_properties(&props)?;
    let ts_micros = match (map.get("timestamp"), map.get("offset"), props.get("$time")) {
        (Some(t), _, _) if !t.is_null() => {
            let t = parse_time(t).map_err(|r| field_error("timestamp", r))?;
            // The sender's clock may be off: shift by how far its `sent_at` is from ours.
            match sent_at_micros {
                Some(sent) => t + (ctx.now_micros - sent),
                None => t,
            }
        }
        (_, Some(Value::Number(offset)), _) => {
            ctx.now_micros - (offset.as_f64().unwrap_or(0.0) * 1_000.0) as i64
        }
        (_, _, Some(Value::Number(secs))) => (secs.as_f64().unwrap_or(0.0) * 1e6) as i64,
        _ => ctx.now_micros,
    };
    if ts_micros < events::MIN_TIMESTAMP_MICROS {
        return Err(field_error("timestamp", "lies before 2000-01-01"));
    }
    check_time(ts_micros, ctx, limits).map_err(|r| field_error("timestamp", r))?;
    let uuid = event_uuid(map.get("uuid").and_then(Value::as_str));
    let session_id = props
        .get("$session_id")
        .and_then(Value::as_str)
        .map(|s| s.chars().take(MAX_ID_LEN).collect());
    let ip = props
        .get("$ip")
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| ctx.ip.clone());
    Ok(Event {
        uuid,
        name,
        distinct_id,
        ts_micros,
        session_id,
        props,
        ip,
        user_agent: ctx.user_agent.clone(),
    })
}

/// The Segment call a single-message route stands for (`/v1/track` → `Track`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentCall {
    Track,
    Identify,
    Page,
    Screen,
    Group,
    Alias,
}

impl SegmentCall {
    pub fn parse(s: &str) -> Option<SegmentCall> {
        Some(match s {
            "track" => SegmentCall::Track,
            "identify" => SegmentCall::Identify,
            "page" => SegmentCall::Page,
            "screen" => SegmentCall::Screen,
            "group" => SegmentCall::Group,
            "alias" => SegmentCall::Alias,
            _ => return None,
        })
    }
}

/// The write key a Segment body carries (`writeKey`), when not in the Basic auth header.
pub fn segment_write_key(body: &Value) -> Option<String> {
    body.get("writeKey")
        .and_then(Value::as_str)
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// The events of a Segment body: `{"batch": [...]}` for `/v1/batch` (`call` None; each
/// message names its `type`), or one message for `/v1/<call>`.
pub fn segment(
    body: &Value,
    call: Option<SegmentCall>,
    ctx: &RequestContext,
    limits: &EventLimits,
) -> Result<Vec<Event>, EventBatchError> {
    let limits = EventLimits {
        max_event_bytes: limits.max_event_bytes.min(SEGMENT_MAX_MESSAGE_BYTES),
        ..*limits
    };
    let single;
    let items: &[Value] = match (call, body) {
        (None, Value::Object(map)) => match map.get("batch") {
            Some(Value::Array(items)) => items,
            _ => {
                return Err(EventBatchError::Shape(
                    "the body must be {\"batch\": [...]}".into(),
                ));
            }
        },
        (Some(_), Value::Object(_)) => {
            single = [body.clone()];
            &single
        }
        _ => {
            return Err(EventBatchError::Shape(
                "the body must be a JSON object".into(),
            ));
        }
    };
    parse_items(items.iter(), &limits, |item| {
        segment_message(item, call, ctx, &limits)
    })
}

fn id_of(value: Option<&Value>) -> Option<String> {
    match value {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    }
}

fn object_field(map: &Map<String, Value>, key: &str) -> Result<Map<String, Value>, FieldError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(Map::new()),
        Some(Value::Object(m)) => Ok(m.clone()),
        Some(_) => Err(field_error(key, "must be an object")),
    }
}

fn segment_message(
    item: &Value,
    call: Option<SegmentCall>,
    ctx: &RequestContext,
    limits: &EventLimits,
) -> Result<Event, FieldError> {
    let Value::Object(map) = item else {
        return Err(field_error("", "must be an object"));
    };
    let call = match call {
        Some(c) => c,
        None => match map.get("type").and_then(Value::as_str) {
            Some(t) => SegmentCall::parse(t).ok_or_else(|| {
                field_error(
                    "type",
                    "must be track, identify, page, screen, group or alias",
                )
            })?,
            None => return Err(field_error("type", "is required")),
        },
    };
    let user_id = id_of(map.get("userId"));
    let anonymous_id = id_of(map.get("anonymousId"));
    let distinct = user_id
        .clone()
        .or_else(|| anonymous_id.clone())
        .ok_or_else(|| field_error("userId", "userId or anonymousId is required"))?;
    let distinct_id =
        events::id_string(&Value::String(distinct)).map_err(|r| field_error("userId", r))?;
    let context = object_field(map, "context")?;
    let (name, mut props) = match call {
        SegmentCall::Track => {
            let name = match map.get("event") {
                Some(v) => events::id_string(v).map_err(|r| field_error("event", r))?,
                None => return Err(field_error("event", "is required for track")),
            };
            (name, object_field(map, "properties")?)
        }
        SegmentCall::Page | SegmentCall::Screen => {
            let mut props = object_field(map, "properties")?;
            if let Some(n) = map.get("name").filter(|n| n.is_string()) {
                props.entry("name").or_insert_with(|| n.clone());
            }
            let url = props
                .get("url")
                .or_else(|| context.get("page").and_then(|p| p.get("url")))
                .cloned();
            if let Some(url) = url {
                props.entry("$current_url").or_insert(url);
            }
            let name = if call == SegmentCall::Page {
                "$pageview"
            } else {
                "$screen"
            };
            (name.to_string(), props)
        }
        SegmentCall::Identify => {
            let mut props = Map::new();
            props.insert("$set".into(), Value::Object(object_field(map, "traits")?));
            if let (Some(_), Some(anon)) = (&user_id, &anonymous_id) {
                props.insert("$anon_distinct_id".into(), Value::String(anon.clone()));
            }
            ("$identify".to_string(), props)
        }
        SegmentCall::Group => {
            let group = id_of(map.get("groupId"))
                .ok_or_else(|| field_error("groupId", "is required for group"))?;
            let mut props = Map::new();
            props.insert("$group_type".into(), Value::String("company".into()));
            props.insert("$group_key".into(), Value::String(group));
            props.insert(
                "$group_set".into(),
                Value::Object(object_field(map, "traits")?),
            );
            ("$groupidentify".to_string(), props)
        }
        SegmentCall::Alias => {
            let previous = id_of(map.get("previousId"))
                .ok_or_else(|| field_error("previousId", "is required for alias"))?;
            let mut props = Map::new();
            props.insert("alias".into(), Value::String(previous));
            ("$create_alias".to_string(), props)
        }
    };
    if let Some(lib) = context.get("library") {
        if let Some(n) = lib.get("name") {
            props.insert("$lib".into(), n.clone());
        }
        if let Some(v) = lib.get("version") {
            props.insert("$lib_version".into(), v.clone());
        }
    }
    if !context.is_empty() {
        props.insert("$context".into(), Value::Object(context.clone()));
    }
    check_properties(&props)?;
    let ts_micros = match map
        .get("timestamp")
        .or_else(|| map.get("originalTimestamp"))
    {
        Some(t) if !t.is_null() => parse_time(t).map_err(|r| field_error("timestamp", r))?,
        _ => ctx.now_micros,
    };
    check_time(ts_micros, ctx, limits).map_err(|r| field_error("timestamp", r))?;
    Ok(Event {
        uuid: event_uuid(map.get("messageId").and_then(Value::as_str)),
        name,
        distinct_id,
        ts_micros,
        session_id: None,
        props,
        ip: context
            .get("ip")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| ctx.ip.clone()),
        user_agent: context
            .get("userAgent")
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| ctx.user_agent.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_780_000_000_000_000;

    fn ctx() -> RequestContext {
        RequestContext {
            now_micros: NOW,
            ip: Some("198.51.100.7".into()),
            user_agent: Some("posthog-python/7".into()),
        }
    }

    fn limits() -> EventLimits {
        EventLimits {
            max_events: 100,
            max_event_bytes: 1 << 20,
            max_future_micros: 86_400_000_000,
        }
    }

    #[test]
    fn posthog_v0_reads_every_body_shape_and_finds_the_token() {
        let one = json!({"event": "a", "distinct_id": 7, "properties": {"token": "phc_x", "k": 1}});
        let list = json!([one, {"event": "b", "$distinct_id": "u2", "api_key": "phc_x"}]);
        let batch = json!({"api_key": "phc_y", "batch": [{"event": "c", "properties": {"distinct_id": "u3"}}]});
        assert_eq!(posthog_token(&one).unwrap().as_deref(), Some("phc_x"));
        assert_eq!(posthog_token(&list).unwrap().as_deref(), Some("phc_x"));
        assert_eq!(posthog_token(&batch).unwrap().as_deref(), Some("phc_y"));
        let mixed = json!([{"event": "a", "token": "one"}, {"event": "a", "token": "two"}]);
        assert!(posthog_token(&mixed).is_err());

        let e = posthog_v0(&one, None, &ctx(), &limits()).unwrap();
        assert_eq!(e[0].distinct_id, "7");
        assert!(
            !e[0].props.contains_key("token"),
            "the key is not kept as a property"
        );
        assert_eq!(e[0].ts_micros, NOW, "no time: received now");
        let e = posthog_v0(&list, None, &ctx(), &limits()).unwrap();
        assert_eq!(e[1].distinct_id, "u2");
        let e = posthog_v0(&batch, None, &ctx(), &limits()).unwrap();
        assert_eq!(e[0].distinct_id, "u3");
    }

    /// The sender's clock is 10 minutes fast: it says it sent at NOW + 600 s an event it timed
    /// at NOW + 590 s, so the event happened 10 s before we received it.
    #[test]
    fn posthog_corrects_the_senders_clock_skew_with_sent_at() {
        let fast = |s: i64| {
            chrono::DateTime::from_timestamp_micros(NOW + s * 1_000_000)
                .unwrap()
                .to_rfc3339()
        };
        let body = json!({"api_key": "k", "sent_at": fast(600), "batch": [
            {"event": "a", "distinct_id": "u", "timestamp": fast(590), "uuid": "0190d6b2-0000-7000-8000-000000000001",
             "$set": {"plan": "pro"}}
        ]});
        let e = posthog_v0(&body, None, &ctx(), &limits()).unwrap();
        assert_eq!(e[0].ts_micros, NOW - 10_000_000);
        assert_eq!(
            e[0].props["$set"],
            json!({"plan": "pro"}),
            "top-level $set is a property"
        );
        assert_eq!(e[0].ip.as_deref(), Some("198.51.100.7"));
    }

    #[test]
    fn posthog_v1_needs_uuid_and_timestamp_and_keeps_the_session() {
        let body = json!({"created_at": "2026-05-28T20:26:40Z", "batch": [
            {"event": "a", "uuid": "0190d6b2-0000-7000-8000-000000000001", "distinct_id": "u",
             "timestamp": "2026-05-28T20:26:30Z", "session_id": "s1", "options": {"disable_skew_correction": true},
             "properties": {}},
            {"event": "b", "distinct_id": "u", "timestamp": "2026-05-28T20:26:30Z"}
        ]});
        let Err(EventBatchError::Items(items)) = posthog_v1(&body, &ctx(), &limits()) else {
            panic!("the second event has no uuid");
        };
        assert_eq!((items[0].index, items[0].field.as_str()), (1, "uuid"));
        let ok = json!({"created_at": "2026-05-28T20:26:40Z", "batch": [body["batch"][0]]});
        let e = posthog_v1(&ok, &ctx(), &limits()).unwrap();
        assert_eq!(e[0].session_id.as_deref(), Some("s1"));
        // Skew correction off: the time as sent (2026-05-28T20:26:30Z = 1_780_000_000 - 10 s).
        assert_eq!(e[0].ts_micros, NOW - 10_000_000);
    }

    #[test]
    fn segment_calls_map_to_events_and_identity_properties() {
        let body = json!({"batch": [
            {"type": "track", "event": "Order Completed", "userId": "u1", "properties": {"total": 30},
             "messageId": "ajs-1", "timestamp": "2026-05-01T00:00:00Z", "context": {"library": {"name": "analytics-python", "version": "2.4.0"}, "ip": "192.0.2.1"}},
            {"type": "identify", "userId": "u1", "anonymousId": "anon-1", "traits": {"email": "a@b.c"}, "messageId": "ajs-2"},
            {"type": "page", "anonymousId": "anon-2", "name": "Home", "properties": {"url": "https://x.test/"}},
            {"type": "group", "userId": "u1", "groupId": "acme", "traits": {"plan": "pro"}},
            {"type": "alias", "userId": "u1", "previousId": "anon-3"},
        ]});
        let e = segment(&body, None, &ctx(), &limits()).unwrap();
        assert_eq!(e[0].name, "Order Completed");
        assert_eq!(e[0].props["$lib"], "analytics-python");
        assert_eq!(e[0].ip.as_deref(), Some("192.0.2.1"));
        assert_eq!(
            e[0].uuid,
            event_uuid(Some("ajs-1")),
            "messageId is the dedup key"
        );
        assert_eq!(e[1].name, "$identify");
        assert_eq!(e[1].props["$anon_distinct_id"], "anon-1");
        assert_eq!(e[1].props["$set"]["email"], "a@b.c");
        assert_eq!(e[2].name, "$pageview");
        assert_eq!(e[2].distinct_id, "anon-2");
        assert_eq!(e[2].props["$current_url"], "https://x.test/");
        assert_eq!(e[3].props["$group_key"], "acme");
        assert_eq!(e[4].props["alias"], "anon-3");

        let bad = json!({"batch": [{"type": "track", "userId": "u"}, {"type": "track", "event": "x"}, {"type": "boo", "userId": "u"}]});
        let Err(EventBatchError::Items(items)) = segment(&bad, None, &ctx(), &limits()) else {
            panic!("three bad messages");
        };
        let fields: Vec<&str> = items.iter().map(|i| i.field.as_str()).collect();
        assert_eq!(fields, vec!["event", "userId", "type"]);
        let big = json!({"type": "track", "event": "x", "userId": "u", "properties": {"s": "x".repeat(33_000)}});
        assert!(matches!(
            segment(&big, Some(SegmentCall::Track), &ctx(), &limits()),
            Err(EventBatchError::Items(_))
        ));
    }
}
