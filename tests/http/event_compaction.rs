//! Compaction of settled weeks of events: every answer the same before and after, re-sent
//! events still stored once, late events still land, the rows of a compacted week lie sorted
//! by (org, name, time), and a crash in the middle of it (kill -9 at a failpoint) loses nothing.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

fn uuid(org: u32, n: u32) -> String {
    format!("00000000-0000-4000-8000-{org:04}{n:08}")
}

/// Org A, every day from Monday 2026-10-05 to Thursday 2026-11-26 (53 days), users u0–u3:
/// `page` at 09:0u, `view` at 10:0u (plan free for u0 and u2, pro for u1 and u3; amount the
/// day of the month), `cart` at 10:30 for u0 and u1, `buy` at 12:00 for u0: 11 events a day.
/// Org B: one `view` of b0 at 11:00 every day. 12 events a day, 636 in all.
fn day_events(day: chrono::NaiveDate, index: u32) -> (Vec<Value>, Vec<Value>) {
    let d = day.format("%Y-%m-%d");
    let dom = chrono::Datelike::day(&day);
    let plans = ["free", "pro", "free", "pro"];
    let mut a = Vec::new();
    let mut n = index * 100;
    let mut push = |name: &str, user: String, time: String, props: Value| {
        n += 1;
        a.push(
            json!({"name": name, "distinct_id": user, "timestamp": format!("{d}T{time}Z"),
                      "uuid": uuid(1, n), "properties": props}),
        );
    };
    for u in 0..4 {
        push("page", format!("u{u}"), format!("09:0{u}:00"), json!({}));
    }
    for (u, plan) in plans.iter().enumerate() {
        push(
            "view",
            format!("u{u}"),
            format!("10:0{u}:00"),
            json!({"plan": plan, "amount": dom}),
        );
    }
    for u in 0..2 {
        push("cart", format!("u{u}"), "10:30:00".into(), json!({}));
    }
    push(
        "buy",
        "u0".into(),
        "12:00:00".into(),
        json!({"amount": dom}),
    );
    let b = vec![
        json!({"name": "view", "distinct_id": "b0", "timestamp": format!("{d}T11:00:00Z"),
                        "uuid": uuid(2, index), "properties": {"plan": "pro"}}),
    ];
    (a, b)
}

