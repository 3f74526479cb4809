//! Who is asking: session users for pages, API keys for the API. As extractors, a handler
//! cannot forget them, and every org-scoped handler receives the org it may act on.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts, Path};
use axum::http::HeaderMap;
use axum::http::request::Parts;

use super::error::{ApiError, PageError};
use super::rate_limit::{self, RouteClass};
use crate::app::App;
use crate::domain::net::TrustedProxies;
use crate::domain::roles::{Permission, Role, Scope};
use crate::security;
use crate::store::StoreError;
use crate::store::meta::api_keys::{self, ApiKey};
use crate::store::meta::orgs::{self, Org};
use crate::store::meta::sessions;
use crate::store::meta::users::User;
use crate::store::now_secs;

pub const SESSION_COOKIE: &str = "vitals_session";

pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// The client's address: the connecting peer, or what a trusted proxy says in
/// `X-Forwarded-For` (`server.trusted_proxies`).
pub fn client_ip(parts: &Parts) -> String {
    let Some(peer) = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip())
    else {
        return String::new();
    };
    let forwarded = parts
        .headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    match parts.extensions.get::<std::sync::Arc<TrustedProxies>>() {
        Some(trusted) => trusted.client(peer, forwarded).to_string(),
        None => peer.to_string(),
    }
}

/// [`client_ip`] as an extractor, for handlers without an [`OrgMember`].
pub struct ClientIp(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(client_ip(parts)))
    }
}

/// A signed-in user (any page outside an org).
pub struct CurrentUser {
    pub user: User,
    pub csrf: String,
    pub token_hash: String,
}

impl CurrentUser {
    pub fn check_csrf(&self, presented: &str) -> Result<(), PageError> {
        check_csrf(&self.csrf, presented)
    }
}

fn check_csrf(expected: &str, presented: &str) -> Result<(), PageError> {
    if security::constant_time_eq(expected, presented) {
        Ok(())
    } else {
        Err(PageError::Forbidden(
            "The form has expired or came from another site. Reload the page and try again.".into(),
        ))
    }
}

impl<S> FromRequestParts<S> for CurrentUser
where
    App: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let app = &App::from_ref(state);
        let token_hash = session_token(parts)?;
        let (lookup, idle) = (token_hash.clone(), session_idle_secs(app));
        let found = app
            .meta
            .read(move |c| sessions::find_session(c, &lookup, idle))
            .await;
        match found {
            Ok(s) => accept_session(app, parts, token_hash, s).await,
            Err(StoreError::NotFound) => Err(login_redirect(parts)),
            Err(e) => Err(e.into()),
        }
    }
}

fn login_redirect(parts: &Parts) -> PageError {
    let next = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    PageError::Login { next }
}

/// The hash of the session cookie's token (what the sessions table keys on).
fn session_token(parts: &Parts) -> Result<String, PageError> {
    cookie_value(&parts.headers, SESSION_COOKIE)
        .map(|token| security::sha256_hex(&token))
        .ok_or_else(|| login_redirect(parts))
}

fn session_idle_secs(app: &App) -> i64 {
    app.config.auth.session_idle_hours as i64 * 3600
}

/// A session found: the page budget is charged, and the session stamped seen (a write, at
/// most once a minute).
async fn accept_session(
    app: &App,
    parts: &Parts,
    token_hash: String,
    s: sessions::Session,
) -> Result<CurrentUser, PageError> {
    rate_limit::charge(&parts.extensions, RouteClass::Pages, &token_hash)
        .map_err(|e| PageError::RateLimited(e.message))?;
    if s.needs_touch(now_secs()) {
        let touch = token_hash.clone();
        app.meta.call(move |c| sessions::touch(c, &touch)).await?;
    }
    Ok(CurrentUser {
        user: s.user,
        csrf: s.csrf_token,
        token_hash,
    })
}

/// A signed-in member of the org named by the `{slug}` path segment. A non-member gets the same
/// 404 as a missing org, so org names cannot be probed.
pub struct OrgMember {
    pub user: User,
    pub org: Org,
    pub role: Role,
    pub csrf: String,
    pub ip: String,
}

impl OrgMember {
    pub fn require(&self, permission: Permission) -> Result<(), PageError> {
        if self.role.allows(permission) {
            Ok(())
        } else {
            Err(PageError::Forbidden(format!(
                "Your role ({}) does not allow this.",
                self.role.title()
            )))
        }
    }

    pub fn check_csrf(&self, presented: &str) -> Result<(), PageError> {
        check_csrf(&self.csrf, presented)
    }

    pub fn actor(&self) -> String {
        format!("user:{}", self.user.email)
    }
}

