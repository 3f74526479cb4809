//! Event analyses: what a trend, funnel or retention question is (parsed and bounded from the
//! API's JSON), and the calculations done outside SQL: the funnel walk per person (ordered,
//! strict and any-order, with a conversion window from the first step) and the retention
//! table. Pure; the store hands over rows, the clock and the calendar come from the caller.
//!
//! Definitions follow PostHog's (see `../shared/REFERENCES.md` §1a): overall conversion = units
//! reaching step k / units entering step 1 within the window; step-to-step = reached k /
//! reached k−1; time to convert from the first step's time; a unit's attempts are all its
//! step-1 entries, and it counts once, at the furthest step any attempt reached.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::Value;

use crate::domain::events::{self, MAX_KEY_LEN, PropertyFilter};
use crate::domain::timebucket::Bucket;

/// A refused field and why (the API names the field).
pub type FieldError = (String, String);

pub fn field_error(field: &str, reason: impl Into<String>) -> FieldError {
    (field.to_string(), reason.into())
}

/// What each bucket of a trend shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TrendMath {
    Count,
    UniqueUsers,
    Sum,
    Avg,
    Min,
    Max,
    P50,
    P90,
}

impl TrendMath {
    pub fn parse(s: &str) -> Option<TrendMath> {
        Some(match s {
            "count" | "total" => TrendMath::Count,
            "unique_users" | "dau" | "unique" => TrendMath::UniqueUsers,
            "sum" => TrendMath::Sum,
            "avg" => TrendMath::Avg,
            "min" => TrendMath::Min,
            "max" => TrendMath::Max,
            "p50" | "median" => TrendMath::P50,
            "p90" => TrendMath::P90,
            _ => return None,
        })
    }

    /// Math over a numeric property (needs `property`).
    pub fn needs_property(self) -> bool {
        !matches!(self, TrendMath::Count | TrendMath::UniqueUsers)
    }

    /// Count-like maths show 0 for an empty bucket; the others show nothing.
    pub fn zero_when_empty(self) -> bool {
        matches!(
            self,
            TrendMath::Count | TrendMath::UniqueUsers | TrendMath::Sum
        )
    }
}

/// Where a breakdown's property is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PropertySource {
    Event,
    Person,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Breakdown {
    pub property: String,
    pub source: PropertySource,
    /// The busiest values shown on their own; the rest as "other".
    pub limit: usize,
}

pub const MAX_BREAKDOWN_VALUES: usize = 50;

/// One event with its filters: a trend's series or a funnel's step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventMatcher {
    pub event: String,
    pub filters: Vec<PropertyFilter>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TrendRequest {
    pub series: EventMatcher,
    pub math: TrendMath,
    pub property: Option<String>,
    pub interval: Bucket,
    pub breakdown: Option<Breakdown>,
    pub compare: bool,
}

fn object(body: &Value) -> Result<&serde_json::Map<String, Value>, FieldError> {
    body.as_object()
        .ok_or_else(|| field_error("", "the body must be a JSON object"))
}

pub fn refuse_unknown(
    map: &serde_json::Map<String, Value>,
    allowed: &[&str],
) -> Result<(), FieldError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(field_error(
            k,
            format!("unknown field; allowed: {}", allowed.join(", ")),
        )),
        None => Ok(()),
    }
}

pub fn matcher(value: &Value, field: &str) -> Result<EventMatcher, FieldError> {
    let (event, filters) = match value {
        Value::String(_) => (value, None),
        Value::Object(m) => {
            refuse_unknown(m, &["event", "filters"])
                .map_err(|(f, r)| field_error(&format!("{field}.{f}"), r))?;
            (
                m.get("event")
                    .ok_or_else(|| field_error(&format!("{field}.event"), "is required"))?,
                m.get("filters"),
            )
        }
        _ => {
            return Err(field_error(
                field,
                "must be an event name or {event, filters}",
            ));
        }
    };
    let event = events::id_string(event).map_err(|r| field_error(field, r))?;
    let filters = match filters {
        None | Some(Value::Null) => Vec::new(),
        Some(f) => events::parse_filters(f, &format!("{field}.filters"))?,
    };
    Ok(EventMatcher { event, filters })
}

fn interval(map: &serde_json::Map<String, Value>, default: Bucket) -> Result<Bucket, FieldError> {
    match map.get("interval") {
        None => Ok(default),
        Some(Value::String(s)) => Bucket::parse(s)
            .ok_or_else(|| field_error("interval", "must be hour, day, week or month")),
        Some(_) => Err(field_error("interval", "must be hour, day, week or month")),
    }
}

