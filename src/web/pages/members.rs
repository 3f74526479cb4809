//! Members and roles: add, change role, remove.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{FormAction, Nav, nav, render, render_status};
use crate::app::{self, App};
use crate::domain::roles::{Permission, Role};
use crate::security;
use crate::store::StoreError;
use crate::store::meta::invitations;
use crate::store::meta::orgs::{self, Member};
use crate::web::auth::OrgMember;
use crate::web::error::PageError;

pub struct MemberView {
    pub user_id: i64,
    pub email: String,
    pub name: String,
    pub role: &'static str,
    pub role_title: &'static str,
    pub editable: bool,
    pub is_me: bool,
}

#[derive(Template)]
#[template(path = "members.html")]
pub struct MembersPage {
    pub nav: Nav,
    pub slug: String,
    pub members: Vec<MemberView>,
    pub roles: Vec<(&'static str, &'static str)>,
    pub assignable: Vec<(&'static str, &'static str)>,
    pub errors: HashMap<&'static str, String>,
    pub values: HashMap<&'static str, String>,
    pub notice: String,
    pub pending: Vec<PendingView>,
    /// Just created: (email, role title, link), shown once.
    pub invite_link: Option<(String, &'static str, String)>,
}

pub struct PendingView {
    pub id: i64,
    pub email: String,
    pub role_title: &'static str,
    pub invited_by: String,
    pub expires: String,
}

async fn members_page(
    app: &App,
    m: &OrgMember,
    errors: HashMap<&'static str, String>,
    values: HashMap<&'static str, String>,
    notice: String,
) -> Result<MembersPage, PageError> {
    let org_id = m.org.id;
    let (members, pending): (Vec<Member>, _) = app
        .meta
        .call(move |c| Ok((orgs::members(c, org_id)?, invitations::pending(c, org_id)?)))
        .await?;
    let can_manage = m.role.allows(Permission::ManageMembers);
    Ok(MembersPage {
        nav: nav(app, m, "members").await?,
        slug: m.org.slug.clone(),
        members: members
            .iter()
            .map(|x| MemberView {
                user_id: x.user_id,
                email: x.email.clone(),
                name: x.name.clone(),
                role: x.role.as_str(),
                role_title: x.role.title(),
                editable: can_manage && m.role.can_assign(x.role) && x.user_id != m.user.id,
                is_me: x.user_id == m.user.id,
            })
            .collect(),
        roles: Role::ALL.iter().map(|r| (r.as_str(), r.title())).collect(),
        assignable: Role::ALL
            .iter()
            .filter(|r| m.role.can_assign(**r))
            .map(|r| (r.as_str(), r.title()))
            .collect(),
        errors,
        values,
        notice,
        pending: pending
            .into_iter()
            .map(|i| PendingView {
                id: i.id,
                email: i.email,
                role_title: i.role.title(),
                invited_by: i.invited_by.trim_start_matches("user:").to_string(),
                expires: super::alerts::local_time(m, i.expires_at),
            })
            .collect(),
        invite_link: None,
    })
}

pub async fn members_list(State(app): State<App>, m: OrgMember) -> Result<Response, PageError> {
    m.require(Permission::ManageMembers)?;
    render(&members_page(&app, &m, HashMap::new(), HashMap::new(), String::new()).await?)
}

/// `POST /o/{slug}/members`: invites an email address with a role. Nobody is added here: the
/// person with that address accepts the link (shown once) while signed in as themselves, or
/// creates their account through it.
pub async fn members_invite(
    State(app): State<App>,
    m: OrgMember,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(&m, form, Permission::ManageMembers)?;
    let values: HashMap<&'static str, String> = ["email", "role"]
        .iter()
        .map(|f| (*f, form.get(f).to_string()))
        .collect();
    let mut errors = HashMap::new();
    let email = app::validate_email(form.get("email"))
        .map_err(|(_, e)| errors.insert("email", e))
        .ok();
    let role = match Role::parse(form.get("role")) {
        Some(r) if m.role.can_assign(r) => Some(r),
        Some(_) => {
            errors.insert("role", "you cannot give this role".into());
            None
        }
        None => {
            errors.insert("role", "choose a role".into());
            None
        }
    };
    let (Some(email), Some(role), true) = (email, role, errors.is_empty()) else {
        return form.invalid(&members_page(&app, &m, errors, values, String::new()).await?);
    };
    let token = security::random_token();
    let token_hash = security::sha256_hex(&token);
    let ttl = app.config.auth.invitation_ttl_hours as i64 * 3600;
    let (em, inviter) = (email.clone(), m.actor());
    let result = form
        .record(&app, "member.invite", move |tx, org_id| {
            let already = orgs::members(tx, org_id)?
                .iter()
                .any(|x| x.email.eq_ignore_ascii_case(&em));
            if already {
                return Err(StoreError::Conflict("is already a member".into()));
            }
            invitations::create(tx, org_id, &em, role, &token_hash, &inviter, ttl)?;
            Ok(((), format!("{em} as {}", role.as_str())))
        })
        .await;
    match result {
        Ok(()) => {
            let link = format!("{}/invite/{token}", app.base_url());
            let mut page =
                members_page(&app, &m, HashMap::new(), HashMap::new(), String::new()).await?;
            page.invite_link = Some((email, role.title(), link));
            render(&page)
        }
        Err(StoreError::Conflict(msg)) => {
            let page = members_page(
                &app,
                &m,
                HashMap::from([("email", msg)]),
                values,
                String::new(),
            )
            .await?;
            render_status(StatusCode::CONFLICT, &page)
        }
        Err(e) => Err(e.into()),
    }
}

/// `POST /o/{slug}/invitations/{id}/revoke`: the link stops working.
pub async fn invitation_revoke(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(&m, form, Permission::ManageMembers)?;
    form.record(&app, "member.invite.revoke", move |c, org_id| {
        let revoked = invitations::revoke(c, org_id, id)?;
        Ok(((), revoked.email))
    })
    .await?;
    form.done("members")
}

pub async fn members_set_role(
    State(app): State<App>,
    m: OrgMember,
    Path((_, user_id)): Path<(String, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(&m, form, Permission::ManageMembers)?;
    let role = Role::parse(form.get("role")).ok_or_else(|| {
        PageError::BadRequest("role: choose one of owner, admin, manager, analyst, viewer".into())
    })?;
    let my_role = m.role;
    if user_id == m.user.id {
        return Err(PageError::BadRequest(
            "You cannot change your own role.".into(),
        ));
    }
    form.record(&app, "member.role", move |c, org_id| {
        let current = orgs::member_role(c, org_id, user_id)?;
        if !my_role.can_assign(current) || !my_role.can_assign(role) {
            return Err(StoreError::Conflict(
                "your role cannot make this change".into(),
            ));
        }
        orgs::set_role(c, org_id, user_id, role)?;
        Ok((
            (),
            format!("user {user_id}: {} -> {}", current.as_str(), role.as_str()),
        ))
    })
    .await?;
    form.done("members")
}

pub async fn members_remove(
    State(app): State<App>,
    m: OrgMember,
    Path((_, user_id)): Path<(String, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(&m, form, Permission::ManageMembers)?;
    let my_role = m.role;
    form.record(&app, "member.remove", move |c, org_id| {
        let current = orgs::member_role(c, org_id, user_id)?;
        if !my_role.can_assign(current) {
            return Err(StoreError::Conflict(
                "your role cannot remove this member".into(),
            ));
        }
        orgs::remove_member(c, org_id, user_id)?;
        Ok(((), format!("user {user_id}")))
    })
    .await?;
    form.done("members")
}
