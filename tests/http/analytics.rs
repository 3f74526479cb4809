//! Trends, funnels and retention over HTTP on hand-worked fixtures (each written out in the
//! test's doc comment), and no org seeing another's answers.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

fn e(name: &str, user: &str, ts: &str, props: Value) -> Value {
    json!({"name": name, "distinct_id": user, "timestamp": ts, "properties": props})
}

pub async fn send(server: &TestServer, key: &str, events: Vec<Value>) {
    let (status, body) = post_api(server, key, "/events/batch", json!({ "events": events })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn ask(server: &TestServer, key: &str, what: &str, q: Value) -> Value {
    let (status, body) = post_api(server, key, &format!("/analytics/{what}"), q).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn series(body: &Value) -> Vec<(Value, Vec<f64>)> {
    body["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let values = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap_or(f64::NAN))
                .collect();
            (s["label"].clone(), values)
        })
        .collect()
}

/// Org in America/New_York (UTC-5 until 2026-03-08 07:00 UTC). Purchases:
/// | UTC              | local day | user   | plan | amount |
/// | 03-01 15:00      | Mar 1     | u1     | pro  | 10     |
/// | 03-01 16:00      | Mar 1     | u1     | pro  | 20     |
/// | 03-01 17:00      | Mar 1     | u2     | free | 5      |
/// | 03-02 04:30      | Mar 1 (23:30) | u3 | pro  | 7      |
/// | 03-02 05:30      | Mar 2 (00:30) | u2 | —    | 1      |
/// | 03-02 12:00      | Mar 2     | u3     | team | 100    |
/// | 03-02 13:00      | Mar 2     | anon-9 | pro  | 3      |
/// and at 03-02 14:00 anon-9 identifies as u3.
/// Days Mar 1, Mar 2: count [4, 3]; unique users [3 (u1,u2,u3), 2 (u2, u3 = anon-9)];
/// sum [42, 104]. Breakdown by plan, top 1: pro [3, 1], (other) [1 free, 1 team],
/// (none) [0, 1]. Filter plan = pro, sum: [37, 3]. The two days before: nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trend_counts_sums_and_breaks_down_in_local_days_with_merged_users() {
    let server = TestServer::start().await;
    let a = setup(&server, "Alpha", "America/New_York").await;
    let b = create_org(&server, &a, "Beta", "beta").await;
    let key = api_key(&server, &a, &["read", "write"]).await;
    let key_b = api_key(&server, &b, &["read"]).await;
    send(
        &server,
        &key,
        vec![
            e(
                "purchase",
                "u1",
                "2026-03-01T15:00:00Z",
                json!({"plan": "pro", "amount": 10}),
            ),
            e(
                "purchase",
                "u1",
                "2026-03-01T16:00:00Z",
                json!({"plan": "pro", "amount": 20}),
            ),
            e(
                "purchase",
                "u2",
                "2026-03-01T17:00:00Z",
                json!({"plan": "free", "amount": 5}),
            ),
            e(
                "purchase",
                "u3",
                "2026-03-02T04:30:00Z",
                json!({"plan": "pro", "amount": 7}),
            ),
            e(
                "purchase",
                "u2",
                "2026-03-02T05:30:00Z",
                json!({"amount": 1}),
            ),
            e(
                "purchase",
                "u3",
                "2026-03-02T12:00:00Z",
                json!({"plan": "team", "amount": 100}),
            ),
            e(
                "purchase",
                "anon-9",
                "2026-03-02T13:00:00Z",
                json!({"plan": "pro", "amount": 3}),
            ),
            e(
                "$identify",
                "u3",
                "2026-03-02T14:00:00Z",
                json!({"$anon_distinct_id": "anon-9"}),
            ),
        ],
    )
    .await;
    let q = |extra: Value| {
        let mut q = json!({"event": "purchase", "from": "2026-03-01", "to": "2026-03-03", "interval": "day"});
        q.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        q
    };
    let count = ask(&server, &key, "trends", q(json!({"compare": true}))).await;
    assert_eq!(
        count["buckets"],
        json!(["2026-03-01T05:00:00+00:00", "2026-03-02T05:00:00+00:00"])
    );
    assert_eq!(series(&count), vec![(Value::Null, vec![4.0, 3.0])]);
    assert_eq!(count["series"][0]["total"], 7.0);
    assert_eq!(
        series(&json!({"series": count["previous"]})),
        vec![(Value::Null, vec![0.0, 0.0])]
    );
    let unique = ask(&server, &key, "trends", q(json!({"math": "unique_users"}))).await;
    assert_eq!(series(&unique), vec![(Value::Null, vec![3.0, 2.0])]);
    let sum = ask(
        &server,
        &key,
        "trends",
        q(json!({"math": "sum", "property": "amount"})),
    )
    .await;
    assert_eq!(series(&sum), vec![(Value::Null, vec![42.0, 104.0])]);
    let by_plan = ask(
        &server,
        &key,
        "trends",
        q(json!({"breakdown": "plan", "breakdown_limit": 1})),
    )
    .await;
    assert_eq!(
        series(&by_plan),
        vec![
            (json!("pro"), vec![3.0, 1.0]),
            (json!("(other)"), vec![1.0, 1.0]),
            (json!("(none)"), vec![0.0, 1.0]),
        ]
    );
    let pro = ask(
        &server,
        &key,
        "trends",
        q(json!({"math": "sum", "property": "amount",
                 "event": {"event": "purchase", "filters": [{"key": "plan", "value": "pro"}]}})),
    )
    .await;
    assert_eq!(series(&pro), vec![(Value::Null, vec![37.0, 3.0])]);

    let other = ask(&server, &key_b, "trends", q(json!({}))).await;
    assert_eq!(
        series(&other),
        vec![(Value::Null, vec![0.0, 0.0])],
        "org B sees none of A's events"
    );

    let (status, body) = post_api(
        &server,
        &key,
        "/analytics/trends",
        json!({"event": "purchase", "math": "sum"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "property");
    let (status, body) = post_api(
        &server,
        &key,
        "/analytics/trends",
        json!({"event": "purchase", "interval": "hour", "from": "2020-01-01", "to": "2025-01-01"}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "too many buckets: {body}");
}

/// Funnel view → cart → buy, window 1 hour, on 2026-05-01 (UTC org):
/// | unit | events                                                         |
/// | pA   | view 10:00 (ads), cart 10:20, buy 10:50                        |
/// | pB   | view 10:00 (ads), cart 10:30, buy 11:00:01 (1 s past the window) |
/// | pC   | view 10:00 (seo), buy 10:10, cart 10:20                        |
/// | pD   | view 09:00 (seo), view 12:00 (ads), cart 12:05, buy 12:06      |
/// | pE   | view 10:00, other 10:01, cart 10:02, buy 10:03                 |
/// | pF   | cart 10:00                                                     |
/// Ordered: 5 → 5 → 3 (A, D, E); dropped at buy: pB, pC; time to convert 50, 6, 3 min →
/// median 6 min. Strict (other events break an attempt): 5 → 3 (A, B, D) → 2 (A, D).
/// Any order: 6 → 5 → 4 (B gets cart + buy from its cart at 10:30; F enters with cart).
/// Breakdown by the first step's source (D's converting attempt is its 12:00 ads view):
/// ads (A, B, D) 3 → 3 → 2; (none) (E) 1 → 1 → 1; seo (C) 1 → 1 → 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_funnel_counts_each_order_mode_window_edge_and_breakdown() {
    let server = TestServer::start().await;
    let a = setup(&server, "Alpha", "UTC").await;
    let b = create_org(&server, &a, "Beta", "beta").await;
    let key = api_key(&server, &a, &["read", "write"]).await;
    let key_b = api_key(&server, &b, &["read"]).await;
    send(&server, &key, funnel_fixture()).await;
    let funnel = |order: &str| {
        json!({"steps": ["view", "cart", "buy"], "window": {"value": 1, "unit": "hour"}, "order": order,
               "from": "2026-05-01", "to": "2026-05-02", "breakdown": "source"})
    };
    let counts = |body: &Value| -> Vec<i64> {
        body["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["count"].as_i64().unwrap())
            .collect()
    };
    let ordered = ask(&server, &key, "funnels", funnel("ordered")).await;
    assert_eq!(counts(&ordered), vec![5, 5, 3]);
    assert_eq!(ordered["steps"][2]["dropped"], 2);
    assert_eq!(ordered["steps"][2]["step_conversion"], 0.6);
    assert_eq!(ordered["dropped_units"], json!([[], ["pB", "pC"]]));
    assert_eq!(ordered["time_to_convert_seconds"]["median"], 360.0);
    let groups: Vec<(Value, Vec<i64>)> = ordered["breakdowns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["breakdown"].clone(), counts(g)))
        .collect();
    assert_eq!(
        groups,
        vec![
            (json!("ads"), vec![3, 3, 2]),
            (json!("(none)"), vec![1, 1, 1]),
            (json!("seo"), vec![1, 1, 0]),
        ]
    );
    assert_eq!(
        counts(&ask(&server, &key, "funnels", funnel("strict")).await),
        vec![5, 3, 2]
    );
    assert_eq!(
        counts(&ask(&server, &key, "funnels", funnel("any")).await),
        vec![6, 5, 4]
    );
    let other = ask(&server, &key_b, "funnels", funnel("ordered")).await;
    assert_eq!(
        counts(&other),
        vec![0, 0, 0],
        "org B sees none of A's events"
    );

    let (status, body) = post_api(
        &server,
        &key,
        "/analytics/funnels",
        json!({"steps": ["view"]}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "steps");
}

/// Per session versus per person (window 1 day, 2026-05-01 UTC):
/// | session | person | events                         |
/// | s1      | u1     | signup 10:00, purchase 10:10   |
/// | s2      | u1     | signup 12:00                   |
/// | s3      | u2     | signup 10:00                   |
/// | s4      | u2     | purchase 11:00                 |
/// | —       | u3     | signup 10:00 (no session)      |
/// Per session: s1, s2, s3 enter, only s1 buys → [3, 1] (u3's event has no session).
/// Per person: u1, u2, u3 enter; u1 and u2 buy within the day → [3, 2].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_funnel_counts_sessions_or_people() {
    let server = TestServer::start().await;
    let a = setup(&server, "Alpha", "UTC").await;
    let key = api_key(&server, &a, &["read", "write"]).await;
    let ev = |name: &str, user: &str, session: Option<&str>, at: &str| {
        let mut e =
            json!({"name": name, "distinct_id": user, "timestamp": format!("2026-05-01T{at}:00Z")});
        if let Some(s) = session {
            e["session_id"] = json!(s);
        }
        e
    };
    send(
        &server,
        &key,
        vec![
            ev("signup", "u1", Some("s1"), "10:00"),
            ev("purchase", "u1", Some("s1"), "10:10"),
            ev("signup", "u1", Some("s2"), "12:00"),
            ev("signup", "u2", Some("s3"), "10:00"),
            ev("purchase", "u2", Some("s4"), "11:00"),
            ev("signup", "u3", None, "10:00"),
        ],
    )
    .await;
    let counts = |body: &Value| -> Vec<i64> {
        body["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["count"].as_i64().unwrap())
            .collect()
    };
    for (unit, expected) in [("session", vec![3, 1]), ("person", vec![3, 2])] {
        let body = ask(
            &server,
            &key,
            "funnels",
            json!({"steps": ["signup", "purchase"], "window": {"value": 1, "unit": "day"}, "unit": unit,
                   "from": "2026-05-01", "to": "2026-05-02"}),
        )
        .await;
        assert_eq!(counts(&body), expected, "per {unit}: {body}");
    }
    server.stop().await;
}

/// Daily retention of "active" in America/New_York across the DST change (2026-03-08 07:00
/// UTC), range Mar 7 – Mar 9 (local), 2 periods after each cohort:
/// | person | active at (local)                          |
/// | r1     | Mar 7 10:00 EST, Mar 8 10:00 EDT, Mar 9 23:30 EDT |
/// | r2     | Mar 8 00:30 EST, Mar 9 00:30 EDT (04:30 UTC: with a fixed −5 it would be Mar 8) |
/// | r3     | Mar 6 12:00 EST (before the range), Mar 8 12:00 EDT |
/// First time: Mar 7 {r1} → [1, 1, 1]; Mar 8 {r2} → [1, 1]; Mar 9 {} → [0] (r3's first
/// time is before the range). Recurring: Mar 7 {r1} → [1, 1, 1]; Mar 8 {r1, r2, r3} →
/// [3, 2]; Mar 9 {r1, r2} → [2].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_first_time_and_recurring_across_a_dst_change() {
    let server = TestServer::start().await;
    let a = setup(&server, "Alpha", "America/New_York").await;
    let key = api_key(&server, &a, &["read", "write"]).await;
    send(
        &server,
        &key,
        vec![
            e("active", "r1", "2026-03-07T15:00:00Z", json!({})),
            e("active", "r1", "2026-03-08T14:00:00Z", json!({})),
            e("active", "r1", "2026-03-10T03:30:00Z", json!({})),
            e("active", "r2", "2026-03-08T05:30:00Z", json!({})),
            e("active", "r2", "2026-03-09T04:30:00Z", json!({})),
            e("active", "r3", "2026-03-06T17:00:00Z", json!({})),
            e("active", "r3", "2026-03-08T16:00:00Z", json!({})),
        ],
    )
    .await;
    let q = |kind: &str| json!({"target": "active", "period": "day", "periods": 2, "kind": kind, "from": "2026-03-07", "to": "2026-03-10"});
    let table = |body: &Value| -> Vec<(i64, Vec<i64>)> {
        body["cohorts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["size"].as_i64().unwrap(),
                    c["retained"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|r| r.as_i64().unwrap())
                        .collect(),
                )
            })
            .collect()
    };
    let first = ask(&server, &key, "retention", q("first_time")).await;
    assert_eq!(
        table(&first),
        vec![(1, vec![1, 1, 1]), (1, vec![1, 1]), (0, vec![0])]
    );
    assert_eq!(
        first["cohorts"][1]["period"], "2026-03-08T05:00:00+00:00",
        "local midnight, still EST"
    );
    assert_eq!(
        first["cohorts"][2]["period"], "2026-03-09T04:00:00+00:00",
        "local midnight, EDT"
    );
    let recurring = ask(&server, &key, "retention", q("recurring")).await;
    assert_eq!(
        table(&recurring),
        vec![(1, vec![1, 1, 1]), (3, vec![3, 2]), (2, vec![2])]
    );
    assert_eq!(
        recurring["cohorts"][1]["percent"],
        json!([100.0, 200.0 / 3.0])
    );
}

/// The funnel fixture of [`a_funnel_counts_each_order_mode_window_edge_and_breakdown`] (also
/// what the browser test shows on the funnel page).
pub fn funnel_fixture() -> Vec<Value> {
    let t = |hms: &str| format!("2026-05-01T{hms}Z");
    let src = |s: &str| json!({"source": s});
    vec![
        e("view", "pA", &t("10:00:00"), src("ads")),
        e("cart", "pA", &t("10:20:00"), json!({})),
        e("buy", "pA", &t("10:50:00"), json!({})),
        e("view", "pB", &t("10:00:00"), src("ads")),
        e("cart", "pB", &t("10:30:00"), json!({})),
        e("buy", "pB", &t("11:00:01"), json!({})),
        e("view", "pC", &t("10:00:00"), src("seo")),
        e("buy", "pC", &t("10:10:00"), json!({})),
        e("cart", "pC", &t("10:20:00"), json!({})),
        e("view", "pD", &t("09:00:00"), src("seo")),
        e("view", "pD", &t("12:00:00"), src("ads")),
        e("cart", "pD", &t("12:05:00"), json!({})),
        e("buy", "pD", &t("12:06:00"), json!({})),
        e("view", "pE", &t("10:00:00"), json!({})),
        e("other", "pE", &t("10:01:00"), json!({})),
        e("cart", "pE", &t("10:02:00"), json!({})),
        e("buy", "pE", &t("10:03:00"), json!({})),
        e("cart", "pF", &t("10:00:00"), json!({})),
    ]
}

/// Events feed the metric catalog. Signups (UTC org): u1 Jun 1 10:00, u2 Jun 1 12:00, u1 Jun 3
/// 09:00 → daily signups [2, 0, 1] for Jun 1–3 (a quiet day is 0, not a gap), daily unique
/// signers [2, 0, 1]. A late event (u3 on Jun 2 08:00) arrives after the metric exists: the
/// day is recomputed to [2, 1, 1]. Another org has no such metric.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_metric_is_backfilled_then_follows_new_events() {
    let server = TestServer::start().await;
    let a = setup(&server, "Alpha", "UTC").await;
    let b = create_org(&server, &a, "Beta", "beta").await;
    let key = api_key(&server, &a, &["read", "write", "admin"]).await;
    let key_b = api_key(&server, &b, &["read"]).await;
    send(
        &server,
        &key,
        vec![
            e("signup", "u1", "2026-06-01T10:00:00Z", json!({})),
            e("signup", "u2", "2026-06-01T12:00:00Z", json!({})),
            e("signup", "u1", "2026-06-03T09:00:00Z", json!({})),
        ],
    )
    .await;
    let (status, body) = post_api(
        &server,
        &key,
        "/custom-metrics",
        json!({"key": "signups", "name": "Signups", "category": "growth", "unit": "count", "higher_is_better": true,
               "events": {"event": "signup"}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["aggregation"], "sum");
    let (status, body) = post_api(
        &server,
        &key,
        "/custom-metrics",
        json!({"key": "signers", "name": "Signers", "category": "growth", "unit": "count", "higher_is_better": true,
               "events": {"event": "signup", "math": "unique_users"}}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["aggregation"], "avg",
        "daily unique users average over longer periods"
    );
    let series = |metric: &str| {
        let path = format!(
            "/api/v1/metrics/{metric}/series?from=2026-06-01&to=2026-06-04&bucket=day&agg=sum"
        );
        let (server, key) = (&server, key.clone());
        async move {
            let (status, body) = get_json(server, &key, &path).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            values(&body)
        }
    };
    assert_eq!(
        series("signups").await,
        vec![Some(2.0), Some(0.0), Some(1.0)]
    );
    assert_eq!(
        series("signers").await,
        vec![Some(2.0), Some(0.0), Some(1.0)]
    );

    send(
        &server,
        &key,
        vec![e("signup", "u3", "2026-06-02T08:00:00Z", json!({}))],
    )
    .await;
    wait_until("the late signup counted", || {
        let s = series("signups");
        async move { (s.await == vec![Some(2.0), Some(1.0), Some(1.0)]).then_some(()) }
    })
    .await;

    let (status, _) = get_json(
        &server,
        &key_b,
        "/api/v1/metrics/signups/series?from=2026-06-01&to=2026-06-04",
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "org B has no such metric");
    let (status, body) = post_api(
        &server,
        &key,
        "/custom-metrics",
        json!({"key": "revenue_ev", "name": "R", "category": "financial", "unit": "currency", "events": {"event": "buy", "math": "sum"}}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["field"], "events.property");
}

/// Lifecycle and stickiness of "use", days Jun 1–3 (UTC), Jun 0 = May 31 as context:
/// | person | active                 |
/// | a      | May 31, Jun 1, Jun 3   |
/// | b      | Jun 1, Jun 2           |
/// | c      | May 20, Jun 2          |
/// | d      | Jun 3                  |
/// Jun 1: a returning, b new. Jun 2: b returning, c resurrecting, a dormant. Jun 3: a
/// resurrecting, d new, b and c dormant → new [1, 0, 1], returning [1, 1, 0], resurrecting
/// [0, 1, 1], dormant [0, −1, −2]. Stickiness over Jun 1–3: a 2 days, b 2, c 1, d 1 →
/// 1 day: 2 people, 2 days: 2, 3 days: 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_and_stickiness_classify_people_per_day() {
    let server = TestServer::start().await;
    let a = setup(&server, "Alpha", "UTC").await;
    let b = create_org(&server, &a, "Beta", "beta").await;
    let key = api_key(&server, &a, &["read", "write"]).await;
    let key_b = api_key(&server, &b, &["read"]).await;
    let u = |who: &str, day: &str| e("use", who, &format!("{day}T12:00:00Z"), json!({}));
    send(
        &server,
        &key,
        vec![
            u("a", "2026-05-31"),
            u("a", "2026-06-01"),
            u("a", "2026-06-03"),
            u("b", "2026-06-01"),
            u("b", "2026-06-02"),
            u("c", "2026-05-20"),
            u("c", "2026-06-02"),
            u("d", "2026-06-03"),
        ],
    )
    .await;
    let q = json!({"event": "use", "interval": "day", "from": "2026-06-01", "to": "2026-06-04"});
    let l = ask(&server, &key, "lifecycle", q.clone()).await;
    assert_eq!(
        l["periods"],
        json!([
            "2026-06-01T00:00:00+00:00",
            "2026-06-02T00:00:00+00:00",
            "2026-06-03T00:00:00+00:00"
        ])
    );
    assert_eq!(l["new"], json!([1, 0, 1]));
    assert_eq!(l["returning"], json!([1, 1, 0]));
    assert_eq!(l["resurrecting"], json!([0, 1, 1]));
    assert_eq!(l["dormant"], json!([0, -1, -2]));
    let st = ask(&server, &key, "stickiness", q.clone()).await;
    assert_eq!(
        st["intervals"],
        json!([{"active": 1, "users": 2}, {"active": 2, "users": 2}, {"active": 3, "users": 0}])
    );
    let other = ask(&server, &key_b, "lifecycle", q).await;
    assert_eq!(
        other["new"],
        json!([0, 0, 0]),
        "org B sees none of A's events"
    );

    for what in ["lifecycle", "stickiness"] {
        for (bad, field) in [
            (json!({"event": "use", "interval": "hour"}), "interval"),
            (json!({"interval": "day"}), "event"),
            (json!({"event": "use", "colour": 1}), "colour"),
            (json!({"event": 5}), "event"),
        ] {
            let (status, body) = post_api(&server, &key, &format!("/analytics/{what}"), bad).await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{what}: {body}");
            assert_eq!(body["error"]["field"], field, "{what}");
        }
        let (status, body) = post_api(
            &server,
            &key,
            &format!("/analytics/{what}"),
            json!({"event": "use", "from": "2026-06-04", "to": "2026-06-01"}),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{what}");
        assert_eq!(body["error"]["field"], "from");
    }
}