fn property_name(value: &Value, field: &str) -> Result<String, FieldError> {
    match value {
        Value::String(s) if !s.is_empty() && s.chars().count() <= MAX_KEY_LEN => Ok(s.clone()),
        _ => Err(field_error(
            field,
            format!("must be a property name of 1 to {MAX_KEY_LEN} characters"),
        )),
    }
}

fn breakdown(map: &serde_json::Map<String, Value>) -> Result<Option<Breakdown>, FieldError> {
    let Some(value) = map.get("breakdown").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let (property, source) = match value {
        Value::String(_) => (property_name(value, "breakdown")?, PropertySource::Event),
        Value::Object(m) => {
            refuse_unknown(m, &["property", "type"])
                .map_err(|(f, r)| field_error(&format!("breakdown.{f}"), r))?;
            let property = property_name(
                m.get("property").unwrap_or(&Value::Null),
                "breakdown.property",
            )?;
            let source = match m.get("type").and_then(Value::as_str) {
                None | Some("event") => PropertySource::Event,
                Some("person") => PropertySource::Person,
                Some(_) => return Err(field_error("breakdown.type", "must be event or person")),
            };
            (property, source)
        }
        _ => {
            return Err(field_error(
                "breakdown",
                "must be a property name or {property, type}",
            ));
        }
    };
    let limit = match map.get("breakdown_limit") {
        None => 10,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=MAX_BREAKDOWN_VALUES as u64).contains(n))
            .ok_or_else(|| {
                field_error(
                    "breakdown_limit",
                    format!("must be from 1 to {MAX_BREAKDOWN_VALUES}"),
                )
            })? as usize,
    };
    Ok(Some(Breakdown {
        property,
        source,
        limit,
    }))
}

/// Parses a trend: `{"event": "purchase" | {event, filters}, "math": "count", "property":
/// "amount", "interval": "day", "breakdown": "plan" | {property, type}, "breakdown_limit": 10,
/// "compare": false, "from", "to"}` (`from` / `to` are read by the caller).
pub fn parse_trend(body: &Value) -> Result<TrendRequest, FieldError> {
    let map = object(body)?;
    refuse_unknown(
        map,
        &[
            "event",
            "math",
            "property",
            "interval",
            "breakdown",
            "breakdown_limit",
            "compare",
            "cohort",
            "from",
            "to",
        ],
    )?;
    let series = matcher(
        map.get("event")
            .ok_or_else(|| field_error("event", "is required"))?,
        "event",
    )?;
    let math = match map.get("math") {
        None => TrendMath::Count,
        Some(Value::String(s)) => TrendMath::parse(s).ok_or_else(|| {
            field_error(
                "math",
                "must be count, unique_users, sum, avg, min, max, p50 or p90",
            )
        })?,
        Some(_) => return Err(field_error("math", "must be a string")),
    };
    let property = match map.get("property") {
        None | Some(Value::Null) => None,
        Some(v) => Some(property_name(v, "property")?),
    };
    if math.needs_property() && property.is_none() {
        return Err(field_error(
            "property",
            "is required for sum, avg, min, max, p50 and p90",
        ));
    }
    let compare = match map.get("compare") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(field_error("compare", "must be true or false")),
    };
    Ok(TrendRequest {
        series,
        math,
        property,
        interval: interval(map, Bucket::Day)?,
        breakdown: breakdown(map)?,
        compare,
    })
}

/// API analytics: request events (PostHog-style `$api_request` by default) with a route, a
/// method, a status and a duration property, per route and per interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApiUsageRequest {
    pub event: EventMatcher,
    pub route_property: String,
    pub method_property: String,
    pub status_property: String,
    pub duration_property: String,
    pub interval: Bucket,
}

/// The request event API analytics reads unless told otherwise.
pub const API_REQUEST_EVENT: &str = "$api_request";

/// Parses `{"event": "$api_request", "route_property": "route", "method_property": "method",
/// "status_property": "status", "duration_property": "duration_ms", "interval": "hour",
/// "from", "to"}` (every field optional; the defaults shown).
pub fn parse_api_usage(body: &Value) -> Result<ApiUsageRequest, FieldError> {
    let map = object(body)?;
    refuse_unknown(
        map,
        &[
            "event",
            "route_property",
            "method_property",
            "status_property",
            "duration_property",
            "interval",
            "cohort",
            "from",
            "to",
        ],
    )?;
    let event = match map.get("event") {
        None | Some(Value::Null) => EventMatcher {
            event: API_REQUEST_EVENT.into(),
            filters: Vec::new(),
        },
        Some(v) => matcher(v, "event")?,
    };
    let name = |key: &str, default: &str| -> Result<String, FieldError> {
        match map.get(key) {
            None | Some(Value::Null) => Ok(default.to_string()),
            Some(v) => property_name(v, key),
        }
    };
    Ok(ApiUsageRequest {
        event,
        route_property: name("route_property", "route")?,
        method_property: name("method_property", "method")?,
        status_property: name("status_property", "status")?,
        duration_property: name("duration_property", "duration_ms")?,
        interval: interval(map, Bucket::Hour)?,
    })
}

