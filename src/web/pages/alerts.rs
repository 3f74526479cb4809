//! Alert pages: the alerts list (live via SSE, acknowledge / resolve with htmx) and alert detail
//! (timeline, chart with the threshold). Rule, channel and silence forms (siblings) are turned
//! into the API's JSON shape so both validate alike.

use askama::Template;
use axum::Form;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::TimeZone;
use serde_json::json;

use crate::app::App;
use crate::domain::alert_rules::RuleKind;
use crate::domain::alerts::Severity;
use crate::domain::catalog::Category;
use crate::domain::roles::Permission;
use crate::domain::timebucket::Bucket;
use crate::services::Alerting;
use crate::services::alerting::{self, AlertActionError};
use crate::services::query::{self, SeriesRequest};
use crate::store::meta::alerts::{self, AlertEventRow, AlertFilter, AlertRow};
use crate::store::{StoreError, now_secs};
use crate::web::auth::OrgMember;
use crate::web::error::PageError;
use crate::web::pages::{FormAction, FormData, Nav, nav, render_status};

pub(crate) fn local_time(m: &OrgMember, at: i64) -> String {
    query::org_tz(&m.org)
        .timestamp_opt(at, 0)
        .single()
        .map(|t| t.format("%a %-d %b %Y %H:%M").to_string())
        .unwrap_or_default()
}

pub(crate) fn not_found(e: StoreError, what: &str) -> PageError {
    match e {
        StoreError::NotFound => {
            tracing::debug!(what, "not found in this organisation");
            PageError::NotFound
        }
        other => other.into(),
    }
}

/// One row of the alerts list.
pub struct AlertItem {
    pub id: i64,
    pub rule: String,
    pub series: String,
    pub state: String,
    pub severity: String,
    pub category: String,
    pub value: String,
    pub since: String,
    pub ack: String,
}

fn alert_item(m: &OrgMember, a: &AlertRow) -> AlertItem {
    AlertItem {
        id: a.id,
        rule: a.rule_name.clone(),
        series: a.series.clone(),
        state: a.state.clone(),
        severity: a.severity.clone(),
        category: a.category.clone(),
        value: a
            .value
            .map(|v| format!("{v}"))
            .unwrap_or_else(|| "no data".into()),
        since: local_time(m, a.fired_at.unwrap_or(a.started_at)),
        ack: if a.ack_by.is_empty() {
            String::new()
        } else {
            format!(
                "{}{}",
                a.ack_by,
                a.ack_until
                    .map(|u| format!(" until {}", local_time(m, u)))
                    .unwrap_or_default()
            )
        },
    }
}

#[derive(Template)]
#[template(path = "alert_list.html")]
pub struct AlertListFragment {
    pub slug: String,
    pub csrf: String,
    pub query: String,
    pub items: Vec<AlertItem>,
    pub can_ack: bool,
}

#[derive(Template)]
#[template(path = "alerts.html")]
pub struct AlertsPage {
    pub nav: Nav,
    pub list: AlertListFragment,
    pub state: String,
    pub severity: String,
    pub category: String,
    pub severities: Vec<&'static str>,
    pub categories: Vec<(&'static str, &'static str)>,
}

