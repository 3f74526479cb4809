//! The audit log.

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::keys::date;
use super::{Nav, nav, render};
use crate::app::App;
use crate::domain::roles::Permission;
use crate::store::meta::audit::{self, AuditEntry};
use crate::web::auth::OrgMember;
use crate::web::error::PageError;

pub struct AuditView {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub detail: String,
    pub ip: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
pub struct AuditPage {
    pub nav: Nav,
    pub entries: Vec<AuditView>,
}

pub async fn audit_log(State(app): State<App>, m: OrgMember) -> Result<Response, PageError> {
    m.require(Permission::ViewAudit)?;
    let org_id = m.org.id;
    let entries: Vec<AuditEntry> = app
        .meta
        .call(move |c| audit::recent(c, org_id, 500))
        .await?;
    render(&AuditPage {
        nav: nav(&app, &m, "audit").await?,
        entries: entries
            .into_iter()
            .map(|e| AuditView {
                at: date(Some(e.at)),
                actor: e.actor,
                action: e.action,
                detail: e.detail,
                ip: e.ip,
            })
            .collect(),
    })
}