/// Stickiness and lifecycle ask about one event per interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ActivityRequest {
    pub event: EventMatcher,
    pub interval: Bucket,
}

/// Parses `{"event": …, "interval": "day" | "week" | "month", "from", "to"}`.
pub fn parse_activity(body: &Value) -> Result<ActivityRequest, FieldError> {
    let map = object(body)?;
    refuse_unknown(map, &["event", "interval", "cohort", "from", "to"])?;
    let event = matcher(
        map.get("event")
            .ok_or_else(|| field_error("event", "is required"))?,
        "event",
    )?;
    let interval = interval(map, Bucket::Day)?;
    if interval == Bucket::Hour {
        return Err(field_error("interval", "must be day, week or month"));
    }
    Ok(ActivityRequest { event, interval })
}

/// Stickiness: how many people were active in exactly k of the range's intervals (k = 1 …
/// `intervals`), from (person, interval index) activity pairs.
pub fn stickiness(active: &[(String, usize)], intervals: usize) -> Vec<usize> {
    let mut per_person: HashMap<&str, std::collections::HashSet<usize>> = HashMap::new();
    for (p, i) in active {
        per_person.entry(p.as_str()).or_default().insert(*i);
    }
    let mut counts = vec![0; intervals];
    for days in per_person.values() {
        let k = days.len().min(intervals);
        if k > 0 {
            counts[k - 1] += 1;
        }
    }
    counts
}

/// Lifecycle per interval: new (their first-ever event), returning (also active the interval
/// before), resurrecting (active before that, not the interval before), dormant (active the
/// interval before, not this one; negative, as PostHog draws it).
#[derive(Debug, Clone, PartialEq, Serialize, Default)]
pub struct Lifecycle {
    pub new: Vec<i64>,
    pub returning: Vec<i64>,
    pub resurrecting: Vec<i64>,
    pub dormant: Vec<i64>,
}

/// `active` holds (person, index) with index 0 the interval before the range (context only);
/// `first` each person's first-ever interval index when it falls in 0 ..= n.
pub fn lifecycle(
    active: &[(String, usize)],
    first: &HashMap<String, usize>,
    n: usize,
) -> Lifecycle {
    let mut sets: Vec<std::collections::HashSet<&str>> = vec![Default::default(); n + 1];
    for (p, i) in active {
        if *i <= n {
            sets[*i].insert(p.as_str());
        }
    }
    let mut out = Lifecycle::default();
    for i in 1..=n {
        let (mut new, mut returning, mut resurrecting) = (0, 0, 0);
        for p in &sets[i] {
            if first.get(*p) == Some(&i) {
                new += 1;
            } else if sets[i - 1].contains(p) {
                returning += 1;
            } else {
                resurrecting += 1;
            }
        }
        out.new.push(new);
        out.returning.push(returning);
        out.resurrecting.push(resurrecting);
        out.dormant
            .push(-(sets[i - 1].difference(&sets[i]).count() as i64));
    }
    out
}

/// A metric computed from events: each local day's count, unique users or sum of a property
/// of one event (with filters). Its daily values are written as points, so the health score,
/// alerts, anomalies and forecasts work on it like on any metric.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventMetricDef {
    pub series: EventMatcher,
    pub math: TrendMath,
    pub property: Option<String>,
}

impl EventMetricDef {
    /// How the metric's days add up over longer periods: counts and sums add, daily unique
    /// users average (a week's unique users are not the sum of its days').
    pub fn aggregation(&self) -> crate::domain::catalog::Aggregation {
        match self.math {
            TrendMath::UniqueUsers => crate::domain::catalog::Aggregation::Avg,
            _ => crate::domain::catalog::Aggregation::Sum,
        }
    }
}

