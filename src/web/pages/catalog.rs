//! The metric catalog and custom metrics.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{FormAction, Nav, nav, render, render_status};
use crate::app::App;
use crate::domain::catalog::{self, Category};
use crate::domain::roles::Permission;
use crate::services::query::{self};
use crate::store::StoreError;
use crate::store::meta::audit::{self};
use crate::store::meta::custom_metrics;
use crate::web::auth::OrgMember;
use crate::web::error::PageError;

pub struct CatalogRow {
    pub key: String,
    pub name: String,
    pub category: &'static str,
    pub unit: &'static str,
    pub aggregation: &'static str,
    pub direction: &'static str,
    pub latest: String,
    pub custom: bool,
}

#[derive(Template)]
#[template(path = "catalog.html")]
pub struct CatalogPage {
    pub nav: Nav,
    pub slug: String,
    pub rows: Vec<CatalogRow>,
    pub can_write: bool,
    pub categories: Vec<(&'static str, &'static str)>,
    pub units: Vec<&'static str>,
    pub aggregations: Vec<&'static str>,
    pub values: HashMap<&'static str, String>,
    pub errors: HashMap<&'static str, String>,
    pub notice: String,
}

async fn catalog_page(
    app: &App,
    m: &OrgMember,
    values: HashMap<&'static str, String>,
    errors: HashMap<&'static str, String>,
    notice: String,
) -> Result<CatalogPage, PageError> {
    let (defs, latest) = query::catalog_with_latest(app, m.org.id).await?;
    Ok(CatalogPage {
        nav: nav(app, m, "catalog").await?,
        slug: m.org.slug.clone(),
        rows: defs
            .iter()
            .map(|d| CatalogRow {
                key: d.key.clone(),
                name: d.name.clone(),
                category: d.category.title(),
                unit: d.unit.as_str(),
                aggregation: d.aggregation.as_str(),
                direction: if d.higher_is_better {
                    "higher is better"
                } else {
                    "lower is better"
                },
                latest: latest
                    .get(&d.key)
                    .map(|l| catalog::format_value(d.unit, l.value, &m.org.currency))
                    .unwrap_or_else(|| "no data".into()),
                custom: d.custom,
            })
            .collect(),
        can_write: m.role.allows(Permission::WriteData),
        categories: Category::ALL
            .iter()
            .map(|c| (c.as_str(), c.title()))
            .collect(),
        units: catalog::Unit::ALL.iter().map(|u| u.as_str()).collect(),
        aggregations: catalog::Aggregation::ALL
            .iter()
            .map(|a| a.as_str())
            .collect(),
        values,
        errors,
        notice,
    })
}

pub async fn catalog_list(State(app): State<App>, m: OrgMember) -> Result<Response, PageError> {
    render(&catalog_page(&app, &m, HashMap::new(), HashMap::new(), String::new()).await?)
}

pub async fn catalog_create(
    State(app): State<App>,
    m: OrgMember,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(&m, form, Permission::WriteData)?;
    let fields = [
        "key",
        "name",
        "description",
        "category",
        "unit",
        "aggregation",
        "direction",
    ];
    let values: HashMap<&'static str, String> = fields
        .iter()
        .map(|f| (*f, form.get(f).to_string()))
        .collect();
    let def = catalog::custom_metric(&catalog::CustomMetricInput {
        key: form.get("key"),
        name: form.get("name"),
        description: form.get("description"),
        category: form.get("category"),
        unit: form.get("unit"),
        aggregation: form.get("aggregation"),
        higher_is_better: form.get("direction") != "lower",
    });
    let def = match def {
        Ok(d) => d,
        Err((field, message)) => {
            let page = catalog_page(
                &app,
                &m,
                values,
                HashMap::from([(field, message)]),
                String::new(),
            )
            .await?;
            return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    let (org_id, actor, ip, stored) = (m.org.id, m.actor(), m.ip.clone(), def.clone());
    let created = app
        .meta
        .call(move |c| {
            custom_metrics::create(c, org_id, &stored)?;
            audit::record(c, Some(org_id), &actor, "metric.create", &stored.key, &ip)
        })
        .await;
    app.meta.catalog_changed(org_id);
    match created {
        Ok(()) => {
            let notice = format!(
                "Added `{}`. Push points for it to POST /api/v1/metrics.",
                def.key
            );
            render(&catalog_page(&app, &m, HashMap::new(), HashMap::new(), notice).await?)
        }
        Err(StoreError::Conflict(msg)) => {
            let page = catalog_page(
                &app,
                &m,
                values,
                HashMap::from([("key", msg)]),
                String::new(),
            )
            .await?;
            render_status(StatusCode::CONFLICT, &page)
        }
        Err(e) => Err(e.into()),
    }
}

impl CatalogPage {
    pub fn v(&self, field: &str) -> &str {
        self.values.get(field).map(String::as_str).unwrap_or("")
    }
    pub fn e(&self, field: &str) -> &str {
        self.errors.get(field).map(String::as_str).unwrap_or("")
    }
}
