//! The Webhooks page: secret URLs that accept metric points for this org (Zapier, Make, a
//! script), created (the URL is shown once), listed with their last use, and revoked.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use chrono::TimeZone;

use crate::app::App;
use crate::domain::roles::Permission;
use crate::services::query;
use crate::store::meta::inbound_hooks;
use crate::web::auth::OrgMember;
use crate::web::error::PageError;
use crate::web::pages::{FormAction, Nav, nav, render_status};

#[derive(Template)]
#[template(path = "hooks.html")]
pub struct HooksPage {
    pub nav: Nav,
    pub hooks: Vec<HookRow>,
    /// The new URL, shown once.
    pub new_url: String,
    pub error: String,
    pub base_url: String,
}

pub struct HookRow {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub created: String,
    pub last_used: String,
    pub revoked: bool,
}

async fn page(
    app: &App,
    m: &OrgMember,
    new_url: String,
    error: String,
) -> Result<HooksPage, PageError> {
    let org_id = m.org.id;
    let hooks = app
        .meta
        .call(move |c| inbound_hooks::list(c, org_id))
        .await?;
    let tz = query::org_tz(&m.org);
    let when = |t: Option<i64>| {
        t.and_then(|t| tz.timestamp_opt(t, 0).single())
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|| "never".into())
    };
    Ok(HooksPage {
        nav: nav(app, m, "hooks").await?,
        hooks: hooks
            .into_iter()
            .map(|h| HookRow {
                id: h.id,
                name: h.name,
                prefix: h.prefix,
                created: when(Some(h.created_at)),
                last_used: when(h.last_used_at),
                revoked: h.revoked_at.is_some(),
            })
            .collect(),
        new_url,
        error,
        base_url: app.base_url(),
    })
}

/// `GET /o/{slug}/hooks`.
pub async fn hooks_list(State(app): State<App>, m: OrgMember) -> Result<Response, PageError> {
    m.require(Permission::ManageApiKeys)?;
    render_status(
        StatusCode::OK,
        &page(&app, &m, String::new(), String::new()).await?,
    )
}

/// `POST /o/{slug}/hooks`: creates a hook and shows its URL once.
pub async fn hooks_create(
    State(app): State<App>,
    m: OrgMember,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(&m, form, Permission::ManageApiKeys)?;
    let name = form.get("name").trim().to_string();
    if name.is_empty() || name.chars().count() > 100 {
        let error = "Name must be 1 to 100 characters.".to_string();
        return form.invalid(&page(&app, &m, String::new(), error).await?);
    }
    let token = format!("wh_{}", crate::security::random_token());
    let prefix: String = token.chars().take(11).collect();
    let hash = crate::security::sha256_hex(&token);
    form.record(&app, "hook.create", move |c, org_id| {
        inbound_hooks::create(c, org_id, &name, &prefix, &hash)?;
        Ok(((), format!("{name} ({prefix})")))
    })
    .await?;
    let url = format!("{}/hooks/{token}", app.base_url());
    render_status(StatusCode::OK, &page(&app, &m, url, String::new()).await?)
}

/// `POST /o/{slug}/hooks/{id}/revoke`.
pub async fn hooks_revoke(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(&m, form, Permission::ManageApiKeys)?;
    form.record(&app, "hook.revoke", move |c, org_id| {
        inbound_hooks::revoke(c, org_id, id)?;
        Ok(((), id.to_string()))
    })
    .await?;
    form.done("hooks")
}