impl<S> FromRequestParts<S> for OrgMember
where
    App: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let app = &App::from_ref(state);
        let token_hash = session_token(parts)?;
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| PageError::NotFound)?;
        let slug = params.get("slug").cloned().ok_or(PageError::NotFound)?;
        let (lookup, idle) = (token_hash.clone(), session_idle_secs(app));
        // One read for both: the session, then the membership it names.
        let found = app
            .meta
            .read(move |c| {
                let s = sessions::find_session(c, &lookup, idle)?;
                let membership = orgs::membership_by_slug(c, s.user.id, &slug);
                Ok((s, membership))
            })
            .await;
        let (session, membership) = match found {
            Ok(found) => found,
            Err(StoreError::NotFound) => return Err(login_redirect(parts)),
            Err(e) => return Err(e.into()),
        };
        let current = accept_session(app, parts, token_hash, session).await?;
        let (org, role) = membership?;
        Ok(OrgMember {
            user: current.user,
            org,
            role,
            csrf: current.csrf,
            ip: client_ip(parts),
        })
    }
}

/// A request authenticated by an API key (`Authorization: Bearer vk_…` or `X-Api-Key`). The key
/// belongs to exactly one org; every API handler acts on that org only.
pub struct ApiKeyAuth {
    pub key: ApiKey,
    pub org: Org,
}

impl ApiKeyAuth {
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if Scope::satisfied_by(scope, &self.key.scopes) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "this API key lacks the `{}` scope (it has: {})",
                scope.as_str(),
                Scope::join(&self.key.scopes)
            )))
        }
    }

    /// Who the audit log names for this key.
    pub fn actor(&self) -> String {
        format!("apikey:{}", self.key.prefix)
    }

    /// Runs `change` on the meta store (given the key's org) and records it in the org's
    /// audit log as `action` by this key, in one transaction: both or neither. `change`
    /// returns its result and the entry's detail (the API's twin of `FormAction::record`).
    pub async fn record<T, F>(
        &self,
        app: &App,
        action: &'static str,
        change: F,
    ) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&rusqlite::Transaction<'_>, i64) -> Result<(T, String), StoreError>
            + Send
            + 'static,
    {
        let (org_id, actor) = (self.org.id, self.actor());
        app.meta
            .call(move |c| {
                let tx = c.transaction()?;
                let (result, detail) = change(&tx, org_id)?;
                crate::store::meta::audit::record(&tx, Some(org_id), &actor, action, &detail, "")?;
                tx.commit()?;
                Ok(result)
            })
            .await
    }
}

fn presented_key(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if let Some(rest) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some(rest.trim().to_string());
        }
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_string())
}

/// Writing points draws on the ingest budget; every other API call on the API budget.
fn api_class(parts: &Parts) -> RouteClass {
    let route = parts
        .extensions
        .get::<axum::extract::MatchedPath>()
        .map(|m| m.as_str());
    let writes_points = matches!(
        route,
        Some("/api/v1/metrics" | "/api/v1/imports/csv" | "/api/v1/events" | "/api/v1/events/batch")
    );
    if parts.method == axum::http::Method::POST && writes_points {
        RouteClass::Ingest
    } else {
        RouteClass::Api
    }
}

impl<S> FromRequestParts<S> for ApiKeyAuth
where
    App: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let app = &App::from_ref(state);
        let Some(presented) = presented_key(&parts.headers) else {
            return Err(ApiError::unauthorized(
                "send an API key as `Authorization: Bearer vk_…`",
            ));
        };
        let Some(prefix) = security::api_key_prefix(&presented).map(str::to_string) else {
            return Err(ApiError::unauthorized("the API key is malformed"));
        };
        let found = app
            .meta
            .read(move |c| {
                let (key, hash) = api_keys::by_prefix(c, &prefix)?;
                let org = orgs::by_id(c, key.org_id)?;
                Ok((key, hash, org))
            })
            .await;
        let (key, stored_hash, org) = match found {
            Ok(k) => k,
            Err(StoreError::NotFound) => {
                return Err(ApiError::unauthorized("the API key is not valid"));
            }
            Err(e) => return Err(e.into()),
        };
        if !security::constant_time_eq(&security::sha256_hex(&presented), &stored_hash) {
            return Err(ApiError::unauthorized("the API key is not valid"));
        }
        if key.revoked_at.is_some() {
            return Err(ApiError::unauthorized("the API key has been revoked"));
        }
        if !key.is_active(now_secs()) {
            return Err(ApiError::unauthorized("the API key has expired"));
        }
        rate_limit::charge(
            &parts.extensions,
            api_class(parts),
            &format!("key:{}", key.id),
        )?;
        if key.needs_touch(now_secs()) {
            let key_id = key.id;
            app.meta.call(move |c| api_keys::touch(c, key_id)).await?;
        }
        Ok(ApiKeyAuth { key, org })
    }
}
