//! OAuth 2.0 with PKCE against a local fake authorisation server and API (HubSpot's wire format):
//! state mismatch rejected, PKCE verified, the code used once, refresh used, a revoked grant
//! surfaces as "reconnect needed"; new contacts become daily leads.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::common::*;

#[derive(Clone, Default)]
struct Fake {
    /// The code_challenge the consent page was opened with.
    challenge: Arc<Mutex<String>>,
    valid_access: Arc<Mutex<Vec<String>>>,
    refresh_valid: Arc<Mutex<bool>>,
    refresh_calls: Arc<Mutex<usize>>,
    contacts: Vec<Value>,
}

fn s256(verifier: &str) -> String {
    vitals::services::integrations::hubspot::challenge_of(verifier)
}

async fn token(State(f): State<Fake>, Form(form): Form<HashMap<String, String>>) -> Response {
    let bad = |m: &str| {
        (
            AxumStatus::BAD_REQUEST,
            axum::Json(json!({"status": "BAD_AUTH_CODE", "message": m})),
        )
            .into_response()
    };
    if form.get("client_id").map(String::as_str) != Some("client-1")
        || form.get("client_secret").map(String::as_str) != Some("secret-1")
    {
        return bad("bad client");
    }
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {
            if form.get("code").map(String::as_str) != Some("code-123") {
                return bad("unknown code");
            }
            let verifier = form.get("code_verifier").cloned().unwrap_or_default();
            if s256(&verifier) != *f.challenge.lock().unwrap() {
                return bad("PKCE verification failed");
            }
            *f.refresh_valid.lock().unwrap() = true;
            f.valid_access.lock().unwrap().push("at-1".into());
            // Expires at once: the first sync must refresh.
            axum::Json(json!({"access_token": "at-1", "refresh_token": "rt-1", "expires_in": 1, "token_type": "bearer"})).into_response()
        }
        Some("refresh_token") => {
            if form.get("refresh_token").map(String::as_str) != Some("rt-1")
                || !*f.refresh_valid.lock().unwrap()
            {
                return bad("refresh token is invalid, expired or revoked");
            }
            *f.refresh_calls.lock().unwrap() += 1;
            f.valid_access.lock().unwrap().push("at-2".into());
            axum::Json(json!({"access_token": "at-2", "refresh_token": "rt-1", "expires_in": 1800}))
                .into_response()
        }
        _ => bad("unsupported grant"),
    }
}

async fn contacts(
    State(f): State<Fake>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim_start_matches("Bearer ")
        .to_string();
    if !f.valid_access.lock().unwrap().contains(&auth) {
        return (
            AxumStatus::UNAUTHORIZED,
            axum::Json(
                json!({"status": "error", "message": "Authentication credentials not found"}),
            ),
        )
            .into_response();
    }
    let start: usize = q.get("after").and_then(|a| a.parse().ok()).unwrap_or(0);
    let page: Vec<Value> = f.contacts.iter().skip(start).take(2).cloned().collect();
    let mut body = json!({"results": page});
    if start + 2 < f.contacts.len() {
        body["paging"] = json!({"next": {"after": (start + 2).to_string()}});
    }
    axum::Json(body).into_response()
}

fn contact(id: u32, created: chrono::DateTime<chrono::Utc>) -> Value {
    json!({"id": id.to_string(), "properties": {"createdate": created.to_rfc3339()}, "createdAt": created.to_rfc3339()})
}

