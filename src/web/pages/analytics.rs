//! The Analytics pages: trends, funnels, retention and the latest events, as GET forms (a
//! question is a link to share). Each form is turned into the API's JSON question, so the page
//! and the API validate alike; the answers come from the same service.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono_tz::Tz;
use serde_json::{Value, json};

use crate::app::App;
use axum::Form;
use axum::extract::Path;

use crate::domain::analytics;
use crate::domain::roles::Permission;
use crate::domain::saved_insights::InsightKind;
use crate::domain::timebucket::Bucket;
use crate::services::analytics as service;
use crate::store::events::queries::{self, EventQuery};
use crate::store::meta::{cohorts as meta_cohorts, saved_insights as meta_saved};
use crate::web::api::analytics::{range, resolve_cohort};
use crate::web::auth::OrgMember;
use crate::web::error::PageError;
use crate::web::pages::form::FormAction;
use crate::web::pages::{Nav, nav};

pub struct StepRow {
    pub event: String,
    pub count: usize,
    pub conversion: String,
    pub step_conversion: String,
    pub dropped: usize,
    pub median_time: String,
}

/// One bar of the funnel chart (an SVG drawn on the server: no script needed).
pub struct Bar {
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
    pub label: String,
}

pub struct CohortView {
    pub label: String,
    pub size: usize,
    /// (percent text, heat level 0–5).
    pub cells: Vec<(String, usize)>,
}

pub struct EventRow {
    pub time: String,
    pub name: String,
    pub distinct_id: String,
    pub properties: String,
}

/// One row of API analytics' route table (or its total).
pub struct RouteView {
    pub route: String,
    pub requests: i64,
    pub per_minute: String,
    pub error_rate: String,
    pub client_errors: i64,
    pub p50: String,
    pub p95: String,
    pub p99: String,
}

/// An event name in the catalogue, with its properties as "key (types)".
pub struct CatalogueRow {
    pub name: String,
    pub count: i64,
    pub count_30d: i64,
    pub last_seen: String,
    pub properties: Vec<(String, String)>,
}

pub struct SavedView {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub description: String,
    pub updated: String,
}

#[derive(Template)]
#[template(path = "analytics.html")]
pub struct AnalyticsPage {
    pub nav: Nav,
    pub view: &'static str,
    /// The form's fields as given, to fill the form again.
    pub fields: Vec<(String, String)>,
    pub error: Option<String>,
    pub chart_json: String,
    pub totals: Vec<(String, String)>,
    pub steps: Vec<StepRow>,
    pub bars: Vec<Bar>,
    pub breakdowns: Vec<(String, Vec<StepRow>)>,
    pub period_labels: Vec<String>,
    pub cohorts: Vec<CohortView>,
    pub events: Vec<EventRow>,
    pub names: Vec<(String, i64, String)>,
    /// The org's cohorts (id, name), to filter by.
    pub cohort_options: Vec<(String, String)>,
    /// Stickiness: (intervals active, people); lifecycle: per period (label, new, returning,
    /// resurrecting, dormant).
    pub sticky: Vec<(usize, usize)>,
    pub life: Vec<(String, i64, i64, i64, i64)>,
    pub routes: Vec<RouteView>,
    pub api_total: Option<RouteView>,
    pub catalogue: Vec<CatalogueRow>,
    pub person_properties: Vec<(String, String)>,
    pub saved: Vec<SavedView>,
    /// What "Save" would keep: the kind and the question as JSON (empty when nothing is shown).
    pub save_kind: &'static str,
    pub save_query: String,
    pub can_save: bool,
    /// The saved insight shown, if one was opened.
    pub opened: Option<(i64, String)>,
}

impl AnalyticsPage {
    pub fn field(&self, name: &str) -> String {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    }
}

