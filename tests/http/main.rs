//! End-to-end tests over HTTP against the real server with real SQLite and DuckDB files.

mod alerts;
mod analytics;
mod arrow_ingest;
mod browser;
mod common;
mod compaction;
mod durability;
mod event_compaction;
mod events;
mod hardening;
mod hooks;
mod hubspot;
mod import;
mod insights;
mod layout;
mod people;
mod reads;
mod sdks;
mod stripe;

use std::time::Duration;

use common::*;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

fn point(metric: &str, ts: &str, value: f64) -> Value {
    json!({"metric": metric, "timestamp": ts, "value": value})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_then_bucketed_query_equals_hand_computed_values_in_local_days() {
    let server = TestServer::start().await;
    let s = setup(&server, "Acme", "America/New_York").await;
    let key = api_key(&server, &s, &["read", "write"]).await;
    // New York is UTC-5 in winter, UTC-4 from 2026-03-08 07:00 UTC.
    let batch = json!({"points": [
        point("revenue", "2026-03-01T03:00:00Z", 10.0),  // Feb 28, 22:00 local
        point("revenue", "2026-03-01T06:00:00Z", 20.0),  // Mar 1, 01:00
        point("revenue", "2026-03-01T23:30:00Z", 5.0),   // Mar 1, 18:30
        point("revenue", "2026-03-02T04:59:59Z", 7.0),   // Mar 1, 23:59:59
        point("revenue", "2026-03-02T05:00:00Z", 1.0),   // Mar 2, 00:00
        point("revenue", "2026-03-09T03:30:00Z", 100.0), // Mar 8, 23:30 EDT
        point("revenue", "2026-03-09T04:30:00Z", 1000.0) // Mar 9, 00:30 EDT (a fixed -5 would say Mar 8)
    ]});
    let (status, body) = post_points(&server, &key, &batch).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["accepted"], 7);

    let q = |agg: &str, bucket: &str| {
        format!(
            "/api/v1/metrics/revenue/series?from=2026-02-28&to=2026-03-03&bucket={bucket}&agg={agg}"
        )
    };
    let (status, sum) = get_json(&server, &key, &q("sum", "day")).await;
    assert_eq!(status, StatusCode::OK, "{sum}");
    assert_eq!(values(&sum), vec![Some(10.0), Some(32.0), Some(1.0)]);
    assert_eq!(
        sum["series"][0]["points"][0]["start"],
        "2026-02-28T00:00:00-05:00"
    );
    assert_eq!(sum["series"][0]["points"][1]["count"], 3);

    let (_, avg) = get_json(&server, &key, &q("avg", "day")).await;
    let v = values(&avg);
    assert_eq!(v[0], Some(10.0));
    assert!((v[1].unwrap() - 32.0 / 3.0).abs() < 1e-9);
    let (_, last) = get_json(&server, &key, &q("last", "day")).await;
    assert_eq!(values(&last), vec![Some(10.0), Some(7.0), Some(1.0)]);
    let (_, max) = get_json(&server, &key, &q("max", "day")).await;
    assert_eq!(values(&max), vec![Some(10.0), Some(20.0), Some(1.0)]);
    let (_, min) = get_json(&server, &key, &q("min", "day")).await;
    assert_eq!(values(&min), vec![Some(10.0), Some(5.0), Some(1.0)]);

    // Across the DST change: Mar 8 has 23 hours; each point lands in its local day.
    let (_, dst) = get_json(
        &server,
        &key,
        "/api/v1/metrics/revenue/series?from=2026-03-07&to=2026-03-10&bucket=day&agg=sum",
    )
    .await;
    assert_eq!(values(&dst), vec![None, Some(100.0), Some(1000.0)]);
    assert_eq!(
        dst["series"][0]["points"][2]["start"],
        "2026-03-09T00:00:00-04:00"
    );

    // Months: everything in February (local) vs March.
    let (_, month) = get_json(
        &server,
        &key,
        "/api/v1/metrics/revenue/series?from=2026-02-01&to=2026-04-01&bucket=month",
    )
    .await;
    assert_eq!(values(&month), vec![Some(10.0), Some(1133.0)]);
    // Hours: the 01:00 local hour of Mar 1 holds 20.
    let (_, hours) = get_json(&server, &key, "/api/v1/metrics/revenue/series?from=2026-03-01T06:00:00Z&to=2026-03-01T08:00:00Z&bucket=hour").await;
    assert_eq!(values(&hours), vec![Some(20.0), None]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dimensions_filter_and_group_and_last_sums_series() {
    let server = TestServer::start().await;
    let s = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &s, &["read", "write"]).await;
    let p = |ts: &str, v: f64, region: &str| json!({"metric": "cash_balance", "timestamp": ts, "value": v, "dimensions": {"region": region, "bank": "b&c=1"}});
    let (status, body) = post_points(
        &server,
        &key,
        &json!([
            p("2026-05-01T08:00:00Z", 100.0, "eu"),
            p("2026-05-01T20:00:00Z", 150.0, "eu"),
            p("2026-05-01T09:00:00Z", 40.0, "us"),
            p("2026-05-01T10:00:00Z", 60.0, "us"),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let base = "/api/v1/metrics/cash_balance/series?from=2026-05-01&to=2026-05-02&bucket=day";
    // `last` is each series' latest value, summed over series: 150 + 60.
    let (_, total) = get_json(&server, &key, base).await;
    assert_eq!(values(&total), vec![Some(210.0)]);
    let (_, eu) = get_json(&server, &key, &format!("{base}&dim.region=eu&agg=sum")).await;
    assert_eq!(values(&eu), vec![Some(250.0)]);
    let (_, bank) = get_json(&server, &key, &format!("{base}&dim.bank=b%26c%3D1&agg=sum")).await;
    assert_eq!(values(&bank), vec![Some(350.0)]);
    let (_, grouped) = get_json(&server, &key, &format!("{base}&group_by=region")).await;
    let groups: Vec<(String, Option<f64>)> = grouped["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["group"].as_str().unwrap().to_string(),
                g["points"][0]["value"].as_f64(),
            )
        })
        .collect();
    assert_eq!(
        groups,
        vec![
            ("eu".to_string(), Some(150.0)),
            ("us".to_string(), Some(60.0))
        ]
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resent_points_do_not_double_count_and_corrections_replace() {
    let server = TestServer::start().await;
    let s = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &s, &["read", "write"]).await;
    let batch = json!([
        point("leads", "2026-04-01T10:00:00Z", 3.0),
        point("leads", "2026-04-01T11:00:00Z", 4.0),
        {"metric": "leads", "timestamp": "2026-04-01T11:00:00Z", "value": 5.0, "dimensions": {"channel": "ads"}},
    ]);
    for _ in 0..3 {
        let (status, _) = post_points(&server, &key, &batch).await;
        assert_eq!(status, StatusCode::OK);
    }
    let q = "/api/v1/metrics/leads/series?from=2026-04-01&to=2026-04-02&agg=sum";
    let (_, body) = get_json(&server, &key, q).await;
    assert_eq!(values(&body), vec![Some(12.0)]);
    assert_eq!(body["series"][0]["points"][0]["count"], 3);
    // Concurrent re-sends (group commit) still count once.
    let sends = (0..8).map(|_| post_points(&server, &key, &batch));
    for (status, _) in futures::future::join_all(sends).await {
        assert_eq!(status, StatusCode::OK);
    }
    let (_, body) = get_json(&server, &key, q).await;
    assert_eq!(values(&body), vec![Some(12.0)]);
    // A correction of one point replaces it.
    post_points(&server, &key, &point("leads", "2026-04-01T10:00:00Z", 30.0)).await;
    let (_, body) = get_json(&server, &key, q).await;
    assert_eq!(values(&body), vec![Some(39.0)]);
    // The catalog's latest value is the sum at the latest timestamp (4 + 5).
    let (_, catalog) = get_json(&server, &key, "/api/v1/metrics").await;
    let leads = catalog["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == "leads")
        .unwrap()
        .clone();
    assert_eq!(leads["latest"]["value"], 9.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_with_one_bad_item_writes_nothing() {
    let server = TestServer::start().await;
    let s = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &s, &["read", "write"]).await;
    let (status, body) = post_points(
        &server,
        &key,
        &json!([
            point("revenue", "2026-04-01T10:00:00Z", 1.0),
            {"metric": "revenue", "timestamp": "2026-04-01T11:00:00Z", "value": "12"},
            point("revenue", "2026-04-01T12:00:00Z", 2.0),
            point("no_such_metric", "2026-04-01T12:00:00Z", 2.0),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["code"], "invalid_points");
    assert_eq!(body["error"]["field"], "points[1].value");
    let details = body["error"]["details"].as_array().unwrap();
    assert_eq!(details.len(), 2);
    assert_eq!(
        (details[1]["index"].as_i64(), details[1]["field"].as_str()),
        (Some(3), Some("metric"))
    );
    let (_, series) = get_json(
        &server,
        &key,
        "/api/v1/metrics/revenue/series?from=2026-04-01&to=2026-04-02",
    )
    .await;
    assert_eq!(values(&series), vec![None]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_with(dir, |c| {
        c.ingest.max_body_bytes = 64 * 1024;
        c.ingest.max_points_per_request = 100;
    })
    .await;
    let s = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &s, &["read", "write"]).await;
    let read_only = api_key(&server, &s, &["read"]).await;
    let raw = |body: &'static str| {
        Client::new()
            .post(server.url("/api/v1/metrics"))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let check = |r: reqwest::Response, status: StatusCode, code: &'static str| async move {
        assert_eq!(r.status(), status);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
        body
    };
    check(
        raw("{\"metric\": ").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "malformed_json",
    )
    .await;
    check(
        raw("{\"metric\":\"revenue\",\"timestamp\":\"2026-01-01T00:00:00Z\",\"value\":NaN}")
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "malformed_json",
    )
    .await;
    check(
        raw("{\"metric\":\"revenue\",\"timestamp\":\"2026-01-01T00:00:00Z\",\"value\":1e999}")
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "malformed_json",
    )
    .await;
    check(
        raw("\"just a string\"").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "bad_shape",
    )
    .await;
    check(
        raw("[]").await.unwrap(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "empty_batch",
    )
    .await;

    let cases = [
        (
            json!({"metric": "revenue", "timestamp": "2026-01-01T00:00:00Z", "value": "NaN"}),
            "points[0].value",
        ),
        (
            json!({"metric": "revenue", "timestamp": "2026-01-01T00:00:00Z", "value": true}),
            "points[0].value",
        ),
        (
            json!({"metric": "revenue", "timestamp": 12, "value": 1}),
            "points[0].timestamp",
        ),
        (
            json!({"metric": "revenue", "timestamp": "2099-01-01T00:00:00Z", "value": 1}),
            "points[0].timestamp",
        ),
        (
            json!({"metric": "bogus", "timestamp": "2026-01-01T00:00:00Z", "value": 1}),
            "points[0].metric",
        ),
        (
            json!({"metric": ["revenue"], "timestamp": "2026-01-01T00:00:00Z", "value": 1}),
            "points[0].metric",
        ),
    ];
    for (body, field) in cases {
        let (status, err) = post_points(&server, &key, &body).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(err["error"]["field"], field, "{err}");
        assert!(!err["error"]["message"].as_str().unwrap().is_empty());
    }

    // Too many points, and a body over the byte limit.
    let many: Vec<Value> = (0..101)
        .map(|i| {
            point(
                "leads",
                &format!("2026-01-01T00:{:02}:{:02}Z", i / 60, i % 60),
                1.0,
            )
        })
        .collect();
    let (status, err) = post_points(&server, &key, &Value::Array(many)).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("batch_too_large"))
    );
    let huge = format!(
        "[{}]",
        vec!["{\"metric\":\"leads\",\"timestamp\":\"2026-01-01T00:00:00Z\",\"value\":1}"; 2000]
            .join(",")
    );
    let r = Client::new()
        .post(server.url("/api/v1/metrics"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    check(r, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large").await;

    // Content type, authentication, scope.
    let r = Client::new()
        .post(server.url("/api/v1/metrics"))
        .bearer_auth(&key)
        .body("{}")
        .send()
        .await
        .unwrap();
    check(
        r,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    let r = Client::new()
        .get(server.url("/api/v1/metrics"))
        .send()
        .await
        .unwrap();
    check(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let r = Client::new()
        .get(server.url("/api/v1/metrics"))
        .bearer_auth("vk_0123456789ab_notthekeynotthekeynotthekeynotthekey")
        .send()
        .await
        .unwrap();
    check(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    let (status, err) = post_points(
        &server,
        &read_only,
        &point("leads", "2026-01-01T00:00:00Z", 1.0),
    )
    .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("forbidden"))
    );

    // Series parameters.
    for (path, field) in [
        ("/api/v1/metrics/revenue/series?bucket=fortnight", "bucket"),
        ("/api/v1/metrics/revenue/series?agg=median", "agg"),
        ("/api/v1/metrics/revenue/series?from=yesterday", "from"),
        (
            "/api/v1/metrics/revenue/series?from=2026-02-01&to=2026-01-01",
            "from",
        ),
        ("/api/v1/metrics/revenue/series?colour=red", "colour"),
        (
            "/api/v1/metrics/revenue/series?group_by=Bad-Key",
            "group_by",
        ),
        (
            "/api/v1/metrics/revenue/series?from=2000-01-01&bucket=hour",
            "bucket",
        ),
    ] {
        let (status, err) = get_json(&server, &key, path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
        assert_eq!(err["error"]["field"], field, "{path}: {err}");
    }
    let (status, err) = get_json(&server, &key, "/api/v1/metrics/nope/series").await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (StatusCode::NOT_FOUND, Some("key"))
    );
    let (_, series) = get_json(
        &server,
        &key,
        "/api/v1/metrics/leads/series?from=2025-12-31&to=2026-01-02",
    )
    .await;
    assert_eq!(
        values(&series),
        vec![None, None],
        "nothing was written by the rejected requests"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_a_stop_and_restart() {
    let server = TestServer::start().await;
    let s = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &s, &["read", "write"]).await;
    let points: Vec<Value> = (0..5000)
        .map(|i| {
            point(
                "traffic",
                &format!(
                    "2026-06-{:02}T{:02}:{:02}:00Z",
                    1 + i / 1440,
                    (i / 60) % 24,
                    i % 60
                ),
                2.0,
            )
        })
        .collect();
    let (status, _) = post_points(&server, &key, &Value::Array(points)).await;
    assert_eq!(status, StatusCode::OK);
    let dir = server.stop().await;

    let server = TestServer::start_with(dir, |_| {}).await;
    let (status, body) = get_json(
        &server,
        &key,
        "/api/v1/metrics/traffic/series?from=2026-06-01&to=2026-06-05&agg=sum",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // 1440 points a day for three days and 680 on the fourth, 2 each.
    assert_eq!(
        values(&body),
        vec![Some(2880.0), Some(2880.0), Some(2880.0), Some(1360.0)]
    );
    // The login survives too.
    login(&server, OWNER_EMAIL, PASSWORD).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_are_confined_to_their_org() {
    let server = TestServer::start().await;
    let a = setup(&server, "Alpha", "UTC").await;
    let b = create_org(&server, &a, "Beta", "beta").await;
    let key_a = api_key(&server, &a, &["read", "write", "admin"]).await;
    let key_b = api_key(&server, &b, &["read", "write"]).await;
    let (status, _) = post_points(
        &server,
        &key_b,
        &point("revenue", "2026-04-01T10:00:00Z", 500.0),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = post_points(
        &server,
        &key_a,
        &point("revenue", "2026-04-01T10:00:00Z", 7.0),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let q = "/api/v1/metrics/revenue/series?from=2026-04-01&to=2026-04-02&agg=sum";
    let (_, seen_a) = get_json(&server, &key_a, q).await;
    let (_, seen_b) = get_json(&server, &key_b, q).await;
    assert_eq!(values(&seen_a), vec![Some(7.0)]);
    assert_eq!(values(&seen_b), vec![Some(500.0)]);
    let (_, org) = get_json(&server, &key_a, "/api/v1/org").await;
    assert_eq!(org["org"]["slug"], a.slug);
    // A custom metric of A is unknown to B.
    let r = Client::new()
        .post(server.url("/api/v1/custom-metrics"))
        .bearer_auth(&key_a)
        .json(&json!({"key": "signups", "name": "Signups", "category": "growth"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let (status, _) = post_points(
        &server,
        &key_a,
        &point("signups", "2026-04-01T10:00:00Z", 1.0),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, err) = post_points(
        &server,
        &key_b,
        &point("signups", "2026-04-01T10:00:00Z", 1.0),
    )
    .await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("points[0].metric"))
    );
    let (status, _) = get_json(&server, &key_b, "/api/v1/metrics/signups/series").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list_b) = get_json(&server, &key_b, "/api/v1/metrics").await;
    assert!(
        list_b["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["key"] != "signups")
    );
    // B's key without admin scope cannot define metrics.
    let r = Client::new()
        .post(server.url("/api/v1/custom-metrics"))
        .bearer_auth(&key_b)
        .json(&json!({"key": "x", "name": "X", "category": "growth"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // A revoked key stops working.
    let page = server.url(&format!("/o/{}/api-keys", b.slug));
    let html = get_page(&b.client, &page).await.1;
    let revoke = extract(&html, "action=\"/o/beta/api-keys/", "/revoke").unwrap();
    let token = csrf(&b.client, &page).await;
    let r = b
        .client
        .post(server.url(&format!("/o/beta/api-keys/{revoke}/revoke")))
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (status, err) = get_json(&server, &key_b, "/api/v1/metrics").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{err}");
    // Revoking B's key from A's pages is impossible: the id is not found in A.
    let token_a = csrf(&a.client, &server.url(&format!("/o/{}/api-keys", a.slug))).await;
    let r = a
        .client
        .post(server.url(&format!("/o/{}/api-keys/{revoke}/revoke", a.slug)))
        .form(&[("csrf", token_a.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_cannot_open_another_orgs_pages_and_roles_are_enforced() {
    let server = TestServer::start().await;
    let a = setup(&server, "Alpha", "UTC").await;
    let b = create_org(&server, &a, "Beta", "beta").await;
    add_member(&server, &b, "viewer@beta.test", "viewer").await;
    let viewer = login(&server, "viewer@beta.test", PASSWORD).await;

    // Every org-scoped page of Alpha is a 404 for a member of Beta only.
    for path in [
        "/",
        "/grid",
        "/cards/revenue",
        "/metrics/revenue",
        "/events",
        "/api-keys",
        "/members",
        "/audit",
        "/settings",
        "/health",
        "/catalog",
        "/analytics",
        "/analytics?view=funnel&steps=a,b",
        "/analytics?view=catalogue",
        "/analytics?view=api",
        "/analytics?view=saved",
        "/analytics?insight=1",
        "/analytics/live",
        "/people",
        "/person?id=u1",
    ] {
        let r = viewer
            .get(server.url(&format!("/o/{}{path}", a.slug)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "GET {path}");
    }
    for path in [
        "/api-keys",
        "/api-keys/1/revoke",
        "/members",
        "/members/1/role",
        "/members/1/remove",
        "/settings",
        "/settings/recompute-history",
        "/catalog",
        "/analytics/save",
        "/analytics/insights/1/delete",
        "/cohorts",
        "/cohorts/1/delete",
    ] {
        let r = viewer
            .post(server.url(&format!("/o/{}{path}", a.slug)))
            .form(&[("csrf", "x"), ("role", "owner")])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "POST {path}");
    }
    // In Beta, the viewer sees data but cannot manage keys or members.
    let r = viewer.get(server.url("/o/beta/")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(
        !html.contains("/o/beta/api-keys"),
        "no API keys link for a viewer"
    );
    let r = viewer
        .get(server.url("/o/beta/api-keys"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let token = csrf(&viewer, &server.url("/o/beta/")).await;
    let r = viewer
        .post(server.url("/o/beta/api-keys"))
        .form(&[
            ("csrf", token.as_str()),
            ("name", "sneaky"),
            ("scopes", "read"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = viewer
        .get(server.url("/o/beta/members"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = viewer.get(server.url("/admin/jobs")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let jobs = get_page(&a.client, &server.url("/admin/jobs")).await.1;
    assert!(
        jobs.contains("score_recompute") && jobs.contains("0 */5 * * * *"),
        "{jobs}"
    );
    let r = viewer
        .get(server.url("/o/beta/metrics/revenue?group_by=product"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::FORBIDDEN,
        "drill-down needs Analyst"
    );
    // Nothing was created.
    let html = get_page(&b.client, &server.url("/o/beta/api-keys")).await.1;
    assert!(!html.contains("sneaky"));
    // Anonymous visitors go to the login page.
    let r = no_redirects()
        .get(server.url("/o/beta/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/login?next=/o/beta/")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn setup_happens_once_then_login_is_required_and_throttled() {
    let server = TestServer::start().await;
    let anon = no_redirects();
    let r = anon.get(server.url("/")).send().await.unwrap();
    assert_eq!(r.headers()["location"], "/setup");
    let r = anon.get(server.url("/setup")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    let token = extract(&html, "name=\"csrf\" value=\"", "\"").expect("setup form token");
    // Bad setup input names the field and creates nothing.
    let r = anon
        .post(server.url("/setup"))
        .form(&[
            ("csrf", token.as_str()),
            ("org_name", "Acme"),
            ("time_zone", "Mars/Olympus"),
            ("currency", "EUR"),
            ("name", "O"),
            ("email", "o@acme.test"),
            ("password", "short"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(
        html.contains("Time zone: ")
            && html.contains("Mars/Olympus")
            && html.contains("is not an IANA time zone"),
        "{html}"
    );
    assert!(html.contains("Password must be at least 10 characters"));
    assert_eq!(
        anon.get(server.url("/")).send().await.unwrap().headers()["location"],
        "/setup"
    );

    let s = setup(&server, "Acme", "Europe/Berlin").await;
    assert_eq!(s.slug, "acme");
    let r = anon.get(server.url("/setup")).send().await.unwrap();
    assert_eq!(r.headers()["location"], "/login");
    let r = anon
        .post(server.url("/setup"))
        .form(&[("org_name", "Evil")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);

    // Wrong passwords: 401 five times, then 429 even with the right one.
    let token = csrf(&anon, &server.url("/login")).await;
    for _ in 0..5 {
        let r = anon
            .post(server.url("/login"))
            .form(&[
                ("csrf", token.as_str()),
                ("email", OWNER_EMAIL),
                ("password", "wrong-password!"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    }
    let r = anon
        .post(server.url("/login"))
        .form(&[
            ("csrf", token.as_str()),
            ("email", OWNER_EMAIL),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.headers().contains_key("retry-after"));

    // Session cookie flags.
    let fresh = TestServer::start().await;
    let client = no_redirects();
    let token = csrf(&client, &fresh.url("/setup")).await;
    let r = client
        .post(fresh.url("/setup"))
        .form(&[
            ("csrf", token.as_str()),
            ("org_name", "Acme"),
            ("time_zone", "UTC"),
            ("currency", "EUR"),
            ("name", "O"),
            ("email", "o@acme.test"),
            ("password", PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    fresh.stop().await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_need_the_csrf_token_and_same_origin() {
    let server = TestServer::start().await;
    let s = setup(&server, "Acme", "UTC").await;
    let page = server.url(&format!("/o/{}/api-keys", s.slug));
    let r = s
        .client
        .post(&page)
        .form(&[("name", "k"), ("scopes", "read")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let token = csrf(&s.client, &page).await;
    let r = s
        .client
        .post(&page)
        .header("origin", "https://evil.example")
        .form(&[("csrf", token.as_str()), ("name", "k"), ("scopes", "read")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = s
        .client
        .post(&page)
        .header("sec-fetch-site", "cross-site")
        .form(&[("csrf", token.as_str()), ("name", "k"), ("scopes", "read")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let html = get_page(&s.client, &page).await.1;
    assert!(!html.contains("<td>k</td>"));
    // Field errors name the field.
    let r = s
        .client
        .post(&page)
        .form(&[
            ("csrf", token.as_str()),
            ("name", ""),
            ("expires_days", "-3"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = r.text().await.unwrap();
    assert!(html.contains("Name must be 1 to 100 characters"));
    assert!(html.contains("Scopes: give at least one scope"));
    assert!(html.contains("Expiry must be a whole number"));
    server.stop().await;
}

/// Reads an event stream until `needle` has been seen, for at most 5 s.
async fn read_until(stream: &mut reqwest::Response, seen: &mut String, needle: &str) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while !seen.contains(needle) {
            let chunk = stream.chunk().await.unwrap().expect("stream open");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {needle:?} within 5 s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_delivers_an_update_after_ingest_and_the_card_shows_it() {
    let server = TestServer::start().await;
    let s = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &s, &["write"]).await;
    let mut stream = s
        .client
        .get(server.url(&format!("/o/{}/events", s.slug)))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, "event: hello").await;
    let now = chrono::Utc::now();
    let started = std::time::Instant::now();
    let (status, _) = post_points(&server, &key, &point("nps", &now.to_rfc3339(), 47.0)).await;
    assert_eq!(status, StatusCode::OK);
    read_until(&mut stream, &mut seen, "event: m-nps").await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "update arrived in {:?}",
        started.elapsed()
    );
    // The card the page refreshes on that event shows the new value.
    let html = get_page(
        &s.client,
        &server.url(&format!("/o/{}/cards/nps?range=7d", s.slug)),
    )
    .await
    .1;
    assert!(html.contains("data-testid=\"value\">47<"), "{html}");
    assert!(html.contains("hx-trigger=\"sse:m-nps\""));
    drop(stream);
    server.stop().await;
}

/// The live events page: stored events are announced on the org's stream (`event: events`,
/// with how many), and the table the page swaps in on it lists them, newest first; another
/// org's stream hears nothing of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_are_announced_and_listed() {
    let server = TestServer::start().await;
    let s = setup(&server, "Acme", "UTC").await;
    let other = create_org(&server, &s, "Beta", "beta").await;
    let key = api_key(&server, &s, &["write"]).await;
    let page = get_page(
        &s.client,
        &server.url(&format!("/o/{}/analytics?view=events", s.slug)),
    )
    .await
    .1;
    assert!(
        page.contains("hx-trigger=\"sse:events throttle:1s\""),
        "{page}"
    );
    let mut stream = s
        .client
        .get(server.url(&format!("/o/{}/events", s.slug)))
        .send()
        .await
        .unwrap();
    let mut theirs = other
        .client
        .get(server.url("/o/beta/events"))
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, "event: hello").await;
    let mut heard = String::new();
    read_until(&mut theirs, &mut heard, "event: hello").await;
    let now = chrono::Utc::now();
    let batch = json!({"events": [
        {"name": "signup", "distinct_id": "u1", "timestamp": (now - chrono::Duration::seconds(2)).to_rfc3339()},
        {"name": "checkout", "distinct_id": "u1", "timestamp": now.to_rfc3339(), "properties": {"total": 12}},
    ]});
    let (status, body) = post_api(&server, &key, "/events/batch", batch).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    read_until(&mut stream, &mut seen, "event: events\ndata: 2").await;
    let table = get_page(
        &s.client,
        &server.url(&format!("/o/{}/analytics/live", s.slug)),
    )
    .await
    .1;
    let (checkout, signup) = (
        table.find("<td>checkout</td>").expect("checkout listed"),
        table.find("<td>signup</td>").expect("signup listed"),
    );
    assert!(checkout < signup, "newest first: {table}");
    assert!(
        table.contains("{&#34;total&#34;:12}") || table.contains("{&quot;total&quot;:12}"),
        "{table}"
    );
    // Beta's stream stays quiet about Alpha's events (only keep-alives could come).
    let quiet = tokio::time::timeout(
        Duration::from_millis(500),
        read_until_quiet(&mut theirs, "event: events"),
    )
    .await;
    assert!(quiet.is_err(), "Beta heard Alpha's events");
    drop((stream, theirs));
    server.stop().await;
}

/// Reads the stream until `needle` appears (for a test that expects it never to).
async fn read_until_quiet(stream: &mut reqwest::Response, needle: &str) {
    let mut seen = String::new();
    while let Ok(Some(chunk)) = stream.chunk().await {
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if seen.contains(needle) {
            return;
        }
    }
    std::future::pending::<()>().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_render_data_without_javascript() {
    let server = TestServer::start().await;
    let s = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &s, &["write"]).await;
    // Points at UTC midnight (the org's time zone is UTC): today's is never in the future.
    let today = chrono::Utc::now().date_naive();
    let ts = |days_ago: i64| format!("{}T00:00:00Z", today - chrono::Duration::days(days_ago));
    let mut points = Vec::new();
    for d in 0..14 {
        // 100 a day this week, 80 a day the week before: +25%.
        let v = if d < 7 { 100.0 } else { 80.0 };
        points.push(json!({"metric": "revenue", "timestamp": ts(d), "value": v / 2.0, "dimensions": {"product": "pro"}}));
        points.push(json!({"metric": "revenue", "timestamp": ts(d), "value": v / 2.0, "dimensions": {"product": "starter"}}));
    }
    let (status, _) = post_points(&server, &key, &Value::Array(points)).await;
    assert_eq!(status, StatusCode::OK);
    let html = get_page(&s.client, &server.url("/o/acme/?range=7d"))
        .await
        .1;
    let card = extract(&html, "id=\"card-revenue\"", "</article>").unwrap();
    assert!(card.contains("EUR 700"), "{card}");
    assert!(
        card.contains("▲ 25.0%") && card.contains("change good"),
        "{card}"
    );
    for category in ["Financial", "Customer", "Operational", "Growth", "Risk"] {
        assert!(html.contains(&format!("<h2>{category}</h2>")));
    }
    let grid = get_page(&s.client, &server.url("/o/acme/grid?range=7d"))
        .await
        .1;
    assert!(
        grid.trim_start().starts_with("<div id=\"grid\""),
        "fragment only"
    );
    let r = s
        .client
        .get(server.url("/o/acme/?range=forever"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let detail = get_page(&s.client, &server.url("/o/acme/metrics/revenue?range=7d"))
        .await
        .1;
    assert!(detail.contains("By product"));
    assert!(
        detail.contains("<td>pro</td><td class=\"num\">EUR 350</td>"),
        "{detail}"
    );
    let r = s
        .client
        .get(server.url("/o/acme/metrics/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Assets are embedded, typed and cacheable.
    let r = Client::new()
        .get(server.url("/assets/vendor/htmx.min.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let r = Client::new()
        .get(server.url("/assets/vendor/htmx.min.js"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    let r = Client::new()
        .get(server.url("/assets/refresh-vendor.sh"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Health check touches both stores.
    let (status, health) = get_json(&server, "", "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        (health["sqlite"].as_str(), health["duckdb"].as_str()),
        (Some("ok"), Some("ok"))
    );
    // Liveness answers without the stores.
    let (status, live) = get_json(&server, "", "/livez").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(live["status"].as_str(), Some("alive"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_creates_keys_that_work_and_rejects_bad_config() {
    let server = TestServer::start().await;
    let s = setup(&server, "Acme", "UTC").await;
    let bin = env!("CARGO_BIN_EXE_vitals");
    let dir = server.dir.path().to_path_buf();
    let out = tokio::process::Command::new(bin)
        .args([
            "apikey",
            "create",
            "--org",
            &s.slug,
            "--name",
            "script",
            "--scopes",
            "read,write",
        ])
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let (status, _) =
        post_points(&server, &key, &point("leads", "2026-01-05T00:00:00Z", 4.0)).await;
    assert_eq!(status, StatusCode::OK);
    let (_, body) = get_json(
        &server,
        &key,
        "/api/v1/metrics/leads/series?from=2026-01-05&to=2026-01-06",
    )
    .await;
    assert_eq!(values(&body), vec![Some(4.0)]);
    let out = tokio::process::Command::new(bin)
        .args(["apikey", "list", "--org", &s.slug])
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .await
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        listing.contains("script") && listing.contains("read,write") && listing.contains("active"),
        "{listing}"
    );
    let out = tokio::process::Command::new(bin)
        .args(["apikey", "create", "--org", "nope", "--name", "x"])
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--org \"nope\""));

    let out = tokio::process::Command::new(bin)
        .args(["config", "check"])
        .env("VITALS_SERVER__LISTEN", "not-an-address")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("server.listen"), "{err}");
    let out = tokio::process::Command::new(bin)
        .args(["config", "check", "--listen", "127.0.0.1:9999"])
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .await
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("listen = \"127.0.0.1:9999\""));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deteriorating_churn_series_lowers_the_score_and_is_named_the_top_drag() {
    let server = TestServer::start().await;
    let s = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &s, &["read", "write"]).await;
    let today = chrono::Utc::now().date_naive();
    let series = |recent: f64| {
        let points: Vec<Value> = (0..60)
            .map(|d| {
                let day = today - chrono::Duration::days(d);
                json!({"metric": "churn_rate", "timestamp": format!("{day}T00:00:00Z"), "value": if d < 30 { recent } else { 3.0 }})
            })
            .collect();
        Value::Array(points)
    };
    let (status, _) = post_points(&server, &key, &series(3.0)).await;
    assert_eq!(status, StatusCode::OK);
    let r = Client::new()
        .post(server.url("/api/v1/health/score/recompute"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let before: Value = r.json().await.unwrap();
    // Churn at a healthy 3 % (level 90) and flat (trend 50): 0.75·90 + 0.25·50 = 80; it is the
    // only metric, so the overall score is 80.
    assert!(
        (before["overall"].as_f64().unwrap() - 80.0).abs() < 1e-9,
        "{before}"
    );
    assert_eq!(before["coverage"]["metrics_used"], 1);

    let mut stream = s
        .client
        .get(server.url(&format!("/o/{}/events", s.slug)))
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    read_until(&mut stream, &mut seen, "event: hello").await;
    // The last 30 days deteriorate to 7 %: the re-sent days replace the old values.
    let (status, _) = post_points(&server, &key, &series(7.0)).await;
    assert_eq!(status, StatusCode::OK);
    // Level: t = (7 − 8) / (3 − 8) = 0.2 → 100 / (1 + 9^0.6) = 21.11; trend: 4 points worse
    // over a span of 5 → t = 0.5 − 3.2 → ≈ 0.008. 0.75 · 21.11 + 0.25 · 0.008 = 15.84.
    read_until(&mut stream, &mut seen, "event: score\ndata: 15.8").await;
    let (status, after) = get_json(&server, &key, "/api/v1/health/score").await;
    assert_eq!(status, StatusCode::OK);
    let overall = after["overall"].as_f64().unwrap();
    let expected = 0.75 * 100.0 / (1.0 + 9f64.powf(0.6))
        + 0.25 * 100.0 / (1.0 + 9f64.powf(1.0 - 2.0 * (0.5 - 3.2)));
    assert!((overall - expected).abs() < 1e-9, "{overall} vs {expected}");
    assert_eq!(after["top_drags"][0], "churn_rate");
    assert!(
        after["recommendations"][0]
            .as_str()
            .unwrap()
            .starts_with("Churn rate is 7.0% against a healthy 3.0%"),
        "{after}"
    );
    assert!(
        after["change_vs_yesterday"].is_null(),
        "no score a day old yet"
    );
    let (_, history) = get_json(&server, &key, "/api/v1/health/score/history?bucket=raw").await;
    let stored: Vec<f64> = history["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["overall"].as_f64())
        .collect();
    assert!(
        stored.len() >= 2
            && stored.contains(&80.0)
            && (stored.last().unwrap() - expected).abs() < 1e-9,
        "{history}"
    );
    // The overview page shows the gauge with the new score.
    let html = get_page(&s.client, &server.url("/o/acme/")).await.1;
    assert!(
        html.contains("data-testid=\"score\">16<"),
        "gauge shows the rounded score"
    );
    drop(stream);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_ingests_causes_one_score_recomputation() {
    let dir = tempfile::tempdir().unwrap();
    // The 5-minute job is off so only ingest-driven recomputations are counted.
    let server = TestServer::start_with(dir, |c| c.jobs.score_recompute = String::new()).await;
    let s = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &s, &["read", "write"]).await;
    // Opening the overview after setup computed the (empty) first score.
    let count = |h: &Value| h["points"].as_array().unwrap().len();
    let (_, history) = get_json(&server, &key, "/api/v1/health/score/history?bucket=raw").await;
    let before = count(&history);
    let now = chrono::Utc::now();
    for i in 0..8 {
        let ts = (now - chrono::Duration::minutes(i)).to_rfc3339();
        let (status, _) = post_points(&server, &key, &point("uptime", &ts, 99.95)).await;
        assert_eq!(status, StatusCode::OK);
    }
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (_, history) = get_json(&server, &key, "/api/v1/health/score/history?bucket=raw").await;
    assert_eq!(count(&history), before + 1, "{history}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn score_settings_are_validated_saved_and_applied() {
    let server = TestServer::start().await;
    let s = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &s, &["read", "write"]).await;
    let today = chrono::Utc::now().date_naive();
    let points: Vec<Value> = (0..60)
        .map(|d| json!({"metric": "churn_rate", "timestamp": format!("{}T00:00:00Z", today - chrono::Duration::days(d)), "value": 3.0}))
        .collect();
    post_points(&server, &key, &Value::Array(points)).await;
    let page = server.url("/o/acme/settings");
    let html = get_page(&s.client, &page).await.1;
    let token = extract(&html, "name=\"csrf\" value=\"", "\"").unwrap();
    // The form as the page renders it, with two edits.
    let mut form: Vec<(String, String)> = vec![
        ("csrf".into(), token.clone()),
        ("kind".into(), "saas".into()),
    ];
    let mut rest = html.as_str();
    while let Some(i) = rest.find("<input name=\"") {
        rest = &rest[i + 13..];
        let name = rest[..rest.find('"').unwrap()].to_string();
        let value = extract(rest, "value=\"", "\"").unwrap_or_default();
        form.push((name, value));
    }
    let set = |form: &mut Vec<(String, String)>, name: &str, value: &str| {
        form.iter_mut().find(|(n, _)| n == name).unwrap().1 = value.to_string();
    };
    let mut bad = form.clone();
    set(&mut bad, "weight.risk", "250");
    let r = s.client.post(&page).form(&bad).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Risk weight must be a number from 0 to 100")
    );
    // Churn targets tightened to healthy 2 %, critical 4 %: 3 % is now halfway (level 50);
    // flat trend 50: 0.75·50 + 0.25·50 = 50.
    set(&mut form, "churn_rate.healthy", "2");
    set(&mut form, "churn_rate.critical", "4");
    let r = s.client.post(&page).form(&form).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Saved. The score is now 50.")
    );
    let (_, score) = get_json(&server, &key, "/api/v1/health/score").await;
    assert!(
        (score["overall"].as_f64().unwrap() - 50.0).abs() < 1e-9,
        "{score}"
    );
    // History under the new settings.
    let r = s
        .client
        .post(server.url("/o/acme/settings/recompute-history"))
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (_, history) = get_json(&server, &key, "/api/v1/health/score/history?bucket=day").await;
    let days = history["points"].as_array().unwrap();
    assert!(days.len() >= 30, "{history}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_recomputation_matches_per_org_recomputation() {
    let server = TestServer::start().await;
    let a = setup(&server, "Alpha", "Europe/Berlin").await;
    let b = create_org(&server, &a, "Beta", "beta").await;
    let key_a = api_key(&server, &a, &["read", "write"]).await;
    let key_b = api_key(&server, &b, &["read", "write"]).await;
    let today = chrono::Utc::now().date_naive();
    for (key, shift) in [(&key_a, 0.0), (&key_b, 2.5)] {
        let mut points = Vec::new();
        for d in 0..60 {
            let ts = format!("{}T12:00:00Z", today - chrono::Duration::days(d));
            points.push(json!({"metric": "churn_rate", "timestamp": ts, "value": 3.0 + shift + (d % 5) as f64 * 0.1}));
            points.push(json!({"metric": "revenue", "timestamp": ts, "value": 1000.0 - d as f64 * 4.0 + shift * 100.0}));
            points.push(json!({"metric": "uptime", "timestamp": ts, "value": 99.5 + shift / 10.0}));
        }
        let (status, _) = post_points(&server, key, &Value::Array(points)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let app = server.app.clone();
    let mut single = Vec::new();
    for slug in ["alpha", "beta"] {
        let org = app
            .meta
            .call(move |c| vitals::store::meta::orgs::by_slug(c, slug))
            .await
            .unwrap();
        single.push(
            vitals::services::scoring::recompute(&app, &org)
                .await
                .unwrap(),
        );
    }
    assert_eq!(
        vitals::services::scoring::recompute_all(&app)
            .await
            .unwrap(),
        2
    );
    for (slug, one) in ["alpha", "beta"].into_iter().zip(single) {
        let org = app
            .meta
            .call(move |c| vitals::store::meta::orgs::by_slug(c, slug))
            .await
            .unwrap();
        let fleet = vitals::services::scoring::latest(&app, org.id)
            .await
            .unwrap()
            .unwrap();
        assert!(one.overall.is_some());
        // Equal up to float summation order (the fleet query adds in a different order).
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * (1.0 + a.abs());
        assert!(
            close(fleet.overall.unwrap(), one.overall.unwrap()),
            "{slug}"
        );
        assert_eq!(fleet.metrics.len(), one.metrics.len(), "{slug}");
        for (f, o) in fleet.metrics.iter().zip(&one.metrics) {
            assert_eq!((&f.key, f.category, f.basis), (&o.key, o.category, o.basis));
            for (a, b) in [
                (f.value, o.value),
                (f.sub_score, o.sub_score),
                (f.overall_weight, o.overall_weight),
                (f.points, o.points),
                (f.points_lost, o.points_lost),
                (f.growth_pct.unwrap_or(0.0), o.growth_pct.unwrap_or(0.0)),
            ] {
                assert!(close(a, b), "{slug} {}: {a} vs {b}", f.key);
            }
        }
        assert_eq!(fleet.coverage, one.coverage, "{slug}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_metrics_are_added_from_the_metrics_page_by_managers_only() {
    let server = TestServer::start().await;
    let s = setup(&server, "Acme", "UTC").await;
    add_member(&server, &s, "viewer@acme.test", "viewer").await;
    let page = server.url("/o/acme/catalog");
    let token = csrf(&s.client, &page).await;
    let form = |key: &'static str| {
        vec![
            ("csrf", token.clone()),
            ("key", key.to_string()),
            ("name", "Demo calls".to_string()),
            ("category", "growth".to_string()),
            ("unit", "count".to_string()),
            ("aggregation", "sum".to_string()),
            ("direction", "higher".to_string()),
        ]
    };
    let r = s
        .client
        .post(&page)
        .form(&form("demo-calls"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("Key may contain only lowercase letters")
    );
    let r = s
        .client
        .post(&page)
        .form(&form("revenue"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::UNPROCESSABLE_ENTITY,
        "built-in keys are taken"
    );
    let r = s
        .client
        .post(&page)
        .form(&form("demo_calls"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = s
        .client
        .post(&page)
        .form(&form("demo_calls"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let key = api_key(&server, &s, &["read", "write"]).await;
    let (status, _) = post_points(
        &server,
        &key,
        &point("demo_calls", "2026-02-01T10:00:00Z", 3.0),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let html = get_page(&s.client, &page).await.1;
    assert!(html.contains("<code>demo_calls</code>") && html.contains("(custom)"));
    // A viewer sees the catalog but cannot add to it.
    let viewer = login(&server, "viewer@acme.test", PASSWORD).await;
    let html = viewer
        .get(&page)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("Add a custom metric"));
    let vt = extract(&html, "name=\"csrf\" value=\"", "\"").unwrap();
    let r = viewer
        .post(&page)
        .form(&[
            ("csrf", vt.as_str()),
            ("key", "x"),
            ("name", "X"),
            ("category", "growth"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    server.stop().await;
}
