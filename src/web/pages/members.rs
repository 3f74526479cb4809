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
use crate::store::meta::orgs::{self, Member};
use crate::store::meta::users;
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
}

async fn members_page(
    app: &App,
    m: &OrgMember,
    errors: HashMap<&'static str, String>,
    values: HashMap<&'static str, String>,
    notice: String,
) -> Result<MembersPage, PageError> {
    let org_id = m.org.id;
    let members: Vec<Member> = app.meta.call(move |c| orgs::members(c, org_id)).await?;
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
    })
}

pub async fn members_list(State(app): State<App>, m: OrgMember) -> Result<Response, PageError> {
    m.require(Permission::ManageMembers)?;
    render(&members_page(&app, &m, HashMap::new(), HashMap::new(), String::new()).await?)
}

pub async fn members_add(
    State(app): State<App>,
    m: OrgMember,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(&m, form, Permission::ManageMembers)?;
    let values: HashMap<&'static str, String> = ["email", "name", "role"]
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
    let name = form.get("name").trim().to_string();
    let password = form.get("password").to_string();
    let (Some(email), Some(role), true) = (email, role, errors.is_empty()) else {
        return form.invalid(&members_page(&app, &m, errors, values, String::new()).await?);
    };
    let lookup = email.clone();
    let existing = match app.meta.call(move |c| users::by_email(c, &lookup)).await {
        Ok(u) => Some(u),
        Err(StoreError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    let hash = if existing.is_none() {
        if name.is_empty() || name.chars().count() > 100 {
            errors.insert(
                "name",
                "a new user needs a name (1 to 100 characters)".into(),
            );
        }
        if let Err(e) = security::validate_password(&password) {
            errors.insert(
                "password",
                format!("a new user needs an initial password that {e}"),
            );
        }
        if !errors.is_empty() {
            return form.invalid(&members_page(&app, &m, errors, values, String::new()).await?);
        }
        Some(
            app.password_work(move || security::hash_password(&password))
                .await?
                .map_err(|_| PageError::Internal)?,
        )
    } else {
        None
    };
    let em = email.clone();
    let result = form
        .record(&app, "member.add", move |tx, org_id| {
            let user = match (&existing, &hash) {
                (Some(u), _) => u.clone(),
                (None, Some(h)) => users::create(tx, &em, &name, h, false)?,
                (None, None) => return Err(StoreError::internal("no password hash")),
            };
            orgs::add_member(tx, org_id, user.id, role)?;
            Ok(((), format!("{} as {}", user.email, role.as_str())))
        })
        .await;
    match result {
        Ok(()) => render(
            &members_page(
                &app,
                &m,
                HashMap::new(),
                HashMap::new(),
                format!("{email} was added as {}.", role.title()),
            )
            .await?,
        ),
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