/// Parses `{"event": "signup" | {event, filters}, "math": "count" | "unique_users" | "sum",
/// "property": "amount"}`.
pub fn parse_event_metric(body: &Value) -> Result<EventMetricDef, FieldError> {
    let map = object(body)?;
    refuse_unknown(map, &["event", "math", "property"])?;
    let series = matcher(
        map.get("event")
            .ok_or_else(|| field_error("event", "is required"))?,
        "event",
    )?;
    let math = match map.get("math").and_then(Value::as_str) {
        None | Some("count") => TrendMath::Count,
        Some("unique_users") => TrendMath::UniqueUsers,
        Some("sum") => TrendMath::Sum,
        Some(_) => return Err(field_error("math", "must be count, unique_users or sum")),
    };
    let property = match map.get("property") {
        None | Some(Value::Null) => None,
        Some(v) => Some(property_name(v, "property")?),
    };
    if math == TrendMath::Sum && property.is_none() {
        return Err(field_error("property", "is required for sum"));
    }
    Ok(EventMetricDef {
        series,
        math,
        property,
    })
}

/// How a funnel's steps must follow each other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FunnelOrder {
    /// In order, other events allowed between (the default).
    Ordered,
    /// In order, no other event of the unit between two steps.
    Strict,
    /// Every step within the window, in any order.
    Any,
}

/// What a funnel counts: people (after identity merges) or sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FunnelUnit {
    Person,
    Session,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunnelRequest {
    pub steps: Vec<EventMatcher>,
    pub window_micros: i64,
    pub order: FunnelOrder,
    pub unit: FunnelUnit,
    /// Property of the first step's event (first-touch attribution).
    pub breakdown: Option<Breakdown>,
}

pub const MIN_FUNNEL_STEPS: usize = 2;
pub const MAX_FUNNEL_STEPS: usize = 10;
/// The longest conversion window (90 days).
pub const MAX_WINDOW_MICROS: i64 = 90 * 86_400_000_000;

/// Parses a funnel: `{"steps": [...2–10], "window": {"value": 7, "unit": "day"} | seconds,
/// "order": "ordered" | "strict" | "any", "unit": "person" | "session", "breakdown", "from",
/// "to"}`.
pub fn parse_funnel(body: &Value) -> Result<FunnelRequest, FieldError> {
    let map = object(body)?;
    refuse_unknown(
        map,
        &[
            "steps",
            "window",
            "order",
            "unit",
            "breakdown",
            "breakdown_limit",
            "cohort",
            "from",
            "to",
        ],
    )?;
    let Some(Value::Array(items)) = map.get("steps") else {
        return Err(field_error("steps", "is required: a list of 2 to 10 steps"));
    };
    if !(MIN_FUNNEL_STEPS..=MAX_FUNNEL_STEPS).contains(&items.len()) {
        return Err(field_error("steps", "must hold 2 to 10 steps"));
    }
    let steps = items
        .iter()
        .enumerate()
        .map(|(i, s)| matcher(s, &format!("steps[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    let window_micros = match map.get("window") {
        None => 14 * 86_400_000_000,
        Some(Value::Number(n)) => n
            .as_i64()
            .filter(|s| *s > 0)
            .ok_or_else(|| field_error("window", "must be a positive number of seconds"))?
            .saturating_mul(1_000_000),
        Some(Value::Object(w)) => {
            let value = w
                .get("value")
                .and_then(Value::as_i64)
                .filter(|v| *v > 0)
                .ok_or_else(|| field_error("window.value", "must be a positive whole number"))?;
            let unit = match w.get("unit").and_then(Value::as_str) {
                Some("second") => 1_000_000,
                Some("minute") => 60_000_000,
                Some("hour") => 3_600_000_000,
                Some("day") => 86_400_000_000,
                Some("week") => 7 * 86_400_000_000,
                _ => {
                    return Err(field_error(
                        "window.unit",
                        "must be second, minute, hour, day or week",
                    ));
                }
            };
            value.saturating_mul(unit)
        }
        Some(_) => return Err(field_error("window", "must be seconds or {value, unit}")),
    };
    if window_micros > MAX_WINDOW_MICROS {
        return Err(field_error("window", "may be at most 90 days"));
    }
    let order = match map.get("order").and_then(Value::as_str) {
        None | Some("ordered") => FunnelOrder::Ordered,
        Some("strict") => FunnelOrder::Strict,
        Some("any") | Some("unordered") => FunnelOrder::Any,
        Some(_) => return Err(field_error("order", "must be ordered, strict or any")),
    };
    let unit = match map.get("unit").and_then(Value::as_str) {
        None | Some("person") => FunnelUnit::Person,
        Some("session") => FunnelUnit::Session,
        Some(_) => return Err(field_error("unit", "must be person or session")),
    };
    Ok(FunnelRequest {
        steps,
        window_micros,
        order,
        unit,
        breakdown: breakdown(map)?,
    })
}

/// One event of a unit as the funnel sees it: its time, which steps it matches (bit i = step
/// i), and the breakdown value it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct FunnelEvent {
    pub ts_micros: i64,
    pub steps: u16,
    pub breakdown: Option<String>,
}

/// How far one unit got: the furthest step reached (1-based; 0 = never entered), the time of
/// each step reached on that attempt, and the first step's breakdown value.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UnitProgress {
    pub reached: usize,
    pub times: Vec<i64>,
    pub breakdown: Option<String>,
}

