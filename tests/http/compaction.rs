//! Compaction of settled months: every answer the same before and after, late and re-sent
//! points still land, and a crash in the middle of it (kill -9 at a failpoint) loses nothing.

use reqwest::StatusCode;
use serde_json::{Value, json};

use vitals::store::metrics::CompactionReport;

use crate::common::*;

/// Org A: revenue in eu and us every six hours from 2026-09-01 to 2026-10-31 (eu = the day
/// of the month, us = 100), expenses 10 a day, and one revenue point on 2026-11-20 (not
/// settled on 2026-12-01). Org B: revenue 9000 a day in September. 61 days × 4 × 2 + 61 +
/// 1 = 550 points for A, 30 for B.
fn org_a_points() -> Vec<Value> {
    let mut points = Vec::new();
    let start = chrono::NaiveDate::from_ymd_opt(2026, 9, 1).unwrap();
    for day in 0..61 {
        let date = start + chrono::Duration::days(day);
        let d = date.format("%Y-%m-%d");
        let dom = f64::from(chrono::Datelike::day(&date));
        for hour in [0, 6, 12, 18] {
            let ts = format!("{d}T{hour:02}:00:00Z");
            points.push(json!({"metric": "revenue", "timestamp": ts, "value": dom, "dimensions": {"region": "eu"}}));
            points.push(json!({"metric": "revenue", "timestamp": ts, "value": 100.0, "dimensions": {"region": "us"}}));
        }
        points.push(
            json!({"metric": "expenses", "timestamp": format!("{d}T09:00:00Z"), "value": 10.0}),
        );
    }
    points.push(json!({"metric": "revenue", "timestamp": "2026-11-20T00:00:00Z", "value": 1.0, "dimensions": {"region": "eu"}}));
    points
}

fn org_b_points() -> Vec<Value> {
    (1..=30)
        .map(|d| json!({"metric": "revenue", "timestamp": format!("2026-09-{d:02}T12:00:00Z"), "value": 9000.0}))
        .collect()
}

/// The questions whose answers compaction must not change: daily revenue by region over
/// both months, raw eu points across the month boundary, expenses weekly, the whole overview
/// (memo bypassed), and org B's daily revenue.
const A_QUESTIONS: &[&str] = &[
    "/api/v1/metrics/revenue/series?from=2026-09-01&to=2026-11-01&bucket=day&group_by=region",
    "/api/v1/metrics/revenue/points?from=2026-09-28&to=2026-10-04&dim.region=eu",
    "/api/v1/metrics/expenses/series?from=2026-09-01&to=2026-11-01&bucket=week",
    "/api/v1/overview?from=2026-09-01&to=2026-12-01&bucket=day",
];
const B_QUESTION: &str = "/api/v1/metrics/revenue/series?from=2026-09-01&to=2026-10-01&bucket=day";

async fn answers(server: &impl Served, key_a: &str, key_b: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for (key, path) in A_QUESTIONS
        .iter()
        .map(|p| (key_a, *p))
        .chain([(key_b, B_QUESTION)])
    {
        let r = reqwest::Client::new()
            .get(server.url(path))
            .bearer_auth(key)
            .header("cache-control", "no-cache")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        out.push(r.json().await.unwrap());
    }
    out
}

