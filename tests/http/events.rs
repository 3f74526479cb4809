//! The events API: track, dedup across retries and restarts, all-or-nothing batches, the list
//! with filters and cursor pages, stats, and no org seeing another's events.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use vitals::domain::url::urlencode;

use crate::common::*;

fn ev(name: &str, user: &str, ts: &str, uuid: &str, props: Value) -> Value {
    json!({"name": name, "distinct_id": user, "timestamp": ts, "uuid": uuid, "properties": props})
}

fn uuid(n: u32) -> String {
    format!("0190d6b2-0000-7000-8000-{n:012}")
}

/// Five events of org A:
/// | # | name     | user | time (UTC)       | plan  | amount |
/// | 1 | signup   | u1   | 2026-05-01 10:00 | free  |        | (and seats, trial, utm.*)
/// | 2 | purchase | u1   | 2026-05-01 11:00 | pro   | 30     |
/// | 3 | purchase | u2   | 2026-05-01 11:00 | pro   | 5      |
/// | 4 | signup   | u2   | 2026-05-02 09:00 |       |        |
/// | 5 | purchase | u3   | 2026-05-03 12:00 | team  | 12.5   |
/// Stats: 5 events, 3 users; purchase 3 (3 users), signup 2 (2 users).
/// Filters: plan = pro → #2, #3; amount > 10 → #2, #5; plan is not set → #4;
/// plan ≠ pro → #1, #4, #5 (an absent plan is "not pro").
/// Sent in one batch, `amount` is 30 and 5 (integers) beside 12.5: each comes back as sent,
/// and so do #5's null and array; every event's properties are stored once (no text copy).
fn org_a_events() -> Value {
    json!({"events": [
        ev("signup", "u1", "2026-05-01T10:00:00Z", &uuid(1), json!({"plan": "free", "seats": 3, "trial": true, "utm": {"source": "ads", "cost": 0.25}})),
        ev("purchase", "u1", "2026-05-01T11:00:00Z", &uuid(2), json!({"plan": "pro", "amount": 30})),
        ev("purchase", "u2", "2026-05-01T11:00:00Z", &uuid(3), json!({"plan": "pro", "amount": 5})),
        ev("signup", "u2", "2026-05-02T09:00:00Z", &uuid(4), json!({})),
        ev("purchase", "u3", "2026-05-03T12:00:00Z", &uuid(5), json!({"plan": "team", "amount": 12.5, "cart": {"items": 2, "coupon": null}, "tags": ["a", 1]})),
    ]})
}

const RANGE: &str = "from=2026-05-01&to=2026-05-04";

fn names(body: &Value) -> Vec<String> {
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            e["uuid"].as_str().unwrap()[24..]
                .trim_start_matches('0')
                .to_string()
        })
        .collect()
}

/// Org A's events' properties as sent, newest first (the list's order).
fn sent_properties() -> Vec<Value> {
    let mut sent = properties(&org_a_events());
    sent.reverse();
    sent
}

/// The `properties` of each of a body's `events`, in order.
fn properties(body: &Value) -> Vec<Value> {
    body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["properties"].clone())
        .collect()
}

