//! JSON API for integrations: connect (credentials sealed, never returned), list, sync now,
//! sync history, disconnect.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::app::App;
use crate::domain::roles::Scope;
use crate::services::Integrations;
use crate::services::integrations::{self, stripe};
use crate::store::meta::audit;
use crate::store::meta::integrations::{self as store, Integration};
use crate::web::api::json_body;
use crate::web::auth::ApiKeyAuth;
use crate::web::error::ApiError;

fn integration_json(i: &Integration) -> Value {
    json!({
        "id": i.id,
        "provider": i.provider,
        "name": i.name,
        "status": i.status,
        "last_error": i.last_error,
        "created_at": i.created_at,
        "last_sync_at": i.last_sync_at,
        "cursor": i.cursor,
        "schedule": i.schedule,
    })
}

/// `POST /api/v1/integrations` `{"provider": "stripe", "name": …, "api_key": "rk_…"}`: checks the
/// key against the provider, seals it, registers the provider's metrics and starts the backfill.
pub async fn create(
    State(app): State<App>,
    State(syncs): State<Integrations>,
    auth: ApiKeyAuth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    auth.require(Scope::Admin)?;
    let body = json_body(&headers, body)?;
    let text = |k: &str| body[k].as_str().unwrap_or("").to_string();
    let integration = connect(
        &app,
        auth.org.id,
        &format!("api_key:{}", auth.key.prefix),
        &text("provider"),
        &text("name"),
        &text("api_key"),
        &text("webhook_secret"),
    )
    .await?;
    let started = syncs.sync_soon(integration.clone());
    Ok((
        StatusCode::CREATED,
        Json(json!({ "integration": integration_json(&integration), "sync_started": started })),
    ))
}

/// Validates, tries the key against the provider, seals and stores a new integration, and
/// registers the provider's metrics. Shared by the API and the Integrations page.
pub async fn connect(
    app: &App,
    org_id: i64,
    actor: &str,
    provider_key: &str,
    name: &str,
    key: &str,
    webhook_secret: &str,
) -> Result<Integration, ApiError> {
    let provider = integrations::provider(provider_key.trim())
        .ok_or_else(|| ApiError::bad_request("provider", "must be stripe"))?;
    let name = match name.trim() {
        "" => provider.name.to_string(),
        n => n.to_string(),
    };
    if name.chars().count() > 100 {
        return Err(ApiError::bad_request("name", "must be 1 to 100 characters"));
    }
    let key = key.trim().to_string();
    if !(key.starts_with("rk_") || key.starts_with("sk_")) || key.len() < 8 {
        return Err(ApiError::bad_request(
            "api_key",
            "must be a Stripe secret or restricted key (sk_… or rk_…); a restricted read-only key is enough",
        ));
    }
    let webhook_secret = webhook_secret.trim().to_string();
    if !webhook_secret.is_empty() && !webhook_secret.starts_with("whsec_") {
        return Err(ApiError::bad_request(
            "webhook_secret",
            "must be the endpoint's signing secret (whsec_…), or left out",
        ));
    }
    // Try the key before storing it.
    let client = stripe::Client::new(
        app.http.clone(),
        &app.config.integrations.stripe_api_base,
        &key,
    );
    if let Err(e) = client
        .list_all("/v1/subscriptions", &[("status", "all".into())])
        .await
    {
        let status = match e {
            stripe::StripeError::Auth(_) => StatusCode::UNPROCESSABLE_ENTITY,
            _ => StatusCode::BAD_GATEWAY,
        };
        return Err(ApiError::new(status, "provider_refused", e.to_string()).field("api_key"));
    }
    let sealed = integrations::Credentials {
        api_key: key,
        webhook_secret,
    }
    .seal(app);
    let (pkey, actor) = (provider.key, actor.to_string());
    let integration = app
        .meta
        .call(move |c| {
            let i = store::create(c, org_id, pkey, &name, &sealed)?;
            audit::record(
                c,
                Some(org_id),
                &actor,
                "integration.create",
                &format!("{} {}", i.id, i.name),
                "",
            )?;
            Ok(i)
        })
        .await?;
    integrations::register_metrics(app, org_id, provider).await?;
    Ok(integration)
}

/// `GET /api/v1/integrations`.
pub async fn list(State(app): State<App>, auth: ApiKeyAuth) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let org_id = auth.org.id;
    let all = app.meta.call(move |c| store::list(c, org_id)).await?;
    Ok(Json(
        json!({ "integrations": all.iter().map(integration_json).collect::<Vec<_>>() }),
    ))
}

async fn find(app: &App, org_id: i64, id: i64) -> Result<Integration, ApiError> {
    app.meta
        .call(move |c| store::get(c, org_id, id))
        .await
        .map_err(|e| match e {
            crate::store::StoreError::NotFound => {
                ApiError::not_found(format!("no integration {id}"))
            }
            other => other.into(),
        })
}

