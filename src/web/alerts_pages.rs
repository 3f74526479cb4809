//! Alert pages: the alerts list (live via SSE, acknowledge / resolve with htmx), alert detail
//! (timeline, chart with the threshold), rule and channel editors with per-field messages, and
//! silences / mute windows. Forms are turned into the API's JSON shape so both validate alike.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::TimeZone;
use serde_json::{Value, json};

use super::auth::OrgMember;
use super::error::PageError;
use super::pages::{FormData, Nav, nav};
use crate::alerting::{self, AlertActionError, SaveError};
use crate::app::App;
use crate::domain::alert_rules::{FieldProblem, RuleKind};
use crate::domain::alerts::{Severity, parse_matchers};
use crate::domain::catalog::{Aggregation, Category, MetricDef};
use crate::domain::notify::mask_secret;
use crate::domain::roles::Permission;
use crate::domain::timebucket::Bucket;
use crate::query::{self, SeriesRequest};
use crate::store::meta::alerts::{self, AlertEventRow, AlertFilter, AlertRow, RuleRow};
use crate::store::meta::channels::{self, ChannelRow, OutboxRow};
use crate::store::meta::custom_metrics;
use crate::store::{StoreError, now_secs};

fn html(t: &impl Template, status: StatusCode) -> Result<Response, PageError> {
    Ok((status, Html(t.render()?)).into_response())
}

fn local_time(m: &OrgMember, at: i64) -> String {
    query::org_tz(&m.org)
        .timestamp_opt(at, 0)
        .single()
        .map(|t| t.format("%a %-d %b %Y %H:%M").to_string())
        .unwrap_or_default()
}

fn not_found(e: StoreError, what: &str) -> PageError {
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
    let params = super::api::parse_query(raw).map_err(|e| PageError::BadRequest(e.message))?;
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
    let filter =
        super::alerts_api::parse_filter(&known).map_err(|e| PageError::BadRequest(e.message))?;
    let query = format!(
        "state={}&severity={}&category={}",
        super::error::urlencode(&state),
        super::error::urlencode(&severity),
        super::error::urlencode(&category)
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
    html(
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
        StatusCode::OK,
    )
}

/// `GET /o/{slug}/alerts/list`: the list fragment (filters, SSE refresh).
pub async fn alerts_fragment(
    State(app): State<App>,
    m: OrgMember,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let (list, ..) = alert_list(&app, &m, raw.as_deref().unwrap_or("")).await?;
    html(&list, StatusCode::OK)
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
        return html(&list, StatusCode::OK);
    }
    Ok(Redirect::to(&format!("/o/{}/alerts/{id}", m.org.slug)).into_response())
}

/// `POST /o/{slug}/alerts/{id}/acknowledge` (note, hours).
pub async fn acknowledge(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormData(form);
    m.check_csrf(form.get("csrf"))?;
    m.require(Permission::AnalyzeData)?;
    let hours = match form.get("hours").trim() {
        "" => None,
        h => Some(
            h.parse::<f64>()
                .map_err(|_| PageError::BadRequest(format!("Hours: {h:?} is not a number")))?,
        ),
    };
    alerting::acknowledge(&app, &m.org, id, &m.actor(), form.get("note"), hours)
        .await
        .map_err(action_error)?;
    after_action(&app, &m, &headers, &form, id).await
}

/// `POST /o/{slug}/alerts/{id}/resolve`.
pub async fn resolve(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormData(form);
    m.check_csrf(form.get("csrf"))?;
    m.require(Permission::AnalyzeData)?;
    alerting::resolve(&app, &m.org, id, &m.actor())
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
    let catalog = app
        .meta
        .call(move |c| custom_metrics::catalog(c, org_id))
        .await?;
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
    html(
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
        StatusCode::OK,
    )
}

pub struct RuleItem {
    pub id: i64,
    pub name: String,
    pub kind: &'static str,
    pub severity: &'static str,
    pub summary: String,
    pub enabled: bool,
    pub last_evaluated: String,
    pub last_error: String,
}

#[derive(Template)]
#[template(path = "alert_rules.html")]
pub struct RulesPage {
    pub nav: Nav,
    pub slug: String,
    pub rules: Vec<RuleItem>,
    pub can_edit: bool,
}