fn percent(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn duration_text(micros: Option<i64>) -> String {
    let Some(m) = micros else {
        return "–".into();
    };
    let secs = m / 1_000_000;
    match secs {
        s if s < 120 => format!("{s} s"),
        s if s < 7_200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{:.1} h", s as f64 / 3_600.0),
        s => format!("{:.1} days", s as f64 / 86_400.0),
    }
}

fn step_rows(r: &analytics::FunnelResult) -> Vec<StepRow> {
    r.steps
        .iter()
        .map(|s| StepRow {
            event: s.event.clone(),
            count: s.count,
            conversion: percent(s.conversion),
            step_conversion: percent(s.step_conversion),
            dropped: s.dropped,
            median_time: duration_text(s.median_time_micros),
        })
        .collect()
}

/// Bars 200 px high at most, one per step, as wide as the steps allow in 640 px.
fn bars(r: &analytics::FunnelResult) -> Vec<Bar> {
    let n = r.steps.len().max(1);
    let slot = 640 / n;
    let top = r.steps.first().map_or(0, |s| s.count).max(1);
    r.steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let height = (200 * s.count).div_ceil(top).min(200);
            Bar {
                x: i * slot + 8,
                y: 210 - height,
                width: slot.saturating_sub(16),
                height,
                label: format!("{}: {} ({})", s.event, s.count, percent(s.conversion)),
            }
        })
        .collect()
}

fn get<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The question in the API's shape, from the form's fields.
fn question(view: &str, fields: &[(String, String)]) -> Value {
    let mut q = json!({});
    let set = |q: &mut Value, k: &str, v: Value| {
        q.as_object_mut().map(|m| m.insert(k.to_string(), v));
    };
    for k in ["from", "to"] {
        if let Some(v) = get(fields, k) {
            set(&mut q, k, json!(v));
        }
    }
    if let Some(v) = get(fields, "cohort") {
        // A number when it is one; otherwise as typed, so the analysis names the field.
        let id = v
            .parse::<i64>()
            .map(|n| json!(n))
            .unwrap_or_else(|_| json!(v));
        set(&mut q, "cohort", id);
    }
    match view {
        "api" => {
            for k in ["event", "interval"] {
                if let Some(v) = get(fields, k) {
                    set(&mut q, k, json!(v));
                }
            }
        }
        "trends" => {
            set(&mut q, "event", json!(get(fields, "event").unwrap_or("")));
            for k in ["math", "property", "interval", "breakdown"] {
                if let Some(v) = get(fields, k) {
                    set(&mut q, k, json!(v));
                }
            }
            if get(fields, "compare").is_some() {
                set(&mut q, "compare", json!(true));
            }
        }
        "funnel" => {
            let steps: Vec<&str> = get(fields, "steps")
                .unwrap_or("")
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            set(&mut q, "steps", json!(steps));
            let value: i64 = get(fields, "window")
                .and_then(|v| v.parse().ok())
                .unwrap_or(14);
            let unit = get(fields, "window_unit").unwrap_or("day");
            set(&mut q, "window", json!({"value": value, "unit": unit}));
            for k in ["order", "breakdown"] {
                if let Some(v) = get(fields, k) {
                    set(&mut q, k, json!(v));
                }
            }
        }
        _ => {
            set(&mut q, "target", json!(get(fields, "target").unwrap_or("")));
            if let Some(v) = get(fields, "returning") {
                set(&mut q, "returning", json!(v));
            }
            for k in ["period", "kind"] {
                if let Some(v) = get(fields, k) {
                    set(&mut q, k, json!(v));
                }
            }
            if let Some(n) = get(fields, "periods").and_then(|v| v.parse::<u64>().ok()) {
                set(&mut q, "periods", json!(n));
            }
        }
    }
    q
}

