//! The whole-overview, raw-points and fleet reads: hand-computed answers, parameters refused by
//! name, and no org seeing another's points.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

fn p(metric: &str, ts: &str, v: f64, region: &str) -> Value {
    json!({"metric": metric, "timestamp": ts, "value": v, "dimensions": {"region": region}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_points_and_fleet_return_hand_computed_answers_per_org() {
    let server = TestServer::start().await;
    let a = setup(&server, "Alpha", "UTC").await;
    let b = create_org(&server, &a, "Beta", "beta").await;
    let key_a = api_key(&server, &a, &["read", "write"]).await;
    let key_b = api_key(&server, &b, &["read", "write"]).await;
    let (status, body) = post_points(
        &server,
        &key_a,
        &json!([
            p("revenue", "2026-05-01T08:00:00Z", 100.0, "eu"),
            p("revenue", "2026-05-01T09:00:00Z", 40.0, "us"),
            p("revenue", "2026-05-02T08:00:00Z", 10.0, "eu"),
            p("revenue", "2026-05-02T08:00:00Z", 5.0, "us"),
            p("expenses", "2026-05-01T12:00:00Z", 30.0, "eu"),
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = post_points(
        &server,
        &key_b,
        &json!([p("revenue", "2026-05-01T08:00:00Z", 9000.0, "eu")]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Overview: every catalog metric, latest = sum over series at the newest timestamp.
    let (status, ov) = get_json(
        &server,
        &key_a,
        "/api/v1/overview?from=2026-05-01&to=2026-05-03&bucket=day&agg=sum",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{ov}");
    let metric = |key: &str| {
        ov["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["key"] == key)
            .cloned()
            .unwrap_or_else(|| panic!("{key} in overview"))
    };
    let revenue = metric("revenue");
    assert_eq!(revenue["latest"]["value"], 15.0);
    assert_eq!(revenue["latest"]["timestamp"], "2026-05-02T08:00:00+00:00");
    let days: Vec<(Option<f64>, i64)> = revenue["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["value"].as_f64(), p["count"].as_i64().unwrap()))
        .collect();
    assert_eq!(days, vec![(Some(140.0), 2), (Some(15.0), 2)]);
    assert_eq!(metric("expenses")["points"][0]["value"], 30.0);
    assert_eq!(metric("mrr")["latest"], Value::Null);
    let (_, ov_b) = get_json(
        &server,
        &key_b,
        "/api/v1/overview?from=2026-05-01&to=2026-05-03&agg=sum",
    )
    .await;
    let rev_b = ov_b["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == "revenue")
        .unwrap();
    assert_eq!(rev_b["points"][0]["value"], 9000.0);
    assert_eq!(rev_b["points"][1]["value"], Value::Null);

    // Raw points in time then dimension order; the limit truncates and says so.
    let q = "/api/v1/metrics/revenue/points?from=2026-05-01&to=2026-05-03";
    let (status, raw) = get_json(&server, &key_a, q).await;
    assert_eq!(status, StatusCode::OK, "{raw}");
    let rows: Vec<(String, f64, String)> = raw["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["timestamp"].as_str().unwrap().to_string(),
                p["value"].as_f64().unwrap(),
                p["dimensions"]["region"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("2026-05-01T08:00:00+00:00".into(), 100.0, "eu".into()),
            ("2026-05-01T09:00:00+00:00".into(), 40.0, "us".into()),
            ("2026-05-02T08:00:00+00:00".into(), 10.0, "eu".into()),
            ("2026-05-02T08:00:00+00:00".into(), 5.0, "us".into()),
        ]
    );
    assert_eq!(raw["truncated"], false);
    let (_, two) = get_json(&server, &key_a, &format!("{q}&limit=2&dim.region=eu")).await;
    assert_eq!(two["points"].as_array().unwrap().len(), 2);
    assert_eq!(two["truncated"], false);
    let (_, one) = get_json(&server, &key_a, &format!("{q}&limit=1")).await;
    assert_eq!(one["points"][0]["value"], 100.0);
    assert_eq!(one["truncated"], true);
    let (_, raw_b) = get_json(&server, &key_b, q).await;
    assert_eq!(raw_b["points"].as_array().unwrap().len(), 1);
    assert_eq!(raw_b["points"][0]["value"], 9000.0);

    // Bad parameters are named.
    for (path, field) in [
        ("/api/v1/overview?group_by=region", "group_by"),
        ("/api/v1/overview?bucket=year", "bucket"),
        ("/api/v1/overview?from=2026-05-03&to=2026-05-01", "from"),
        ("/api/v1/metrics/revenue/points?limit=0", "limit"),
        ("/api/v1/metrics/revenue/points?limit=100001", "limit"),
        ("/api/v1/metrics/revenue/points?bucket=day", "bucket"),
        ("/api/v1/metrics/revenue/points?to=yesterday", "to"),
    ] {
        let (status, err) = get_json(&server, &key_a, path).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {err}");
        assert_eq!(err["error"]["field"], field, "{path}");
    }
    let (status, _) = get_json(&server, &key_a, "/api/v1/metrics/nope/points").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Fleet: the server admin reads every org's averages; an org member who is not is refused.
    let fleet = a
        .client
        .get(server.url("/admin/fleet.json?from=2026-05-01&to=2026-05-03"))
        .send()
        .await
        .unwrap();
    assert_eq!(fleet.status(), StatusCode::OK);
    let fleet: Value = fleet.json().await.unwrap();
    let avg = |org: &str, key: &str| {
        fleet["orgs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["org"] == org)
            .and_then(|o| {
                o["metrics"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|m| m["key"] == key)
                    .map(|m| (m["avg"].as_f64().unwrap(), m["count"].as_i64().unwrap()))
            })
    };
    assert_eq!(avg(&a.slug, "revenue"), Some((38.75, 4)));
    assert_eq!(avg(&a.slug, "expenses"), Some((30.0, 1)));
    assert_eq!(avg("beta", "revenue"), Some((9000.0, 1)));
    add_member(&server, &b, "viewer@beta.test", "viewer").await;
    let viewer = login(&server, "viewer@beta.test", PASSWORD).await;
    let r = viewer
        .get(server.url("/admin/fleet.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // An API key is not a session: it is sent to sign in.
    let r = no_redirects()
        .get(server.url("/admin/fleet.json"))
        .bearer_auth(&key_a)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/login")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_by_reads_the_named_key_only_and_groups_points_without_it_as_empty() {
    let server = TestServer::start().await;
    let s = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &s, &["read", "write"]).await;
    let at = "2026-05-01T08:00:00Z";
    let (status, body) = post_points(
        &server,
        &key,
        &json!([
            {"metric": "revenue", "timestamp": at, "value": 1.0, "dimensions": {"subregion": "north", "region": "eu"}},
            {"metric": "revenue", "timestamp": at, "value": 2.0, "dimensions": {"region": "a&b=c", "subregion": "south"}},
            {"metric": "revenue", "timestamp": at, "value": 4.0, "dimensions": {"subregion": "north"}},
            {"metric": "revenue", "timestamp": at, "value": 8.0, "dimensions": {"region": "eu"}},
        ]),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let groups = |v: &Value| -> Vec<(String, f64)> {
        v["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (
                    g["group"].as_str().unwrap().to_string(),
                    g["points"][0]["value"].as_f64().unwrap(),
                )
            })
            .collect()
    };
    let base = "/api/v1/metrics/revenue/series?from=2026-05-01&to=2026-05-02&agg=sum";
    let (_, by_region) = get_json(&server, &key, &format!("{base}&group_by=region")).await;
    assert_eq!(
        groups(&by_region),
        vec![("".into(), 4.0), ("a&b=c".into(), 2.0), ("eu".into(), 9.0)]
    );
    let (_, by_sub) = get_json(&server, &key, &format!("{base}&group_by=subregion")).await;
    assert_eq!(
        groups(&by_sub),
        vec![
            ("".into(), 8.0),
            ("north".into(), 5.0),
            ("south".into(), 2.0)
        ]
    );
    server.stop().await;
}

/// The overview is memoised per org until that org's next write, and a memo never outlives
/// an acknowledged write or crosses orgs. Alpha stores revenue 100 (eu) and 40 (us) on May 1;
/// its overview says 140 for the day. Beta then writes 9000 for the same day: Alpha's answer
/// stays 140 and Beta's is 9000 (same question, so the same memo key but another org).
/// Alpha re-sends eu as 300: the very next read says 340 (300 + 40), the latest value too.
/// `Cache-Control: no-cache` computes afresh and answers the same JSON as the memo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_memo_ends_with_the_orgs_next_write_and_never_crosses_orgs() {
    let server = TestServer::start().await;
    let a = setup(&server, "Alpha", "UTC").await;
    let b = create_org(&server, &a, "Beta", "beta").await;
    let key_a = api_key(&server, &a, &["read", "write"]).await;
    let key_b = api_key(&server, &b, &["read", "write"]).await;
    let q = "/api/v1/overview?from=2026-05-01&to=2026-05-02&bucket=day&agg=sum";
    let store = |key: &str, points: &Value| {
        let (server, key, points) = (&server, key.to_string(), points.clone());
        async move {
            let (status, body) = post_points(server, &key, &points).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    };
    let revenue_day = |ov: &Value| {
        let m = ov["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["key"] == "revenue")
            .cloned()
            .unwrap();
        (
            m["points"][0]["value"].as_f64(),
            m["latest"]["value"].as_f64(),
        )
    };
    store(
        &key_a,
        &json!([
            p("revenue", "2026-05-01T08:00:00Z", 100.0, "eu"),
            p("revenue", "2026-05-01T08:00:00Z", 40.0, "us"),
        ]),
    )
    .await;
    let (_, first) = get_json(&server, &key_a, q).await;
    assert_eq!(revenue_day(&first), (Some(140.0), Some(140.0)));

    store(
        &key_b,
        &json!([p("revenue", "2026-05-01T08:00:00Z", 9000.0, "eu")]),
    )
    .await;
    let (_, again) = get_json(&server, &key_a, q).await;
    assert_eq!(again, first);
    let (_, beta) = get_json(&server, &key_b, q).await;
    assert_eq!(revenue_day(&beta), (Some(9000.0), Some(9000.0)));

    store(
        &key_a,
        &json!([p("revenue", "2026-05-01T08:00:00Z", 300.0, "eu")]),
    )
    .await;
    let (_, after) = get_json(&server, &key_a, q).await;
    assert_eq!(revenue_day(&after), (Some(340.0), Some(340.0)));

    let fresh: Value = reqwest::Client::new()
        .get(server.url(q))
        .bearer_auth(&key_a)
        .header("cache-control", "no-cache")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fresh, after);
    server.stop().await;
}

/// The overview page's body is rendered once per org and kept until the org's points or the
/// meta store change, shared by the org's members and never by another org. Alpha stores
/// revenue 1234 an hour ago: its overview (30 days by default) says "EUR 1,234"; Beta's, asked
/// right after by the same owner, does not. Alpha adds 1000 more (another hour): the very next
/// page and grid fragment say "EUR 2,234" (revenue sums). Alpha defines a custom metric
/// "Widgets sold" (a meta write, no point): the next page has its card. A Viewer of Alpha sees
/// the same figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_body_is_shared_by_members_and_follows_every_change() {
    let server = TestServer::start().await;
    let a = setup(&server, "Alpha", "UTC").await;
    let b = create_org(&server, &a, "Beta", "beta").await;
    let key_a = api_key(&server, &a, &["read", "write", "admin"]).await;
    let at = |hours: i64| (chrono::Utc::now() - chrono::Duration::hours(hours)).to_rfc3339();
    let page = |slug: String| {
        let (client, url) = (a.client.clone(), server.url(&format!("/o/{slug}/")));
        async move {
            let (status, html) = get_page(&client, &url).await;
            assert_eq!(status, StatusCode::OK);
            html
        }
    };
    let revenue = |hours_ago: i64, value: f64| {
        let (server, key) = (&server, key_a.clone());
        async move {
            let points = json!([p("revenue", &at(hours_ago), value, "eu")]);
            let (status, body) = post_points(server, &key, &points).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    };
    revenue(1, 1234.0).await;
    let first = page(a.slug.clone()).await;
    assert!(
        first.contains("EUR 1,234"),
        "Alpha's overview shows its revenue"
    );
    assert!(
        !page(b.slug.clone()).await.contains("EUR 1,234"),
        "Beta's does not"
    );

    revenue(2, 1000.0).await;
    let second = page(a.slug.clone()).await;
    assert!(second.contains("EUR 2,234") && !second.contains("EUR 1,234"));
    let (status, grid) = get_page(
        &a.client,
        &server.url(&format!("/o/{}/grid?range=30d", a.slug)),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(grid.contains("EUR 2,234"));

    assert!(!second.contains("Widgets sold"));
    let (status, body) = post_api(
        &server,
        &key_a,
        "/custom-metrics",
        json!({"key": "widgets_sold", "name": "Widgets sold", "category": "operational", "unit": "count"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let third = page(a.slug.clone()).await;
    assert!(
        third.contains("Widgets sold"),
        "a new custom metric shows at once"
    );

    add_member(&server, &a, "viewer@acme.test", "viewer").await;
    let viewer = login(&server, "viewer@acme.test", PASSWORD).await;
    let (status, seen) = get_page(&viewer, &server.url(&format!("/o/{}/", a.slug))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(seen.contains("Widgets sold") && seen.contains("EUR 2,234"));
    server.stop().await;
}
