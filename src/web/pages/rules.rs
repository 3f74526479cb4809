//! Alert rule pages: the list, the editor with per-field messages, a dry run against history.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::{Value, json};

use super::alerts::{local_time, not_found};
use super::render_status;
use crate::app::App;
use crate::domain::alert_rules::{FieldProblem, RuleKind};
use crate::domain::alerts::{Severity, parse_matchers};
use crate::domain::catalog::{Aggregation, Category, MetricDef};
use crate::domain::roles::Permission;
use crate::services::alerting::{self, SaveError};
use crate::store::meta::alerts::{self, RuleRow};
use crate::store::meta::channels::{self};
use crate::store::now_secs;
use crate::web::auth::OrgMember;
use crate::web::error::PageError;
use crate::web::pages::{FormAction, FormData, Nav, nav};

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
    let catalog = app.meta.catalog(org_id).await?.to_vec();
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
    render_status(
        StatusCode::OK,
        &RulesPage {
            nav: nav(&app, &m, "alert-rules").await?,
            slug: m.org.slug.clone(),
            rules: items,
            can_edit: m.role.allows(Permission::WriteData),
        },
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

pub(crate) fn problems_map(problems: &[FieldProblem]) -> HashMap<String, String> {
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
    let catalog: Vec<MetricDef> = app.meta.catalog(org_id).await?.to_vec();
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
    render_status(StatusCode::OK, &page)
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
    render_status(StatusCode::OK, &page)
}

pub(crate) fn form_values(form: &FormData) -> HashMap<String, String> {
    let mut v = HashMap::new();
    for (k, val) in &form.0 {
        if k != "channels" && k != "escalation_channels" {
            v.insert(k.clone(), val.clone());
        }
    }
    v
}

pub(crate) fn chosen_ids(form: &FormData, name: &str) -> Vec<i64> {
    form.all(name)
        .into_iter()
        .filter_map(|v| v.parse().ok())
        .collect()
}

async fn save_rule_from_form(
    app: &App,
    m: &OrgMember,
    id: Option<i64>,
    fields: Vec<(String, String)>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(m, fields, Permission::WriteData)?;
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
            form.invalid(&page)
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
    save_rule_from_form(&app, &m, None, form).await
}

/// `POST /o/{slug}/alert-rules/{id}`.
pub async fn update_rule(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    save_rule_from_form(&app, &m, Some(id), form).await
}

/// `POST /o/{slug}/alert-rules/{id}/delete`.
pub async fn delete_rule(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(&m, form, Permission::WriteData)?;
    alerting::delete_rule(&app, m.org.id, id, &m.actor())
        .await
        .map_err(|e| not_found(e, "alert rule"))?;
    form.done("alert-rules")
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
        return render_status(
            StatusCode::OK,
            &RuleTestFragment {
                errors: problems,
                rows: vec![],
            },
        );
    }
    match crate::web::api::alerts::draft_rule(&app, m.org.id, &input).await {
        Ok(rule) => {
            let rows = alerting::test_rule(&app, &m.org, &rule, now_secs()).await?;
            render_status(
                StatusCode::OK,
                &RuleTestFragment {
                    errors: vec![],
                    rows,
                },
            )
        }
        Err(SaveError::Invalid(errors)) => render_status(
            StatusCode::OK,
            &RuleTestFragment {
                errors,
                rows: vec![],
            },
        ),
        Err(SaveError::Store(e)) => Err(e.into()),
    }
}