async fn store_points(server: &impl Served, key: &str, points: Vec<Value>) {
    let (status, body) = post_points(server, key, &Value::Array(points)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

/// Both orgs' points sent as live feeds arrive: day by day, A's day then B's, so every
/// settled month interleaves the two orgs (about 30 runs per org a month).
async fn store_as_live_feeds(server: &impl Served, key_a: &str, key_b: &str) {
    let by_day = |points: Vec<Value>| {
        let mut days: std::collections::BTreeMap<String, Vec<Value>> = Default::default();
        for p in points {
            let day = p["timestamp"].as_str().unwrap()[..10].to_string();
            days.entry(day).or_default().push(p);
        }
        days
    };
    let (mut a, mut b) = (by_day(org_a_points()), by_day(org_b_points()));
    let days: std::collections::BTreeSet<String> = a.keys().chain(b.keys()).cloned().collect();
    for day in days {
        for (key, points) in [(key_a, a.remove(&day)), (key_b, b.remove(&day))] {
            if let Some(points) = points {
                store_points(server, key, points).await;
            }
        }
    }
}

/// Orgs Alpha and Beta on a fresh server, fed as live feeds; their API keys.
async fn two_orgs_fed(server: &impl Served) -> (String, String) {
    let a = setup(server, "Alpha", "UTC").await;
    let b = create_org(server, &a, "Beta", "beta").await;
    let key_a = api_key(server, &a, &["read", "write"]).await;
    let key_b = api_key(server, &b, &["read", "write"]).await;
    store_as_live_feeds(server, &key_a, &key_b).await;
    (key_a, key_b)
}

fn at(date: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(date)
        .unwrap()
        .timestamp_micros()
}

/// The points arrive as live feeds (the orgs alternate day by day). Compacting on
/// 2026-12-01T12:00Z: September and October are settled (November ends less than two days
/// before). September interleaves the two orgs, so it is rewritten: A's 30 × (8 + 1) = 270
/// points and B's 30, 300 in all; October holds org A alone (one run), so it is only logged.
/// Every answer is the same as before. A second run finds nothing due.
///
/// Then a late point (A, eu, 2026-09-15T03:00, 7) and a re-sent one (A, eu,
/// 2026-10-02T00:00, 50 instead of 2) land: eu revenue on Sep 15 is 4 × 15 + 7 = 67, on
/// Oct 2 it is 3 × 2 + 50 = 56. Both months are dirty, so the next run checks both; September
/// now lies in three runs for two orgs (A, B, the new point of A) and October in one, both
/// clustered, so nothing is rewritten, and the answers stay. Org B's answer never moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_keeps_every_answer_and_late_and_resent_points_still_land() {
    let server = TestServer::start().await;
    let (key_a, key_b) = two_orgs_fed(&server).await;
    let before = answers(&server, &key_a, &key_b).await;
    let now = at("2026-12-01T12:00:00Z");
    let report = server.app.metrics.compact_settled(now).await.unwrap();
    assert_eq!((report.checked, report.rewritten, report.rows), (2, 1, 300));
    assert_eq!(answers(&server, &key_a, &key_b).await, before);
    let report = server.app.metrics.compact_settled(now).await.unwrap();
    assert_eq!(report, CompactionReport::default());

    store_points(
        &server,
        &key_a,
        vec![
            json!({"metric": "revenue", "timestamp": "2026-09-15T03:00:00Z", "value": 7.0, "dimensions": {"region": "eu"}}),
            json!({"metric": "revenue", "timestamp": "2026-10-02T00:00:00Z", "value": 50.0, "dimensions": {"region": "eu"}}),
        ],
    )
    .await;
    let eu_day = |day: &'static str| {
        let server = &server;
        let key_a = &key_a;
        async move {
            let path = format!(
                "/api/v1/metrics/revenue/series?from={day}T00:00:00Z&to={day}T23:59:59Z&bucket=day&agg=sum&dim.region=eu"
            );
            let (status, body) = get_json(server, key_a, &path).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            values(&body)
        }
    };
    assert_eq!(eu_day("2026-09-15").await, vec![Some(67.0)]);
    assert_eq!(eu_day("2026-10-02").await, vec![Some(56.0)]);
    let late = answers(&server, &key_a, &key_b).await;
    assert_ne!(late, before, "the late and re-sent points show");
    assert_eq!(late[4], before[4], "org B is untouched");
    let report = server.app.metrics.compact_settled(now).await.unwrap();
    assert_eq!((report.checked, report.rewritten, report.rows), (2, 0, 0));
    assert_eq!(answers(&server, &key_a, &key_b).await, late);
    assert_eq!(eu_day("2026-09-15").await, vec![Some(67.0)]);
    assert_eq!(eu_day("2026-10-02").await, vec![Some(56.0)]);
    server.stop().await;
}

const COMPACT_EVERY_SECOND: [(&str, &str); 1] = [("VITALS_JOBS__COMPACTION", "* * * * * *")];

fn armed(failpoint: &str) -> [(&str, &str); 2] {
    [COMPACT_EVERY_SECOND[0], ("FAILPOINTS", failpoint)]
}

/// The points of `org_a_points` and `org_b_points`, sent as live feeds, are acknowledged by
/// a `vitals serve` without compaction, which is then killed. Three times a server starts on
/// the same dir with compaction every second and one failpoint armed (after the copy, after
/// the delete, after the insert, each before the commit): it gives every answer as before
/// (the crashes before it lost nothing), reaches its failpoint, and is killed with SIGKILL
/// there. Finally an in-process server on the same dir compacts the settled months
/// (September rewritten, 300 points; October holds one org and is only logged) with every
/// answer unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_the_middle_of_compaction_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServeChild::start(dir.path(), &[("VITALS_JOBS__COMPACTION", "")]).await;
    let (key_a, key_b) = two_orgs_fed(&server).await;
    let before = answers(&server, &key_a, &key_b).await;
    server.kill().await;
    for failpoint in [
        "compaction-copied",
        "compaction-deleted",
        "compaction-inserted",
    ] {
        let server = ServeChild::start(dir.path(), &armed(failpoint)).await;
        assert_eq!(
            answers(&server, &key_a, &key_b).await,
            before,
            "after a crash, with {failpoint} armed"
        );
        server.kill_at_failpoint(failpoint).await;
    }
    let server = TestServer::start_with(dir, |c| c.jobs.compaction = String::new()).await;
    assert_eq!(answers(&server, &key_a, &key_b).await, before);
    let report = server
        .app
        .metrics
        .compact_settled(at("2026-12-01T12:00:00Z"))
        .await
        .unwrap();
    assert_eq!((report.checked, report.rewritten, report.rows), (2, 1, 300));
    assert_eq!(answers(&server, &key_a, &key_b).await, before);
    server.stop().await;
}
