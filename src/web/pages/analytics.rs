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
use crate::domain::analytics;
use crate::domain::timebucket::Bucket;
use crate::services::analytics as service;
use crate::store::events::queries::{self, EventQuery};
use crate::web::api::analytics::range;
use crate::web::auth::OrgMember;
use crate::web::error::PageError;
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
    match view {
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

/// `GET /o/{slug}/analytics?view=trends|funnel|retention|events&…`.
pub async fn analytics_page(
    State(app): State<App>,
    m: OrgMember,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let fields: Vec<(String, String)> =
        crate::web::api::parse_query(&raw.unwrap_or_default().replace('+', " "))
            .map_err(|_| PageError::BadRequest("the query string is not valid".into()))?;
    let view = match get(&fields, "view") {
        None | Some("trends") => "trends",
        Some("funnel") => "funnel",
        Some("retention") => "retention",
        Some("events") => "events",
        Some(_) => {
            return Err(PageError::BadRequest(
                "view must be trends, funnel, retention or events".into(),
            ));
        }
    };
    let tz: Tz = m.org.time_zone.parse().unwrap_or(chrono_tz::UTC);
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
    };
    let asked = match view {
        "trends" => get(&fields, "event").is_some(),
        "funnel" => get(&fields, "steps").is_some(),
        "retention" => get(&fields, "target").is_some(),
        _ => false,
    };
    let org_id = m.org.id;
    if view == "events" || !asked {
        let now = chrono::Utc::now().timestamp_micros();
        let q = EventQuery {
            org_id,
            from_micros: now - 30 * 86_400_000_000,
            to_micros: now + 1,
            ..EventQuery::default()
        };
        let (latest, stats) = app
            .events
            .read(move |c| Ok((queries::list(c, &q, None, 50)?, queries::stats(c, &q)?)))
            .await?;
        page.names = stats
            .by_name
            .iter()
            .map(|n| (n.name.clone(), n.count, local_time(tz, n.last_micros)))
            .collect();
        page.events = latest
            .into_iter()
            .map(|e| EventRow {
                time: local_time(tz, e.ts_micros),
                name: e.name,
                distinct_id: e.distinct_id,
                properties: e.props_json.unwrap_or_default(),
            })
            .collect();
    }
    if asked {
        let q = question(view, &fields);
        if let Err(message) = answer(&app, &m, tz, view, &q, &mut page).await {
            page.error = Some(message);
        }
    }
    let status = if page.error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    Ok((status, Html(page.render()?)).into_response())
}

fn local_time(tz: Tz, micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}

/// Runs the question; a refusal comes back as the message to show by the form.
async fn answer(
    app: &App,
    m: &OrgMember,
    tz: Tz,
    view: &str,
    q: &Value,
    page: &mut AnalyticsPage,
) -> Result<(), String> {
    let shown = |e: crate::web::error::ApiError| match e.field {
        Some(f) if !e.message.starts_with(&f) => format!("{f}: {}", e.message),
        _ => e.message,
    };
    let org_id = m.org.id;
    match view {
        "trends" => {
            let req = analytics::parse_trend(q).map_err(|(f, r)| format!("{f}: {r}"))?;
            let (from, to) = range(q, tz, req.interval).map_err(shown)?;
            let a = service::trend(app, org_id, tz, req, from, to)
                .await
                .map_err(|_| "the trend could not be computed".to_string())?;
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
        "funnel" => {
            let req = analytics::parse_funnel(q).map_err(|(f, r)| format!("{f}: {r}"))?;
            let (from, to) = range(q, tz, Bucket::Day).map_err(shown)?;
            let a = service::funnel(app, org_id, req, from, to)
                .await
                .map_err(|_| "the funnel could not be computed".to_string())?;
            page.steps = step_rows(&a.all);
            page.bars = bars(&a.all);
            page.breakdowns = a
                .breakdowns
                .iter()
                .map(|b| (b.breakdown.clone().unwrap_or_default(), step_rows(b)))
                .collect();
        }
        _ => {
            let req = analytics::parse_retention(q).map_err(|(f, r)| format!("{f}: {r}"))?;
            let (from, to) = range(q, tz, req.period).map_err(shown)?;
            let a = service::retention(app, org_id, tz, req.clone(), from, to)
                .await
                .map_err(|_| "the retention could not be computed".to_string())?;
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
    }
    Ok(())
}
