//! Insights end to end: anomalies found after ingest and listed with their sentence, re-ingest
//! without duplicates, forecasts with their backtest, an anomaly alert rule that fires, the pages,
//! and org isolation.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

const DAYS: i64 = 200;
const SPIKE_DAYS_AGO: i64 = 20;

fn noise(i: i64) -> f64 {
    let x = (i as f64 * 12.9898).sin() * 43_758.545_3;
    2.0 * (x - x.floor()) - 1.0
}

/// 200 days of revenue ending yesterday (UTC noon): 1,000 ± 30, and 5,000 twenty days ago.
fn revenue_history() -> (Value, String) {
    let today = chrono::Utc::now().date_naive();
    let mut points = Vec::new();
    let mut spike_day = String::new();
    for back in (1..=DAYS).rev() {
        let day = today - chrono::Duration::days(back);
        let value = if back == SPIKE_DAYS_AGO {
            spike_day = day.to_string();
            5_000.0
        } else {
            1_000.0 + 30.0 * noise(back)
        };
        points.push(
            json!({"metric": "revenue", "timestamp": format!("{day}T12:00:00Z"), "value": value}),
        );
    }
    (json!({ "points": points }), spike_day)
}

async fn wait_anomalies(server: &TestServer, key: &str, want: usize) -> Value {
    wait_until("an anomaly detected after ingest", || async {
        let (status, body) =
            get_json(server, key, "/api/v1/metrics/revenue/anomalies?days=400").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["anomalies"]
            .as_array()
            .is_some_and(|a| a.len() >= want)
            .then_some(body)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spike_is_found_after_ingest_explained_forecast_and_alerted_on() {
    let server = TestServer::start().await;
    let a = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &a, &["read", "write", "admin"]).await;

    // An anomaly rule first, so the detection after ingest fires it.
    let (status, rule) = {
        let r = reqwest::Client::new()
            .post(server.url("/api/v1/alert-rules"))
            .bearer_auth(&key)
            .json(
                &json!({"name": "Revenue anomaly", "kind": "anomaly", "metric": "revenue",
                          "min_anomaly_score": 0.5, "window": "30d", "severity": "medium"}),
            )
            .send()
            .await
            .unwrap();
        (r.status(), r.json::<Value>().await.unwrap_or(Value::Null))
    };
    assert_eq!(status, StatusCode::CREATED, "{rule}");

    let (batch, spike_day) = revenue_history();
    let (status, body) = post_points(&server, &key, &batch).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let body = wait_anomalies(&server, &key, 1).await;
    let list = body["anomalies"].as_array().cloned().unwrap_or_default();
    assert_eq!(list.len(), 1, "only the spike: {body}");
    let spike = &list[0];
    assert_eq!(spike["day"], spike_day.as_str());
    assert_eq!(spike["value"], 5_000.0);
    assert!(spike["score"].as_f64().unwrap() > 0.9, "{spike}");
    // Expected: the median of the last 60 days, 1,000 give or take the noise.
    let expected = spike["expected"].as_f64().unwrap();
    assert!((expected - 1_000.0).abs() < 30.0, "{spike}");
    let text = spike["text"].as_str().unwrap();
    assert!(text.starts_with("Revenue on "), "{text}");
    assert!(text.contains("was EUR 5,000 ("), "{text}");
    assert!(
        text.contains("% above the expected EUR 1,0")
            || text.contains("% above the expected EUR 99"),
        "{text}"
    );

    // The anomaly rule fired from it.
    let fired = first_firing_alert(&server, &key).await;
    assert_eq!(fired["rule_id"], rule["id"], "{fired}");

    // Sending the same history again changes nothing: one anomaly, not two.
    let (status, _) = post_points(&server, &key, &batch).await;
    assert_eq!(status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let body = wait_anomalies(&server, &key, 1).await;
    assert_eq!(
        body["anomalies"].as_array().map(Vec::len),
        Some(1),
        "{body}"
    );

    // The overview's insights rank it; the Insights page and the metric page say it.
    let (status, insights) = get_json(&server, &key, "/api/v1/insights?days=30").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(insights["anomalies"][0]["day"], spike_day.as_str());
    let html = a
        .client
        .get(server.url(&format!("/o/{}/insights?days=90", a.slug)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains(&spike_day), "insights page lists the day");
    let html = a
        .client
        .get(server.url(&format!("/o/{}/metrics/revenue?range=30d", a.slug)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        html.contains("<h2>Anomalies</h2>"),
        "metric page lists anomalies"
    );

    // The forecast: one step per day from today, with its backtest against seasonal naive.
    let (status, f) = get_json(&server, &key, "/api/v1/metrics/revenue/forecast?horizon=14").await;
    assert_eq!(status, StatusCode::OK, "{f}");
    let steps = f["steps"].as_array().cloned().unwrap_or_default();
    assert_eq!(steps.len(), 14);
    let today = chrono::Utc::now().date_naive();
    assert_eq!(steps[0]["day"], today.to_string().as_str());
    for s in &steps {
        let (lo, mean, hi) = (
            s["low"].as_f64().unwrap(),
            s["mean"].as_f64().unwrap(),
            s["high"].as_f64().unwrap(),
        );
        assert!(lo <= mean && mean <= hi, "{s}");
        assert!(
            (mean - 1_000.0).abs() < 150.0,
            "a flat series stays flat: {s}"
        );
    }
    let (m, n) = (
        f["mase"].as_f64().unwrap(),
        f["naive_mase"].as_f64().unwrap(),
    );
    assert_eq!(f["shown"].as_bool(), Some(m < n), "{f}");

    // Bad parameters are named.
    for (path, field) in [
        ("/api/v1/metrics/revenue/forecast?horizon=0", "horizon"),
        ("/api/v1/metrics/revenue/forecast?horizon=abc", "horizon"),
        ("/api/v1/metrics/revenue/anomalies?days=-1", "days"),
        ("/api/v1/metrics/revenue/anomalies?since=1", "since"),
        ("/api/v1/insights?top=1000", "top"),
    ] {
        let (status, body) = get_json(&server, &key, path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
        assert_eq!(body["error"]["field"], field, "{path}: {body}");
    }
    let (status, _) = get_json(&server, &key, "/api/v1/metrics/nope/forecast").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Another org sees none of it, through the API or the pages.
    let b = create_org(&server, &a, "Beta", "beta").await;
    let key_b = api_key(&server, &b, &["read"]).await;
    let (_, other) = get_json(
        &server,
        &key_b,
        "/api/v1/metrics/revenue/anomalies?days=400",
    )
    .await;
    assert_eq!(
        other["anomalies"].as_array().map(Vec::len),
        Some(0),
        "{other}"
    );
    let (_, other) = get_json(&server, &key_b, "/api/v1/insights?days=400").await;
    assert_eq!(
        other["anomalies"].as_array().map(Vec::len),
        Some(0),
        "{other}"
    );
    let (_, other) = get_json(&server, &key_b, "/api/v1/metrics/revenue/forecast").await;
    assert_eq!(other["steps"].as_array().map(Vec::len), Some(0), "{other}");
    let html = b
        .client
        .get(server.url("/o/beta/insights?days=730"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !html.contains(&spike_day),
        "beta's insights page shows acme's anomaly"
    );
    server.stop().await;
}

/// Every `<input … name=… value=…>` of a form page, to post it back.
fn form_inputs(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(i) = rest.find("<input ") {
        rest = &rest[i + 7..];
        let tag = &rest[..rest.find('>').unwrap_or(rest.len())];
        if let Some(name) = extract(tag, "name=\"", "\"") {
            out.push((name, extract(tag, "value=\"", "\"").unwrap_or_default()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_month_outlook_uses_the_monthly_revenue_target_from_settings() {
    let server = TestServer::start().await;
    let a = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &a, &["read", "write"]).await;
    // Growing revenue with a weekly pattern: a model with trend and season beats seasonal naive.
    let today = chrono::Utc::now().date_naive();
    let points: Vec<Value> = (1..=200)
        .rev()
        .map(|back| {
            let day = today - chrono::Duration::days(back);
            let i = 200 - back;
            let weekend = matches!(i % 7, 5 | 6);
            let value =
                (1_000.0 + 5.0 * i as f64) * if weekend { 0.5 } else { 1.0 } + 10.0 * noise(back);
            json!({"metric": "revenue", "timestamp": format!("{day}T12:00:00Z"), "value": value})
        })
        .collect();
    let (status, body) = post_points(&server, &key, &json!({ "points": points })).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let page = server.url(&format!("/o/{}/settings", a.slug));
    let html = a
        .client
        .get(&page)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut form = form_inputs(&html);
    assert!(form.iter().any(|(n, _)| n == "csrf"));
    form.retain(|(n, _)| n != "monthly_revenue_target");
    form.push(("kind".into(), "saas".into()));

    // A bad target is named and nothing is saved.
    let mut bad = form.clone();
    bad.push(("monthly_revenue_target".into(), "-5".into()));
    let r = a.client.post(&page).form(&bad).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Monthly revenue target must be a positive amount")
    );

    // A target no business of this size reaches this month.
    let mut good = form.clone();
    good.push(("monthly_revenue_target".into(), "1000000".into()));
    let r = a.client.post(&page).form(&good).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, insights) = get_json(&server, &key, "/api/v1/insights").await;
    let month = insights["outlooks"]
        .as_array()
        .and_then(|o| o.iter().find(|c| c["kind"] == "month"))
        .cloned()
        .unwrap_or(Value::Null);
    let text = month["text"].as_str().unwrap_or("");
    assert!(
        text.contains("against the monthly target of EUR 1,000,000: behind"),
        "{insights}"
    );

    // Without a target the month is compared with last month's revenue.
    let mut none = form.clone();
    none.push(("monthly_revenue_target".into(), "".into()));
    let r = a.client.post(&page).form(&none).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, insights) = get_json(&server, &key, "/api/v1/insights").await;
    let text = insights["outlooks"]
        .as_array()
        .and_then(|o| o.iter().find(|c| c["kind"] == "month"))
        .and_then(|c| c["text"].as_str())
        .unwrap_or("")
        .to_string();
    assert!(text.contains("against last month's EUR "), "{insights}");
    server.stop().await;
}
