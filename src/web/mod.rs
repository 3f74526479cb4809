//! The web layer: one router with every route and layer, pages, the JSON API and live events.

pub mod alerts_api;
pub mod alerts_pages;
pub mod api;
pub mod assets;
pub mod auth;
pub mod error;
pub mod hooks_pages;
pub mod import;
pub mod import_pages;
pub mod insights_api;
pub mod insights_pages;
pub mod integrations_api;
pub mod integrations_pages;
pub mod pages;
pub mod read_api;
pub mod sse;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::json;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::app::App;
use crate::store::{meta, metrics};

pub fn router(app: App) -> Router {
    let api = Router::new()
        .route("/metrics", get(api::list_metrics).post(api::ingest))
        .route("/metrics/{key}/series", get(api::series))
        .route("/metrics/{key}/points", get(read_api::points))
        .route("/overview", get(read_api::overview))
        .route("/metrics/{key}/anomalies", get(insights_api::anomalies))
        .route("/metrics/{key}/forecast", get(insights_api::forecast))
        .route("/insights", get(insights_api::insights))
        .route(
            "/integrations",
            get(integrations_api::list).post(integrations_api::create),
        )
        .route(
            "/integrations/{id}",
            get(integrations_api::get)
                .put(integrations_api::update)
                .delete(integrations_api::delete),
        )
        .route("/integrations/{id}/sync", post(integrations_api::sync_now))
        .route(
            "/imports/csv",
            post(import::import_csv).layer(DefaultBodyLimit::max(
                app.config.ingest.max_import_bytes as usize,
            )),
        )
        .route("/custom-metrics", post(api::create_custom_metric))
        .route("/org", get(api::whoami))
        .route("/health/score", get(api::health_score))
        .route("/health/score/history", get(api::health_history))
        .route("/health/score/recompute", post(api::health_recompute))
        .route("/alerts", get(alerts_api::list))
        .route("/alerts/{id}", get(alerts_api::get))
        .route("/alerts/{id}/acknowledge", post(alerts_api::acknowledge))
        .route("/alerts/{id}/resolve", post(alerts_api::resolve))
        .route(
            "/alert-rules",
            get(alerts_api::list_rules).post(alerts_api::create_rule),
        )
        .route("/alert-rules/test", post(alerts_api::test_draft))
        .route(
            "/alert-rules/{id}",
            get(alerts_api::get_rule)
                .put(alerts_api::update_rule)
                .delete(alerts_api::delete_rule),
        )
        .route("/alert-rules/{id}/test", post(alerts_api::test_rule))
        .route(
            "/channels",
            get(alerts_api::list_channels).post(alerts_api::create_channel),
        )
        .route(
            "/channels/{id}",
            get(alerts_api::get_channel)
                .put(alerts_api::update_channel)
                .delete(alerts_api::delete_channel),
        )
        .route("/channels/{id}/test", post(alerts_api::test_channel))
        .route(
            "/silences",
            get(alerts_api::list_silences).post(alerts_api::create_silence),
        )
        .route("/silences/{id}", delete(alerts_api::expire_silence))
        .route("/mute-windows", post(alerts_api::create_mute_window))
        .route("/mute-windows/{id}", delete(alerts_api::delete_mute_window))
        .fallback(api::not_found);

    let timeout = Duration::from_secs(app.config.server.request_timeout_secs);
    let body_limit = app.config.ingest.max_body_bytes as usize;

    Router::new()
        .route("/", get(pages::home))
        .route("/healthz", get(healthz))
        .route("/hooks/{token}", post(api::inbound_hook))
        .route("/hooks/stripe/{id}", post(integrations_api::stripe_webhook))
        .route("/setup", get(pages::setup_form).post(pages::setup_submit))
        .route("/login", get(pages::login_form).post(pages::login_submit))
        .route("/logout", post(pages::logout))
        .route("/orgs/new", get(pages::new_org_form))
        .route("/orgs", post(pages::new_org_submit))
        .route("/admin/jobs", get(pages::jobs_page))
        .route("/admin/fleet.json", get(read_api::fleet))
        // Organisation pages: every one resolves the member's org from `{slug}` (OrgMember).
        .route("/o/{slug}", get(redirect_slash))
        .route("/o/{slug}/", get(pages::overview))
        .route("/o/{slug}/grid", get(pages::overview_grid))
        .route("/o/{slug}/health", get(pages::health_panel))
        .route("/o/{slug}/cards/{key}", get(pages::card))
        .route("/o/{slug}/metrics/{key}", get(pages::metric_detail))
        .route("/o/{slug}/events", get(sse::events))
        .route(
            "/o/{slug}/api-keys",
            get(pages::api_keys_list).post(pages::api_keys_create),
        )
        .route(
            "/o/{slug}/api-keys/{id}/revoke",
            post(pages::api_keys_revoke),
        )
        .route(
            "/o/{slug}/members",
            get(pages::members_list).post(pages::members_add),
        )
        .route(
            "/o/{slug}/members/{user_id}/role",
            post(pages::members_set_role),
        )
        .route(
            "/o/{slug}/members/{user_id}/remove",
            post(pages::members_remove),
        )
        .route("/o/{slug}/audit", get(pages::audit_log))
        .route("/o/{slug}/insights", get(insights_pages::insights_page))
        .route(
            "/o/{slug}/integrations",
            get(integrations_pages::list).post(integrations_pages::create),
        )
        .route(
            "/o/{slug}/integrations/hubspot/connect",
            get(integrations_pages::hubspot_connect),
        )
        .route("/oauth/callback", get(integrations_pages::oauth_callback))
        .route(
            "/o/{slug}/integrations/{id}/sync",
            post(integrations_pages::sync_now),
        )
        .route(
            "/o/{slug}/integrations/{id}/delete",
            post(integrations_pages::delete),
        )
        .route(
            "/o/{slug}/hooks",
            get(hooks_pages::hooks_list).post(hooks_pages::hooks_create),
        )
        .route(
            "/o/{slug}/hooks/{id}/revoke",
            post(hooks_pages::hooks_revoke),
        )
        .route(
            "/o/{slug}/import",
            get(import_pages::import_form)
                .post(import_pages::import_submit)
                .layer(DefaultBodyLimit::max(
                    app.config.ingest.max_import_bytes as usize,
                )),
        )
        .route("/o/{slug}/alerts", get(alerts_pages::alerts_page))
        .route("/o/{slug}/alerts/list", get(alerts_pages::alerts_fragment))
        .route("/o/{slug}/alerts/{id}", get(alerts_pages::alert_page))
        .route(
            "/o/{slug}/alerts/{id}/acknowledge",
            post(alerts_pages::acknowledge),
        )
        .route("/o/{slug}/alerts/{id}/resolve", post(alerts_pages::resolve))
        .route(
            "/o/{slug}/alert-rules",
            get(alerts_pages::rules_page).post(alerts_pages::create_rule),
        )
        .route(
            "/o/{slug}/alert-rules/new",
            get(alerts_pages::new_rule_form),
        )
        .route("/o/{slug}/alert-rules/test", post(alerts_pages::test_rule))
        .route(
            "/o/{slug}/alert-rules/{id}",
            get(alerts_pages::edit_rule_form).post(alerts_pages::update_rule),
        )
        .route(
            "/o/{slug}/alert-rules/{id}/delete",
            post(alerts_pages::delete_rule),
        )
        .route(
            "/o/{slug}/channels",
            get(alerts_pages::channels_list).post(alerts_pages::create_channel),
        )
        .route(
            "/o/{slug}/channels/{id}",
            get(alerts_pages::channel_detail).post(alerts_pages::update_channel),
        )
        .route(
            "/o/{slug}/channels/{id}/delete",
            post(alerts_pages::delete_channel),
        )
        .route(
            "/o/{slug}/channels/{id}/test",
            post(alerts_pages::test_channel),
        )
        .route(
            "/o/{slug}/silences",
            get(alerts_pages::silences_list).post(alerts_pages::create_silence),
        )
        .route(
            "/o/{slug}/silences/{id}/expire",
            post(alerts_pages::expire_silence),
        )
        .route(
            "/o/{slug}/mute-windows",
            post(alerts_pages::create_mute_window),
        )
        .route(
            "/o/{slug}/mute-windows/{id}/delete",
            post(alerts_pages::delete_mute_window),
        )
        .route(
            "/o/{slug}/catalog",
            get(pages::catalog_list).post(pages::catalog_create),
        )
        .route(
            "/o/{slug}/settings",
            get(pages::settings_form).post(pages::settings_save),
        )
        .route(
            "/o/{slug}/settings/recompute-history",
            post(pages::settings_recompute_history),
        )
        .nest("/api/v1", api)
        .route("/assets/{*path}", get(assets::asset))
        .layer(middleware::from_fn(same_origin_forms))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    // Spans are keyed by the matched route, not the raw path: low cardinality.
                    let route = req
                        .extensions()
                        .get::<MatchedPath>()
                        .map(|p| p.as_str().to_string())
                        .unwrap_or_default();
                    if route == "/healthz" {
                        tracing::debug_span!("request", method = %req.method(), route)
                    } else {
                        tracing::info_span!("request", method = %req.method(), route)
                    }
                })
                .on_request(())
                .on_response(
                    tower_http::trace::DefaultOnResponse::new().level(tracing::Level::DEBUG),
                ),
        )
        .with_state(app)
}