/// The form's fields for a question in the API's shape (what [`question`] reads back), to
/// show a saved insight in its form.
fn fields_of(view: &str, q: &Value) -> Vec<(String, String)> {
    let mut out = vec![("view".to_string(), view.to_string())];
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => b.then(|| "1".to_string()),
        Value::Object(m) => m
            .get("event")
            .or_else(|| m.get("property"))
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    };
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            out.push((k.to_string(), v));
        }
    };
    for k in [
        "from",
        "to",
        "cohort",
        "event",
        "math",
        "property",
        "interval",
        "breakdown",
        "compare",
        "order",
        "target",
        "returning",
        "period",
        "periods",
        "kind",
    ] {
        put(k, q.get(k).and_then(text));
    }
    if let Some(Value::Array(steps)) = q.get("steps") {
        let names: Vec<String> = steps.iter().filter_map(text).collect();
        put("steps", Some(names.join(", ")));
    }
    if let Some(w) = q.get("window") {
        put("window", w.get("value").and_then(text));
        put("window_unit", w.get("unit").and_then(text));
    }
    out
}

/// The views of the page and the analysis each shows.
fn view_kind(view: &str) -> Option<InsightKind> {
    Some(match view {
        "trends" => InsightKind::Trends,
        "funnel" => InsightKind::Funnels,
        "retention" => InsightKind::Retention,
        "stickiness" => InsightKind::Stickiness,
        "lifecycle" => InsightKind::Lifecycle,
        "api" => InsightKind::Api,
        _ => return None,
    })
}

fn kind_view(kind: InsightKind) -> &'static str {
    match kind {
        InsightKind::Trends => "trends",
        InsightKind::Funnels => "funnel",
        InsightKind::Retention => "retention",
        InsightKind::Stickiness => "stickiness",
        InsightKind::Lifecycle => "lifecycle",
        InsightKind::Api => "api",
    }
}

const VIEWS: [&str; 9] = [
    "trends",
    "funnel",
    "retention",
    "stickiness",
    "lifecycle",
    "api",
    "events",
    "catalogue",
    "saved",
];

