//! First-run setup, sign-in and sign-out, the home redirect, new organisations.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::{FormData, render, render_status};
use crate::app::{self, App, NewOrg};
use crate::domain::roles::Role;
use crate::security;
use crate::store::StoreError;
use crate::store::meta::audit::{self};
use crate::store::meta::orgs::{self};
use crate::store::meta::{sessions, users};
use crate::web::auth::{ClientIp, CurrentUser, SESSION_COOKIE, cookie_value};
use crate::web::error::PageError;

/// `; Secure` behind https (`server.public_url`), for every cookie this server sets.
fn secure_attr(app: &App) -> &'static str {
    if app.config.secure_cookies() {
        "; Secure"
    } else {
        ""
    }
}

fn session_cookie(app: &App, token: &str, max_age_secs: i64) -> HeaderValue {
    let secure = secure_attr(app);
    let value = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
    );
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Starts a session and redirects; used by setup and login.
pub(crate) async fn start_session(
    app: &App,
    user_id: i64,
    to: &str,
) -> Result<Response, PageError> {
    let token = security::random_token();
    let hash = security::sha256_hex(&token);
    let csrf = security::random_token();
    let ttl = app.config.auth.session_ttl_hours as i64 * 3600;
    app.meta
        .call(move |c| sessions::create(c, &hash, user_id, &csrf, ttl))
        .await?;
    let mut response = Redirect::to(to).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie(app, &token, ttl));
    Ok(response)
}

/// The login and setup forms are posted before any session exists, so their CSRF token is a
/// double-submit pair: a random value in a `SameSite=Strict` cookie and the same value in the
/// form. A cross-site post carries neither the cookie nor a way to read it.
const FORM_CSRF_COOKIE: &str = "vitals_form_csrf";

/// The pre-session token for a form page, and the cookie to set when the browser has none.
pub(crate) fn form_csrf(app: &App, headers: &HeaderMap) -> (String, Option<HeaderValue>) {
    if let Some(token) = cookie_value(headers, FORM_CSRF_COOKIE).filter(|t| t.len() == 43) {
        return (token, None);
    }
    let token = security::random_token();
    let secure = secure_attr(app);
    let cookie = format!("{FORM_CSRF_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}");
    (token.clone(), HeaderValue::from_str(&cookie).ok())
}

pub(crate) fn check_form_csrf(headers: &HeaderMap, form: &FormData) -> Result<(), PageError> {
    let cookie = cookie_value(headers, FORM_CSRF_COOKIE).unwrap_or_default();
    if !cookie.is_empty() && security::constant_time_eq(&cookie, form.get("csrf")) {
        Ok(())
    } else {
        Err(PageError::Forbidden(
            "The form has expired or came from another site. Reload the page and try again.".into(),
        ))
    }
}

/// A form page with its CSRF cookie set when new.
pub(crate) fn with_form_cookie(mut response: Response, cookie: Option<HeaderValue>) -> Response {
    if let Some(c) = cookie {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    response
}

/// Only a clean same-site path may be a login's destination; anything else goes home.
fn safe_next(next: &str) -> &str {
    crate::domain::url::same_site_path(next).unwrap_or("/")
}
// Setup, login, logout, home.

pub async fn home(
    State(app): State<App>,
    user: Result<CurrentUser, PageError>,
) -> Result<Response, PageError> {
    if app.meta.call(|c| users::count(c)).await? == 0 {
        return Ok(Redirect::to("/setup").into_response());
    }
    let user = user?;
    let user_id = user.user.id;
    let orgs = app.meta.call(move |c| orgs::for_user(c, user_id)).await?;
    match orgs.first() {
        Some((org, _)) => Ok(Redirect::to(&format!("/o/{}/", org.slug)).into_response()),
        None if user.user.is_server_admin => Ok(Redirect::to("/orgs/new").into_response()),
        None => Err(PageError::Forbidden(
            "You are not a member of any organisation yet. Ask an admin to add you.".into(),
        )),
    }
}

#[derive(Template, Default)]
#[template(path = "setup.html")]
pub struct SetupPage {
    pub csrf: String,
    pub values: HashMap<&'static str, String>,
    pub errors: HashMap<&'static str, String>,
    pub zones: Vec<&'static str>,
}

fn zones() -> Vec<&'static str> {
    chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()).collect()
}