/// `GET /api/v1/integrations/{id}`: the integration and its last 20 syncs.
pub async fn get(
    State(app): State<App>,
    State(syncs): State<Integrations>,
    auth: ApiKeyAuth,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    find(&app, auth.org.id, id).await?;
    // Read in the reverse order of a sync's writes (status, then run, then the in-memory flag),
    // so an answer that says "not syncing" also carries that sync's final status and run.
    let syncing = syncs.is_syncing(id);
    let (runs, i) = app
        .meta
        .call(move |c| Ok((store::runs(c, id, 20)?, store::by_id(c, id)?)))
        .await?;
    Ok(Json(json!({
        "integration": integration_json(&i),
        "syncing": syncing,
        "progress": syncs.progress_of(id),
        "runs": runs,
    })))
}

/// `POST /api/v1/integrations/{id}/sync`: starts a sync now (202), unless one is running.
pub async fn sync_now(
    State(app): State<App>,
    State(syncs): State<Integrations>,
    auth: ApiKeyAuth,
    Path(id): Path<i64>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    auth.require(Scope::Admin)?;
    let i = find(&app, auth.org.id, id).await?;
    let started = syncs.sync_soon(i);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "started": started, "already_running": !started })),
    ))
}

/// `DELETE /api/v1/integrations/{id}`: forgets the credentials and the sync history (the
/// metrics already pulled stay).
pub async fn delete(
    State(app): State<App>,
    auth: ApiKeyAuth,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    auth.require(Scope::Admin)?;
    let (org_id, actor) = (auth.org.id, format!("api_key:{}", auth.key.prefix));
    find(&app, org_id, id).await?;
    app.meta
        .call(move |c| {
            store::delete(c, org_id, id)?;
            audit::record(
                c,
                Some(org_id),
                &actor,
                "integration.delete",
                &id.to_string(),
                "",
            )
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /hooks/stripe/{id}`: a Stripe webhook for integration `id`. Verifies `Stripe-Signature`
/// (HMAC-SHA256 over `t.payload` with the endpoint's signing secret, 300 s tolerance, any of
/// several `v1`), applies each event once (by event id) and starts an incremental sync.
pub async fn stripe_webhook(
    State(app): State<App>,
    State(syncs): State<Integrations>,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let unknown = || ApiError::not_found("unknown webhook endpoint");
    let integration = app
        .meta
        .call(move |c| store::by_id(c, id))
        .await
        .map_err(|_| unknown())?;
    if integration.provider != "stripe" {
        return Err(unknown());
    }
    let creds = integrations::Credentials::open(&app, &integration)
        .map_err(|m| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "credentials_unreadable", m))?;
    if creds.webhook_secret.is_empty() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "no_signing_secret",
            "this integration has no webhook signing secret; reconnect it with one",
        ));
    }
    let bytes = body.map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            "the body could not be read",
        )
    })?;
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    crate::security::verify_signature(
        signature,
        &creds.webhook_secret,
        &bytes,
        crate::store::now_secs(),
        300,
    )
    .map_err(|why| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_signature",
            format!("Stripe-Signature: {why}"),
        )
        .field("Stripe-Signature")
    })?;
    let event: Value = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the event is not JSON: {e}"),
        )
    })?;
    let event_id = event["id"].as_str().unwrap_or("").to_string();
    if event_id.is_empty() {
        return Err(ApiError::bad_request("id", "the event has no id"));
    }
    let eid = event_id.clone();
    let first = app
        .meta
        .call(move |c| store::record_event(c, id, &eid))
        .await?;
    let started = first && syncs.sync_soon(integration);
    Ok(Json(
        json!({ "received": event_id, "duplicate": !first, "sync_started": started }),
    ))
}

/// `PUT /api/v1/integrations/{id}` `{"schedule": "0 */30 * * * *"}`: the integration's pull
/// schedule (cron, seconds first; empty = only by hand and webhooks).
pub async fn update(
    State(app): State<App>,
    auth: ApiKeyAuth,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Admin)?;
    let body = json_body(&headers, body)?;
    let Some(schedule) = body["schedule"].as_str().map(str::trim).map(String::from) else {
        return Err(ApiError::bad_request(
            "schedule",
            "is required (a cron expression, or empty)",
        ));
    };
    crate::domain::schedule::parse_sync_schedule(&schedule)
        .map_err(|m| ApiError::bad_request("schedule", m))?;
    let org_id = auth.org.id;
    find(&app, org_id, id).await?;
    app.meta
        .call(move |c| store::set_schedule(c, org_id, id, &schedule))
        .await?;
    let i = find(&app, org_id, id).await?;
    Ok(Json(json!({ "integration": integration_json(&i) })))
}