/// Walks one unit's events (in time order) through the funnel. Every step-1 event starts an
/// attempt; an attempt advances while its next step comes within the window of its start. The
/// best attempt counts (furthest, then earliest). In strict order, an event that is not the
/// attempt's next step ends the attempt.
pub fn walk(
    events: &[FunnelEvent],
    n_steps: usize,
    window: i64,
    order: FunnelOrder,
) -> UnitProgress {
    match order {
        FunnelOrder::Any => walk_any(events, n_steps, window),
        _ => walk_ordered(events, n_steps, window, order == FunnelOrder::Strict),
    }
}

fn better(candidate: &UnitProgress, best: &UnitProgress) -> bool {
    candidate.reached > best.reached
        || (candidate.reached == best.reached
            && candidate.reached > 0
            && candidate.times.first() < best.times.first())
}

fn walk_ordered(events: &[FunnelEvent], n_steps: usize, window: i64, strict: bool) -> UnitProgress {
    let mut best = UnitProgress::default();
    // Live attempts, each with the times of the steps it has reached.
    let mut attempts: Vec<UnitProgress> = Vec::new();
    // Reused between events: a funnel walks every event of every unit (800 k in a month of a
    // busy shop), and one allocation per event was a visible share of it.
    let mut next_attempts: Vec<UnitProgress> = Vec::new();
    for e in events {
        for mut a in attempts.drain(..) {
            let start = a.times[0];
            if e.ts_micros - start > window {
                continue; // out of the window: this attempt is over
            }
            let next = a.reached; // index of the step it waits for
            if next < n_steps && e.steps & (1 << next) != 0 {
                a.reached += 1;
                a.times.push(e.ts_micros);
                if better(&a, &best) {
                    best = a.clone();
                }
                if a.reached < n_steps {
                    next_attempts.push(a);
                }
            } else if !strict {
                next_attempts.push(a);
            }
        }
        if e.steps & 1 != 0 {
            let a = UnitProgress {
                reached: 1,
                times: vec![e.ts_micros],
                breakdown: e.breakdown.clone(),
            };
            if better(&a, &best) {
                best = a.clone();
            }
            next_attempts.push(a);
        }
        // Of attempts at the same step, only the latest start can go further (the window is
        // measured from the start): keep one per step.
        next_attempts.sort_by_key(|a| (a.reached, std::cmp::Reverse(a.times[0])));
        next_attempts.dedup_by_key(|a| a.reached);
        std::mem::swap(&mut attempts, &mut next_attempts);
    }
    best
}

fn walk_any(events: &[FunnelEvent], n_steps: usize, window: i64) -> UnitProgress {
    let mut best = UnitProgress::default();
    for (i, start) in events.iter().enumerate() {
        if start.steps == 0 {
            continue;
        }
        let mut seen: u16 = 0;
        let mut times = Vec::new();
        for e in &events[i..] {
            if e.ts_micros - start.ts_micros > window {
                break;
            }
            let new = e.steps & !seen;
            if new != 0 {
                seen |= new;
                for _ in 0..new.count_ones() {
                    times.push(e.ts_micros);
                }
            }
        }
        let reached = (seen.count_ones() as usize).min(n_steps);
        let candidate = UnitProgress {
            reached,
            times,
            breakdown: start.breakdown.clone(),
        };
        if better(&candidate, &best) {
            best = candidate;
        }
    }
    best
}

/// One step's counts in a funnel result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepResult {
    pub event: String,
    pub count: usize,
    /// Reached this step / entered the funnel.
    pub conversion: f64,
    /// Reached this step / reached the one before.
    pub step_conversion: f64,
    /// Reached the step before but not this one.
    pub dropped: usize,
    /// Median time from the first step to this one (µs), over units that reached it.
    pub median_time_micros: Option<i64>,
    pub mean_time_micros: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunnelResult {
    /// The breakdown value (None: every unit).
    pub breakdown: Option<String>,
    pub steps: Vec<StepResult>,
    /// Time to convert (first to last step), in µs, of every converted unit, sorted.
    pub convert_times_micros: Vec<i64>,
}

fn median(sorted: &[i64]) -> Option<i64> {
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[n / 2]),
        n => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2),
    }
}