async fn send(server: &impl Served, key: &str, events: Vec<Value>) -> Value {
    let (status, body) = post_api(server, key, "/events/batch", json!({ "events": events })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// Both orgs' events sent as live feeds arrive: day by day, A's day then B's, each day's
/// names interleaved in time order.
async fn store_as_live_feeds(server: &impl Served, key_a: &str, key_b: &str) {
    let first = chrono::NaiveDate::from_ymd_opt(2026, 10, 5).unwrap();
    for i in 0..53 {
        let (a, b) = day_events(first + chrono::Duration::days(i.into()), i);
        send(server, key_a, a).await;
        send(server, key_b, b).await;
    }
}

async fn two_orgs_fed(server: &impl Served) -> (String, String) {
    let a = setup(server, "Alpha", "UTC").await;
    let b = create_org(server, &a, "Beta", "beta").await;
    let key_a = api_key(server, &a, &["read", "write"]).await;
    let key_b = api_key(server, &b, &["read", "write"]).await;
    store_as_live_feeds(server, &key_a, &key_b).await;
    (key_a, key_b)
}

const RANGE: (&str, &str) = ("2026-10-05", "2026-11-30");

/// The analyses whose answers compaction must not change: weekly views by plan, weekly unique
/// buyers, the view → cart → buy funnel (1 day window), weekly retention of views, the stats,
/// and every event of org A through the list's cursor pages.
async fn answers(server: &impl Served, key_a: &str, key_b: &str) -> Vec<Value> {
    let (from, to) = RANGE;
    let mut out = Vec::new();
    for (what, q) in [
        (
            "trends",
            json!({"event": "view", "from": from, "to": to, "interval": "week", "breakdown": "plan"}),
        ),
        (
            "trends",
            json!({"event": "buy", "from": from, "to": to, "interval": "week", "math": "sum", "property": "amount"}),
        ),
        (
            "funnels",
            json!({"steps": ["view", "cart", "buy"], "window": {"value": 1, "unit": "day"}, "from": from, "to": to}),
        ),
        (
            "retention",
            json!({"target": "view", "period": "week", "periods": 4, "from": from, "to": to}),
        ),
    ] {
        let (status, body) = post_api(server, key_a, &format!("/analytics/{what}"), q).await;
        assert_eq!(status, StatusCode::OK, "{what}: {body}");
        out.push(body);
    }
    let (status, stats) = get_json(
        server,
        key_a,
        &format!("/api/v1/events/stats?from={from}&to={to}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    out.push(stats);
    let mut listed = Vec::new();
    let mut path = "/api/v1/events?limit=250".to_string();
    loop {
        let (status, page) = get_json(server, key_a, &path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        listed.extend(page["events"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/events?limit=250&cursor={c}"),
            None => break,
        }
    }
    out.push(Value::Array(listed));
    let (status, b) = post_api(
        server,
        key_b,
        "/analytics/trends",
        json!({"event": "view", "from": from, "to": to, "interval": "week"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{b}");
    out.push(b);
    out
}

fn at(date: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(date)
        .unwrap()
        .timestamp_micros()
}

/// (org, name, ts) of every row of the week starting `week`, in physical order.
fn physical_rows(server: &TestServer, week: &str) -> Vec<(i64, String, i64)> {
    let from = at(week);
    let to = from + 7 * 86_400_000_000;
    server
        .app
        .events
        .read_blocking(|c| {
            let mut stmt = c.prepare(
                "SELECT org_id, name, epoch_us(ts) FROM events
                  WHERE epoch_us(ts) >= ? AND epoch_us(ts) < ? ORDER BY rowid",
            )?;
            let rows = stmt
                .query_map([from, to], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .unwrap()
}

/// Compacting on Tuesday 2026-12-01T12:00Z: the weeks settled are those that ended two days
/// before, Oct 5 … Nov 16 (7 weeks; the week of Nov 23 ended less than two days before). Each
/// interleaves every name of both orgs, so each is rewritten: 7 × 7 days × 12 = 588 events.
/// Every answer is the same as before, and the week of Oct 12 lies sorted by (org, name, ts)
/// while it did not before. A second run finds nothing due.
///
/// Then A's `buy` of Oct 14 is re-sent (same uuid: stored once, 1 duplicate) beside a late
/// `buy` of u1 on 2026-10-14T13:00 with amount 99: the week's summed amounts were
/// 12+13+…+18 = 105, now 204. Only that week is dirty; it now lies in 6 runs for 5
/// (org, name) pairs, clustered (≤ 4 per pair), so it is only checked, not rewritten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_compaction_keeps_every_answer_and_resent_and_late_events_still_land() {
    let server = TestServer::start_with(tempfile::tempdir().unwrap(), |c| {
        c.jobs.compaction = String::new()
    })
    .await;
    let (key_a, key_b) = two_orgs_fed(&server).await;
    let before = answers(&server, &key_a, &key_b).await;
    let sorted = |rows: &[(i64, String, i64)]| rows.windows(2).all(|w| w[0] <= w[1]);
    let week = physical_rows(&server, "2026-10-12T00:00:00Z");
    assert_eq!(week.len(), 84);
    assert!(!sorted(&week), "a live feed interleaves the names");

    let now = at("2026-12-01T12:00:00Z");
    let report = server.app.events.compact_settled(now).await.unwrap();
    assert_eq!((report.checked, report.rewritten, report.rows), (7, 7, 588));
    assert_eq!(answers(&server, &key_a, &key_b).await, before);
    let week = physical_rows(&server, "2026-10-12T00:00:00Z");
    assert_eq!(week.len(), 84);
    assert!(sorted(&week), "compacted: sorted by (org, name, ts)");
    let report = server.app.events.compact_settled(now).await.unwrap();
    assert_eq!((report.checked, report.rewritten, report.rows), (0, 0, 0));

    let (a_oct14, _) = day_events(chrono::NaiveDate::from_ymd_opt(2026, 10, 14).unwrap(), 9);
    let resent = a_oct14.iter().find(|e| e["name"] == "buy").unwrap().clone();
    let late = json!({"name": "buy", "distinct_id": "u1", "timestamp": "2026-10-14T13:00:00Z",
                      "uuid": uuid(1, 999_999), "properties": {"amount": 99}});
    let outcome = send(&server, &key_a, vec![resent, late]).await;
    assert_eq!(
        (outcome["accepted"].as_i64(), outcome["duplicates"].as_i64()),
        (Some(1), Some(1))
    );
    let (status, sums) = post_api(
        &server,
        &key_a,
        "/analytics/trends",
        json!({"event": "buy", "from": "2026-10-12", "to": "2026-10-19", "interval": "week",
               "math": "sum", "property": "amount"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{sums}");
    assert_eq!(sums["series"][0]["values"], json!([204.0]));
    let after_late = answers(&server, &key_a, &key_b).await;
    assert_ne!(after_late, before, "the late event shows");
    assert_eq!(after_late[6], before[6], "org B is untouched");

    let report = server.app.events.compact_settled(now).await.unwrap();
    assert_eq!((report.checked, report.rewritten, report.rows), (1, 0, 0));
    assert_eq!(answers(&server, &key_a, &key_b).await, after_late);
    server.stop().await;
}

fn armed(failpoint: &str) -> [(&str, &str); 2] {
    [
        ("VITALS_JOBS__COMPACTION", "* * * * * *"),
        ("FAILPOINTS", failpoint),
    ]
}

/// The events of `day_events`, sent as live feeds, are acknowledged by a `vitals serve`
/// without compaction, which is then killed. Three times a server starts on the same dir
/// with compaction every second and one failpoint armed (after the copy, after the delete,
/// after the insert, each before the commit): it gives every answer as before (the crashes
/// before it lost nothing), reaches its failpoint, and is killed with SIGKILL there. Finally
/// an in-process server on the same dir compacts the settled weeks (7 weeks, 588 events, as
/// in the test above) with every answer unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_in_the_middle_of_event_compaction_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServeChild::start(dir.path(), &[("VITALS_JOBS__COMPACTION", "")]).await;
    let (key_a, key_b) = two_orgs_fed(&server).await;
    let before = answers(&server, &key_a, &key_b).await;
    server.kill().await;
    for failpoint in [
        "event-compaction-copied",
        "event-compaction-deleted",
        "event-compaction-inserted",
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
        .events
        .compact_settled(at("2026-12-01T12:00:00Z"))
        .await
        .unwrap();
    assert_eq!((report.checked, report.rewritten, report.rows), (7, 7, 588));
    assert_eq!(answers(&server, &key_a, &key_b).await, before);
    server.stop().await;
}