fn filter_from(raw: &str) -> Result<(AlertFilter, String, String, String, String), PageError> {
    let params = crate::web::api::parse_query(raw).map_err(|e| PageError::BadRequest(e.message))?;
    let get = |k: &str| {
        params
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (mut state, severity, category) = (get("state"), get("severity"), get("category"));
    if state.is_empty() && !params.iter().any(|(n, _)| n == "state") {
        state = "open".into();
    }
    let known: Vec<(String, String)> = [
        ("state", &state),
        ("severity", &severity),
        ("category", &category),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty() && v.as_str() != "all")
    .map(|(k, v)| (k.to_string(), v.clone()))
    .collect();
    let filter = crate::web::api::alerts::parse_filter(&known)
        .map_err(|e| PageError::BadRequest(e.message))?;
    let query = format!(
        "state={}&severity={}&category={}",
        crate::domain::url::urlencode(&state),
        crate::domain::url::urlencode(&severity),
        crate::domain::url::urlencode(&category)
    );
    Ok((filter, query, state, severity, category))
}

async fn alert_list(
    app: &App,
    m: &OrgMember,
    raw: &str,
) -> Result<(AlertListFragment, String, String, String), PageError> {
    let (filter, query, state, severity, category) = filter_from(raw)?;
    let org_id = m.org.id;
    let rows = app
        .meta
        .call(move |c| alerts::list_alerts(c, org_id, &filter))
        .await?;
    Ok((
        AlertListFragment {
            slug: m.org.slug.clone(),
            csrf: m.csrf.clone(),
            query,
            items: rows.iter().map(|a| alert_item(m, a)).collect(),
            can_ack: m.role.allows(Permission::AnalyzeData),
        },
        state,
        severity,
        category,
    ))
}

/// `GET /o/{slug}/alerts`.
pub async fn alerts_page(
    State(app): State<App>,
    m: OrgMember,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let (list, state, severity, category) =
        alert_list(&app, &m, raw.as_deref().unwrap_or("")).await?;
    render_status(
        StatusCode::OK,
        &AlertsPage {
            nav: nav(&app, &m, "alerts").await?,
            list,
            state,
            severity,
            category,
            severities: Severity::ALL.iter().map(|s| s.as_str()).collect(),
            categories: Category::ALL
                .iter()
                .map(|c| (c.as_str(), c.title()))
                .collect(),
        },
    )
}

/// `GET /o/{slug}/alerts/list`: the list fragment (filters, SSE refresh).
pub async fn alerts_fragment(
    State(app): State<App>,
    m: OrgMember,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let (list, ..) = alert_list(&app, &m, raw.as_deref().unwrap_or("")).await?;
    render_status(StatusCode::OK, &list)
}

fn action_error(e: AlertActionError) -> PageError {
    match e {
        AlertActionError::Store(s) => not_found(s, "alert"),
        AlertActionError::State(msg) => PageError::BadRequest(msg),
        AlertActionError::Invalid(field, msg) => PageError::BadRequest(format!("{field} {msg}")),
    }
}

/// After an action: the list fragment for htmx, else back to where the form was.
async fn after_action(
    app: &App,
    m: &OrgMember,
    headers: &HeaderMap,
    form: &FormData,
    id: i64,
) -> Result<Response, PageError> {
    if headers.contains_key("hx-request") && form.get("from") == "list" {
        let (list, ..) = alert_list(app, m, form.get("query")).await?;
        return render_status(StatusCode::OK, &list);
    }
    Ok(Redirect::to(&format!("/o/{}/alerts/{id}", m.org.slug)).into_response())
}

/// `POST /o/{slug}/alerts/{id}/acknowledge` (note, hours).
pub async fn acknowledge(
    State(app): State<App>,
    State(alerts_service): State<Alerting>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(&m, form, Permission::AnalyzeData)?;
    let hours = match form.get("hours").trim() {
        "" => None,
        h => Some(
            h.parse::<f64>()
                .map_err(|_| PageError::BadRequest(format!("Hours: {h:?} is not a number")))?,
        ),
    };
    alerts_service
        .acknowledge(&m.org, id, &m.actor(), form.get("note"), hours)
        .await
        .map_err(action_error)?;
    after_action(&app, &m, &headers, &form, id).await
}

/// `POST /o/{slug}/alerts/{id}/resolve`.
pub async fn resolve(
    State(app): State<App>,
    State(alerts_service): State<Alerting>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(&m, form, Permission::AnalyzeData)?;
    alerts_service
        .resolve(&m.org, id, &m.actor())
        .await
        .map_err(action_error)?;
    after_action(&app, &m, &headers, &form, id).await
}

pub struct EventItem {
    pub at: String,
    pub kind: String,
    pub by: String,
    pub note: String,
    pub value: String,
}

#[derive(Template)]
#[template(path = "alert.html")]
pub struct AlertPage {
    pub nav: Nav,
    pub slug: String,
    pub item: AlertItem,
    pub rule_id: i64,
    pub watched: String,
    pub condition: String,
    pub metric: String,
    pub open: bool,
    pub can_ack: bool,
    pub chart_json: String,
    pub unit: &'static str,
    pub events: Vec<EventItem>,
}

/// `GET /o/{slug}/alerts/{id}`.
pub async fn alert_page(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
) -> Result<Response, PageError> {
    let org_id = m.org.id;
    let (alert, events): (AlertRow, Vec<AlertEventRow>) = app
        .meta
        .call(move |c| {
            Ok((
                alerts::get_alert(c, org_id, id)?,
                alerts::events(c, org_id, id)?,
            ))
        })
        .await
        .map_err(|e| not_found(e, "alert"))?;
    let rule_id = alert.rule_id;
    let rule = app
        .meta
        .call(move |c| alerts::get_rule(c, org_id, rule_id))
        .await?;
    let catalog = app.meta.catalog(org_id).await?.to_vec();
    let def = rule
        .spec
        .metric
        .as_ref()
        .and_then(|k| catalog.iter().find(|d| &d.key == k))
        .cloned();
    let fmt = alerting::value_formatter(&rule.spec, def.as_ref(), &m.org.currency);
    let mut item = alert_item(&m, &alert);
    item.value = alert.value.map(&fmt).unwrap_or_else(|| "no data".into());
    // The watched metric around the alert, with the threshold level(s) drawn as flat lines.
    let mut chart = json!({});
    if let (Some(def), RuleKind::Threshold | RuleKind::NoData | RuleKind::Change) =
        (&def, rule.spec.kind)
    {
        let end = alert
            .resolved_at
            .map(|r| r + 86_400)
            .unwrap_or_else(now_secs)
            .min(now_secs());
        let start = alert.started_at - 14 * 86_400;
        let bucket = if rule.spec.window_secs < 86_400 {
            Bucket::Hour
        } else {
            Bucket::Day
        };
        let mut filters: Vec<(String, String)> = rule.spec.filters.clone().into_iter().collect();
        if let Some((k, v)) = alert.series.split_once('=') {
            filters.push((k.to_string(), v.to_string()));
        }
        let groups = query::series(
            &app,
            &m.org,
            SeriesRequest {
                metric: def.key.clone(),
                from_micros: start * 1_000_000,
                to_micros: end * 1_000_000,
                bucket,
                agg: rule.spec.aggregation,
                filters,
                group_by: None,
            },
        )
        .await?;
        if let Some(g) = groups.first() {
            let x: Vec<i64> = g.points.iter().map(|p| p.utc_micros / 1_000_000).collect();
            let mut series = vec![
                json!({"label": def.name, "values": g.points.iter().map(|p| p.value).collect::<Vec<_>>()}),
            ];
            for level in rule.spec.chart_levels() {
                series.push(json!({"label": format!("threshold {}", fmt(level)), "values": vec![level; x.len()], "dash": true}));
            }
            chart = json!({"x": x, "series": series, "unit": def.unit.as_str()});
        }
    }
    render_status(
        StatusCode::OK,
        &AlertPage {
            nav: nav(&app, &m, "alerts").await?,
            slug: m.org.slug.clone(),
            open: matches!(alert.state.as_str(), "pending" | "firing" | "acknowledged"),
            can_ack: m.role.allows(Permission::AnalyzeData),
            rule_id,
            watched: rule
                .spec
                .subject(def.as_ref().map(|d| d.name.as_str()).unwrap_or("")),
            condition: rule.spec.describe_condition(&fmt),
            metric: def.as_ref().map(|d| d.key.clone()).unwrap_or_default(),
            unit: def.as_ref().map(|d| d.unit.as_str()).unwrap_or("count"),
            chart_json: chart.to_string(),
            events: events
                .iter()
                .map(|e| EventItem {
                    at: local_time(&m, e.at),
                    kind: e.kind.clone(),
                    by: e.actor.clone(),
                    note: e.note.clone(),
                    value: e.value.map(&fmt).unwrap_or_default(),
                })
                .collect(),
            item,
        },
    )
}
