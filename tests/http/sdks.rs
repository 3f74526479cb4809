//! The official SDKs as clients (from PyPI: `posthog`, `segment-analytics-python`, installed by
//! `.ci/run`), sending through a local proxy that refuses their first request with a 503 so
//! their retry is exercised: every event stored once, properties and identity as sent. Also the
//! receivers' wire details the SDKs do not all use: gzip by magic bytes, form and GET `data=`,
//! CORS, wrong keys.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use crate::common::*;

/// A proxy in front of the server that answers 503 to the first `refuse` POSTs, then forwards.
struct FlakyProxy {
    url: String,
    refused: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct ProxyState {
    target: String,
    refuse: usize,
    refused: Arc<AtomicUsize>,
}

async fn forward(State(st): State<ProxyState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 64 << 20)
        .await
        .unwrap_or_default();
    if parts.method == axum::http::Method::POST
        && st.refused.fetch_add(1, Ordering::SeqCst) < st.refuse
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "try again").into_response();
    }
    let url = format!(
        "{}{}",
        st.target,
        parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
    );
    let mut headers = reqwest::header::HeaderMap::new();
    for (k, v) in &parts.headers {
        if k != "host" && k != "content-length" {
            headers.insert(k.clone(), v.clone());
        }
    }
    let answer = reqwest::Client::new()
        .request(parts.method.clone(), url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let mut out = HeaderMap::new();
    if let Some(ct) = answer.headers().get("content-type") {
        out.insert("content-type", ct.clone());
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    (status, out, bytes).into_response()
}

async fn flaky_proxy(server: &TestServer, refuse: usize) -> FlakyProxy {
    let refused = Arc::new(AtomicUsize::new(0));
    let state = ProxyState {
        target: server.url(""),
        refuse,
        refused: refused.clone(),
    };
    let app = axum::Router::new().fallback(forward).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    FlakyProxy { url, refused }
}

/// Runs a Python script with `HOST` and `KEY` set; fails the test with its output if it fails.
async fn python(script: &str, host: &str, key: &str) {
    let out = tokio::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .env("HOST", host)
        .env("KEY", key)
        .output()
        .await
        .expect("python3 runs (the SDK test needs it; .ci/run installs the SDKs)");
    assert!(
        out.status.success(),
        "the SDK script failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn write_key(server: &TestServer, key: &str) -> String {
    let (status, org) = get_json(server, key, "/api/v1/org").await;
    assert_eq!(status, StatusCode::OK, "{org}");
    org["write_key"].as_str().unwrap().to_string()
}

async fn events_of(server: &TestServer, key: &str) -> Vec<Value> {
    let (status, body) = get_json(
        server,
        key,
        "/api/v1/events?from=2026-01-01&to=2027-12-31&limit=1000",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["events"].as_array().unwrap().clone()
}

fn by_name<'a>(events: &'a [Value], name: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["name"] == name).collect()
}

const POSTHOG_SCRIPT: &str = r#"
import os, sys, datetime
from posthog import Posthog
mode = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("MODE", "v0")
c = Posthog(os.environ["KEY"], host=os.environ["HOST"], gzip=True, max_retries=3,
            flush_at=50, flush_interval=0.2, capture_mode=mode)
ts = datetime.datetime(2026, 5, 1, 10, 0, 0, tzinfo=datetime.timezone.utc)
p = "a" if mode == "v0" else "b"
c.capture("signup", distinct_id="anon-" + p, timestamp=ts,
          uuid="0190d6b2-0000-7000-8000-00000000000" + ("1" if p == "a" else "2"),
          properties={"plan": "pro", "seats": 3, "nested": {"beta": True}, "tags": ["x", "y"]})
c.capture("$identify", distinct_id="user-" + p, timestamp=ts + datetime.timedelta(minutes=1),
          properties={"$anon_distinct_id": "anon-" + p, "$set": {"email": p + "@example.test"}})
c.set(distinct_id="user-" + p, properties={"name": "Ada"})
c.flush()
c.shutdown()
"#;

const SEGMENT_SCRIPT: &str = r#"
import os, datetime
from segment.analytics import Client
c = Client(write_key=os.environ["KEY"], host=os.environ["HOST"], gzip=True, max_retries=3,
           upload_interval=0.2)
ts = datetime.datetime(2026, 5, 2, 9, 0, 0, tzinfo=datetime.timezone.utc)
c.track(user_id="seg-user", event="Order Completed", properties={"total": 42.5, "currency": "EUR"},
        timestamp=ts, message_id="seg-msg-1")
c.identify(user_id="seg-user", anonymous_id="seg-anon", traits={"plan": "team"}, message_id="seg-msg-2")
c.page(anonymous_id="seg-anon", name="Pricing", properties={"url": "https://shop.test/pricing"},
       message_id="seg-msg-3")
c.group(user_id="seg-user", group_id="acme", traits={"employees": 12}, message_id="seg-msg-4")
c.flush()
c.join()
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_sdks_deliver_every_event_once_through_a_retry() {
    let server = TestServer::start().await;
    let s = setup(&server, "Alpha", "UTC").await;
    let key = api_key(&server, &s, &["read", "write"]).await;
    let wk = write_key(&server, &key).await;

    for mode in ["v0", "v1"] {
        let proxy = flaky_proxy(&server, 1).await;
        let script = POSTHOG_SCRIPT.replace(
            "mode = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(\"MODE\", \"v0\")",
            &format!("mode = {mode:?}"),
        );
        python(&script, &proxy.url, &wk).await;
        assert!(
            proxy.refused.load(Ordering::SeqCst) >= 2,
            "{mode}: the SDK retried after the 503"
        );
    }
    let proxy = flaky_proxy(&server, 1).await;
    python(SEGMENT_SCRIPT, &proxy.url, &wk).await;
    assert!(proxy.refused.load(Ordering::SeqCst) >= 2, "segment retried");

    let events = events_of(&server, &key).await;
    // PostHog (each mode): signup, $identify, $set; Segment: track, identify, page, group.
    assert_eq!(by_name(&events, "signup").len(), 2, "{events:#?}");
    assert_eq!(by_name(&events, "$identify").len(), 3);
    assert_eq!(by_name(&events, "$set").len(), 2);
    assert_eq!(by_name(&events, "Order Completed").len(), 1);
    assert_eq!(by_name(&events, "$pageview").len(), 1);
    assert_eq!(by_name(&events, "$groupidentify").len(), 1);
    assert_eq!(events.len(), 10);

    for signup in by_name(&events, "signup") {
        let p = &signup["properties"];
        assert_eq!(p["plan"], "pro");
        assert_eq!(p["seats"], 3);
        assert_eq!(p["nested"], json!({"beta": true}));
        assert_eq!(p["tags"], json!(["x", "y"]));
        assert_eq!(
            p["$lib"], "posthog-python",
            "v1 names it in PostHog-Sdk-Info"
        );
        // Sent at 10:00:00Z; the skew correction moves it by the (sub-second) trip at most.
        let at =
            chrono::DateTime::parse_from_rfc3339(signup["timestamp"].as_str().unwrap()).unwrap();
        let sent = chrono::DateTime::parse_from_rfc3339("2026-05-01T10:00:00Z").unwrap();
        assert!((at - sent).num_milliseconds().abs() < 2_000, "{at}");
    }
    let uuids: Vec<&str> = by_name(&events, "signup")
        .iter()
        .map(|e| e["uuid"].as_str().unwrap())
        .collect();
    assert!(uuids.contains(&"0190d6b2-0000-7000-8000-000000000001"));
    let order = by_name(&events, "Order Completed")[0];
    assert_eq!(order["distinct_id"], "seg-user");
    assert_eq!(order["timestamp"], "2026-05-02T09:00:00.000000Z");
    assert_eq!(order["properties"]["total"], 42.5);
    assert_eq!(order["properties"]["$lib"], "analytics-python");
    let seg_identify = by_name(&events, "$identify")
        .into_iter()
        .find(|e| e["distinct_id"] == "seg-user")
        .unwrap();
    assert_eq!(seg_identify["properties"]["$anon_distinct_id"], "seg-anon");
    assert_eq!(seg_identify["properties"]["$set"], json!({"plan": "team"}));

    // Identity: each anonymous id merged into the user who identified from it.
    for p in ["a", "b"] {
        let (status, person) = get_json(&server, &key, &format!("/api/v1/persons/anon-{p}")).await;
        assert_eq!(status, StatusCode::OK, "{person}");
        assert_eq!(person["person_key"], format!("user-{p}"));
        assert_eq!(
            person["distinct_ids"],
            json!([format!("anon-{p}"), format!("user-{p}")])
        );
        assert_eq!(
            person["properties"],
            json!({"email": format!("{p}@example.test"), "name": "Ada"})
        );
        assert_eq!(person["identified"], true);
        let (_, timeline) = get_json(
            &server,
            &key,
            &format!("/api/v1/events?from=2026-01-01&to=2027-12-31&person=user-{p}"),
        )
        .await;
        assert!(timeline["events"].is_array(), "{timeline}");
        let mut names: Vec<&str> = timeline["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec!["$identify", "$set", "signup"],
            "the anonymous signup is the user's"
        );
    }
    let (_, seg) = get_json(&server, &key, "/api/v1/persons/seg-anon").await;
    assert_eq!(seg["person_key"], "seg-user");
    assert_eq!(seg["properties"], json!({"plan": "team"}));
    let (status, _) = get_json(&server, &key, "/api/v1/persons/nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// Wire forms posthog-js and older SDKs use, and what the receivers refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_reads_gzip_forms_and_get_and_refuses_bad_keys_and_bodies() {
    let server = TestServer::start().await;
    let a = setup(&server, "Alpha", "UTC").await;
    let b = create_org(&server, &a, "Beta", "beta").await;
    let key_a = api_key(&server, &a, &["read", "write"]).await;
    let key_b = api_key(&server, &b, &["read"]).await;
    let wk = write_key(&server, &key_a).await;
    let http = reqwest::Client::new();
    let event =
        |name: &str| json!({"event": name, "distinct_id": "u1", "properties": {"token": wk}});

    // gzip with no Content-Encoding header, found by its first bytes, on /batch/.
    let body = gzip(
        json!({"api_key": wk, "batch": [event("gz")]})
            .to_string()
            .as_bytes(),
    );
    let r = http
        .post(server.url("/batch/"))
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"status": 1}));
    // posthog-js's form mode: data=<base64 JSON> to /e/.
    let data = base64::engine::general_purpose::STANDARD.encode(json!([event("form")]).to_string());
    let r = http
        .post(server.url("/e/"))
        .form(&[("data", data.as_str())])
        .header("origin", "https://shop.example")
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "a cross-site form post to capture is its normal case"
    );
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    // GET /i/v0/e?data=<JSON>.
    let q = vitals::domain::url::urlencode(&event("get").to_string());
    let r = http
        .get(server.url(&format!("/i/v0/e?data={q}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    // A CORS preflight.
    let r = http
        .request(reqwest::Method::OPTIONS, server.url("/capture/"))
        .header("origin", "https://shop.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(r.headers()["access-control-allow-origin"], "*");

    let names: Vec<String> = events_of(&server, &key_a)
        .await
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for n in ["gz", "form", "get"] {
        assert!(names.contains(&n.to_string()), "{n} stored");
    }
    assert!(
        events_of(&server, &key_b).await.is_empty(),
        "org B sees none of them"
    );

    // Refusals: no key, a wrong key, an API key, bad JSON, a bad event, Segment's 32 KB.
    let post = |path: &str, body: Value| {
        let http = http.clone();
        let url = server.url(path);
        async move { http.post(url).json(&body).send().await.unwrap().status() }
    };
    assert_eq!(
        post("/capture/", json!({"event": "x", "distinct_id": "u"})).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post("/capture/", json!({"api_key": "vpk_00000000000000000000000000000000", "event": "x", "distinct_id": "u"})).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        post(
            "/capture/",
            json!({"api_key": key_a, "event": "x", "distinct_id": "u"})
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "a secret API key is refused where SDK keys go"
    );
    let r = http
        .post(server.url("/batch"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = http
        .post(server.url("/batch"))
        .json(&json!({"api_key": wk, "batch": [event("ok"), {"event": "no id"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let err: Value = r.json().await.unwrap();
    assert_eq!(err["error"]["field"], "events[1].distinct_id");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{wk}:"));
    let big = json!({"userId": "u", "event": "big", "properties": {"s": "x".repeat(40_000)}});
    let r = http
        .post(server.url("/v1/track"))
        .header("authorization", format!("Basic {basic}"))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::BAD_REQUEST,
        "over Segment's 32 KB per message"
    );
    let r = http
        .post(server.url("/v1/track"))
        .header("authorization", format!("Basic {basic}"))
        .json(&json!({"userId": "u", "event": "small"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({"success": true}));
    assert_eq!(
        events_of(&server, &key_a).await.len(),
        4,
        "only the good requests stored anything"
    );
}

/// The keys page shows the write key; replacing it there makes SDKs with the old key fail
/// (401) and the new one work. A member of another org cannot replace it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_key_is_shown_and_replaced_on_the_keys_page() {
    let server = TestServer::start().await;
    let s = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &s, &["read"]).await;
    let old = write_key(&server, &key).await;
    let page_url = server.url(&format!("/o/{}/api-keys", s.slug));
    let page = s
        .client
        .get(&page_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&old), "the keys page shows the write key");
    // Without the form's token nothing changes.
    let r = s
        .client
        .post(server.url(&format!("/o/{}/api-keys/write-key/rotate", s.slug)))
        .form(&[("csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_eq!(write_key(&server, &key).await, old);
    let token = csrf(&s.client, &page_url).await;
    let r = s
        .client
        .post(server.url(&format!("/o/{}/api-keys/write-key/rotate", s.slug)))
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let new = write_key(&server, &key).await;
    assert_ne!(new, old);
    let capture = |k: &str| {
        let body = json!({"api_key": k, "event": "x", "distinct_id": "u"});
        let url = server.url("/capture/");
        async move {
            reqwest::Client::new()
                .post(url)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(capture(&old).await, StatusCode::UNAUTHORIZED);
    assert_eq!(capture(&new).await, StatusCode::OK);

    let b = create_org(&server, &s, "Beta", "beta").await;
    add_member(&server, &b, "viewer@beta.test", "admin").await;
    let outsider = login(&server, "viewer@beta.test", PASSWORD).await;
    let token = csrf(&outsider, &server.url("/o/beta/api-keys")).await;
    let r = outsider
        .post(server.url(&format!("/o/{}/api-keys/write-key/rotate", s.slug)))
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::NOT_FOUND,
        "another org's member cannot replace it"
    );
    assert_eq!(write_key(&server, &key).await, new);
}