async fn list(server: &TestServer, key: &str, query: &str) -> Value {
    let (status, body) = get_json(server, key, &format!("/api/v1/events?{RANGE}&{query}")).await;
    assert_eq!(status, StatusCode::OK, "{query}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_stored_once_listed_filtered_and_counted_per_org() {
    let server = TestServer::start().await;
    let a = setup(&server, "Alpha", "UTC").await;
    let b = create_org(&server, &a, "Beta", "beta").await;
    let key_a = api_key(&server, &a, &["read", "write"]).await;
    let key_b = api_key(&server, &b, &["read", "write"]).await;

    let (status, body) = post_api(&server, &key_a, "/events/batch", org_a_events()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"accepted": 5, "duplicates": 0}));
    // The SDK retries the same batch: nothing is stored twice.
    let (_, body) = post_api(&server, &key_a, "/events/batch", org_a_events()).await;
    assert_eq!(body, json!({"accepted": 0, "duplicates": 5}));
    // One event alone, re-sent within a batch of its own twice: stored once.
    let one = ev("signup", "u9", "2026-05-03T13:00:00Z", &uuid(6), json!({}));
    let (status, body) = post_api(&server, &key_b, "/events", one.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["uuid"], uuid(6));
    let (_, body) = post_api(&server, &key_b, "/events/batch", json!([one, one])).await;
    assert_eq!(body, json!({"accepted": 0, "duplicates": 2}));
    // The same uuid in another org is another event.
    let (_, body) = post_api(&server, &key_a, "/events", one).await;
    assert_eq!(body["accepted"], 1);

    // Newest first; equal times in uuid order, descending.
    let all = list(&server, &key_a, "").await;
    assert_eq!(names(&all), vec!["6", "5", "4", "3", "2", "1"]);
    let e5 = &all["events"][1];
    assert_eq!(e5["name"], "purchase");
    assert_eq!(e5["timestamp"], "2026-05-03T12:00:00.000000Z");
    assert_eq!(
        e5["properties"],
        json!({"plan": "team", "amount": 12.5, "cart": {"items": 2, "coupon": null}, "tags": ["a", 1]}),
        "properties come back as sent"
    );
    assert_eq!(e5["ip"], "127.0.0.1");
    assert_eq!(
        properties(&all)[1..],
        sent_properties(),
        "every event's properties come back as sent"
    );

    let filtered = |q: &str| {
        let q = q.to_string();
        let server = &server;
        let key = key_a.clone();
        async move { names(&list(server, &key, &q).await) }
    };
    let props = |f: Value| format!("properties={}", urlencode(&f.to_string()));
    assert_eq!(
        filtered(&props(json!([{"key": "plan", "value": "pro"}]))).await,
        vec!["3", "2"]
    );
    assert_eq!(
        filtered(&props(json!([{"key": "amount", "op": "gt", "value": 10}]))).await,
        vec!["5", "2"]
    );
    assert_eq!(
        filtered(&format!(
            "name=signup&{}",
            props(json!([{"key": "plan", "op": "is_not_set"}]))
        ))
        .await,
        vec!["6", "4"]
    );
    assert_eq!(
        filtered(&props(
            json!([{"key": "plan", "op": "neq", "value": "pro"}])
        ))
        .await,
        vec!["6", "5", "4", "1"]
    );
    assert_eq!(filtered("distinct_id=u2").await, vec!["4", "3"]);
    assert_eq!(
        filtered("name=purchase&name=signup&distinct_id=u1").await,
        vec!["2", "1"]
    );

    // Pages of two, following next_cursor, see every event once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..5 {
        let q = match &cursor {
            Some(c) => format!("limit=2&cursor={c}"),
            None => "limit=2".into(),
        };
        let page = list(&server, &key_a, &q).await;
        seen.extend(names(&page));
        cursor = page["next_cursor"].as_str().map(str::to_string);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(seen, vec!["6", "5", "4", "3", "2", "1"]);

    let (status, stats) = get_json(&server, &key_a, &format!("/api/v1/events/stats?{RANGE}")).await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["total"], 6);
    assert_eq!(stats["unique_users"], 4);
    assert_eq!(stats["events"][0]["name"], "purchase");
    assert_eq!(stats["events"][0]["count"], 3);
    assert_eq!(stats["events"][1]["name"], "signup");
    assert_eq!(stats["events"][1]["unique_users"], 3);
    assert_eq!(
        stats["events"][1]["last_seen"],
        "2026-05-03T13:00:00.000000Z"
    );

    // Persons are per org too: u1 is A's, not B's.
    let (status, _) = get_json(&server, &key_a, "/api/v1/persons/u1").await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = get_json(&server, &key_b, "/api/v1/persons/u1").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let long = format!("/api/v1/persons/{}", "x".repeat(201));
    let (status, body) = get_json(&server, &key_a, &long).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"]["field"], "distinct_id");

    // Org B sees only its one event.
    let b_all = list(&server, &key_b, "").await;
    assert_eq!(names(&b_all), vec!["6"]);
    let (_, b_stats) = get_json(&server, &key_b, &format!("/api/v1/events/stats?{RANGE}")).await;
    assert_eq!(b_stats["total"], 1);

    // Stored durably: after a restart the retry is still recognised.
    let dir = server.stop().await;
    let server = TestServer::start_with(dir, |_| {}).await;
    let (_, body) = post_api(&server, &key_a, "/events/batch", org_a_events()).await;
    assert_eq!(body, json!({"accepted": 0, "duplicates": 5}));
    assert_eq!(names(&list(&server, &key_a, "").await).len(), 6);

    // Properties are stored once: the VARIANT alone, no text column beside it.
    let dir = server.stop().await;
    let db = duckdb::Connection::open(dir.path().join("metrics.duckdb")).unwrap();
    let (events, text_columns): (i64, i64) = db
        .query_row(
            "SELECT (SELECT count(*) FROM events),
                    (SELECT count(*) FROM information_schema.columns
                      WHERE table_name = 'events' AND data_type = 'VARCHAR'
                        AND column_name LIKE 'props%')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((events, text_columns), (7, 0));
}

/// Writes that pause are checkpointed: right after the batch is acknowledged its rows sit in
/// DuckDB's write-ahead log (five small events are far below the 64MB at which DuckDB
/// checkpoints by itself); a second later the writer has moved them into the file, so the log
/// is empty, and they still list as sent. Unchecked, the log would stay until shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_in_writing_checkpoints_the_log() {
    let server = TestServer::start().await;
    let a = setup(&server, "Alpha", "UTC").await;
    let key = api_key(&server, &a, &["read", "write"]).await;
    let wal = server.dir.path().join("metrics.duckdb.wal");
    let wal_len = || std::fs::metadata(&wal).map_or(0, |m| m.len());
    let (status, body) = post_api(&server, &key, "/events/batch", org_a_events()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(wal_len() > 0, "the acknowledged batch is in the log");
    wait_until("the log to be checkpointed", || async {
        (wal_len() == 0).then_some(())
    })
    .await;
    assert_eq!(
        properties(&list(&server, &key, "").await),
        sent_properties(),
        "the checkpointed events read as sent"
    );
}