fn local_time(tz: Tz, micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// The latest events of the org (last 30 days), newest first.
async fn latest_events(
    app: &App,
    org_id: i64,
    tz: Tz,
    limit: usize,
) -> Result<Vec<EventRow>, PageError> {
    let now = chrono::Utc::now().timestamp_micros();
    let q = EventQuery {
        org_id,
        from_micros: now - 30 * 86_400_000_000,
        to_micros: now + 1,
        ..EventQuery::default()
    };
    let latest = app
        .events
        .read(move |c| queries::list(c, &q, None, limit))
        .await?;
    Ok(latest
        .into_iter()
        .map(|e| EventRow {
            time: local_time(tz, e.ts_micros),
            name: e.name,
            distinct_id: e.distinct_id,
            properties: e.props_json,
        })
        .collect())
}

#[derive(Template)]
#[template(path = "live_events.html")]
pub struct LiveEvents {
    pub events: Vec<EventRow>,
}

/// `GET /o/{slug}/analytics/live`: the latest events table alone (the live page swaps it in
/// whenever the stream says events arrived).
pub async fn live_events(State(app): State<App>, m: OrgMember) -> Result<Response, PageError> {
    let tz: Tz = m.org.time_zone.parse().unwrap_or(chrono_tz::UTC);
    let events = latest_events(&app, m.org.id, tz, 50).await?;
    Ok(Html(LiveEvents { events }.render()?).into_response())
}

/// `GET /o/{slug}/analytics?view=trends|funnel|retention|stickiness|lifecycle|api|events|catalogue|saved&…`,
/// or `?insight=<id>` to open a saved insight.
pub async fn analytics_page(
    State(app): State<App>,
    m: OrgMember,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let mut fields: Vec<(String, String)> =
        crate::web::api::parse_query(&raw.unwrap_or_default().replace('+', " "))
            .map_err(|_| PageError::BadRequest("the query string is not valid".into()))?;
    let org_id = m.org.id;
    // A saved insight: its question exactly, its fields shown in the form.
    let mut opened = None;
    let mut saved_question = None;
    if let Some(id) = get(&fields, "insight") {
        let id: i64 = id.parse().map_err(|_| {
            PageError::BadRequest("insight must be the id of a saved insight".into())
        })?;
        let row = app
            .meta
            .call(move |c| meta_saved::get(c, org_id, id))
            .await?;
        let (kind, q) = crate::web::api::saved_insights::question_now(&row)
            .map_err(|_| PageError::BadRequest("this saved insight cannot be read".into()))?;
        fields = fields_of(kind_view(kind), &q);
        opened = Some((row.id, row.name.clone()));
        saved_question = Some(q);
    }
    let view = match get(&fields, "view") {
        None => "trends",
        Some(v) => VIEWS.into_iter().find(|known| *known == v).ok_or_else(|| {
            PageError::BadRequest(format!("view must be one of {}", VIEWS.join(", ")))
        })?,
    };
    let tz: Tz = m.org.time_zone.parse().unwrap_or(chrono_tz::UTC);
    let cohort_rows = app
        .meta
        .call(move |c| meta_cohorts::list(c, org_id))
        .await?;
    let mut page = AnalyticsPage {
        nav: nav(&app, &m, "analytics").await?,
        view,
        fields: fields.clone(),
        error: None,
        chart_json: "{}".into(),
        totals: Vec::new(),
        steps: Vec::new(),
        bars: Vec::new(),
        breakdowns: Vec::new(),
        period_labels: Vec::new(),
        cohorts: Vec::new(),
        events: Vec::new(),
        names: Vec::new(),
        cohort_options: cohort_rows
            .iter()
            .map(|c| (c.id.to_string(), c.name.clone()))
            .collect(),
        sticky: Vec::new(),
        life: Vec::new(),
        routes: Vec::new(),
        api_total: None,
        catalogue: Vec::new(),
        person_properties: Vec::new(),
        saved: Vec::new(),
        save_kind: "",
        save_query: String::new(),
        can_save: m.role.allows(Permission::AnalyzeData),
        opened,
    };
    let asked = match view {
        "trends" | "stickiness" | "lifecycle" => get(&fields, "event").is_some(),
        "funnel" => get(&fields, "steps").is_some(),
        "retention" => get(&fields, "target").is_some(),
        "api" => true,
        _ => false,
    };
    match view {
        "events" => page.events = latest_events(&app, org_id, tz, 50).await?,
        "catalogue" => {
            let now = chrono::Utc::now().timestamp_micros();
            let cat = app
                .events
                .read(move |c| crate::store::events::catalogue::catalogue(c, org_id, now))
                .await?;
            page.catalogue = cat
                .events
                .into_iter()
                .map(|e| CatalogueRow {
                    name: e.name,
                    count: e.count,
                    count_30d: e.count_30d,
                    last_seen: local_time(tz, e.last_seen_micros),
                    properties: e
                        .properties
                        .into_iter()
                        .map(|p| (p.key, p.types.join(", ")))
                        .collect(),
                })
                .collect();
            page.person_properties = cat
                .person_properties
                .into_iter()
                .map(|p| (p.key, p.types.join(", ")))
                .collect();
        }
        "saved" => {
            let rows = app.meta.call(move |c| meta_saved::list(c, org_id)).await?;
            page.saved = rows
                .into_iter()
                .map(|r| SavedView {
                    id: r.id,
                    updated: local_time(tz, r.updated_at * 1_000_000),
                    name: r.name,
                    kind: r.kind,
                    description: r.description,
                })
                .collect();
        }
        _ if !asked => {
            // Before a question: what there is to ask about.
            let now = chrono::Utc::now().timestamp_micros();
            let q = EventQuery {
                org_id,
                from_micros: now - 30 * 86_400_000_000,
                to_micros: now + 1,
                ..EventQuery::default()
            };
            let stats = app.events.read(move |c| queries::stats(c, &q)).await?;
            page.names = stats
                .by_name
                .iter()
                .map(|n| (n.name.clone(), n.count, local_time(tz, n.last_micros)))
                .collect();
        }
        _ => {}
    }
    if asked && let Some(kind) = view_kind(view) {
        let q = saved_question.unwrap_or_else(|| question(view, &fields));
        match answer(&app, &m, tz, kind, &q, &mut page).await {
            Ok(()) => {
                page.save_kind = kind.as_str();
                page.save_query = q.to_string();
            }
            Err(message) => page.error = Some(message),
        }
    }
    let status = if page.error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((status, Html(page.render()?)).into_response())
}

fn ms_text(ms: Option<f64>) -> String {
    ms.map(|v| format!("{v:.0} ms"))
        .unwrap_or_else(|| "–".into())
}

fn route_view(r: &crate::store::events::analytics::RequestStats, minutes: f64) -> RouteView {
    let rate = if r.requests == 0 {
        0.0
    } else {
        r.server_errors as f64 / r.requests as f64
    };
    RouteView {
        route: r.route.clone().unwrap_or_else(|| "All routes".into()),
        requests: r.requests,
        per_minute: format!("{:.2}", r.requests as f64 / minutes.max(1.0)),
        error_rate: percent(rate),
        client_errors: r.client_errors,
        p50: ms_text(r.p50_ms),
        p95: ms_text(r.p95_ms),
        p99: ms_text(r.p99_ms),
    }
}

/// Runs the question; a refusal comes back as the message to show by the form.
async fn answer(
    app: &App,
    m: &OrgMember,
    tz: Tz,
    kind: InsightKind,
    q: &Value,
    page: &mut AnalyticsPage,
) -> Result<(), String> {
    let shown = |e: crate::web::error::ApiError| match e.field {
        Some(f) if !e.message.starts_with(&f) => format!("{f}: {}", e.message),
        _ => e.message,
    };
    let org_id = m.org.id;
    let failed = |what: &str| format!("the {what} could not be computed");
    kind.check(q).map_err(|(f, r)| format!("{f}: {r}"))?;
    let cohort = resolve_cohort(app, org_id, q).await.map_err(shown)?;
    match kind {
        InsightKind::Trends => {
            let req = analytics::parse_trend(q).map_err(|(f, r)| format!("{f}: {r}"))?;
            let (from, to) = range(q, tz, req.interval).map_err(shown)?;
            let a = service::trend(app, org_id, cohort, tz, req, from, to)
                .await
                .map_err(|_| failed("trend"))?;
            let x: Vec<i64> = a.buckets.iter().map(|b| b.utc_micros / 1_000_000).collect();
            let series: Vec<Value> = a
                .series
                .iter()
                .map(|s| json!({"label": s.label.clone().unwrap_or_else(|| "all".into()), "values": s.values}))
                .collect();
            page.chart_json = json!({"x": x, "series": series}).to_string();
            page.totals = a
                .series
                .iter()
                .map(|s| {
                    let total: f64 = s.values.iter().flatten().sum();
                    (
                        s.label.clone().unwrap_or_else(|| "all".into()),
                        format!("{total}"),
                    )
                })
                .collect();
        }
        InsightKind::Funnels => {
            let req = analytics::parse_funnel(q).map_err(|(f, r)| format!("{f}: {r}"))?;
            let (from, to) = range(q, tz, Bucket::Day).map_err(shown)?;
            let a = service::funnel(app, org_id, cohort, req, from, to)
                .await
                .map_err(|_| failed("funnel"))?;
            page.steps = step_rows(&a.all);
            page.bars = bars(&a.all);
            page.breakdowns = a
                .breakdowns
                .iter()
                .map(|b| (b.breakdown.clone().unwrap_or_default(), step_rows(b)))
                .collect();
        }
        InsightKind::Retention => {
            let req = analytics::parse_retention(q).map_err(|(f, r)| format!("{f}: {r}"))?;
            let (from, to) = range(q, tz, req.period).map_err(shown)?;
            let a = service::retention(app, org_id, cohort, tz, req.clone(), from, to)
                .await
                .map_err(|_| failed("retention"))?;
            page.period_labels = (0..=req.periods)
                .map(|k| format!("{} {k}", req.period.as_str()))
                .collect();
            page.cohorts = a
                .cohorts
                .iter()
                .map(|c| CohortView {
                    label: a
                        .periods
                        .get(c.period)
                        .map(|p| p.local.format("%Y-%m-%d").to_string())
                        .unwrap_or_default(),
                    size: c.size,
                    cells: c
                        .retained
                        .iter()
                        .map(|r| {
                            let share = if c.size == 0 {
                                0.0
                            } else {
                                *r as f64 / c.size as f64
                            };
                            (percent(share), (share * 5.0).round() as usize)
                        })
                        .collect(),
                })
                .collect();
        }
        InsightKind::Stickiness => {
            let req = analytics::parse_activity(q).map_err(|(f, r)| format!("{f}: {r}"))?;
            let (from, to) = range(q, tz, req.interval).map_err(shown)?;
            let a = service::stickiness(app, org_id, cohort, tz, req, from, to)
                .await
                .map_err(|_| failed("stickiness"))?;
            page.sticky = a
                .users
                .iter()
                .enumerate()
                .map(|(k, n)| (k + 1, *n))
                .collect();
        }
        InsightKind::Lifecycle => {
            let req = analytics::parse_activity(q).map_err(|(f, r)| format!("{f}: {r}"))?;
            let (from, to) = range(q, tz, req.interval).map_err(shown)?;
            let a = service::lifecycle(app, org_id, cohort, tz, req, from, to)
                .await
                .map_err(|_| failed("lifecycle"))?;
            let l = &a.lifecycle;
            page.life = a
                .periods
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let at = |v: &Vec<i64>| v.get(i).copied().unwrap_or(0);
                    (
                        p.local.format("%Y-%m-%d").to_string(),
                        at(&l.new),
                        at(&l.returning),
                        at(&l.resurrecting),
                        at(&l.dormant),
                    )
                })
                .collect();
        }
        InsightKind::Api => {
            let req = analytics::parse_api_usage(q).map_err(|(f, r)| format!("{f}: {r}"))?;
            let (from, to) = range(q, tz, req.interval).map_err(shown)?;
            let minutes = (to - from) as f64 / 60e6;
            let a = service::api_usage(app, org_id, cohort, tz, req, from, to)
                .await
                .map_err(|_| failed("API analytics"))?;
            let x: Vec<i64> = a.buckets.iter().map(|b| b.utc_micros / 1_000_000).collect();
            let requests: Vec<i64> = a.series.iter().map(|r| r.requests).collect();
            let errors: Vec<i64> = a.series.iter().map(|r| r.server_errors).collect();
            page.chart_json = json!({"x": x, "series": [
                {"label": "requests", "values": requests},
                {"label": "5xx", "values": errors},
            ]})
            .to_string();
            page.api_total = Some(route_view(&a.total, minutes));
            page.routes = a.routes.iter().map(|r| route_view(r, minutes)).collect();
        }
    }
    Ok(())
}