/// `GET /o/{slug}/alert-rules`.
pub async fn rules_page(State(app): State<App>, m: OrgMember) -> Result<Response, PageError> {
    let org_id = m.org.id;
    let rules = app
        .meta
        .call(move |c| alerts::list_rules(c, org_id))
        .await?;
    let catalog = app
        .meta
        .call(move |c| custom_metrics::catalog(c, org_id))
        .await?;
    let items = rules
        .iter()
        .map(|r| {
            let def = r
                .spec
                .metric
                .as_ref()
                .and_then(|k| catalog.iter().find(|d| &d.key == k));
            let fmt = alerting::value_formatter(&r.spec, def, &m.org.currency);
            RuleItem {
                id: r.id,
                name: r.spec.name.clone(),
                kind: r.spec.kind.as_str(),
                severity: r.spec.severity.as_str(),
                summary: format!(
                    "{} {}",
                    r.spec.subject(def.map(|d| d.name.as_str()).unwrap_or("")),
                    r.spec.describe_condition(&fmt)
                ),
                enabled: r.spec.enabled,
                last_evaluated: r
                    .last_evaluated_at
                    .map(|t| local_time(&m, t))
                    .unwrap_or_else(|| "never".into()),
                last_error: r.last_error.clone(),
            }
        })
        .collect();
    html(
        &RulesPage {
            nav: nav(&app, &m, "alert-rules").await?,
            slug: m.org.slug.clone(),
            rules: items,
            can_edit: m.role.allows(Permission::WriteData),
        },
        StatusCode::OK,
    )
}

#[derive(Template)]
#[template(path = "alert_rule_form.html")]
pub struct RuleFormPage {
    pub nav: Nav,
    pub slug: String,
    pub id: Option<i64>,
    pub values: HashMap<String, String>,
    pub chosen_channels: Vec<i64>,
    pub chosen_escalation: Vec<i64>,
    pub errors: HashMap<String, String>,
    pub metrics: Vec<(String, String)>,
    pub channels: Vec<(i64, String)>,
    pub kinds: Vec<&'static str>,
    pub severities: Vec<&'static str>,
    pub aggregations: Vec<&'static str>,
    pub categories: Vec<(&'static str, &'static str)>,
    pub can_edit: bool,
    pub notice: String,
}

impl RuleFormPage {
    pub fn v(&self, f: &str) -> &str {
        self.values.get(f).map(String::as_str).unwrap_or("")
    }
    pub fn e(&self, f: &str) -> &str {
        self.errors.get(f).map(String::as_str).unwrap_or("")
    }
}

/// Form field a problem belongs to: `condition.threshold` → `threshold`, `channels[0]` → `channels`.
fn form_field(field: &str) -> String {
    let last = field.rsplit('.').next().unwrap_or(field);
    let base = last.split('[').next().unwrap_or(last);
    match field.split('.').next() {
        Some("labels") => "labels".into(),
        Some("dimensions") => "dimensions".into(),
        _ => base.to_string(),
    }
}

fn problems_map(problems: &[FieldProblem]) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = HashMap::new();
    for p in problems {
        out.entry(form_field(&p.field))
            .or_insert_with(|| p.message.clone());
    }
    out
}

fn text_map(text: &str) -> Result<Value, String> {
    let pairs = parse_matchers(text)?;
    Ok(Value::Object(
        pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect(),
    ))
}

/// The rule form as the API's JSON; problems in free-text fields come back separately.
fn rule_json_from_form(form: &FormData) -> (Value, Vec<FieldProblem>) {
    let mut problems = Vec::new();
    let mut map = |field: &str| match text_map(form.get(field)) {
        Ok(v) => v,
        Err(message) => {
            problems.push(FieldProblem {
                field: field.into(),
                message,
            });
            json!({})
        }
    };
    let labels = map("labels");
    let dimensions = map("dimensions");
    let ids = |name: &str| -> Vec<Value> {
        form.all(name)
            .into_iter()
            .map(|v| Value::String(v.to_string()))
            .collect()
    };
    let v = json!({
        "name": form.get("name"),
        "kind": form.get("kind"),
        "metric": if form.get("kind") == "score" { "" } else { form.get("metric") },
        "aggregation": form.get("aggregation"),
        "window": form.get("window"),
        "condition": {
            "op": form.get("op"), "threshold": form.get("threshold"), "recovery": form.get("recovery"),
            "low": form.get("low"), "high": form.get("high"), "margin": form.get("margin"),
        },
        "category": form.get("category"),
        "stale_after": form.get("stale_after"),
        "min_anomaly_score": form.get("min_anomaly_score"),
        "severity": form.get("severity"),
        "interval": form.get("interval"),
        "for": form.get("for"),
        "recovery_for": form.get("recovery_for"),
        "escalate_after": form.get("escalate_after"),
        "no_data": form.get("no_data"),
        "labels": labels,
        "dimensions": dimensions,
        "group_by": form.get("group_by"),
        "channels": ids("channels"),
        "escalation_channels": ids("escalation_channels"),
        "enabled": form.get("enabled") == "on",
    });
    (v, problems)
}