fn query_of(url: &str) -> HashMap<String, String> {
    url.split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                v.replace("%3A", ":")
                    .replace("%2F", "/")
                    .replace("%2E", "."),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_with_pkce_connects_refreshes_and_reports_a_revoked_grant() {
    let today = chrono::Utc::now().date_naive();
    let at = |back: i64, hour: u32| {
        (today - chrono::Duration::days(back))
            .and_hms_opt(hour, 0, 0)
            .unwrap()
            .and_utc()
    };
    let fake = Fake {
        contacts: vec![
            contact(1, at(3, 9)),
            contact(2, at(3, 15)),
            contact(3, at(1, 10)),
        ],
        ..Fake::default()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let router = axum::Router::new()
        .route("/oauth/v1/token", post(token))
        .route("/crm/v3/objects/contacts", get(contacts))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let server = TestServer::start_with(tempfile::tempdir().unwrap(), |c| {
        c.integrations.hubspot_client_id = "client-1".into();
        c.integrations.hubspot_client_secret = "secret-1".into();
        c.integrations.hubspot_auth_base = base.clone();
        c.integrations.hubspot_api_base = base.clone();
    })
    .await;
    let a = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &a, &["read", "write", "admin"]).await;
    let r = reqwest::Client::new()
        .post(server.url("/api/v1/alert-rules"))
        .bearer_auth(&key)
        .json(&json!({"name": "Integrations", "kind": "integration", "severity": "high"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let rule: Value = r.json().await.unwrap();
    // The same session, without following redirects, to read where the browser is sent.
    let cookie_client = a.client.clone();
    let start_connect = || async {
        let r = cookie_client
            .get(server.url(&format!("/o/{}/integrations/hubspot/connect", a.slug)))
            .send()
            .await
            .unwrap();
        // reqwest follows the redirect to the fake consent page (which does not exist): read the URL.
        r.url().to_string()
    };

    let consent = start_connect().await;
    assert!(
        consent.starts_with(&format!("{base}/oauth/authorize?")),
        "{consent}"
    );
    let q = query_of(&consent);
    assert_eq!(q["client_id"], "client-1");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["redirect_uri"], server.url("/oauth/callback"));
    let state = q["state"].clone();
    *fake.challenge.lock().unwrap() = q["code_challenge"].clone();

    // A state that was never issued is refused.
    let r = a
        .client
        .get(server.url("/oauth/callback?code=code-123&state=forged"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("state mismatch"));

    // The real one: the code is exchanged with the verifier, the integration created and synced.
    let r = a
        .client
        .get(server.url(&format!("/oauth/callback?code=code-123&state={state}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "lands on the Integrations page");
    assert!(r.url().path().ends_with("/integrations"));
    let (_, list) = get_json(&server, &key, "/api/v1/integrations").await;
    let id = list["integrations"][0]["id"].as_i64().expect("created");
    assert_eq!(list["integrations"][0]["provider"], "hubspot");
    let path = format!("/api/v1/integrations/{id}");
    let mut body = wait_until("the first sync to end", || async {
        let (_, body) = get_json(&server, &key, &path).await;
        let outcome = &body["runs"][0]["outcome"];
        (outcome == "ok" || outcome == "error").then_some(body)
    })
    .await;
    assert_eq!(body["runs"][0]["outcome"], "ok", "{body}");
    assert_eq!(
        *fake.refresh_calls.lock().unwrap(),
        1,
        "the expiring token was refreshed"
    );
    let day = |back: i64| today - chrono::Duration::days(back);
    let leads = |d: chrono::NaiveDate| {
        let path = format!(
            "/api/v1/metrics/leads/series?from={d}&to={}&bucket=day",
            d + chrono::Duration::days(1)
        );
        let server = &server;
        let key = &key;
        async move { values(&get_json(server, key, &path).await.1)[0] }
    };
    assert_eq!(leads(day(3)).await, Some(2.0));
    assert_eq!(leads(day(1)).await, Some(1.0));

    // The state is single-use.
    let r = a
        .client
        .get(server.url(&format!("/oauth/callback?code=code-123&state={state}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    // A verifier that does not match the challenge is refused by the server: nothing connected.
    let consent = start_connect().await;
    let state2 = query_of(&consent)["state"].clone();
    *fake.challenge.lock().unwrap() = "not-the-challenge".into();
    let r = a
        .client
        .get(server.url(&format!("/oauth/callback?code=code-123&state={state2}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("PKCE verification failed"));
    let (_, list) = get_json(&server, &key, "/api/v1/integrations").await;
    assert_eq!(list["integrations"].as_array().map(Vec::len), Some(1));

    // The user revokes Vitals in HubSpot: the next sync needs a reconnect.
    *fake.refresh_valid.lock().unwrap() = false;
    fake.valid_access.lock().unwrap().clear();
    let r = reqwest::Client::new()
        .post(server.url(&format!("/api/v1/integrations/{id}/sync")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    body = wait_until("the second sync to end", || async {
        let (_, body) = get_json(&server, &key, &path).await;
        (body["runs"].as_array().map(Vec::len) == Some(2) && body["syncing"] == false)
            .then_some(body)
    })
    .await;
    assert_eq!(body["integration"]["status"], "reconnect", "{body}");
    let html = a
        .client
        .get(server.url(&format!("/o/{}/integrations", a.slug)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("reconnect needed"));
    assert_eq!(leads(day(3)).await, Some(2.0), "data already pulled stays");
    // ... and the integration rule fires.
    let fired = first_firing_alert(&server, &key).await;
    assert_eq!(fired["rule_id"], rule["id"], "{fired}");
    server.stop().await;
}
