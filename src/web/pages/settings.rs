//! Scoring settings: targets, weights, and recomputing history.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{FormAction, Nav, nav, render, render_status};
use crate::app::App;
use crate::domain::catalog::Category;
use crate::domain::roles::Permission;
use crate::services::Insights;
use crate::store::meta::audit::{self};
use crate::web::auth::OrgMember;
use crate::web::error::PageError;

pub struct TargetRow {
    pub key: String,
    pub name: String,
    pub category: &'static str,
    pub basis: &'static str,
    pub healthy: String,
    pub critical: String,
    pub weight: String,
}

#[derive(Template)]
#[template(path = "settings.html")]
pub struct SettingsPage {
    pub nav: Nav,
    pub slug: String,
    pub kinds: Vec<(&'static str, &'static str)>,
    pub kind: &'static str,
    pub weights: Vec<(&'static str, &'static str, String)>,
    pub targets: Vec<TargetRow>,
    pub errors: HashMap<String, String>,
    pub notice: String,
    pub monthly_revenue_target: String,
    pub currency: String,
}

impl SettingsPage {
    pub fn err(&self, field: &str) -> &str {
        self.errors.get(field).map(String::as_str).unwrap_or("")
    }
}

fn fmt_num(v: f64) -> String {
    let s = format!("{v}");
    s.trim_end_matches(".0").to_string()
}

async fn settings_page(
    app: &App,
    m: &OrgMember,
    settings: &crate::domain::health::HealthSettings,
    errors: HashMap<String, String>,
    notice: String,
) -> Result<SettingsPage, PageError> {
    use crate::domain::health::{Basis, BusinessKind};
    let org_id = m.org.id;
    let defs = app.meta.catalog(org_id).await?.to_vec();
    Ok(SettingsPage {
        nav: nav(app, m, "settings").await?,
        slug: m.org.slug.clone(),
        kinds: BusinessKind::ALL
            .iter()
            .map(|k| (k.as_str(), k.title()))
            .collect(),
        kind: settings.kind.as_str(),
        weights: Category::ALL
            .iter()
            .map(|c| {
                let w = settings
                    .weights
                    .iter()
                    .find(|(x, _)| x == c)
                    .map(|(_, w)| *w)
                    .unwrap_or(0.0);
                (c.as_str(), c.title(), fmt_num(w))
            })
            .collect(),
        targets: settings
            .targets()
            .into_iter()
            .map(|t| {
                let (basis, healthy, critical) = match t.basis {
                    Basis::Level { healthy, critical } => ("level", healthy, critical),
                    Basis::Trend { healthy, critical } => ("growth %", healthy, critical),
                };
                TargetRow {
                    name: defs
                        .iter()
                        .find(|d| d.key == t.key)
                        .map(|d| d.name.clone())
                        .unwrap_or_else(|| t.key.clone()),
                    key: t.key,
                    category: t.category.title(),
                    basis,
                    healthy: fmt_num(healthy),
                    critical: fmt_num(critical),
                    weight: fmt_num(t.weight),
                }
            })
            .collect(),
        errors,
        notice,
        monthly_revenue_target: settings
            .monthly_revenue_target
            .map(fmt_num)
            .unwrap_or_default(),
        currency: m.org.currency.clone(),
    })
}

pub async fn settings_form(State(app): State<App>, m: OrgMember) -> Result<Response, PageError> {
    m.require(Permission::ManageOrg)?;
    let org_id = m.org.id;
    let settings = app
        .meta
        .call(move |c| crate::store::meta::org_settings::health(c, org_id))
        .await?;
    render(&settings_page(&app, &m, &settings, HashMap::new(), String::new()).await?)
}

pub async fn settings_save(
    State(app): State<App>,
    State(insight_service): State<Insights>,
    m: OrgMember,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    use crate::domain::health::{BusinessKind, HealthSettings, TargetOverride};
    let form = FormAction::accept(&m, form, Permission::ManageOrg)?;
    let org_id = m.org.id;
    let current = app
        .meta
        .call(move |c| crate::store::meta::org_settings::health(c, org_id))
        .await?;
    let mut errors = HashMap::new();
    let kind = BusinessKind::parse(form.get("kind")).unwrap_or_else(|| {
        errors.insert(
            "kind".to_string(),
            "choose SaaS, e-commerce or services".to_string(),
        );
        current.kind
    });
    let mut number = |field: String| -> f64 {
        match form.get(&field).trim().parse::<f64>() {
            Ok(v) if v.is_finite() => v,
            _ => {
                errors.insert(field, "must be a number".into());
                0.0
            }
        }
    };
    let weights: Vec<(Category, f64)> = Category::ALL
        .iter()
        .map(|c| (*c, number(format!("weight.{}", c.as_str()))))
        .collect();
    // Switching the business kind starts from that kind's default targets.
    let overrides = if kind == current.kind {
        current
            .targets()
            .iter()
            .map(|t| TargetOverride {
                key: t.key.clone(),
                healthy: number(format!("{}.healthy", t.key)),
                critical: number(format!("{}.critical", t.key)),
                weight: number(format!("{}.weight", t.key)),
            })
            .collect()
    } else {
        Vec::new()
    };
    let monthly_revenue_target = match form.get("monthly_revenue_target").trim() {
        "" => None,
        raw => match raw.replace([',', ' '], "").parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 => Some(v),
            _ => {
                errors.insert(
                    "monthly_revenue_target".into(),
                    "must be a positive amount, or empty to compare with last month".into(),
                );
                None
            }
        },
    };
    let settings = HealthSettings {
        kind,
        weights,
        overrides,
        monthly_revenue_target,
    };
    if errors.is_empty()
        && let Err((field, message)) = settings.validate()
    {
        errors.insert(field, message);
    }
    if !errors.is_empty() {
        let page = settings_page(&app, &m, &settings, errors, String::new()).await?;
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    let (actor, ip, saved) = (m.actor(), m.ip.clone(), settings.clone());
    app.meta
        .call(move |c| {
            crate::store::meta::org_settings::set_health(c, org_id, &saved)?;
            audit::record(
                c,
                Some(org_id),
                &actor,
                "settings.health",
                saved.kind.as_str(),
                &ip,
            )
        })
        .await?;
    insight_service.forget_outlooks(org_id);
    let report = crate::services::scoring::recompute(&app, &m.org).await?;
    let notice = format!(
        "Saved. The score is now {}. Use “Recompute history” to apply the settings to past days.",
        report
            .overall
            .map(|o| format!("{o:.0}"))
            .unwrap_or_else(|| "not available (no data)".into())
    );
    render(&settings_page(&app, &m, &settings, HashMap::new(), notice).await?)
}

pub async fn settings_recompute_history(
    State(app): State<App>,
    m: OrgMember,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    FormAction::accept(&m, form, Permission::ManageOrg)?;
    let days = crate::services::scoring::backfill(&app, &m.org, 90).await?;
    crate::services::scoring::recompute(&app, &m.org).await?;
    let org_id = m.org.id;
    let settings = app
        .meta
        .call(move |c| crate::store::meta::org_settings::health(c, org_id))
        .await?;
    let notice =
        format!("Recomputed the daily scores of the last {days} days with the current settings.");
    render(&settings_page(&app, &m, &settings, HashMap::new(), notice).await?)
}