pub async fn setup_form(State(app): State<App>, headers: HeaderMap) -> Result<Response, PageError> {
    if app.meta.call(|c| users::count(c)).await? > 0 {
        return Ok(Redirect::to("/login").into_response());
    }
    let mut values = HashMap::new();
    values.insert("time_zone", "UTC".to_string());
    values.insert("currency", "USD".to_string());
    let (csrf, cookie) = form_csrf(&app, &headers);
    let page = render(&SetupPage {
        csrf,
        values,
        zones: zones(),
        ..Default::default()
    })?;
    Ok(with_form_cookie(page, cookie))
}

pub async fn setup_submit(
    State(app): State<App>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormData(form);
    if app.meta.call(|c| users::count(c)).await? > 0 {
        return Err(PageError::Forbidden(
            "Setup is already done. Log in instead.".into(),
        ));
    }
    check_form_csrf(&headers, &form)?;
    let fields = [
        "org_name",
        "time_zone",
        "currency",
        "name",
        "email",
        "password",
    ];
    let values: HashMap<&'static str, String> = fields
        .iter()
        .map(|f| (*f, form.get(f).to_string()))
        .filter(|(k, _)| *k != "password")
        .collect();
    let mut errors = HashMap::new();
    let org = match NewOrg::validate(
        form.get("org_name"),
        "",
        form.get("time_zone"),
        form.get("currency"),
    ) {
        Ok(o) => Some(o),
        Err((field, m)) => {
            errors.insert(
                if field == "name" || field == "slug" {
                    "org_name"
                } else {
                    field
                },
                m,
            );
            None
        }
    };
    let email = app::validate_email(form.get("email"))
        .map_err(|(_, m)| errors.insert("email", m))
        .ok();
    let name = form.get("name").trim().to_string();
    if name.is_empty() || name.chars().count() > 100 {
        errors.insert("name", "must be 1 to 100 characters".into());
    }
    if let Err(m) = security::validate_password(form.get("password")) {
        errors.insert("password", m);
    }
    let (Some(org), Some(email), true) = (org, email, errors.is_empty()) else {
        return render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &SetupPage {
                csrf: form.get("csrf").to_string(),
                values,
                errors,
                zones: zones(),
            },
        );
    };
    let password = form.get("password").to_string();
    let hash = app
        .password_work(move || security::hash_password(&password))
        .await?
        .map_err(|_| PageError::Internal)?;
    let (org, user) = app
        .meta
        .call(move |c| {
            if users::count(c)? > 0 {
                return Err(StoreError::Conflict("setup is already done".into()));
            }
            app::create_org_with_owner(c, &org, &email, &name, &hash, true)
        })
        .await?;
    tracing::info!(org = %org.slug, user = %user.email, "setup complete");
    start_session(&app, user.id, &format!("/o/{}/", org.slug)).await
}

#[derive(Template, Default)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub csrf: String,
    pub email: String,
    pub next: String,
    pub error: String,
}

#[derive(serde::Deserialize)]
pub struct NextParam {
    #[serde(default)]
    next: String,
}

pub async fn login_form(
    State(app): State<App>,
    headers: HeaderMap,
    Query(q): Query<NextParam>,
) -> Result<Response, PageError> {
    if app.meta.call(|c| users::count(c)).await? == 0 {
        return Ok(Redirect::to("/setup").into_response());
    }
    let (csrf, cookie) = form_csrf(&app, &headers);
    let page = render(&LoginPage {
        csrf,
        next: q.next,
        ..Default::default()
    })?;
    Ok(with_form_cookie(page, cookie))
}

