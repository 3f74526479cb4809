//! Inbound webhooks: a secret URL per org that accepts the metric JSON of the API, with the same
//! validation; revocable; confined to its org.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

async fn post_hook(url: &str, body: &Value) -> (StatusCode, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_url_ingests_for_its_org_validates_and_can_be_revoked() {
    let server = TestServer::start().await;
    let a = setup(&server, "Acme", "UTC").await;
    let b = create_org(&server, &a, "Beta", "beta").await;
    let key_a = api_key(&server, &a, &["read"]).await;
    let key_b = api_key(&server, &b, &["read"]).await;

    let page = server.url(&format!("/o/{}/hooks", a.slug));
    let token = csrf(&a.client, &page).await;
    let r = a
        .client
        .post(&page)
        .form(&[("csrf", token.as_str()), ("name", "Zapier")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    let url = extract(&html, "data-testid=\"new-hook\">", "<").expect("URL shown once");
    assert!(url.starts_with(&server.url("/hooks/wh_")), "{url}");

    let (status, body) = post_hook(
        &url,
        &json!({"points": [{"metric": "revenue", "timestamp": "2024-04-01T10:00:00Z", "value": 42.5}]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 1);

    // Same validation as the API: every bad point named, nothing stored.
    let (status, body) = post_hook(
        &url,
        &json!([{"metric": "revenue", "timestamp": "2024-04-02T10:00:00Z", "value": 1},
                {"metric": "revenue", "timestamp": "yesterday", "value": 2}]),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "points[1].timestamp");

    let series = "/api/v1/metrics/revenue/series?from=2024-04-01&to=2024-04-03&bucket=day";
    let (_, s) = get_json(&server, &key_a, series).await;
    assert_eq!(values(&s), vec![Some(42.5), None]);
    let (_, s) = get_json(&server, &key_b, series).await;
    assert_eq!(values(&s), vec![None, None], "beta got acme's point");

    // The page lists it as used; revoking turns the URL off.
    let html = a
        .client
        .get(&page)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("Zapier") && !html.contains(&url),
        "the secret is not shown again"
    );
    let id = extract(&html, &format!("/o/{}/hooks/", a.slug), "/revoke").expect("revoke form");
    // Another org cannot revoke it.
    let token_b = csrf(&b.client, &server.url("/o/beta/hooks")).await;
    let r = b
        .client
        .post(server.url(&format!("/o/beta/hooks/{id}/revoke")))
        .form(&[("csrf", token_b.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = a
        .client
        .post(server.url(&format!("/o/{}/hooks/{id}/revoke", a.slug)))
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (status, body) = post_hook(
        &url,
        &json!({"metric": "revenue", "timestamp": "2024-04-02T10:00:00Z", "value": 1}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = post_hook(&server.url("/hooks/wh_guess"), &json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    server.stop().await;
}
