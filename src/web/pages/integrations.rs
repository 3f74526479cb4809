//! The Integrations page: connect Stripe (key tried before it is stored, then sealed), each
//! integration's status ("reconnect needed" when the key is refused or unreadable), Sync now, the
//! webhook URL to give Stripe, the sync history, and disconnect. While a sync runs the page
//! refreshes itself (htmx polling), so a long backfill shows its progress.

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::TimeZone;

use crate::app::App;
use crate::domain::roles::Permission;
use crate::services::Integrations;
use crate::services::query;
use crate::store::meta::{audit, integrations as store};
use crate::web::api::integrations::connect;
use crate::web::auth::OrgMember;
use crate::web::error::PageError;
use crate::web::pages::{FormAction, Nav, nav, render_status};

#[derive(Template)]
#[template(path = "integrations.html")]
pub struct IntegrationsPage {
    pub nav: Nav,
    pub items: Vec<IntegrationView>,
    pub error: String,
    pub error_field: String,
    pub name: String,
    pub any_syncing: bool,
}

pub struct IntegrationView {
    pub id: i64,
    pub name: String,
    pub provider: String,
    pub status: String,
    pub last_error: String,
    pub last_sync: String,
    pub syncing: bool,
    pub progress: String,
    pub webhook_url: String,
    pub runs: Vec<(String, String, i64, String, String)>,
}

async fn page(
    app: &App,
    syncs: &Integrations,
    m: &OrgMember,
    error: String,
    error_field: String,
    name: String,
) -> Result<IntegrationsPage, PageError> {
    let org_id = m.org.id;
    let list = app.meta.call(move |c| store::list(c, org_id)).await?;
    let tz = query::org_tz(&m.org);
    let when = |t: Option<i64>| {
        t.and_then(|t| tz.timestamp_opt(t, 0).single())
            .map(|t| t.format("%Y-%m-%d %H:%M").to_string())
            .unwrap_or_else(|| "–".into())
    };
    let mut items = Vec::new();
    for i in list {
        let id = i.id;
        let runs = app.meta.call(move |c| store::runs(c, id, 10)).await?;
        let syncing = syncs.is_syncing(id);
        items.push(IntegrationView {
            id,
            name: i.name,
            provider: i.provider,
            status: if syncing { "syncing".into() } else { i.status },
            last_error: i.last_error,
            last_sync: when(i.last_sync_at),
            syncing,
            progress: syncs.progress_of(id),
            webhook_url: format!("{}/hooks/stripe/{id}", app.base_url()),
            runs: runs
                .into_iter()
                .map(|r| {
                    (
                        when(Some(r.started_at)),
                        when(r.finished_at),
                        r.rows,
                        r.outcome,
                        r.message,
                    )
                })
                .collect(),
        });
    }
    Ok(IntegrationsPage {
        any_syncing: items.iter().any(|i| i.syncing),
        nav: nav(app, m, "integrations").await?,
        items,
        error,
        error_field,
        name,
    })
}

/// `GET /o/{slug}/integrations`.
pub async fn list(
    State(app): State<App>,
    State(syncs): State<Integrations>,
    m: OrgMember,
) -> Result<Response, PageError> {
    m.require(Permission::ManageOrg)?;
    render_status(
        StatusCode::OK,
        &page(
            &app,
            &syncs,
            &m,
            String::new(),
            String::new(),
            String::new(),
        )
        .await?,
    )
}

/// `POST /o/{slug}/integrations`: connect.
pub async fn create(
    State(app): State<App>,
    State(syncs): State<Integrations>,
    m: OrgMember,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(&m, form, Permission::ManageOrg)?;
    let result = connect(
        &app,
        m.org.id,
        &m.actor(),
        "stripe",
        form.get("name"),
        form.get("api_key"),
        form.get("webhook_secret"),
    )
    .await;
    match result {
        Ok(integration) => {
            syncs.sync_soon(integration);
            form.done("integrations")
        }
        Err(e) => {
            let p = page(
                &app,
                &syncs,
                &m,
                e.message.clone(),
                e.field.clone().unwrap_or_default(),
                form.get("name").to_string(),
            )
            .await?;
            let status = if e.status.is_client_error() {
                StatusCode::UNPROCESSABLE_ENTITY
            } else {
                e.status
            };
            render_status(status, &p)
        }
    }
}

/// `POST /o/{slug}/integrations/{id}/sync`.
pub async fn sync_now(
    State(app): State<App>,
    State(syncs): State<Integrations>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(&m, form, Permission::ManageOrg)?;
    let org_id = m.org.id;
    let integration = app.meta.call(move |c| store::get(c, org_id, id)).await?;
    syncs.sync_soon(integration);
    form.done("integrations")
}

