//! Stripe end to end against a local fake that speaks Stripe's wire format (list objects with
//! `has_more` / `starting_after`, error objects, 429 with `Retry-After`, a 500), with a fixture
//! business whose MRR, churn and payments are worked out by hand below.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::common::*;

#[derive(Clone, Default)]
struct Fake {
    subscriptions: Vec<Value>,
    customers: Vec<Value>,
    charges: Vec<Value>,
    invoices: Vec<Value>,
    /// Lines of invoices whose embedded list says `has_more` (invoice id, line).
    invoice_lines: Vec<(String, Value)>,
    /// Items of subscriptions whose embedded list says `has_more` (subscription id, item).
    subscription_items: Vec<(String, Value)>,
    /// First answers per path before the real one (429 then 200, 500 then 200).
    trouble: Arc<Mutex<Vec<(String, u16)>>>,
    versions: Arc<Mutex<Vec<String>>>,
    /// The key Stripe accepts (changed to revoke the connected one).
    good_key: Arc<Mutex<String>>,
    /// Delay before answering /v1/charges (to stop the server mid-sync).
    charges_delay_ms: Arc<std::sync::atomic::AtomicU64>,
}

fn page(all: &[Value], q: &std::collections::HashMap<String, String>) -> Value {
    // Pages of two, whatever `limit` says, so pagination is exercised.
    let start = match q.get("starting_after") {
        Some(after) => all
            .iter()
            .position(|o| o["id"] == after.as_str())
            .map(|i| i + 1)
            .unwrap_or(all.len()),
        None => 0,
    };
    let data: Vec<Value> = all.iter().skip(start).take(2).cloned().collect();
    json!({"object": "list", "data": data, "has_more": start + 2 < all.len(), "url": "/v1/x"})
}

async fn answer(
    fake: &Fake,
    path: &str,
    headers: &HeaderMap,
    q: &std::collections::HashMap<String, String>,
    all: &[Value],
) -> Response {
    if path == "/v1/charges" {
        let ms = fake
            .charges_delay_ms
            .load(std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    fake.versions.lock().unwrap().push(
        headers
            .get("stripe-version")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string(),
    );
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != format!("Bearer {}", fake.good_key.lock().unwrap()) {
        return (AxumStatus::UNAUTHORIZED, axum::Json(json!({"error": {"type": "invalid_request_error", "message": "Invalid API Key provided: rk_test_****"}}))).into_response();
    }
    let trouble = {
        let mut t = fake.trouble.lock().unwrap();
        t.iter().position(|(p, _)| p == path).map(|i| t.remove(i).1)
    };
    match trouble {
        Some(429) => (
            AxumStatus::TOO_MANY_REQUESTS,
            [("retry-after", "1")],
            axum::Json(
                json!({"error": {"type": "rate_limit_error", "message": "Too many requests"}}),
            ),
        )
            .into_response(),
        Some(code) => (
            AxumStatus::from_u16(code).unwrap(),
            axum::Json(json!({"error": {"type": "api_error", "message": "Something went wrong"}})),
        )
            .into_response(),
        None => axum::Json(page(all, q)).into_response(),
    }
}

async fn start_fake(fake: Fake) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route(
            "/v1/subscriptions",
            get(
                |State(f): State<Fake>,
                 h: HeaderMap,
                 Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    let all = f.subscriptions.clone();
                    answer(&f, "/v1/subscriptions", &h, &q, &all).await
                },
            ),
        )
        .route(
            "/v1/charges",
            get(
                |State(f): State<Fake>,
                 h: HeaderMap,
                 Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    let from: i64 = q
                        .get("created[gte]")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0);
                    let all: Vec<Value> = f
                        .charges
                        .iter()
                        .filter(|c| c["created"].as_i64().unwrap_or(0) >= from)
                        .cloned()
                        .collect();
                    answer(&f, "/v1/charges", &h, &q, &all).await
                },
            ),
        )
        .route(
            "/v1/customers",
            get(
                |State(f): State<Fake>,
                 h: HeaderMap,
                 Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    let all = f.customers.clone();
                    answer(&f, "/v1/customers", &h, &q, &all).await
                },
            ),
        )
        .route(
            "/v1/invoices/{id}/lines",
            get(
                |State(f): State<Fake>,
                 axum::extract::Path(id): axum::extract::Path<String>,
                 h: HeaderMap,
                 Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    let all: Vec<Value> = f
                        .invoice_lines
                        .iter()
                        .filter(|(inv, _)| *inv == id)
                        .map(|(_, l)| l.clone())
                        .collect();
                    answer(&f, "/v1/invoices/lines", &h, &q, &all).await
                },
            ),
        )
        .route(
            "/v1/subscription_items",
            get(
                |State(f): State<Fake>,
                 h: HeaderMap,
                 Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    // `subscription` is required, as in Stripe's reference.
                    let Some(wanted) = q.get("subscription").cloned() else {
                        return (
                            axum::http::StatusCode::BAD_REQUEST,
                            axum::Json(json!({"error": {"type": "invalid_request_error",
                                "message": "Missing required param: subscription."}})),
                        )
                            .into_response();
                    };
                    let all: Vec<Value> = f
                        .subscription_items
                        .iter()
                        .filter(|(sub, _)| *sub == wanted)
                        .map(|(_, item)| item.clone())
                        .collect();
                    answer(&f, "/v1/subscription_items", &h, &q, &all)
                        .await
                        .into_response()
                },
            ),
        )
        .route(
            "/v1/invoices",
            get(
                |State(f): State<Fake>,
                 h: HeaderMap,
                 Query(q): Query<std::collections::HashMap<String, String>>| async move {
                    let all = f.invoices.clone();
                    answer(&f, "/v1/invoices", &h, &q, &all).await
                },
            ),
        )
        .with_state(fake);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

