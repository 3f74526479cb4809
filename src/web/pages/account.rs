//! The signed-in user's own account: changing the password, which ends every other session.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::Response;

use super::{FormData, render_status};
use crate::app::App;
use crate::security;
use crate::store::meta::orgs;
use crate::store::meta::{audit, users};
use crate::web::auth::CurrentUser;
use crate::web::error::PageError;

#[derive(Template)]
#[template(path = "account.html")]
pub struct AccountPage {
    pub csrf: String,
    pub email: String,
    pub errors: HashMap<&'static str, String>,
    pub notice: String,
}

impl AccountPage {
    fn e(&self, field: &str) -> &str {
        self.errors.get(field).map(String::as_str).unwrap_or("")
    }
}

fn page(user: &CurrentUser, errors: HashMap<&'static str, String>, notice: String) -> AccountPage {
    AccountPage {
        csrf: user.csrf.clone(),
        email: user.user.email.clone(),
        errors,
        notice,
    }
}

/// `GET /account`.
pub async fn account_page(user: CurrentUser) -> Result<Response, PageError> {
    render_status(StatusCode::OK, &page(&user, HashMap::new(), String::new()))
}

/// `POST /account/password`: the current password, then the new one twice. Wrong current
/// passwords count against the same throttle as logins, so this form cannot be used to guess.
pub async fn change_password(
    State(app): State<App>,
    user: CurrentUser,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormData(form);
    user.check_csrf(form.get("csrf"))?;
    let mut errors = HashMap::new();
    let new = form.get("new_password").to_string();
    if let Err(m) = security::validate_password(&new) {
        errors.insert("new_password", format!("New password {m}"));
    } else if form.get("confirm_password") != new {
        errors.insert("confirm_password", "The two new passwords differ.".into());
    }
    if !errors.is_empty() {
        return render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &page(&user, errors, String::new()),
        );
    }
    let keys = vec![format!("user:{}", user.user.email.to_lowercase())];
    let now = std::time::Instant::now();
    app.throttle
        .lock()
        .map_err(|_| PageError::Internal)?
        .begin_attempt(&keys, now)
        .map_err(|wait| PageError::TooManyRequests(wait.as_secs().max(1)))?;
    let email = user.user.email.clone();
    let (_, stored) = app
        .meta
        .call(move |c| users::credentials(c, &email))
        .await?;
    let current = form.get("current_password").to_string();
    let matches = app
        .password_work(move || security::verify_password(&current, &stored))
        .await?;
    if !matches {
        errors.insert("current_password", "The current password is wrong.".into());
        return render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &page(&user, errors, String::new()),
        );
    }
    if let Ok(mut t) = app.throttle.lock() {
        t.attempt_succeeded(&keys, &keys[0], now);
    }
    let hash = app
        .password_work(move || security::hash_password(&new))
        .await?
        .map_err(|_| PageError::Internal)?;
    let (user_id, keep) = (user.user.id, user.token_hash.clone());
    let actor = format!("user:{}", user.user.email);
    let ended = app
        .meta
        .call(move |c| {
            let tx = c.transaction()?;
            let ended = users::set_password(&tx, user_id, &hash, Some(&keep))?;
            for (org, _) in orgs::for_user(&tx, user_id)? {
                let detail = format!("{ended} other session(s) ended");
                audit::record(&tx, Some(org.id), &actor, "password.changed", &detail, "")?;
            }
            tx.commit()?;
            Ok(ended)
        })
        .await?;
    let notice = match ended {
        0 => "Password changed.".to_string(),
        n => format!("Password changed; {n} other session(s) signed out."),
    };
    render_status(StatusCode::OK, &page(&user, HashMap::new(), notice))
}