pub async fn login_submit(
    State(app): State<App>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormData(form);
    check_form_csrf(&headers, &form)?;
    let email = form.get("email").trim().to_string();
    let next = safe_next(form.get("next")).to_string();
    let keys = vec![format!("user:{}", email.to_lowercase()), format!("ip:{ip}")];
    let now = std::time::Instant::now();
    // Counted before the (slow) password check, so parallel guesses cannot all get through.
    app.throttle
        .lock()
        .map_err(|_| PageError::Internal)?
        .begin_attempt(&keys, now)
        .map_err(|wait| PageError::TooManyRequests(wait.as_secs().max(1)))?;
    let lookup = email.clone();
    let found = match app.meta.call(move |c| users::credentials(c, &lookup)).await {
        Ok(f) => Some(f),
        Err(StoreError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    let password = form.get("password").to_string();
    let stored = found.as_ref().map(|(_, h)| h.clone());
    let ok = app
        .password_work(move || match stored {
            Some(h) => security::verify_password(&password, &h),
            None => {
                // Same cost as a real check, so timing does not reveal which emails exist.
                security::verify_password(&password, security::dummy_hash());
                false
            }
        })
        .await?;
    match (ok, found) {
        (true, Some((user, _))) => {
            if let Ok(mut t) = app.throttle.lock() {
                t.attempt_succeeded(&keys, &keys[0], now);
            }
            let (uid, actor) = (user.id, format!("user:{}", user.email));
            let ip2 = ip.clone();
            app.meta
                .call(move |c| {
                    for (org, _) in orgs::for_user(c, uid)? {
                        audit::record(c, Some(org.id), &actor, "login", "", &ip2)?;
                    }
                    Ok(())
                })
                .await?;
            start_session(&app, user.id, &next).await
        }
        (_, found) => {
            // The attempt was counted as a failure when it began.
            if let Some((user, _)) = found {
                let (uid, actor) = (user.id, format!("user:{}", user.email));
                app.meta
                    .call(move |c| {
                        for (org, _) in orgs::for_user(c, uid)? {
                            audit::record(
                                c,
                                Some(org.id),
                                &actor,
                                "login.failed",
                                "wrong password",
                                &ip,
                            )?;
                        }
                        Ok(())
                    })
                    .await?;
            }
            render_status(
                StatusCode::UNAUTHORIZED,
                &LoginPage {
                    csrf: form.get("csrf").to_string(),
                    email,
                    next,
                    error: "The email or password is wrong.".into(),
                },
            )
        }
    }
}

pub async fn logout(
    State(app): State<App>,
    user: CurrentUser,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    user.check_csrf(FormData(form).get("csrf"))?;
    let hash = user.token_hash.clone();
    app.meta.call(move |c| sessions::delete(c, &hash)).await?;
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&app, "", 0));
    Ok(response)
}

#[derive(Template)]
#[template(path = "new_org.html")]
pub struct NewOrgPage {
    pub csrf: String,
    pub values: HashMap<&'static str, String>,
    pub errors: HashMap<&'static str, String>,
    pub zones: Vec<&'static str>,
}

pub async fn new_org_form(user: CurrentUser) -> Result<Response, PageError> {
    if !user.user.is_server_admin {
        return Err(PageError::Forbidden(
            "Only a server admin can create organisations.".into(),
        ));
    }
    let mut values = HashMap::new();
    values.insert("time_zone", "UTC".to_string());
    values.insert("currency", "USD".to_string());
    render(&NewOrgPage {
        csrf: user.csrf,
        values,
        errors: HashMap::new(),
        zones: zones(),
    })
}

pub async fn new_org_submit(
    State(app): State<App>,
    user: CurrentUser,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormData(form);
    user.check_csrf(form.get("csrf"))?;
    if !user.user.is_server_admin {
        return Err(PageError::Forbidden(
            "Only a server admin can create organisations.".into(),
        ));
    }
    let values: HashMap<&'static str, String> = ["name", "slug", "time_zone", "currency"]
        .iter()
        .map(|f| (*f, form.get(f).to_string()))
        .collect();
    let org = match NewOrg::validate(
        form.get("name"),
        form.get("slug"),
        form.get("time_zone"),
        form.get("currency"),
    ) {
        Ok(o) => o,
        Err((field, m)) => {
            let errors = HashMap::from([(field, m)]);
            return render_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                &NewOrgPage {
                    csrf: user.csrf,
                    values,
                    errors,
                    zones: zones(),
                },
            );
        }
    };
    let (email, user_id) = (user.user.email.clone(), user.user.id);
    let created = app
        .meta
        .call(move |c| {
            let tx = c.transaction()?;
            let o = orgs::create(&tx, &org.slug, &org.name, &org.time_zone, &org.currency)?;
            orgs::add_member(&tx, o.id, user_id, Role::Owner)?;
            audit::record(
                &tx,
                Some(o.id),
                &format!("user:{email}"),
                "org.create",
                &o.slug,
                "",
            )?;
            tx.commit()?;
            Ok(o)
        })
        .await;
    match created {
        Ok(o) => Ok(Redirect::to(&format!("/o/{}/", o.slug)).into_response()),
        Err(StoreError::Conflict(m)) => {
            let errors = HashMap::from([("slug", m)]);
            render_status(
                StatusCode::CONFLICT,
                &NewOrgPage {
                    csrf: user.csrf,
                    values,
                    errors,
                    zones: zones(),
                },
            )
        }
        Err(e) => Err(e.into()),
    }
}