fn sub(
    id: &str,
    customer: &str,
    status: &str,
    start: i64,
    price: (i64, &str, &str),
    qty: u64,
) -> Value {
    json!({"id": id, "object": "subscription", "customer": customer, "status": status, "start_date": start,
           "trial_end": null, "ended_at": null, "discount": null,
           "items": {"object": "list", "data": [{"id": format!("si_{id}"), "quantity": qty,
               "price": {"id": format!("price_{id}"), "unit_amount": price.0, "currency": price.1,
                         "recurring": {"interval": price.2, "interval_count": 1}}}]}})
}

/// The subscription as Stripe sends it when its items do not fit the embedded list: no items
/// embedded, `has_more: true`; the items to serve from `/v1/subscription_items`.
fn with_paged_items(mut subscription: Value) -> (Value, Vec<(String, Value)>) {
    let id = subscription["id"].as_str().unwrap_or_default().to_string();
    let items = subscription["items"]["data"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    subscription["items"]["data"] = json!([]);
    subscription["items"]["has_more"] = json!(true);
    (
        subscription,
        items.into_iter().map(|i| (id.clone(), i)).collect(),
    )
}

fn invoice(id: &str, subscription: &str, start: i64, end: i64, amount: i64) -> Value {
    json!({"id": id, "object": "invoice", "status": "paid", "created": start,
           "lines": {"object": "list", "has_more": false, "data": [{
               "id": format!("il_{id}"), "type": "subscription", "subscription": subscription,
               "amount": amount, "currency": "eur", "proration": false, "quantity": 1,
               "period": {"start": start, "end": end}, "discount_amounts": [],
               "price": {"recurring": {"interval": "month", "interval_count": 1}}}]}})
}

/// A charge as Stripe's reference shapes it: a succeeded charge is captured in full unless
/// [`authorised`] or [`partly_captured`] says otherwise.
fn charge(id: &str, at: i64, amount: i64, currency: &str, status: &str, refunded: i64) -> Value {
    let captured = status == "succeeded";
    json!({"id": id, "object": "charge", "created": at, "amount": amount, "currency": currency,
           "status": status, "amount_refunded": refunded, "captured": captured,
           "amount_captured": if captured { amount } else { 0 },
           "refunded": captured && refunded == amount, "paid": captured})
}

/// Authorised, not captured (`capture: false`): `status: succeeded`, `captured: false`.
fn authorised(id: &str, at: i64, amount: i64) -> Value {
    let mut c = charge(id, at, amount, "eur", "succeeded", 0);
    c["captured"] = json!(false);
    c["amount_captured"] = json!(0);
    c
}

/// Captured in part: `amount_captured` below `amount`.
fn partly_captured(id: &str, at: i64, amount: i64, captured: i64) -> Value {
    let mut c = charge(id, at, amount, "eur", "succeeded", 0);
    c["amount_captured"] = json!(captured);
    c
}

async fn wait_sync(server: &TestServer, key: &str, id: i64, runs: usize) -> Value {
    let limit = Duration::from_secs(15);
    poll_until(
        "the sync to finish",
        limit,
        Duration::from_millis(50),
        || async {
            let (_, body) = get_json(server, key, &format!("/api/v1/integrations/{id}")).await;
            let done = body["runs"]
                .as_array()
                .map(|r| r.iter().filter(|x| x["outcome"] != "running").count())
                .unwrap_or(0);
            (done >= runs && body["syncing"] == false).then_some(body)
        },
    )
    .await
}

async fn day_value(
    server: &TestServer,
    key: &str,
    metric: &str,
    day: chrono::NaiveDate,
) -> Option<f64> {
    let next = day + chrono::Duration::days(1);
    let (status, body) = get_json(
        server,
        key,
        &format!("/api/v1/metrics/{metric}/series?from={day}&to={next}&bucket=day"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{metric}: {body}");
    values(&body)[0]
}

/// The fixture (days relative to today, UTC):
///
/// | sub | customer | from | price | MRR |
/// |---|---|---|---|---|
/// | A | A | −90 | 1,200.00 EUR / year | 100 |
/// | B | B | −45 | 50.00 EUR / month × 2, 25% off | 75 |
/// | C | C | −50, ended −10 at noon | 30.00 EUR / month | 30 until −10 |
/// | D | D | −5, trial until +9 | 99.00 EUR / month | 0 (trial) |
/// | E | E | −40 | 500.00 USD / month | left out (USD) |
/// | F | F | −20 | 10.00 EUR / week | 10 × 52/12 = 43.33 |
/// | G | G | −40, upgraded −10 | invoiced 40.00, then 80.00 − 20.00 off / month | 40, then 60 |
///
/// F's item is only on the second page of its items (`items.has_more`).
/// Yesterday: MRR 100 + 75 + 43.33 + 60 = 278.33, 4 customers. Churn over the 30 days to
/// yesterday: C left, of the 4 customers 30 days earlier (A, B, C, G) → 25%. Day −10: churned
/// MRR 30 (C), expansion 20 (G).
/// Payments on day −3: 100.00 paid (25.00 refunded), 50.00 failed → revenue 100, refunds 25,
/// failed payment rate 50%. Day −2 (see the assertion) holds an authorisation that was never
/// captured and a partial capture: revenue counts what was captured only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stripe_metrics_match_the_hand_computation_and_resyncing_changes_nothing() {
    let today = chrono::Utc::now().date_naive();
    let midnight = |back: i64| {
        (today - chrono::Duration::days(back))
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp()
    };
    let mut b = sub(
        "B",
        "cus_B",
        "active",
        midnight(45) + 3600,
        (5_000, "eur", "month"),
        2,
    );
    b["discount"] = json!({"coupon": {"percent_off": 25.0, "amount_off": null}, "end": null});
    let mut c = sub(
        "C",
        "cus_C",
        "canceled",
        midnight(50) + 3600,
        (3_000, "eur", "month"),
        1,
    );
    c["ended_at"] = json!(midnight(10) + 12 * 3600);
    let mut d = sub(
        "D",
        "cus_D",
        "trialing",
        midnight(5) + 3600,
        (9_900, "eur", "month"),
        1,
    );
    d["trial_end"] = json!(midnight(-9));
    // F's item is not embedded (`items.has_more`): it comes from /v1/subscription_items.
    let (f_embedded, f_items) = with_paged_items(sub(
        "F",
        "cus_F",
        "active",
        midnight(20) + 3600,
        (1_000, "eur", "week"),
        1,
    ));
    let fake = Fake {
        subscriptions: vec![
            sub(
                "A",
                "cus_A",
                "active",
                midnight(90) + 3600,
                (120_000, "eur", "year"),
                1,
            ),
            b,
            c,
            d,
            sub(
                "E",
                "cus_E",
                "active",
                midnight(40) + 3600,
                (50_000, "usd", "month"),
                1,
            ),
            f_embedded,
            sub(
                "G",
                "cus_G",
                "active",
                midnight(40) + 3600,
                (8_000, "eur", "month"),
                1,
            ),
        ],
        // G paid 40.00 a month until it upgraded on day −10 to 80.00 less a 20.00 discount; the
        // second invoice's line is only on its own lines list (`has_more`).
        invoices: vec![
            invoice("in_1", "G", midnight(40) + 3600, midnight(10) + 3600, 4_000),
            json!({"id": "in_2", "object": "invoice", "status": "paid", "created": midnight(10) + 3600,
                   "lines": {"object": "list", "has_more": true, "data": []}}),
        ],
        // Every customer above when its subscription started, a free one (Z, day −5) and a
        // deleted one: 8 accounts yesterday, 5 at the end of day −30.
        customers: [("A", 90), ("B", 45), ("C", 50), ("D", 5), ("E", 40), ("F", 20), ("G", 40), ("Z", 5)]
            .iter()
            .map(|(c, back)| json!({"id": format!("cus_{c}"), "object": "customer", "created": midnight(*back) + 3600}))
            .chain(std::iter::once(json!({"id": "cus_X", "object": "customer", "deleted": true, "created": midnight(30)})))
            .collect(),
        subscription_items: f_items,
        invoice_lines: vec![(
            "in_2".to_string(),
            json!({"id": "il_in_2", "type": "subscription", "subscription": "G", "amount": 8_000,
                   "currency": "eur", "proration": false, "quantity": 1,
                   "period": {"start": midnight(10) + 3600, "end": midnight(-20) + 3600},
                   "discount_amounts": [{"amount": 2_000}],
                   "price": {"recurring": {"interval": "month", "interval_count": 1}}}),
        )],
        charges: vec![
            charge(
                "ch_1",
                midnight(3) + 3600,
                10_000,
                "eur",
                "succeeded",
                2_500,
            ),
            charge("ch_2", midnight(3) + 7200, 5_000, "eur", "failed", 0),
            charge("ch_3", midnight(2) + 3600, 12_000, "eur", "succeeded", 0),
            charge("ch_4", midnight(2) + 3600, 99_999, "usd", "succeeded", 0),
            authorised("ch_5", midnight(2) + 5400, 30_000),
            partly_captured("ch_6", midnight(2) + 7200, 8_000, 5_000),
        ],
        trouble: Arc::new(Mutex::new(vec![
            ("/v1/subscriptions".into(), 429),
            ("/v1/charges".into(), 500),
        ])),
        versions: Arc::default(),
        good_key: Arc::new(Mutex::new("rk_test_good".into())),
        charges_delay_ms: Arc::default(),
    };
    let good_key = fake.good_key.clone();
    let versions = fake.versions.clone();
    let base = start_fake(fake).await;
    let server = TestServer::start_with(tempfile::tempdir().unwrap(), |c| {
        c.integrations.stripe_api_base = base.clone();
    })
    .await;
    let a = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &a, &["read", "write", "admin"]).await;
    let post = |body: Value| {
        reqwest::Client::new()
            .post(server.url("/api/v1/integrations"))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };

    // A refused key is named and nothing is stored.
    let r = post(json!({"provider": "stripe", "api_key": "rk_test_bad"}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["field"], "api_key");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Invalid API Key"),
        "{body}"
    );
    let r = post(json!({"provider": "paypal", "api_key": "x"}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);

    let r = post(json!({"provider": "stripe", "name": "Billing", "api_key": "rk_test_good", "webhook_secret": "whsec_test"}))
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created: Value = r.json().await.unwrap();
    assert!(
        !created.to_string().contains("rk_test_good"),
        "the key is never returned"
    );
    let id = created["integration"]["id"].as_i64().unwrap();
    let body = wait_sync(&server, &key, id, 1).await;
    assert_eq!(body["runs"][0]["outcome"], "ok", "{body}");
    assert!(
        body["runs"][0]["message"].as_str().unwrap().contains(
            "left out: 1 subscriptions in other currencies than EUR, \
                 1 charges in other currencies than EUR, 1 authorised charges not (yet) captured"
        ),
        "{body}"
    );
    assert!(versions.lock().unwrap().iter().all(|v| v == "2024-06-20"));

    let check = || async {
        let yesterday = today - chrono::Duration::days(1);
        let mrr = day_value(&server, &key, "mrr", yesterday).await.unwrap();
        assert!(
            (mrr - (100.0 + 75.0 + 520.0 / 12.0 + 60.0)).abs() < 0.01,
            "mrr {mrr}"
        );
        assert_eq!(
            day_value(&server, &key, "accounts", yesterday).await,
            Some(8.0)
        );
        // Three months back only A paid: its first day is new MRR.
        let first = today - chrono::Duration::days(90);
        assert_eq!(day_value(&server, &key, "mrr", first).await, Some(100.0));
        assert_eq!(
            day_value(&server, &key, "mrr_new", first).await,
            Some(100.0)
        );
        assert_eq!(
            day_value(&server, &key, "new_customers", first).await,
            Some(1.0)
        );
        assert_eq!(
            day_value(&server, &key, "mrr", today - chrono::Duration::days(80)).await,
            Some(100.0)
        );
        assert_eq!(
            day_value(
                &server,
                &key,
                "accounts",
                today - chrono::Duration::days(30)
            )
            .await,
            Some(5.0)
        );
        let arr = day_value(&server, &key, "arr", yesterday).await.unwrap();
        assert!((arr - 12.0 * mrr).abs() < 0.01);
        assert_eq!(
            day_value(&server, &key, "customers", yesterday).await,
            Some(4.0)
        );
        let churn = day_value(&server, &key, "churn_rate", yesterday)
            .await
            .unwrap();
        // C left, of A, B, C and G thirty days earlier.
        assert!((churn - 25.0).abs() < 1e-6, "churn {churn}");
        let before_c_left = day_value(&server, &key, "mrr", today - chrono::Duration::days(11))
            .await
            .unwrap();
        // Before day −10, C still paid 30 and G paid 40 (its invoice), not today's 60.
        assert!(
            (before_c_left - (mrr + 30.0 - 20.0)).abs() < 0.01,
            "{before_c_left}"
        );
        assert_eq!(
            day_value(
                &server,
                &key,
                "mrr_expansion",
                today - chrono::Duration::days(10)
            )
            .await,
            Some(20.0)
        );
        assert_eq!(
            day_value(
                &server,
                &key,
                "mrr_churned",
                today - chrono::Duration::days(10)
            )
            .await,
            Some(30.0)
        );
        let three = today - chrono::Duration::days(3);
        assert_eq!(
            day_value(&server, &key, "revenue", three).await,
            Some(100.0)
        );
        assert_eq!(day_value(&server, &key, "refunds", three).await, Some(25.0));
        assert_eq!(
            day_value(&server, &key, "failed_payment_rate", three).await,
            Some(50.0)
        );
        // Day −2: 120.00 captured, a 300.00 authorisation not yet captured (no revenue, no
        // failure), and 50.00 captured of an 80.00 charge → revenue 170, failed rate 0 %.
        assert_eq!(
            day_value(&server, &key, "revenue", today - chrono::Duration::days(2)).await,
            Some(170.0)
        );
        assert_eq!(
            day_value(
                &server,
                &key,
                "failed_payment_rate",
                today - chrono::Duration::days(2)
            )
            .await,
            Some(0.0)
        );
    };
    check().await;

    // Sync again: every value is the same (replaced, not added).
    let r = reqwest::Client::new()
        .post(server.url(&format!("/api/v1/integrations/{id}/sync")))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let body = wait_sync(&server, &key, id, 2).await;
    assert_eq!(body["runs"][0]["outcome"], "ok", "{body}");
    check().await;

    // Webhooks: signed events start a sync once; replays, bad signatures and stale ones do not.
    let hook = server.url(&format!("/hooks/stripe/{id}"));
    let send = |sig: String, body: String| {
        reqwest::Client::new()
            .post(&hook)
            .header("stripe-signature", sig)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let now = chrono::Utc::now().timestamp();
    let event =
        json!({"id": "evt_1", "type": "customer.subscription.updated", "data": {"object": {}}})
            .to_string();
    let good = vitals::security::sign_payload("whsec_test", now, event.as_bytes());
    let r = send(good.clone(), event.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["duplicate"].as_bool(), body["sync_started"].as_bool()),
        (Some(false), Some(true)),
        "{body}"
    );
    let after_event = wait_sync(&server, &key, id, 3).await;
    assert_eq!(after_event["runs"].as_array().map(Vec::len), Some(3));
    check().await;
    let r = send(good, event.clone()).await.unwrap();
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["duplicate"], true, "a replay is applied once");
    let wrong = vitals::security::sign_payload("whsec_other", now, event.as_bytes());
    let stale = vitals::security::sign_payload("whsec_test", now - 301, event.as_bytes());
    let tampered_body = event.replace("evt_1", "evt_2");
    let original = vitals::security::sign_payload("whsec_test", now, event.as_bytes());
    for (sig, body) in [
        (wrong.clone(), event.clone()),
        (stale, event.clone()),
        (original, tampered_body),
    ] {
        let r = send(sig, body).await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], "bad_signature", "{e}");
    }
    // Several v1 values (secret rotation): any may match.
    let event3 = json!({"id": "evt_3", "type": "invoice.paid"}).to_string();
    let v1 = |s: String| {
        s.rsplit_once("v1=")
            .map(|(_, v)| v.to_string())
            .unwrap_or_default()
    };
    let rotated = format!(
        "t={now},v1={},v1={}",
        v1(vitals::security::sign_payload(
            "whsec_old",
            now,
            event3.as_bytes()
        )),
        v1(vitals::security::sign_payload(
            "whsec_test",
            now,
            event3.as_bytes()
        ))
    );
    let r = send(rotated, event3).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    wait_sync(&server, &key, id, 4).await;
    check().await;
    let (status, _) = get_json(&server, &key, "/api/v1/integrations").await;
    assert_eq!(status, StatusCode::OK);
    let r = reqwest::Client::new()
        .post(server.url("/hooks/stripe/999"))
        .header("stripe-signature", wrong)
        .body(event)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);

    // The page shows it, with the webhook URL; a refused key on the form is named.
    let page = server.url(&format!("/o/{}/integrations", a.slug));
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
        html.contains("Billing") && html.contains(&format!("/hooks/stripe/{id}")),
        "{html}"
    );
    assert!(!html.contains("rk_test_good"));
    let token = csrf(&a.client, &page).await;
    let r = a
        .client
        .post(&page)
        .form(&[
            ("csrf", token.as_str()),
            ("name", "Other"),
            ("api_key", "rk_test_nope"),
            ("webhook_secret", ""),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("api_key: Stripe refused the key")
    );

    // The key is revoked at Stripe: the next sync says "reconnect needed" and keeps the data.
    *good_key.lock().unwrap() = "rk_test_rotated".into();
    let r = a
        .client
        .post(server.url(&format!("/o/{}/integrations/{id}/sync", a.slug)))
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let body = wait_sync(&server, &key, id, 5).await;
    assert_eq!(body["integration"]["status"], "reconnect", "{body}");
    assert_eq!(body["runs"][0]["outcome"], "error");
    let html = a
        .client
        .get(&page)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("reconnect needed"), "{html}");
    check().await;

    // Each integration has its own pull schedule, validated.
    let put = |schedule: &str| {
        reqwest::Client::new()
            .put(server.url(&format!("/api/v1/integrations/{id}")))
            .bearer_auth(&key)
            .json(&json!({ "schedule": schedule }))
            .send()
    };
    let r = put("every hour").await.unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["field"],
        "schedule"
    );
    let r = put("0 */30 * * * *").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap()["integration"]["schedule"],
        "0 */30 * * * *"
    );

    // Another org sees nothing of it.
    let other = create_org(&server, &a, "Beta", "beta").await;
    let key_b = api_key(&server, &other, &["read", "write", "admin"]).await;
    let (status, _) = get_json(&server, &key_b, &format!("/api/v1/integrations/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let r = reqwest::Client::new()
        .post(server.url(&format!("/api/v1/integrations/{id}/sync")))
        .bearer_auth(&key_b)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (_, list) = get_json(&server, &key_b, "/api/v1/integrations").await;
    assert_eq!(list["integrations"].as_array().map(Vec::len), Some(0));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_cut_short_by_a_stop_resumes_at_the_next_start_and_counts_once() {
    let today = chrono::Utc::now().date_naive();
    let midnight = |back: i64| {
        (today - chrono::Duration::days(back))
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp()
    };
    let fake = Fake {
        subscriptions: vec![sub(
            "A",
            "cus_A",
            "active",
            midnight(40),
            (9_000, "eur", "month"),
            1,
        )],
        subscription_items: vec![],
        charges: vec![
            charge("ch_1", midnight(3) + 60, 9_000, "eur", "succeeded", 0),
            charge("ch_2", midnight(3) + 120, 1_000, "eur", "succeeded", 0),
            charge("ch_3", midnight(3) + 180, 500, "eur", "succeeded", 0),
        ],
        good_key: Arc::new(Mutex::new("rk_test_good".into())),
        ..Fake::default()
    };
    let delay = fake.charges_delay_ms.clone();
    let base = start_fake(fake).await;
    let config = |c: &mut vitals::Config| c.integrations.stripe_api_base = base.clone();
    let server = TestServer::start_with(tempfile::tempdir().unwrap(), config).await;
    let a = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &a, &["read", "write", "admin"]).await;

    // The first sync hangs on the charges; the server stops under it.
    delay.store(10_000, std::sync::atomic::Ordering::SeqCst);
    let r = reqwest::Client::new()
        .post(server.url("/api/v1/integrations"))
        .bearer_auth(&key)
        .json(&json!({"provider": "stripe", "api_key": "rk_test_good"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let id = r.json::<Value>().await.unwrap()["integration"]["id"]
        .as_i64()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, body) = get_json(&server, &key, &format!("/api/v1/integrations/{id}")).await;
    assert_eq!(body["integration"]["status"], "syncing", "{body}");
    assert!(
        body["progress"]
            .as_str()
            .unwrap_or("")
            .starts_with("read 1 subscriptions; reading charges since "),
        "{body}"
    );
    let dir = server.stop().await;

    // Restart: the cut run is recorded as interrupted, and the sync runs again to the end.
    delay.store(0, std::sync::atomic::Ordering::SeqCst);
    let server = TestServer::start_with(dir, config).await;
    let body = wait_sync(&server, &key, id, 2).await;
    let runs = body["runs"].as_array().cloned().unwrap_or_default();
    assert_eq!(runs[0]["outcome"], "ok", "{body}");
    assert_eq!(runs[1]["outcome"], "error");
    assert!(
        runs[1]["message"]
            .as_str()
            .unwrap()
            .starts_with("interrupted"),
        "{body}"
    );
    assert_eq!(body["integration"]["status"], "ok");
    // 90 + 10 + 5 on day −3, once; MRR 90.
    assert_eq!(
        day_value(&server, &key, "revenue", today - chrono::Duration::days(3)).await,
        Some(105.0)
    );
    assert_eq!(
        day_value(&server, &key, "mrr", today - chrono::Duration::days(1)).await,
        Some(90.0)
    );
    let dir = server.stop().await;

    // The key file is lost while credentials are sealed with it: startup says so and which file
    // to restore; it does not quietly make a new key.
    std::fs::remove_file(dir.path().join("secret.key")).unwrap();
    let mut cfg = test_config(&dir);
    config(&mut cfg);
    let err = tokio::task::spawn_blocking(move || vitals::App::open(cfg).err())
        .await
        .unwrap()
        .expect("refused")
        .to_string();
    assert!(
        err.contains("secret.key is missing but 1 integration credentials"),
        "{err}"
    );
    assert!(!dir.path().join("secret.key").exists());
}
