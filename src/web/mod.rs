//! The web layer: one router with every route and layer, pages, the JSON API and live events.

pub mod api;
pub mod assets;
pub mod auth;
pub mod capture;
pub mod error;
pub mod pages;
pub mod rate_limit;
pub mod sse;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRef, MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::json;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::app::App;
use crate::services::{Alerting, Insights, Integrations, Services};
use crate::store::{meta, metrics};

/// The router's state: the services, from which handlers take what they need
/// (`State<App>`, `State<Alerting>`, …) through [`FromRef`].
pub fn router(services: Services) -> Router {
    let app = services.app.clone();
    let api = Router::new()
        .route(
            "/metrics",
            get(api::metrics::list_metrics).post(api::metrics::ingest),
        )
        .route("/metrics/{key}/series", get(api::metrics::series))
        .route("/metrics/{key}/points", get(api::reads::points))
        .route("/overview", get(api::reads::overview))
        .route("/metrics/{key}/anomalies", get(api::insights::anomalies))
        .route("/metrics/{key}/forecast", get(api::insights::forecast))
        .route("/insights", get(api::insights::insights))
        .route(
            "/integrations",
            get(api::integrations::list).post(api::integrations::create),
        )
        .route(
            "/integrations/{id}",
            get(api::integrations::get)
                .put(api::integrations::update)
                .delete(api::integrations::delete),
        )
        .route("/integrations/{id}/sync", post(api::integrations::sync_now))
        .route(
            "/imports/csv",
            post(api::import::import_csv).layer(DefaultBodyLimit::max(
                app.config.ingest.max_import_bytes as usize,
            )),
        )
        .route("/custom-metrics", post(api::metrics::create_custom_metric))
        .route("/org", get(api::whoami))
        .route("/events", get(api::events::list).post(api::events::track))
        .route("/events/batch", post(api::events::track_batch))
        .route("/events/stats", get(api::events::stats))
        .route("/events/catalogue", get(api::events::catalogue))
        .route("/persons", get(api::people::persons))
        .route("/persons/{distinct_id}", get(api::events::person))
        .route("/cohorts", get(api::people::list).post(api::people::create))
        .route(
            "/cohorts/{id}",
            get(api::people::get)
                .put(api::people::update)
                .delete(api::people::delete),
        )
        .route(
            "/analytics/insights",
            get(api::saved_insights::list).post(api::saved_insights::create),
        )
        .route(
            "/analytics/insights/{id}",
            get(api::saved_insights::get)
                .put(api::saved_insights::update)
                .delete(api::saved_insights::delete),
        )
        .route(
            "/analytics/insights/{id}/result",
            get(api::saved_insights::result),
        )
        .route("/analytics/api", post(api::analytics::api_usage))
        .route("/analytics/trends", post(api::analytics::trends))
        .route("/analytics/funnels", post(api::analytics::funnels))
        .route("/analytics/retention", post(api::analytics::retention))
        .route("/analytics/stickiness", post(api::analytics::stickiness))
        .route("/analytics/lifecycle", post(api::analytics::lifecycle))
        .route("/health/score", get(api::health::health_score))
        .route("/health/score/history", get(api::health::health_history))
        .route(
            "/health/score/recompute",
            post(api::health::health_recompute),
        )
        .route("/alerts", get(api::alerts::list))
        .route("/alerts/{id}", get(api::alerts::get))
        .route("/alerts/{id}/acknowledge", post(api::alerts::acknowledge))
        .route("/alerts/{id}/resolve", post(api::alerts::resolve))
        .route(
            "/alert-rules",
            get(api::alerts::list_rules).post(api::alerts::create_rule),
        )
        .route("/alert-rules/test", post(api::alerts::test_draft))
        .route(
            "/alert-rules/{id}",
            get(api::alerts::get_rule)
                .put(api::alerts::update_rule)
                .delete(api::alerts::delete_rule),
        )
        .route("/alert-rules/{id}/test", post(api::alerts::test_rule))
        .route(
            "/channels",
            get(api::alerts::list_channels).post(api::alerts::create_channel),
        )
        .route(
            "/channels/{id}",
            get(api::alerts::get_channel)
                .put(api::alerts::update_channel)
                .delete(api::alerts::delete_channel),
        )
        .route("/channels/{id}/test", post(api::alerts::test_channel))
        .route(
            "/silences",
            get(api::alerts::list_silences).post(api::alerts::create_silence),
        )
        .route("/silences/{id}", delete(api::alerts::expire_silence))
        .route("/mute-windows", post(api::alerts::create_mute_window))
        .route(
            "/mute-windows/{id}",
            delete(api::alerts::delete_mute_window),
        )
        .fallback(api::not_found);

    let timeout = Duration::from_secs(app.config.server.request_timeout_secs);
    let hsts = app.config.secure_cookies();
    let body_limit = app.config.ingest.max_body_bytes as usize;

    Router::new()
        .route("/", get(pages::session::home))
        .route("/healthz", get(healthz))
        .route("/livez", get(livez))
        .route("/hooks/{token}", post(api::metrics::inbound_hook))
        .route(
            "/hooks/stripe/{id}",
            post(api::integrations::stripe_webhook),
        )
        .route(
            "/setup",
            get(pages::session::setup_form).post(pages::session::setup_submit),
        )
        .route(
            "/login",
            get(pages::session::login_form).post(pages::session::login_submit),
        )
        .route("/logout", post(pages::session::logout))
        .route("/account", get(pages::account::account_page))
        .route("/account/password", post(pages::account::change_password))
        .route("/orgs/new", get(pages::session::new_org_form))
        .route("/orgs", post(pages::session::new_org_submit))
        .route("/admin/jobs", get(pages::jobs::jobs_page))
        .route("/admin/fleet.json", get(api::reads::fleet))
        // Organisation pages: every one resolves the member's org from `{slug}` (OrgMember).
        .route("/o/{slug}", get(redirect_slash))
        .route("/o/{slug}/", get(pages::overview::overview))
        .route("/o/{slug}/grid", get(pages::overview::overview_grid))
        .route("/o/{slug}/health", get(pages::health::health_panel))
        .route("/o/{slug}/cards/{key}", get(pages::overview::card))
        .route("/o/{slug}/metrics/{key}", get(pages::metric::metric_detail))
        .route("/o/{slug}/events", get(sse::events))
        .route(
            "/o/{slug}/api-keys",
            get(pages::keys::api_keys_list).post(pages::keys::api_keys_create),
        )
        .route(
            "/o/{slug}/api-keys/{id}/revoke",
            post(pages::keys::api_keys_revoke),
        )
        .route(
            "/o/{slug}/api-keys/write-key/rotate",
            post(pages::keys::write_key_rotate),
        )
        .route(
            "/o/{slug}/members",
            get(pages::members::members_list).post(pages::members::members_invite),
        )
        .route(
            "/o/{slug}/invitations/{id}/revoke",
            post(pages::members::invitation_revoke),
        )
        .route(
            "/invite/{token}",
            get(pages::invitations::invitation_page).post(pages::invitations::accept_invitation),
        )
        .route(
            "/o/{slug}/members/{user_id}/role",
            post(pages::members::members_set_role),
        )
        .route(
            "/o/{slug}/members/{user_id}/remove",
            post(pages::members::members_remove),
        )
        .route("/o/{slug}/audit", get(pages::audit::audit_log))
        .route("/o/{slug}/insights", get(pages::insights::insights_page))
        .route("/o/{slug}/analytics", get(pages::analytics::analytics_page))
        .route(
            "/o/{slug}/analytics/live",
            get(pages::analytics::live_events),
        )
        .route(
            "/o/{slug}/analytics/save",
            post(pages::analytics::save_insight),
        )
        .route(
            "/o/{slug}/analytics/insights/{id}/delete",
            post(pages::analytics::delete_insight),
        )
        .route("/o/{slug}/people", get(pages::people::people))
        .route("/o/{slug}/person", get(pages::people::person))
        .route("/o/{slug}/cohorts", post(pages::people::create_cohort))
        .route(
            "/o/{slug}/cohorts/{id}/delete",
            post(pages::people::delete_cohort),
        )
        .route(
            "/o/{slug}/integrations",
            get(pages::integrations::list).post(pages::integrations::create),
        )
        .route(
            "/o/{slug}/integrations/hubspot/connect",
            get(pages::integrations::hubspot_connect),
        )
        .route("/oauth/callback", get(pages::integrations::oauth_callback))
        .route(
            "/o/{slug}/integrations/{id}/sync",
            post(pages::integrations::sync_now),
        )
        .route(
            "/o/{slug}/integrations/{id}/delete",
            post(pages::integrations::delete),
        )
        .route(
            "/o/{slug}/hooks",
            get(pages::hooks::hooks_list).post(pages::hooks::hooks_create),
        )
        .route(
            "/o/{slug}/hooks/{id}/revoke",
            post(pages::hooks::hooks_revoke),
        )
        .route(
            "/o/{slug}/import",
            get(pages::import::import_form)
                .post(pages::import::import_submit)
                .layer(DefaultBodyLimit::max(
                    app.config.ingest.max_import_bytes as usize,
                )),
        )
        .route("/o/{slug}/alerts", get(pages::alerts::alerts_page))
        .route("/o/{slug}/alerts/list", get(pages::alerts::alerts_fragment))
        .route("/o/{slug}/alerts/{id}", get(pages::alerts::alert_page))
        .route(
            "/o/{slug}/alerts/{id}/acknowledge",
            post(pages::alerts::acknowledge),
        )
        .route(
            "/o/{slug}/alerts/{id}/resolve",
            post(pages::alerts::resolve),
        )
        .route(
            "/o/{slug}/alert-rules",
            get(pages::rules::rules_page).post(pages::rules::create_rule),
        )
        .route(
            "/o/{slug}/alert-rules/new",
            get(pages::rules::new_rule_form),
        )
        .route("/o/{slug}/alert-rules/test", post(pages::rules::test_rule))
        .route(
            "/o/{slug}/alert-rules/{id}",
            get(pages::rules::edit_rule_form).post(pages::rules::update_rule),
        )
        .route(
            "/o/{slug}/alert-rules/{id}/delete",
            post(pages::rules::delete_rule),
        )
        .route(
            "/o/{slug}/channels",
            get(pages::channels::channels_list).post(pages::channels::create_channel),
        )
        .route(
            "/o/{slug}/channels/{id}",
            get(pages::channels::channel_detail).post(pages::channels::update_channel),
        )
        .route(
            "/o/{slug}/channels/{id}/delete",
            post(pages::channels::delete_channel),
        )
        .route(
            "/o/{slug}/channels/{id}/test",
            post(pages::channels::test_channel),
        )
        .route(
            "/o/{slug}/silences",
            get(pages::silences::silences_list).post(pages::silences::create_silence),
        )
        .route(
            "/o/{slug}/silences/{id}/expire",
            post(pages::silences::expire_silence),
        )
        .route(
            "/o/{slug}/mute-windows",
            post(pages::silences::create_mute_window),
        )
        .route(
            "/o/{slug}/mute-windows/{id}/delete",
            post(pages::silences::delete_mute_window),
        )
        .route(
            "/o/{slug}/catalog",
            get(pages::catalog::catalog_list).post(pages::catalog::catalog_create),
        )
        .route(
            "/o/{slug}/settings",
            get(pages::settings::settings_form).post(pages::settings::settings_save),
        )
        .route(
            "/o/{slug}/settings/recompute-history",
            post(pages::settings::settings_recompute_history),
        )
        .nest("/api/v1", api)
        .merge(capture::routes())
        .route("/assets/{*path}", get(assets::asset))
        .route("/t.js", get(assets::tracker))
        .layer(axum::Extension(sse::StreamSlots::default()))
        .layer(axum::Extension(std::sync::Arc::new(
            crate::domain::net::TrustedProxies::new(&app.config.server.trusted_proxies)
                .unwrap_or_default(),
        )))
        .layer(axum::Extension(rate_limit::RateLimits::new(
            &app.config.rate_limits,
        )))
        .layer(middleware::from_fn(rate_limit::rate_limit_headers))
        .layer(middleware::from_fn(same_origin_forms))
        .layer(middleware::from_fn(move |req, next| {
            security_headers(hsts, req, next)
        }))
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
                    if route == "/healthz" || route == "/livez" {
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
        .with_state(services)
}

impl FromRef<Services> for App {
    fn from_ref(services: &Services) -> App {
        services.app.clone()
    }
}

impl FromRef<Services> for Alerting {
    fn from_ref(services: &Services) -> Alerting {
        services.alerting.clone()
    }
}

impl FromRef<Services> for Insights {
    fn from_ref(services: &Services) -> Insights {
        services.insights.clone()
    }
}

impl FromRef<Services> for Integrations {
    fn from_ref(services: &Services) -> Integrations {
        services.integrations.clone()
    }
}

async fn redirect_slash(axum::extract::Path(slug): axum::extract::Path<String>) -> Response {
    axum::response::Redirect::permanent(&format!("/o/{}/", crate::domain::url::urlencode(&slug)))
        .into_response()
}

/// CSRF defence in depth for cookie-authenticated forms: a state-changing request from a
/// browser must come from this origin (`Sec-Fetch-Site`, else `Origin` vs `Host`). Forms also
/// carry a per-session token checked by each handler. The API uses bearer keys, not cookies.
async fn same_origin_forms(req: Request, next: Next) -> Response {
    let unsafe_method = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let path = req.uri().path();
    if unsafe_method && !path.starts_with("/api/") && !capture::is_capture_path(path) {
        let h = req.headers();
        let site = h.get("sec-fetch-site").and_then(|v| v.to_str().ok());
        let cross = match site {
            Some(s) => s != "same-origin" && s != "none",
            None => match (
                h.get(header::ORIGIN).and_then(|v| v.to_str().ok()),
                h.get(header::HOST).and_then(|v| v.to_str().ok()),
            ) {
                // An opaque origin (`null`: sandboxed frames, some cross-site redirects) is
                // never this site.
                (Some("null"), _) => true,
                (Some(origin), Some(host)) => origin.split("://").nth(1) != Some(host),
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

/// No inline script or style anywhere (htmx's own indicator style is off, see base.html), so
/// the policy can be strict; pages are never framed.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Headers on every answer. Responses are `no-store` unless the handler says otherwise (the
/// assets do): pages and API answers are per user, and some show a secret once (a new API
/// key, a webhook URL, a signing secret).
async fn security_headers(hsts: bool, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    let fixed = [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "same-origin"),
    ];
    for (name, value) in fixed {
        h.insert(name, header::HeaderValue::from_static(value));
    }
    if hsts {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            header::HeaderValue::from_static("max-age=31536000"),
        );
    }
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
    }
    response
}

/// `GET /livez`: the process is up and its runtime answers. Touches no store, so a probe
/// polled every second costs nothing and does not queue behind a busy DuckDB reader pool; use
/// `/healthz` to check the stores.
async fn livez() -> Response {
    axum::Json(json!({ "status": "alive", "version": env!("CARGO_PKG_VERSION") })).into_response()
}

/// `GET /healthz`: touches both databases.
async fn healthz(State(app): State<App>) -> Response {
    // Both at once: each is a hop to a blocking thread and back, and probes poll this often.
    let (sqlite, duckdb) = tokio::join!(
        app.meta.call(|c| meta::ping(c)),
        app.metrics.read(metrics::ping)
    );
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
