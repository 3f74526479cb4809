//! API keys: list, create (shown once), revoke.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Form, Path, State};
use axum::response::Response;

use super::{FormAction, Nav, nav, render};
use crate::app::{self, App};
use crate::domain::roles::{Permission, Scope};
use crate::store::meta::api_keys::{self, ApiKey};
use crate::store::meta::project_keys;
use crate::web::auth::OrgMember;
use crate::web::error::PageError;

pub struct KeyView {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub scopes: String,
    pub created: String,
    pub created_by: String,
    pub expires: String,
    pub last_used: String,
    pub status: &'static str,
}

pub(crate) fn date(secs: Option<i64>) -> String {
    secs.and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "–".into())
}

fn key_view(k: &ApiKey) -> KeyView {
    let now = crate::store::now_secs();
    KeyView {
        id: k.id,
        name: k.name.clone(),
        prefix: k.prefix.clone(),
        scopes: Scope::join(&k.scopes),
        created: date(Some(k.created_at)),
        created_by: k.created_by.clone().unwrap_or_else(|| "cli".into()),
        expires: k
            .expires_at
            .map(|e| date(Some(e)))
            .unwrap_or_else(|| "never".into()),
        last_used: k
            .last_used_at
            .map(|e| date(Some(e)))
            .unwrap_or_else(|| "never".into()),
        status: if k.revoked_at.is_some() {
            "revoked"
        } else if !k.is_active(now) {
            "expired"
        } else {
            "active"
        },
    }
}

#[derive(Template)]
#[template(path = "api_keys.html")]
pub struct ApiKeysPage {
    pub nav: Nav,
    pub slug: String,
    pub keys: Vec<KeyView>,
    pub new_key: String,
    pub errors: HashMap<&'static str, String>,
    pub name: String,
    /// The org's project write key for the analytics SDKs and the tracker.
    pub write_key: String,
}

async fn api_keys_page(
    app: &App,
    m: &OrgMember,
    new_key: String,
    errors: HashMap<&'static str, String>,
    name: String,
) -> Result<ApiKeysPage, PageError> {
    let org_id = m.org.id;
    let (keys, write_key) = app
        .meta
        .call(move |c| {
            Ok((
                api_keys::list(c, org_id)?,
                project_keys::get_or_create(c, org_id)?,
            ))
        })
        .await?;
    Ok(ApiKeysPage {
        write_key,
        nav: nav(app, m, "keys").await?,
        slug: m.org.slug.clone(),
        keys: keys.iter().map(key_view).collect(),
        new_key,
        errors,
        name,
    })
}

pub async fn api_keys_list(State(app): State<App>, m: OrgMember) -> Result<Response, PageError> {
    m.require(Permission::ManageApiKeys)?;
    render(&api_keys_page(&app, &m, String::new(), HashMap::new(), String::new()).await?)
}

pub async fn api_keys_create(
    State(app): State<App>,
    m: OrgMember,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(&m, form, Permission::ManageApiKeys)?;
    let name = form.get("name").trim().to_string();
    let mut errors = HashMap::new();
    if name.is_empty() || name.chars().count() > 100 {
        errors.insert("name", "must be 1 to 100 characters".to_string());
    }
    let scopes = Scope::parse_list(&form.all("scopes").join(","))
        .map_err(|e| errors.insert("scopes", e))
        .unwrap_or_default();
    let expires = match form.get("expires_days").trim() {
        "" | "0" => None,
        d => match d.parse::<i64>() {
            Ok(n) if (1..=3650).contains(&n) => Some(n),
            _ => {
                errors.insert(
                    "expires_days",
                    "must be a whole number of days from 1 to 3650, or empty for never".into(),
                );
                None
            }
        },
    };
    if !errors.is_empty() {
        return form.invalid(&api_keys_page(&app, &m, String::new(), errors, name).await?);
    }
    let (org_id, user_id, actor, key_name) = (m.org.id, m.user.id, m.actor(), name.clone());
    let (_, secret) = app
        .meta
        .call(move |c| {
            app::create_api_key(
                c,
                org_id,
                &key_name,
                &scopes,
                Some(user_id),
                expires,
                &actor,
            )
        })
        .await?;
    render(&api_keys_page(&app, &m, secret, HashMap::new(), String::new()).await?)
}

pub async fn api_keys_revoke(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(&m, form, Permission::ManageApiKeys)?;
    form.record(&app, "apikey.revoke", move |c, org_id| {
        let key = api_keys::revoke(c, org_id, id)?;
        Ok(((), format!("{} ({})", key.name, key.prefix)))
    })
    .await?;
    form.done("api-keys")
}

/// `POST /o/{slug}/api-keys/write-key/rotate`: a new project write key; SDKs still sending the
/// old one are refused from now on.
pub async fn write_key_rotate(
    State(app): State<App>,
    m: OrgMember,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(&m, form, Permission::ManageApiKeys)?;
    form.record(&app, "writekey.rotate", move |c, org_id| {
        let key = project_keys::rotate(c, org_id)?;
        Ok(((), key.chars().take(12).collect::<String>()))
    })
    .await?;
    form.done("api-keys")
}