fn values_from_rule(r: &RuleRow) -> (HashMap<String, String>, Vec<i64>, Vec<i64>) {
    let input = r.spec.to_input();
    let mut values = HashMap::new();
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    for key in [
        "name",
        "kind",
        "metric",
        "aggregation",
        "window",
        "category",
        "stale_after",
        "severity",
        "interval",
        "for",
        "recovery_for",
        "escalate_after",
        "no_data",
        "group_by",
    ] {
        values.insert(key.to_string(), text(&input[key]));
    }
    for key in ["op", "threshold", "recovery", "low", "high", "margin"] {
        values.insert(key.to_string(), text(&input["condition"][key]));
    }
    for key in ["labels", "dimensions"] {
        let joined = input[key]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| format!("{k}={}", text(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        values.insert(key.to_string(), joined);
    }
    if r.spec.enabled {
        values.insert("enabled".into(), "on".into());
    }
    (
        values,
        r.spec.channels.clone(),
        r.spec.escalation_channels.clone(),
    )
}

async fn rule_form(
    app: &App,
    m: &OrgMember,
    id: Option<i64>,
    values: HashMap<String, String>,
    chosen: (Vec<i64>, Vec<i64>),
    errors: HashMap<String, String>,
    notice: String,
) -> Result<RuleFormPage, PageError> {
    let org_id = m.org.id;
    let catalog: Vec<MetricDef> = app
        .meta
        .call(move |c| custom_metrics::catalog(c, org_id))
        .await?;
    let chans = app.meta.call(move |c| channels::list(c, org_id)).await?;
    Ok(RuleFormPage {
        nav: nav(app, m, "alert-rules").await?,
        slug: m.org.slug.clone(),
        id,
        values,
        chosen_channels: chosen.0,
        chosen_escalation: chosen.1,
        errors,
        metrics: catalog
            .iter()
            .map(|d| (d.key.clone(), d.name.clone()))
            .collect(),
        channels: chans
            .iter()
            .map(|c| (c.id, format!("{} ({})", c.name, c.kind)))
            .collect(),
        kinds: RuleKind::ALL.iter().map(|k| k.as_str()).collect(),
        severities: Severity::ALL.iter().map(|s| s.as_str()).collect(),
        aggregations: Aggregation::ALL.iter().map(|a| a.as_str()).collect(),
        categories: Category::ALL
            .iter()
            .map(|c| (c.as_str(), c.title()))
            .collect(),
        can_edit: m.role.allows(Permission::WriteData),
        notice,
    })
}

/// `GET /o/{slug}/alert-rules/new`.
pub async fn new_rule_form(State(app): State<App>, m: OrgMember) -> Result<Response, PageError> {
    let values = HashMap::from([
        ("kind".to_string(), "threshold".to_string()),
        ("window".to_string(), "1d".to_string()),
        ("interval".to_string(), "1m".to_string()),
        ("for".to_string(), "0s".to_string()),
        ("recovery_for".to_string(), "0s".to_string()),
        ("severity".to_string(), "medium".to_string()),
        ("op".to_string(), "above".to_string()),
        ("enabled".to_string(), "on".to_string()),
    ]);
    let page = rule_form(
        &app,
        &m,
        None,
        values,
        (vec![], vec![]),
        HashMap::new(),
        String::new(),
    )
    .await?;
    html(&page, StatusCode::OK)
}

/// `GET /o/{slug}/alert-rules/{id}`.
pub async fn edit_rule_form(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
) -> Result<Response, PageError> {
    let org_id = m.org.id;
    let rule = app
        .meta
        .call(move |c| alerts::get_rule(c, org_id, id))
        .await
        .map_err(|e| not_found(e, "alert rule"))?;
    let (values, ch, esc) = values_from_rule(&rule);
    let page = rule_form(
        &app,
        &m,
        Some(id),
        values,
        (ch, esc),
        HashMap::new(),
        String::new(),
    )
    .await?;
    html(&page, StatusCode::OK)
}

fn form_values(form: &FormData) -> HashMap<String, String> {
    let mut v = HashMap::new();
    for (k, val) in &form.0 {
        if k != "channels" && k != "escalation_channels" {
            v.insert(k.clone(), val.clone());
        }
    }
    v
}

fn chosen_ids(form: &FormData, name: &str) -> Vec<i64> {
    form.all(name)
        .into_iter()
        .filter_map(|v| v.parse().ok())
        .collect()
}

async fn save_rule_from_form(
    app: &App,
    m: &OrgMember,
    id: Option<i64>,
    form: FormData,
) -> Result<Response, PageError> {
    m.check_csrf(form.get("csrf"))?;
    m.require(Permission::WriteData)?;
    let (input, mut problems) = rule_json_from_form(&form);
    let result = if problems.is_empty() {
        alerting::save_rule(app, m.org.id, id, input, &m.actor()).await
    } else {
        Err(SaveError::Invalid(Vec::new()))
    };
    match result {
        Ok(rule) => Ok(Redirect::to(&format!(
            "/o/{}/alert-rules/{}?saved=1",
            m.org.slug, rule.id
        ))
        .into_response()),
        Err(SaveError::Invalid(more)) => {
            problems.extend(more);
            let chosen = (
                chosen_ids(&form, "channels"),
                chosen_ids(&form, "escalation_channels"),
            );
            let page = rule_form(
                app,
                m,
                id,
                form_values(&form),
                chosen,
                problems_map(&problems),
                String::new(),
            )
            .await?;
            html(&page, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(SaveError::Store(e)) => Err(not_found(e, "alert rule")),
    }
}

/// `POST /o/{slug}/alert-rules`.
pub async fn create_rule(
    State(app): State<App>,
    m: OrgMember,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    save_rule_from_form(&app, &m, None, FormData(form)).await
}

/// `POST /o/{slug}/alert-rules/{id}`.
pub async fn update_rule(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    save_rule_from_form(&app, &m, Some(id), FormData(form)).await
}

/// `POST /o/{slug}/alert-rules/{id}/delete`.
pub async fn delete_rule(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormData(form);
    m.check_csrf(form.get("csrf"))?;
    m.require(Permission::WriteData)?;
    alerting::delete_rule(&app, m.org.id, id, &m.actor())
        .await
        .map_err(|e| not_found(e, "alert rule"))?;
    Ok(Redirect::to(&format!("/o/{}/alert-rules", m.org.slug)).into_response())
}

#[derive(Template)]
#[template(path = "rule_test.html")]
pub struct RuleTestFragment {
    pub errors: Vec<FieldProblem>,
    pub rows: Vec<Value>,
}

/// `POST /o/{slug}/alert-rules/test`: tests the form's rule now (htmx fragment); records nothing.
pub async fn test_rule(
    State(app): State<App>,
    m: OrgMember,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormData(form);
    m.check_csrf(form.get("csrf"))?;
    let (input, problems) = rule_json_from_form(&form);
    if !problems.is_empty() {
        return html(
            &RuleTestFragment {
                errors: problems,
                rows: vec![],
            },
            StatusCode::OK,
        );
    }
    match super::alerts_api::draft_rule(&app, m.org.id, &input).await {
        Ok(rule) => {
            let rows = alerting::test_rule(&app, &m.org, &rule, now_secs()).await?;
            html(
                &RuleTestFragment {
                    errors: vec![],
                    rows,
                },
                StatusCode::OK,
            )
        }
        Err(SaveError::Invalid(errors)) => html(
            &RuleTestFragment {
                errors,
                rows: vec![],
            },
            StatusCode::OK,
        ),
        Err(SaveError::Store(e)) => Err(e.into()),
    }
}

pub struct ChannelItem {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub target: String,
    pub secret: String,
    pub last_success: String,
    pub last_failure: String,
    pub last_error: String,
}

fn channel_item(m: &OrgMember, c: &ChannelRow) -> ChannelItem {
    let target = match c.kind.as_str() {
        "email" => format!(
            "{} via {}:{}",
            c.settings["to"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default(),
            c.settings["host"].as_str().unwrap_or(""),
            c.settings["port"]
        ),
        "webhook" => c.settings["url"].as_str().unwrap_or("").to_string(),
        _ => "Slack incoming webhook".into(),
    };
    ChannelItem {
        id: c.id,
        name: c.name.clone(),
        kind: c.kind.clone(),
        target,
        secret: mask_secret(&c.secret),
        last_success: c
            .last_success_at
            .map(|t| local_time(m, t))
            .unwrap_or_default(),
        last_failure: c
            .last_failure_at
            .map(|t| local_time(m, t))
            .unwrap_or_default(),
        last_error: c.last_error.clone(),
    }
}

pub struct DeliveryItem {
    pub created: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt: String,
    pub error: String,
    pub alert_id: Option<i64>,
}

#[derive(Template)]
#[template(path = "channels.html")]
pub struct ChannelsPage {
    pub nav: Nav,
    pub slug: String,
    pub channels: Vec<ChannelItem>,
    pub editing: Option<ChannelItem>,
    pub deliveries: Vec<DeliveryItem>,
    pub values: HashMap<String, String>,
    pub errors: HashMap<String, String>,
    pub can_manage: bool,
    pub notice: String,
}

impl ChannelsPage {
    pub fn v(&self, f: &str) -> &str {
        self.values.get(f).map(String::as_str).unwrap_or("")
    }
    pub fn e(&self, f: &str) -> &str {
        self.errors.get(f).map(String::as_str).unwrap_or("")
    }
}

fn channel_values(c: &ChannelRow) -> HashMap<String, String> {
    let mut v = HashMap::from([
        ("name".to_string(), c.name.clone()),
        ("kind".to_string(), c.kind.clone()),
    ]);
    for key in ["host", "security", "username", "from", "url"] {
        v.insert(
            key.into(),
            c.settings[key].as_str().unwrap_or("").to_string(),
        );
    }
    if let Some(p) = c.settings["port"].as_u64() {
        v.insert("port".into(), p.to_string());
    }
    if let Some(to) = c.settings["to"].as_array() {
        v.insert(
            "to".into(),
            to.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    v
}

async fn channels_page(
    app: &App,
    m: &OrgMember,
    editing: Option<i64>,
    values: Option<HashMap<String, String>>,
    errors: HashMap<String, String>,
    notice: String,
) -> Result<ChannelsPage, PageError> {
    let org_id = m.org.id;
    let rows = app.meta.call(move |c| channels::list(c, org_id)).await?;
    let (edit_row, deliveries): (Option<ChannelRow>, Vec<OutboxRow>) = match editing {
        Some(id) => {
            let (row, recent) = app
                .meta
                .call(move |c| {
                    Ok((
                        channels::get(c, org_id, id)?,
                        channels::recent(c, org_id, id, 20)?,
                    ))
                })
                .await
                .map_err(|e| not_found(e, "channel"))?;
            (Some(row), recent)
        }
        None => (None, vec![]),
    };
    let values = values.unwrap_or_else(|| {
        edit_row
            .as_ref()
            .map(channel_values)
            .unwrap_or_else(|| HashMap::from([("kind".into(), "webhook".into())]))
    });
    Ok(ChannelsPage {
        nav: nav(app, m, "channels").await?,
        slug: m.org.slug.clone(),
        channels: rows.iter().map(|c| channel_item(m, c)).collect(),
        editing: edit_row.as_ref().map(|c| channel_item(m, c)),
        deliveries: deliveries
            .iter()
            .map(|d| DeliveryItem {
                created: local_time(m, d.created_at),
                state: d.state.clone(),
                attempts: d.attempts,
                next_attempt: if d.state == "queued" {
                    local_time(m, d.next_attempt_at)
                } else {
                    String::new()
                },
                error: d.last_error.clone(),
                alert_id: d.alert_id,
            })
            .collect(),
        values,
        errors,
        can_manage: m.role.allows(Permission::ManageOrg),
        notice,
    })
}

/// `GET /o/{slug}/channels`.
pub async fn channels_list(State(app): State<App>, m: OrgMember) -> Result<Response, PageError> {
    html(
        &channels_page(&app, &m, None, None, HashMap::new(), String::new()).await?,
        StatusCode::OK,
    )
}

/// `GET /o/{slug}/channels/{id}`.
pub async fn channel_detail(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
) -> Result<Response, PageError> {
    html(
        &channels_page(&app, &m, Some(id), None, HashMap::new(), String::new()).await?,
        StatusCode::OK,
    )
}

fn channel_json_from_form(form: &FormData) -> Value {
    json!({
        "name": form.get("name"),
        "kind": form.get("kind"),
        "secret": form.get("secret"),
        "settings": {
            "host": form.get("host"), "port": form.get("port"), "security": form.get("security"),
            "username": form.get("username"), "from": form.get("from"), "to": form.get("to"),
            "url": form.get("url"),
        }
    })
}

async fn save_channel_from_form(
    app: &App,
    m: &OrgMember,
    id: Option<i64>,
    form: FormData,
) -> Result<Response, PageError> {
    m.check_csrf(form.get("csrf"))?;
    m.require(Permission::ManageOrg)?;
    match alerting::save_channel(app, m.org.id, id, channel_json_from_form(&form), &m.actor()).await
    {
        Ok((row, generated)) => {
            let notice = match generated {
                Some(s) => format!(
                    "Saved. Signing secret (shown once; receivers verify X-Vitals-Signature with it): {s}"
                ),
                None => "Saved.".into(),
            };
            html(
                &channels_page(app, m, Some(row.id), None, HashMap::new(), notice).await?,
                StatusCode::OK,
            )
        }
        Err(SaveError::Invalid(problems)) => {
            let mut values = form_values(&form);
            values.remove("secret");
            let page = channels_page(
                app,
                m,
                id,
                Some(values),
                problems_map(&problems),
                String::new(),
            )
            .await?;
            html(&page, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(SaveError::Store(e)) => Err(not_found(e, "channel")),
    }
}

/// `POST /o/{slug}/channels`.
pub async fn create_channel(
    State(app): State<App>,
    m: OrgMember,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    save_channel_from_form(&app, &m, None, FormData(form)).await
}

/// `POST /o/{slug}/channels/{id}`.
pub async fn update_channel(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    save_channel_from_form(&app, &m, Some(id), FormData(form)).await
}

/// `POST /o/{slug}/channels/{id}/delete`.
pub async fn delete_channel(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormData(form);
    m.check_csrf(form.get("csrf"))?;
    m.require(Permission::ManageOrg)?;
    alerting::delete_channel(&app, m.org.id, id, &m.actor())
        .await
        .map_err(|e| not_found(e, "channel"))?;
    Ok(Redirect::to(&format!("/o/{}/channels", m.org.slug)).into_response())
}

/// `POST /o/{slug}/channels/{id}/test`: sends a test message now and shows the outcome.
pub async fn test_channel(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormData(form);
    m.check_csrf(form.get("csrf"))?;
    m.require(Permission::WriteData)?;
    let org_id = m.org.id;
    let row = app
        .meta
        .call(move |c| channels::get(c, org_id, id))
        .await
        .map_err(|e| not_found(e, "channel"))?;
    let notice = match crate::notify::send_test(&app, &m.org, &row).await {
        Ok(()) => "Test message delivered.".to_string(),
        Err(StoreError::Conflict(reason)) => format!("Test message NOT delivered: {reason}"),
        Err(e) => return Err(e.into()),
    };
    html(
        &channels_page(&app, &m, Some(id), None, HashMap::new(), notice).await?,
        StatusCode::OK,
    )
}

pub struct SilenceItem {
    pub id: i64,
    pub matchers: String,
    pub ends: String,
    pub active: bool,
    pub comment: String,
    pub by: String,
}

pub struct MuteItem {
    pub id: i64,
    pub name: String,
    pub days: String,
    pub hours: String,
    pub matchers: String,
}

#[derive(Template)]
#[template(path = "silences.html")]
pub struct SilencesPage {
    pub nav: Nav,
    pub slug: String,
    pub time_zone: String,
    pub silences: Vec<SilenceItem>,
    pub windows: Vec<MuteItem>,
    pub values: HashMap<String, String>,
    pub errors: HashMap<String, String>,
    pub can_edit: bool,
}

impl SilencesPage {
    pub fn v(&self, f: &str) -> &str {
        self.values.get(f).map(String::as_str).unwrap_or("")
    }
    pub fn e(&self, f: &str) -> &str {
        self.errors.get(f).map(String::as_str).unwrap_or("")
    }
}

fn join_matchers(m: &[(String, String)]) -> String {
    if m.is_empty() {
        return "all alerts".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn silences_page(
    app: &App,
    m: &OrgMember,
    values: HashMap<String, String>,
    errors: HashMap<String, String>,
) -> Result<SilencesPage, PageError> {
    let org_id = m.org.id;
    let now = now_secs();
    let (silences, windows) = app
        .meta
        .call(move |c| {
            Ok((
                alerts::list_silences(c, org_id, now)?,
                alerts::list_mute_windows(c, org_id)?,
            ))
        })
        .await?;
    Ok(SilencesPage {
        nav: nav(app, m, "silences").await?,
        slug: m.org.slug.clone(),
        time_zone: m.org.time_zone.clone(),
        silences: silences
            .iter()
            .map(|s| SilenceItem {
                id: s.id,
                matchers: join_matchers(&s.matchers),
                ends: local_time(m, s.ends_at),
                active: s.ends_at > now,
                comment: s.comment.clone(),
                by: s.created_by.clone(),
            })
            .collect(),
        windows: windows
            .iter()
            .map(|w| MuteItem {
                id: w.id,
                name: w.name.clone(),
                days: w
                    .window
                    .days
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                hours: format!(
                    "{}–{}",
                    w.window.start.format("%H:%M"),
                    w.window.end.format("%H:%M")
                ),
                matchers: join_matchers(&w.matchers),
            })
            .collect(),
        values,
        errors,
        can_edit: m.role.allows(Permission::WriteData),
    })
}

/// `GET /o/{slug}/silences`.
pub async fn silences_list(State(app): State<App>, m: OrgMember) -> Result<Response, PageError> {
    html(
        &silences_page(&app, &m, HashMap::new(), HashMap::new()).await?,
        StatusCode::OK,
    )
}

/// `POST /o/{slug}/silences` (a silence) and `POST /o/{slug}/mute-windows` share the page.
pub async fn create_silence(
    State(app): State<App>,
    m: OrgMember,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormData(form);
    m.check_csrf(form.get("csrf"))?;
    m.require(Permission::WriteData)?;
    let result = alerting::create_silence(
        &app,
        m.org.id,
        form.get("matchers"),
        form.get("duration"),
        form.get("comment"),
        &m.actor(),
    )
    .await;
    silence_outcome(&app, &m, &form, result, "").await
}

pub async fn create_mute_window(
    State(app): State<App>,
    m: OrgMember,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormData(form);
    m.check_csrf(form.get("csrf"))?;
    m.require(Permission::WriteData)?;
    let result = alerting::create_mute_window(
        &app,
        m.org.id,
        form.get("mw_name"),
        form.get("mw_days"),
        form.get("mw_start"),
        form.get("mw_end"),
        form.get("mw_matchers"),
    )
    .await;
    silence_outcome(&app, &m, &form, result, "mw_").await
}

async fn silence_outcome(
    app: &App,
    m: &OrgMember,
    form: &FormData,
    result: Result<i64, SaveError>,
    prefix: &str,
) -> Result<Response, PageError> {
    match result {
        Ok(_) => Ok(Redirect::to(&format!("/o/{}/silences", m.org.slug)).into_response()),
        Err(SaveError::Invalid(problems)) => {
            let errors = problems
                .iter()
                .map(|p| (format!("{prefix}{}", p.field), p.message.clone()))
                .collect();
            let page = silences_page(app, m, form_values(form), errors).await?;
            html(&page, StatusCode::UNPROCESSABLE_ENTITY)
        }
        Err(SaveError::Store(e)) => Err(e.into()),
    }
}

/// `POST /o/{slug}/silences/{id}/expire`.
pub async fn expire_silence(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormData(form);
    m.check_csrf(form.get("csrf"))?;
    m.require(Permission::WriteData)?;
    let (org_id, now) = (m.org.id, now_secs());
    app.meta
        .call(move |c| alerts::expire_silence(c, org_id, id, now))
        .await
        .map_err(|e| not_found(e, "silence"))?;
    Ok(Redirect::to(&format!("/o/{}/silences", m.org.slug)).into_response())
}

/// `POST /o/{slug}/mute-windows/{id}/delete`.
pub async fn delete_mute_window(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormData(form);
    m.check_csrf(form.get("csrf"))?;
    m.require(Permission::WriteData)?;
    let org_id = m.org.id;
    app.meta
        .call(move |c| alerts::delete_mute_window(c, org_id, id))
        .await
        .map_err(|e| not_found(e, "mute window"))?;
    Ok(Redirect::to(&format!("/o/{}/silences", m.org.slug)).into_response())
}
