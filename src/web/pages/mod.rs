//! Server-rendered pages (askama + htmx). Every page renders its data without JavaScript; htmx
//! swaps fragments for the range picker and live updates.

pub mod account;
pub mod alerts;
pub mod analytics;
pub mod audit;
pub mod catalog;
pub mod channels;
pub mod form;
pub mod health;
pub mod hooks;
pub mod import;
pub mod insights;
pub mod integrations;
pub mod invitations;
pub mod jobs;
pub mod keys;
pub mod members;
pub mod metric;
pub mod overview;
pub mod people;
pub mod rules;
pub mod session;
pub mod settings;
pub mod silences;

pub use form::{FormAction, FormData};

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::app::App;
use crate::domain::roles::Permission;
use crate::store::meta::orgs;
use crate::web::auth::OrgMember;
use crate::web::error::PageError;

pub(crate) fn render(t: &impl Template) -> Result<Response, PageError> {
    Ok(Html(t.render()?).into_response())
}

pub(crate) fn render_status(status: StatusCode, t: &impl Template) -> Result<Response, PageError> {
    Ok((status, Html(t.render()?)).into_response())
}

/// What the header needs to draw navigation for a member.
pub struct Nav {
    pub user_email: String,
    pub org_slug: String,
    pub org_name: String,
    pub orgs: Vec<(String, String)>,
    pub csrf: String,
    pub can_keys: bool,
    pub can_members: bool,
    pub can_audit: bool,
    pub is_server_admin: bool,
    pub active: &'static str,
}

pub(crate) async fn nav(app: &App, m: &OrgMember, active: &'static str) -> Result<Nav, PageError> {
    let user_id = m.user.id;
    let orgs = app.meta.read(move |c| orgs::for_user(c, user_id)).await?;
    Ok(Nav {
        user_email: m.user.email.clone(),
        org_slug: m.org.slug.clone(),
        org_name: m.org.name.clone(),
        orgs: orgs.into_iter().map(|(o, _)| (o.slug, o.name)).collect(),
        csrf: m.csrf.clone(),
        can_keys: m.role.allows(Permission::ManageApiKeys),
        can_members: m.role.allows(Permission::ManageMembers),
        can_audit: m.role.allows(Permission::ViewAudit),
        is_server_admin: m.user.is_server_admin,
        active,
    })
}
