//! The Integrations page: connect Stripe (key tried before it is stored, then sealed), each
//! integration's status ("reconnect needed" when the key is refused or unreadable), Sync now, the
//! webhook URL to give Stripe, the sync history, and disconnect. While a sync runs the page
//! refreshes itself (htmx polling), so a long backfill shows its progress.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use chrono::TimeZone;

use super::auth::OrgMember;
use super::error::PageError;
use super::integrations_api::connect;
use super::pages::{FormData, Nav, nav};
use crate::app::App;
use crate::domain::roles::Permission;
use crate::query;
use crate::store::meta::{audit, integrations as store};

#[derive(Template)]
#[template(path = "integrations.html")]
pub struct IntegrationsPage {
    pub nav: Nav,
    pub items: Vec<IntegrationView>,
    pub error: String,
    pub error_field: String,
    pub name: String,
    pub any_syncing: bool,
}

pub struct IntegrationView {
    pub id: i64,
    pub name: String,
    pub provider: String,
    pub status: String,
    pub last_error: String,
    pub last_sync: String,
    pub syncing: bool,
    pub webhook_url: String,
    pub runs: Vec<(String, String, i64, String, String)>,
}

async fn page(
    app: &App,
    m: &OrgMember,
    error: String,
    error_field: String,
    name: String,
) -> Result<IntegrationsPage, PageError> {
    let org_id = m.org.id;
    let list = app.meta.call(move |c| store::list(c, org_id)).await?;
    let tz = query::org_tz(&m.org);
    let when = |t: Option<i64>| {
        t.and_then(|t| tz.timestamp_opt(t, 0).single())
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|| "–".into())
    };
    let mut items = Vec::new();
    for i in list {
        let id = i.id;
        let runs = app.meta.call(move |c| store::runs(c, id, 10)).await?;
        let syncing = app.syncing.lock().map(|s| s.contains(&id)).unwrap_or(false);
        items.push(IntegrationView {
            id,
            name: i.name,
            provider: i.provider,
            status: if syncing { "syncing".into() } else { i.status },
            last_error: i.last_error,
            last_sync: when(i.last_sync_at),
            syncing,
            webhook_url: format!("{}/hooks/stripe/{id}", app.base_url()),
            runs: runs
                .into_iter()
                .map(|r| {
                    (
                        when(Some(r.started_at)),
                        when(r.finished_at),
                        r.rows,
                        r.outcome,
                        r.message,
                    )
                })
                .collect(),
        });
    }
    Ok(IntegrationsPage {
        any_syncing: items.iter().any(|i| i.syncing),
        nav: nav(app, m, "integrations").await?,
        items,
        error,
        error_field,
        name,
    })
}

fn html(status: StatusCode, p: &IntegrationsPage) -> Result<Response, PageError> {
    Ok((status, Html(p.render()?)).into_response())
}

/// `GET /o/{slug}/integrations`.
pub async fn list(State(app): State<App>, m: OrgMember) -> Result<Response, PageError> {
    m.require(Permission::ManageOrg)?;
    html(
        StatusCode::OK,
        &page(&app, &m, String::new(), String::new(), String::new()).await?,
    )
}

/// `POST /o/{slug}/integrations`: connect.
pub async fn create(
    State(app): State<App>,
    m: OrgMember,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormData(form);
    m.check_csrf(form.get("csrf"))?;
    m.require(Permission::ManageOrg)?;
    let result = connect(
        &app,
        m.org.id,
        &m.actor(),
        "stripe",
        form.get("name"),
        form.get("api_key"),
        form.get("webhook_secret"),
    )
    .await;
    match result {
        Ok(integration) => {
            crate::integrations::sync_soon(&app, integration);
            Ok(Redirect::to(&format!("/o/{}/integrations", m.org.slug)).into_response())
        }
        Err(e) => {
            let p = page(
                &app,
                &m,
                e.message.clone(),
                e.field.clone().unwrap_or_default(),
                form.get("name").to_string(),
            )
            .await?;
            let status = if e.status.is_client_error() {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                e.status
            };
            html(status, &p)
        }
    }
}

/// `POST /o/{slug}/integrations/{id}/sync`.
pub async fn sync_now(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    m.check_csrf(FormData(form).get("csrf"))?;
    m.require(Permission::ManageOrg)?;
    let org_id = m.org.id;
    let integration = app.meta.call(move |c| store::get(c, org_id, id)).await?;
    crate::integrations::sync_soon(&app, integration);
    Ok(Redirect::to(&format!("/o/{}/integrations", m.org.slug)).into_response())
}

/// `POST /o/{slug}/integrations/{id}/delete`.
pub async fn delete(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    m.check_csrf(FormData(form).get("csrf"))?;
    m.require(Permission::ManageOrg)?;
    let (org_id, actor, ip) = (m.org.id, m.actor(), m.ip.clone());
    app.meta
        .call(move |c| {
            store::delete(c, org_id, id)?;
            audit::record(
                c,
                Some(org_id),
                &actor,
                "integration.delete",
                &id.to_string(),
                &ip,
            )
        })
        .await?;
    Ok(Redirect::to(&format!("/o/{}/integrations", m.org.slug)).into_response())
}