/// `POST /o/{slug}/integrations/{id}/delete`.
pub async fn delete(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(&m, form, Permission::ManageOrg)?;
    form.record(&app, "integration.delete", move |c, org_id| {
        store::delete(c, org_id, id)?;
        Ok(((), id.to_string()))
    })
    .await?;
    form.done("integrations")
}

/// The redirect URI registered with providers.
fn redirect_uri(app: &App) -> String {
    format!("{}/oauth/callback", app.base_url())
}

/// `GET /o/{slug}/integrations/hubspot/connect`: starts the OAuth authorisation (state bound to
/// this org and user, PKCE S256) and sends the browser to HubSpot's consent page.
pub async fn hubspot_connect(
    State(app): State<App>,
    State(syncs): State<Integrations>,
    m: OrgMember,
) -> Result<Response, PageError> {
    m.require(Permission::ManageOrg)?;
    let config = &app.config.integrations;
    if config.hubspot_client_id.is_empty() || config.hubspot_client_secret.is_empty() {
        let p = page(
            &app,
            &syncs,
            &m,
            "HubSpot is not set up on this server: an administrator sets integrations.hubspot_client_id and hubspot_client_secret (see config.example.toml).".into(),
            String::new(),
            String::new(),
        )
        .await?;
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &p);
    }
    let state = crate::security::random_token();
    let (verifier, challenge) = crate::services::integrations::hubspot::pkce_pair();
    let (hash, org_id, user_id) = (crate::security::sha256_hex(&state), m.org.id, m.user.id);
    app.meta
        .call(move |c| store::save_oauth_state(c, &hash, org_id, user_id, "hubspot", &verifier))
        .await?;
    let url = crate::services::integrations::hubspot::authorize_url(
        config,
        &redirect_uri(&app),
        &state,
        &challenge,
    );
    Ok(Redirect::to(&url).into_response())
}

#[derive(serde::Deserialize)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub error: Option<String>,
    pub error_description: Option<String>,
}

fn callback_error(message: String) -> Result<Response, PageError> {
    Err(PageError::BadRequest(message))
}

/// `GET /oauth/callback?code&state`: checks the state (exists, under ten minutes old, started by
/// this user), exchanges the code with the PKCE verifier, seals the tokens, creates the
/// integration and starts its backfill.
pub async fn oauth_callback(
    State(app): State<App>,
    State(syncs): State<Integrations>,
    user: crate::web::auth::CurrentUser,
    axum::extract::Query(p): axum::extract::Query<CallbackParams>,
) -> Result<Response, PageError> {
    let state = p.state.unwrap_or_default();
    let hash = crate::security::sha256_hex(&state);
    let taken = app
        .meta
        .call(move |c| store::take_oauth_state(c, &hash))
        .await?;
    let Some((org_id, user_id, provider, verifier)) = taken else {
        return callback_error(
            "This authorisation does not match one started here (state mismatch or older than ten minutes). Start again from the Integrations page.".into(),
        );
    };
    if user_id != user.user.id {
        return callback_error("This authorisation was started by another user. Start again from the Integrations page.".into());
    }
    if let Some(e) = p.error {
        return callback_error(format!(
            "HubSpot did not authorise Vitals: {} ({e}).",
            p.error_description.unwrap_or_default()
        ));
    }
    let Some(code) = p.code.filter(|c| !c.is_empty()) else {
        return callback_error("The provider sent no authorisation code.".into());
    };
    if provider != "hubspot" {
        return callback_error(format!("Unknown provider {provider}."));
    }
    // The user must still be allowed to manage the org.
    let role = app
        .meta
        .call(move |c| crate::store::meta::orgs::member_role(c, org_id, user_id))
        .await?;
    if !role.allows(Permission::ManageOrg) {
        return Err(PageError::Forbidden(
            "Your role does not allow connecting integrations.".into(),
        ));
    }
    let tokens = crate::services::integrations::hubspot::exchange_code(
        &app.http,
        &app.config.integrations,
        &code,
        &redirect_uri(&app),
        &verifier,
    )
    .await
    .map_err(|e| PageError::BadRequest(format!("{e}. Start again from the Integrations page.")))?;
    let sealed = app
        .secrets
        .seal(&serde_json::to_string(&tokens).unwrap_or_default());
    let actor = format!("user:{}", user.user.email);
    let integration = app
        .meta
        .call(move |c| {
            let i = store::create(c, org_id, "hubspot", "HubSpot", &sealed)?;
            audit::record(
                c,
                Some(org_id),
                &actor,
                "integration.create",
                &format!("{} HubSpot", i.id),
                "",
            )?;
            Ok(i)
        })
        .await?;
    syncs.sync_soon(integration);
    let org = app
        .meta
        .call(move |c| crate::store::meta::orgs::by_id(c, org_id))
        .await?;
    Ok(Redirect::to(&format!("/o/{}/integrations", org.slug)).into_response())
}