/// A store from before properties were kept once (schema 5) held a VARIANT built from per-batch
/// structs and, where that was lossy, the text as sent in `props_json`: #2's `amount` 30 sat
/// in a float column (30.0) and #5's array as text. Rebuilt here from a current store by hand,
/// it opens with the text made the VARIANT: every event lists its properties as sent (30, not
/// 30.0; the array an array), #1 (no text copy) keeps its VARIANT, and the column is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_with_text_copies_of_properties_is_migrated_to_one_copy() {
    let server = TestServer::start().await;
    let a = setup(&server, "Alpha", "UTC").await;
    let key = api_key(&server, &a, &["read", "write"]).await;
    let (status, body) = post_api(&server, &key, "/events/batch", org_a_events()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let dir = server.stop().await;
    {
        let db = duckdb::Connection::open(dir.path().join("metrics.duckdb")).unwrap();
        db.execute_batch(&format!(
            "ALTER TABLE events ADD COLUMN props_json VARCHAR;
             UPDATE events SET props_json = props::JSON::VARCHAR,
                    props = {{'amount': 30.0, 'plan': 'pro'}}::VARIANT
              WHERE uuid = '{}';
             UPDATE events SET props_json = props::JSON::VARCHAR,
                    props = {{'amount': 12.5, 'cart': {{'items': 2}}, 'plan': 'team',
                              'tags': '[\"a\",1]'}}::VARIANT
              WHERE uuid = '{}';
             DELETE FROM schema_version WHERE version >= 6;
             DROP TABLE event_weeks;
             CHECKPOINT;",
            uuid(2),
            uuid(5)
        ))
        .unwrap();
        let copies: i64 = db
            .query_row("SELECT count(props_json) FROM events", [], |r| r.get(0))
            .unwrap();
        assert_eq!(copies, 2, "the old layout is in place");
    }
    let server = TestServer::start_with(dir, |_| {}).await;
    let all = list(&server, &key, "").await;
    assert_eq!(names(&all), vec!["5", "4", "3", "2", "1"]);
    assert_eq!(properties(&all), sent_properties());
    // Filters read the migrated VARIANT: amount > 10 → #5, #2.
    let filter = json!([{"key": "amount", "op": "gt", "value": 10}]).to_string();
    let body = list(&server, &key, &format!("properties={}", urlencode(&filter))).await;
    assert_eq!(names(&body), vec!["5", "2"]);
    let dir = server.stop().await;
    let db = duckdb::Connection::open(dir.path().join("metrics.duckdb")).unwrap();
    let columns: i64 = db
        .query_row(
            "SELECT count(*) FROM information_schema.columns
              WHERE table_name = 'events' AND column_name = 'props_json'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(columns, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_batch_names_every_bad_event_and_stores_nothing() {
    let server = TestServer::start_with(tempfile::tempdir().unwrap(), |c| {
        c.ingest.max_events_per_request = 3;
    })
    .await;
    let a = setup(&server, "Alpha", "UTC").await;
    let key = api_key(&server, &a, &["read", "write"]).await;
    let reader = api_key(&server, &a, &["read"]).await;
    let batch = json!([
        {"name": "ok", "distinct_id": "u1"},
        {"name": "no_user"},
        {"name": "x", "distinct_id": "u1", "properties": {"plan": "pro"}, "colour": "red"},
    ]);
    let (status, body) = post_api(&server, &key, "/events/batch", batch).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["field"], "events[1].distinct_id");
    let details: Vec<(i64, String)> = body["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["index"].as_i64().unwrap(),
                d["field"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        details,
        vec![(1, "distinct_id".into()), (2, "colour".into())]
    );

    let four = json!([{"name": "a", "distinct_id": "u"}, {"name": "a", "distinct_id": "u"},
                      {"name": "a", "distinct_id": "u"}, {"name": "a", "distinct_id": "u"}]);
    let (status, body) = post_api(&server, &key, "/events/batch", four).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let (status, body) = post_api(
        &server,
        &key,
        "/events",
        json!({"name": "a", "distinct_id": "u", "timestamp": "soon"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "timestamp");
    let (status, _) = post_api(
        &server,
        &reader,
        "/events",
        json!({"name": "a", "distinct_id": "u"}),
    )
    .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a read-only key cannot track"
    );
    let (status, body) = send_json(&server, &key, Method::GET, "/events?limit=5000", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "limit");
    let (status, body) = get_json(
        &server,
        &key,
        "/api/v1/events?from=2000-01-01&to=2026-01-01",
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "ranges are bounded");
    assert_eq!(body["error"]["field"], "from");
    let (status, body) = get_json(&server, &key, "/api/v1/events?properties=%5B%7B%22key%22%3A%22a%22%2C%22op%22%3A%22gt%22%2C%22value%22%3A%22x%22%7D%5D").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["field"], "properties[0]");

    let (_, stats) = get_json(&server, &key, "/api/v1/events/stats").await;
    assert_eq!(
        stats["total"], 0,
        "nothing of the refused batches was stored"
    );
}
