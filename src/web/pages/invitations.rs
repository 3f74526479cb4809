//! Accepting an invitation to an org (`/invite/{token}`): only the invited address can, signed
//! in as itself, or by creating its account through the link. The link works once.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};

use super::session::{check_form_csrf, form_csrf, start_session, with_form_cookie};
use super::{FormData, render_status};
use crate::app::App;
use crate::security;
use crate::store::StoreError;
use crate::store::meta::invitations::{self, Invitation};
use crate::store::meta::orgs::{self, Org};
use crate::store::meta::{audit, users};
use crate::web::auth::CurrentUser;
use crate::web::error::PageError;

/// What the invitation page offers.
#[derive(PartialEq)]
pub enum Offer {
    /// Signed in as the invited address: one button.
    Join,
    /// Signed in as someone else.
    WrongUser(String),
    /// No account with that address yet: name and password.
    CreateAccount,
}

#[derive(Template)]
#[template(path = "invitation.html")]
pub struct InvitationPage {
    pub org_name: String,
    pub role_title: &'static str,
    pub email: String,
    pub offer: Offer,
    pub csrf: String,
    pub values: HashMap<&'static str, String>,
    pub errors: HashMap<&'static str, String>,
}

async fn pending(app: &App, token: &str) -> Result<(Invitation, Org), PageError> {
    let hash = security::sha256_hex(token);
    app.meta
        .call(move |c| {
            let invitation = invitations::by_token(c, &hash)?;
            let org = orgs::by_id(c, invitation.org_id)?;
            Ok((invitation, org))
        })
        .await
        .map_err(|e| match e {
            StoreError::NotFound => PageError::BadRequest(
                "This invitation link has been used, revoked or has expired. Ask for a new one."
                    .into(),
            ),
            other => other.into(),
        })
}

async fn account_exists(app: &App, email: &str) -> Result<bool, PageError> {
    let lookup = email.to_string();
    match app.meta.call(move |c| users::by_email(c, &lookup)).await {
        Ok(_) => Ok(true),
        Err(StoreError::NotFound) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

fn login_first(token: &str) -> Response {
    let next = crate::domain::url::urlencode(&format!("/invite/{token}"));
    Redirect::to(&format!("/login?next={next}")).into_response()
}

/// `GET /invite/{token}`.
pub async fn invitation_page(
    State(app): State<App>,
    Path(token): Path<String>,
    headers: HeaderMap,
    user: Result<CurrentUser, PageError>,
) -> Result<Response, PageError> {
    let (invitation, org) = pending(&app, &token).await?;
    let (offer, csrf, cookie) = match &user {
        Ok(u) if u.user.email.eq_ignore_ascii_case(&invitation.email) => {
            (Offer::Join, u.csrf.clone(), None)
        }
        Ok(u) => (Offer::WrongUser(u.user.email.clone()), u.csrf.clone(), None),
        Err(_) if account_exists(&app, &invitation.email).await? => {
            return Ok(login_first(&token));
        }
        Err(_) => {
            let (csrf, cookie) = form_csrf(&app, &headers);
            (Offer::CreateAccount, csrf, cookie)
        }
    };
    let status = match offer {
        Offer::WrongUser(_) => StatusCode::FORBIDDEN,
        _ => StatusCode::OK,
    };
    let page = render_status(
        status,
        &InvitationPage {
            org_name: org.name,
            role_title: invitation.role.title(),
            email: invitation.email,
            offer,
            csrf,
            values: HashMap::new(),
            errors: HashMap::new(),
        },
    )?;
    Ok(with_form_cookie(page, cookie))
}

/// `POST /invite/{token}`: joins the org, creating the account first when there is none.
pub async fn accept_invitation(
    State(app): State<App>,
    Path(token): Path<String>,
    headers: HeaderMap,
    user: Result<CurrentUser, PageError>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormData(form);
    let (invitation, org) = pending(&app, &token).await?;
    let destination = format!("/o/{}/", crate::domain::url::urlencode(&org.slug));
    if let Ok(u) = &user {
        u.check_csrf(form.get("csrf"))?;
        if !u.user.email.eq_ignore_ascii_case(&invitation.email) {
            return Err(PageError::Forbidden(format!(
                "This invitation is for {}; you are signed in as {}.",
                invitation.email, u.user.email
            )));
        }
        let (user_id, actor) = (u.user.id, format!("user:{}", u.user.email));
        app.meta
            .call(move |c| {
                let tx = c.transaction()?;
                join(&tx, &invitation, user_id, &actor)?;
                tx.commit()?;
                Ok(())
            })
            .await?;
        return Ok(Redirect::to(&destination).into_response());
    }
    check_form_csrf(&headers, &form)?;
    if account_exists(&app, &invitation.email).await? {
        return Ok(login_first(&token));
    }
    let name = form.get("name").trim().to_string();
    let password = form.get("password").to_string();
    let mut errors = HashMap::new();
    if name.is_empty() || name.chars().count() > 100 {
        errors.insert("name", "must be 1 to 100 characters".into());
    }
    if let Err(m) = security::validate_password(&password) {
        errors.insert("password", m);
    }
    if !errors.is_empty() {
        return render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &InvitationPage {
                org_name: org.name,
                role_title: invitation.role.title(),
                email: invitation.email,
                offer: Offer::CreateAccount,
                csrf: form.get("csrf").to_string(),
                values: HashMap::from([("name", name)]),
                errors,
            },
        );
    }
    let hash = app
        .password_work(move || security::hash_password(&password))
        .await?
        .map_err(|_| PageError::Internal)?;
    let user = app
        .meta
        .call(move |c| {
            let tx = c.transaction()?;
            let user = users::create(&tx, &invitation.email, &name, &hash, false)?;
            join(&tx, &invitation, user.id, &format!("user:{}", user.email))?;
            tx.commit()?;
            Ok(user)
        })
        .await?;
    start_session(&app, user.id, &destination).await
}

/// Uses the invitation and adds the membership, with its audit entry, inside the caller's
/// transaction.
fn join(
    tx: &rusqlite::Transaction<'_>,
    invitation: &Invitation,
    user_id: i64,
    actor: &str,
) -> Result<(), StoreError> {
    invitations::mark_accepted(tx, invitation.id)?;
    orgs::add_member(tx, invitation.org_id, user_id, invitation.role)?;
    let detail = format!(
        "{} as {} (invited by {})",
        invitation.email,
        invitation.role.as_str(),
        invitation.invited_by
    );
    audit::record(
        tx,
        Some(invitation.org_id),
        actor,
        "member.join",
        &detail,
        "",
    )?;
    Ok(())
}