async fn redirect_slash(axum::extract::Path(slug): axum::extract::Path<String>) -> Response {
    axum::response::Redirect::permanent(&format!("/o/{}/", error::urlencode(&slug))).into_response()
}

/// CSRF defence in depth for cookie-authenticated forms: a state-changing request from a
/// browser must come from this origin (`Sec-Fetch-Site`, else `Origin` vs `Host`). Forms also
/// carry a per-session token checked by each handler. The API uses bearer keys, not cookies.
async fn same_origin_forms(req: Request, next: Next) -> Response {
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if unsafe_method && !req.uri().path().starts_with("/api/") {
        let h = req.headers();
        let site = h.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        let cross = match site {
            Some(s) => s != "same-origin" && s != "none",
            None => match (
                h.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
                h.get(header::HOST).and_then(|v| v.to_str().ok()),
            ) {
                (Some(origin), Some(host)) => {
                    origin != "null" && origin.split("://").nth(1) != Some(host)
                }
                (Some("null"), None) => true,
                _ => false,
            },
        };
        if cross {
            return error::PageError::Forbidden("Cross-site form submissions are refused.".into())
                .into_response();
        }
    }
    next.run(req).await
}

/// `GET /healthz`: touches both databases.
async fn healthz(State(app): State<App>) -> Response {
    let sqlite = app.meta.call(|c| meta::ping(c)).await;
    let duckdb = app.metrics.read(metrics::ping).await;
    let ok = sqlite.is_ok() && duckdb.is_ok();
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if let Err(e) = &sqlite {
        tracing::error!(error = %e, "healthz: sqlite");
    }
    if let Err(e) = &duckdb {
        tracing::error!(error = %e, "healthz: duckdb");
    }
    (
        status,
        axum::Json(json!({
            "status": if ok { "ok" } else { "unavailable" },
            "sqlite": if sqlite.is_ok() { "ok" } else { "error" },
            "duckdb": if duckdb.is_ok() { "ok" } else { "error" },
            "version": env!("CARGO_PKG_VERSION"),
        })),
    )
        .into_response()
}