/// Counts per step over the units' progress.
pub fn summarise(
    names: &[String],
    progress: &[&UnitProgress],
    breakdown: Option<String>,
) -> FunnelResult {
    let entered = progress.iter().filter(|p| p.reached >= 1).count();
    let mut steps = Vec::with_capacity(names.len());
    let mut previous = entered;
    for (i, name) in names.iter().enumerate() {
        let reached: Vec<&&UnitProgress> = progress.iter().filter(|p| p.reached > i).collect();
        let count = reached.len();
        let mut times: Vec<i64> = reached.iter().map(|p| p.times[i] - p.times[0]).collect();
        times.sort_unstable();
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        steps.push(StepResult {
            event: name.clone(),
            count,
            conversion: ratio(count, entered),
            step_conversion: if i == 0 {
                ratio(count, entered)
            } else {
                ratio(count, previous)
            },
            dropped: if i == 0 { 0 } else { previous - count },
            median_time_micros: if i == 0 { None } else { median(&times) },
            mean_time_micros: if i == 0 || times.is_empty() {
                None
            } else {
                Some(times.iter().sum::<i64>() / times.len() as i64)
            },
        });
        previous = count;
    }
    let mut convert_times_micros: Vec<i64> = progress
        .iter()
        .filter(|p| p.reached == names.len())
        .map(|p| p.times[names.len() - 1] - p.times[0])
        .collect();
    convert_times_micros.sort_unstable();
    FunnelResult {
        breakdown,
        steps,
        convert_times_micros,
    }
}

/// Retention: who comes back after their cohort period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionKind {
    /// A person's cohort is the period of their first-ever target event.
    FirstTime,
    /// A person belongs to every period in which they did the target event.
    Recurring,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetentionRequest {
    pub target: EventMatcher,
    pub returning: EventMatcher,
    pub period: Bucket,
    /// Periods shown after the cohort's own (period 0).
    pub periods: usize,
    pub kind: RetentionKind,
}

pub const MAX_RETENTION_PERIODS: usize = 60;

/// Parses `{"target": …, "returning": … (default: the target), "period": "week", "periods": 8,
/// "kind": "first_time" | "recurring", "from", "to"}`.
pub fn parse_retention(body: &Value) -> Result<RetentionRequest, FieldError> {
    let map = object(body)?;
    refuse_unknown(
        map,
        &[
            "target",
            "returning",
            "period",
            "periods",
            "kind",
            "cohort",
            "from",
            "to",
        ],
    )?;
    let target = matcher(
        map.get("target")
            .ok_or_else(|| field_error("target", "is required"))?,
        "target",
    )?;
    let returning = match map.get("returning") {
        None | Some(Value::Null) => target.clone(),
        Some(v) => matcher(v, "returning")?,
    };
    let period = match map.get("period") {
        None => Bucket::Week,
        Some(Value::String(s)) => Bucket::parse(s)
            .filter(|b| *b != Bucket::Hour)
            .ok_or_else(|| field_error("period", "must be day, week or month"))?,
        Some(_) => return Err(field_error("period", "must be day, week or month")),
    };
    let periods = match map.get("periods") {
        None => 8,
        Some(v) => v
            .as_u64()
            .filter(|n| (1..=MAX_RETENTION_PERIODS as u64).contains(n))
            .ok_or_else(|| {
                field_error(
                    "periods",
                    format!("must be from 1 to {MAX_RETENTION_PERIODS}"),
                )
            })? as usize,
    };
    let kind = match map.get("kind").and_then(Value::as_str) {
        None | Some("first_time") => RetentionKind::FirstTime,
        Some("recurring") => RetentionKind::Recurring,
        Some(_) => return Err(field_error("kind", "must be first_time or recurring")),
    };
    Ok(RetentionRequest {
        target,
        returning,
        period,
        periods,
        kind,
    })
}

/// A cohort row: its period's index, its size, and how many of it came back in each later
/// period (index 0 = the cohort period itself = the size).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CohortRow {
    pub period: usize,
    pub size: usize,
    pub retained: Vec<usize>,
}