/// `POST /o/{slug}/analytics/save`: keeps the question shown under a name (Analyst and up),
/// then opens it.
pub async fn save_insight(
    State(app): State<App>,
    m: OrgMember,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(&m, form, Permission::AnalyzeData)?;
    let query: Value = serde_json::from_str(form.get("query"))
        .map_err(|_| PageError::BadRequest("query: the question to save is missing".into()))?;
    let body = json!({
        "name": form.get("name"),
        "kind": form.get("kind"),
        "query": query,
    });
    let input = crate::web::api::saved_insights::parse_input(&app, m.org.id, &body)
        .await
        .map_err(|e| PageError::BadRequest(e.message))?;
    let who = m.actor();
    let id = form
        .record(&app, "insight.save", move |tx, org_id| {
            let fields = crate::web::api::saved_insights::fields_of(&input);
            let id = meta_saved::create(tx, org_id, &fields.as_fields(), &who)?;
            Ok((id, input.name))
        })
        .await?;
    form.done(&format!("analytics?insight={id}"))
}

/// `POST /o/{slug}/analytics/insights/{id}/delete`.
pub async fn delete_insight(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(&m, form, Permission::AnalyzeData)?;
    form.record(&app, "insight.delete", move |tx, org_id| {
        let row = meta_saved::get(tx, org_id, id)?;
        meta_saved::delete(tx, org_id, id)?;
        Ok(((), row.name))
    })
    .await?;
    form.done("analytics?view=saved")
}