/// Builds the retention table from (person, cohort period) memberships and (person, active
/// period) returns, periods as indices of the calendar. A return in period c + k counts for
/// cohort c at k ≥ 1; k = 0 is the cohort itself. Later periods past the data's end are left
/// out (`last_period` is the last index the range covers).
pub fn retention_table(
    cohorts: &[(String, usize)],
    returns: &[(String, usize)],
    n_cohorts: usize,
    periods: usize,
    last_period: usize,
) -> Vec<CohortRow> {
    let mut active: HashMap<&str, Vec<usize>> = HashMap::new();
    for (person, p) in returns {
        active.entry(person.as_str()).or_default().push(*p);
    }
    let mut rows: Vec<CohortRow> = (0..n_cohorts)
        .map(|c| CohortRow {
            period: c,
            size: 0,
            retained: vec![0; (periods + 1).min(last_period.saturating_sub(c) + 1)],
        })
        .collect();
    for (person, c) in cohorts {
        let Some(row) = rows.get_mut(*c) else {
            continue;
        };
        row.size += 1;
        row.retained[0] += 1;
        if let Some(ps) = active.get(person.as_str()) {
            let mut hit = vec![false; row.retained.len()];
            for p in ps {
                if *p > *c && p - c < hit.len() {
                    hit[p - c] = true;
                }
            }
            for (k, h) in hit.iter().enumerate().skip(1) {
                if *h {
                    row.retained[k] += 1;
                }
            }
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MIN: i64 = 60_000_000;

    fn ev(minute: i64, steps: u16) -> FunnelEvent {
        FunnelEvent {
            ts_micros: minute * MIN,
            steps,
            breakdown: None,
        }
    }

    /// Steps A (bit 0), B (bit 1), C (bit 2); window 10 minutes.
    /// Ordered: A@0, X@1 (no step), B@2, C@5 → all 3 at 0, 2, 5.
    /// Strict: the X at minute 1 ends the attempt after A: 1 step.
    /// Any order: C@0, A@3, B@4 → all 3.
    #[test]
    fn order_modes_walk_as_defined() {
        let seq = [ev(0, 1), ev(1, 0), ev(2, 2), ev(5, 4)];
        let p = walk(&seq, 3, 10 * MIN, FunnelOrder::Ordered);
        assert_eq!(p.reached, 3);
        assert_eq!(p.times, vec![0, 2 * MIN, 5 * MIN]);
        assert_eq!(walk(&seq, 3, 10 * MIN, FunnelOrder::Strict).reached, 1);
        let shuffled = [ev(0, 4), ev(3, 1), ev(4, 2)];
        assert_eq!(
            walk(&shuffled, 3, 10 * MIN, FunnelOrder::Ordered).reached,
            2
        );
        assert_eq!(walk(&shuffled, 3, 10 * MIN, FunnelOrder::Any).reached, 3);
    }

    /// The window is measured from the first step, to the second: A@0, B@5, C@10 converts
    /// with a 10-minute window (exactly at the edge) and stops at B with 9m59s.
    #[test]
    fn the_window_edge_is_inclusive_to_the_microsecond() {
        let seq = [ev(0, 1), ev(5, 2), ev(10, 4)];
        assert_eq!(walk(&seq, 3, 10 * MIN, FunnelOrder::Ordered).reached, 3);
        assert_eq!(
            walk(&seq, 3, 10 * MIN - 1_000_000, FunnelOrder::Ordered).reached,
            2
        );
    }

    /// A user entering twice: A@0 (never goes on), then A@100, B@101, C@102 later. The
    /// second attempt converts; the first does not hold it back. Times come from it.
    #[test]
    fn a_unit_entering_twice_counts_once_at_its_best_attempt() {
        let seq = [ev(0, 1), ev(100, 1), ev(101, 2), ev(102, 4)];
        let p = walk(&seq, 3, 10 * MIN, FunnelOrder::Ordered);
        assert_eq!(p.reached, 3);
        assert_eq!(p.times, vec![100 * MIN, 101 * MIN, 102 * MIN]);
    }

    /// Repeated steps: a funnel A → A (the same event twice) needs two A events.
    #[test]
    fn a_repeated_step_needs_a_second_event() {
        let once = [ev(0, 0b11)];
        assert_eq!(walk(&once, 2, 10 * MIN, FunnelOrder::Ordered).reached, 1);
        let twice = [ev(0, 0b11), ev(3, 0b11)];
        assert_eq!(walk(&twice, 2, 10 * MIN, FunnelOrder::Ordered).reached, 2);
    }

    /// Three units reached 3, 2 and 1 steps; converted time 5 minutes.
    /// Step 1: 3 (100 %), step 2: 2 (66.7 %, 1 dropped), step 3: 1 (33.3 % overall, 50 % of
    /// step 2, 1 dropped).
    #[test]
    fn summary_counts_conversion_and_drop_off() {
        let a = UnitProgress {
            reached: 3,
            times: vec![0, 2 * MIN, 5 * MIN],
            breakdown: None,
        };
        let b = UnitProgress {
            reached: 2,
            times: vec![0, 4 * MIN],
            breakdown: None,
        };
        let c = UnitProgress {
            reached: 1,
            times: vec![0],
            breakdown: None,
        };
        let names: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let r = summarise(&names, &[&a, &b, &c], None);
        let counts: Vec<usize> = r.steps.iter().map(|s| s.count).collect();
        assert_eq!(counts, vec![3, 2, 1]);
        assert_eq!(r.steps[2].step_conversion, 0.5);
        assert!((r.steps[1].conversion - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(r.steps[1].dropped, 1);
        assert_eq!(r.steps[1].median_time_micros, Some(3 * MIN));
        assert_eq!(r.convert_times_micros, vec![5 * MIN]);
    }

    /// Cohorts: p1 in period 0 returns in 1 and 3; p2 in 0 returns in 2; p3 in 1 returns in 2.
    /// Range covers periods 0..=3, 3 periods after the cohort asked.
    /// Cohort 0: size 2, [2, 1, 1, 1]; cohort 1: size 1, [1, 1, 0] (period 4 does not exist).
    #[test]
    fn retention_counts_each_return_once_per_cohort_period() {
        let cohorts = [
            ("p1".to_string(), 0),
            ("p2".to_string(), 0),
            ("p3".to_string(), 1),
        ];
        let returns = [
            ("p1".to_string(), 1),
            ("p1".to_string(), 3),
            ("p1".to_string(), 3),
            ("p2".to_string(), 2),
            ("p3".to_string(), 2),
            ("p3".to_string(), 0),
        ];
        let t = retention_table(&cohorts, &returns, 2, 3, 3);
        assert_eq!(t[0].retained, vec![2, 1, 1, 1]);
        assert_eq!(t[1].retained, vec![1, 1, 0]);
    }

    /// a: days 0, 1, 3; b: 1, 2; c: first ever long before, active 2; d: 3 (first ever).
    /// Day 1: a returning, b new; day 2: b returning, c resurrecting, a dormant; day 3: a
    /// resurrecting, d new, b and c dormant. Stickiness over days 1–3: a 2, b 2, c 1, d 1.
    #[test]
    fn lifecycle_and_stickiness_classify_each_person_per_interval() {
        let pairs: Vec<(String, usize)> = [
            ("a", 0),
            ("a", 1),
            ("a", 3),
            ("b", 1),
            ("b", 2),
            ("c", 2),
            ("d", 3),
        ]
        .iter()
        .map(|(p, i)| (p.to_string(), *i))
        .collect();
        let first: HashMap<String, usize> = [("a", 0), ("b", 1), ("d", 3)]
            .iter()
            .map(|(p, i)| (p.to_string(), *i))
            .collect();
        let l = lifecycle(&pairs, &first, 3);
        assert_eq!(l.new, vec![1, 0, 1]);
        assert_eq!(l.returning, vec![1, 1, 0]);
        assert_eq!(l.resurrecting, vec![0, 1, 1]);
        assert_eq!(l.dormant, vec![0, -1, -2]);
        let in_range: Vec<(String, usize)> =
            pairs.iter().filter(|(_, i)| *i >= 1).cloned().collect();
        assert_eq!(stickiness(&in_range, 3), vec![2, 2, 0]);
    }

    #[test]
    fn requests_parse_and_name_their_bad_fields() {
        let t = parse_trend(&json!({"event": {"event": "buy", "filters": [{"key": "plan", "value": "pro"}]},
                                    "math": "p90", "property": "amount", "breakdown": {"property": "country", "type": "person"}}))
            .unwrap();
        assert_eq!(t.math, TrendMath::P90);
        assert_eq!(t.breakdown.unwrap().source, PropertySource::Person);
        assert_eq!(
            parse_trend(&json!({"event": "buy", "math": "sum"}))
                .unwrap_err()
                .0,
            "property"
        );
        assert_eq!(
            parse_trend(&json!({"event": "buy", "colour": 1}))
                .unwrap_err()
                .0,
            "colour"
        );
        let f = parse_funnel(
            &json!({"steps": ["a", "b"], "window": {"value": 7, "unit": "day"}, "order": "strict"}),
        )
        .unwrap();
        assert_eq!(f.window_micros, 7 * 86_400_000_000);
        assert_eq!(
            parse_funnel(&json!({"steps": ["a"]})).unwrap_err().0,
            "steps"
        );
        assert_eq!(
            parse_funnel(&json!({"steps": ["a", 5]})).unwrap_err().0,
            "steps[1]"
        );
        assert_eq!(
            parse_funnel(&json!({"steps": ["a", "b"], "window": {"value": 91, "unit": "day"}}))
                .unwrap_err()
                .0,
            "window"
        );
        let r =
            parse_retention(&json!({"target": "signup", "period": "day", "periods": 3})).unwrap();
        assert_eq!(r.returning.event, "signup");
        assert_eq!(
            parse_retention(&json!({"target": "a", "period": "hour"}))
                .unwrap_err()
                .0,
            "period"
        );
    }
}
