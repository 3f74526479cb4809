//! Alerts end to end: rules evaluated after ingest, the lifecycle over the API and SSE, delivery
//! to local receivers (webhook, Slack, a real SMTP server), retries, restart, org isolation.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode as AxumStatus};
use axum::routing::post;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::common::*;

/// One request a receiver saw.
#[derive(Debug, Clone)]
struct Received {
    headers: HeaderMap,
    body: String,
    answered: u16,
}

/// A local HTTP receiver (webhook or Slack) answering from a script of statuses, then 200.
#[derive(Clone)]
struct Receiver {
    seen: Arc<Mutex<Vec<Received>>>,
    script: Arc<Mutex<Vec<u16>>>,
    url: String,
}

impl Receiver {
    async fn start(script: Vec<u16>) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Receiver::start_on(listener, script).await
    }

    async fn start_on(listener: TcpListener, script: Vec<u16>) -> Receiver {
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let r = Receiver {
            seen: Arc::new(Mutex::new(Vec::new())),
            script: Arc::new(Mutex::new(script)),
            url,
        };
        let state = r.clone();
        let app = axum::Router::new()
            .route(
                "/hook",
                post(
                    |State(r): State<Receiver>, headers: HeaderMap, body: String| async move {
                        let status = {
                            let mut script = r.script.lock().unwrap();
                            if script.is_empty() {
                                200
                            } else {
                                script.remove(0)
                            }
                        };
                        r.seen.lock().unwrap().push(Received {
                            headers,
                            body,
                            answered: status,
                        });
                        AxumStatus::from_u16(status).unwrap()
                    },
                ),
            )
            .with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        r
    }

    fn seen(&self) -> Vec<Received> {
        self.seen.lock().unwrap().clone()
    }

    async fn wait_for(&self, count: usize) -> Vec<Received> {
        let what = format!("{count} requests at the receiver");
        wait_until(&what, || async {
            let seen = self.seen();
            (seen.len() >= count).then_some(seen)
        })
        .await
    }
}

fn now_iso() -> String {
    chrono::Utc::now().to_rfc3339()
}

async fn wait_alert_state(server: &TestServer, key: &str, id_or_state: &str) -> Value {
    let what = format!("an alert in state {id_or_state}");
    let limit = Duration::from_secs(5);
    poll_until(&what, limit, Duration::from_millis(50), || async {
        let (_, body) = get_json(server, key, &format!("/api/v1/alerts?state={id_or_state}")).await;
        body["alerts"].as_array().and_then(|a| a.first()).cloned()
    })
    .await
}

fn revenue_rule(channels: &[i64]) -> Value {
    json!({
        "name": "Revenue spike", "kind": "threshold", "metric": "revenue",
        "aggregation": "sum", "window": "1h",
        "condition": {"op": "above", "threshold": 1000, "recovery": 800},
        "severity": "high", "channels": channels, "labels": {"team": "finance"}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_threshold_alert_fires_notifies_is_acknowledged_and_resolves_on_recovery() {
    let server = TestServer::start().await;
    let s = setup(&server, "Acme", "Europe/Berlin").await;
    let key = api_key(&server, &s, &["read", "write", "admin"]).await;
    let hook = Receiver::start(vec![]).await;
    let (st, channel) = post_api(
        &server,
        &key,
        "/channels",
        json!({"name": "ops hook", "kind": "webhook", "settings": {"url": hook.url}}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{channel}");
    let secret = channel["signing_secret"].as_str().unwrap().to_string();
    assert!(channel["secret"].as_str().unwrap().starts_with("••••"));
    let channel_id = channel["id"].as_i64().unwrap();
    let (st, rule) = post_api(&server, &key, "/alert-rules", revenue_rule(&[channel_id])).await;
    assert_eq!(st, StatusCode::CREATED, "{rule}");
    let rule_id = rule["id"].as_i64().unwrap();
    assert_eq!(rule["window"], "1h");

    let mut stream = s
        .client
        .get(server.url(&format!("/o/{}/events", s.slug)))
        .send()
        .await
        .unwrap();
    let mut seen = String::new();
    crate::read_until(&mut stream, &mut seen, "event: hello").await;

    // 600 + 700 = 1,300 in the last hour: above 1,000.
    let t1 = (chrono::Utc::now() - chrono::Duration::minutes(20)).to_rfc3339();
    let t2 = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
    let (st, _) = post_points(
        &server,
        &key,
        &json!([{"metric": "revenue", "timestamp": t1, "value": 600.0},
                {"metric": "revenue", "timestamp": t2, "value": 700.0}]),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    crate::read_until(&mut stream, &mut seen, "event: alert").await;
    let alert = wait_alert_state(&server, &key, "firing").await;
    assert_eq!(alert["value"], 1300.0);
    assert_eq!(alert["severity"], "high");
    assert_eq!(alert["category"], "financial");
    let alert_id = alert["id"].as_i64().unwrap();

    // The webhook got the firing notice, signed.
    let got = hook.wait_for(1).await;
    let first = &got[0];
    let signature = first.headers["x-vitals-signature"].to_str().unwrap();
    vitals::security::verify_signature(
        signature,
        &secret,
        first.body.as_bytes(),
        chrono::Utc::now().timestamp(),
        300,
    )
    .expect("signature verifies with the channel's secret");
    assert!(
        vitals::security::verify_signature(
            signature,
            "another-secret-entirely",
            first.body.as_bytes(),
            chrono::Utc::now().timestamp(),
            300
        )
        .is_err()
    );
    let body: Value = serde_json::from_str(&first.body).unwrap();
    assert_eq!(body["event"], "firing");
    assert_eq!(body["alert"]["id"], alert_id);
    assert_eq!(body["alert"]["value"], 1300.0);
    assert_eq!(body["alert"]["value_text"], "EUR 1,300");
    assert_eq!(
        body["alert"]["condition"],
        "above EUR 1,000 (recovers at or below EUR 800)"
    );
    assert!(
        body["alert"]["metric_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/o/{}/metrics/revenue", s.slug))
    );
    assert!(
        body["text"]
            .as_str()
            .unwrap()
            .contains(&format!("/api/v1/alerts/{alert_id}/acknowledge"))
    );
    assert_eq!(
        first.headers["idempotency-key"].to_str().unwrap(),
        body["id"].as_str().unwrap()
    );

    // More data while firing updates the one open alert, not a second one.
    let t3 = (chrono::Utc::now() - chrono::Duration::minutes(2)).to_rfc3339();
    post_points(
        &server,
        &key,
        &json!([{"metric": "revenue", "timestamp": t3, "value": 100.0}]),
    )
    .await;
    let all = wait_until("the open alert to take the new value", || async {
        let (_, all) = get_json(&server, &key, "/api/v1/alerts").await;
        (all["alerts"][0]["value"] == 1400.0).then_some(all)
    })
    .await;
    assert_eq!(all["alerts"].as_array().unwrap().len(), 1, "{all}");

    // Acknowledge for 4 hours with a note.
    let (st, acked) = post_api(
        &server,
        &key,
        &format!("/alerts/{alert_id}/acknowledge"),
        json!({"note": "looking into it", "hours": 4}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{acked}");
    assert_eq!(acked["state"], "acknowledged");
    assert_eq!(acked["acknowledged"]["note"], "looking into it");
    crate::read_until(&mut stream, &mut seen, &format!("data: {alert_id}")).await;
    // A second acknowledgement of an acknowledged alert is allowed (extends it); resolving twice is not.

    // Recovery: re-sending the same points with lower values replaces them (sum 300 ≤ 800).
    post_points(
        &server,
        &key,
        &json!([{"metric": "revenue", "timestamp": t1, "value": 100.0},
                {"metric": "revenue", "timestamp": t2, "value": 100.0}]),
    )
    .await;
    let resolved = wait_alert_state(&server, &key, "resolved").await;
    assert_eq!(resolved["id"], alert_id);
    assert_eq!(resolved["value"], 300.0);
    let got = hook.wait_for(2).await;
    let second: Value = serde_json::from_str(&got[1].body).unwrap();
    assert_eq!(second["event"], "resolved");

    let (_, detail) = get_json(&server, &key, &format!("/api/v1/alerts/{alert_id}")).await;
    let history: Vec<(&str, &str)> = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["event"].as_str().unwrap(), e["by"].as_str().unwrap()))
        .collect();
    let ack_by = format!("apikey:{}", &key[3..15]);
    assert_eq!(
        history,
        vec![
            ("pending", ""),
            ("fired", ""),
            ("acknowledged", ack_by.as_str()),
            ("resolved", "")
        ]
    );
    let (st, again) = post_api(
        &server,
        &key,
        &format!("/alerts/{alert_id}/resolve"),
        json!({}),
    )
    .await;
    assert_eq!(st, StatusCode::CONFLICT, "{again}");

    // "Test rule" shows what would happen without recording anything.
    post_points(
        &server,
        &key,
        &json!([{"metric": "revenue", "timestamp": now_iso(), "value": 5000.0}]),
    )
    .await;
    let (st, test) = post_api(
        &server,
        &key,
        &format!("/alert-rules/{rule_id}/test"),
        json!({}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{test}");
    assert_eq!(test["series"][0]["value"], 5300.0);
    assert_eq!(test["series"][0]["outcome"], "would fire now");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rules_and_channels_are_rejected_per_field_and_secrets_never_leak() {
    let server = TestServer::start().await;
    let s = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &s, &["read", "write", "admin"]).await;
    let (st, err) = post_api(
        &server,
        &key,
        "/alert-rules",
        json!({"kind": "threshold", "metric": "nope", "condition": {"op": "above", "threshold": 5, "recovery": 9},
               "severity": "urgent", "for": "5 minutes"}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<&str> = err["error"]["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        ["name", "severity", "metric", "for", "condition.recovery"]
    );
    let (_, rules) = get_json(&server, &key, "/api/v1/alert-rules").await;
    assert_eq!(rules["rules"], json!([]));

    let (st, err) = post_api(
        &server,
        &key,
        "/channels",
        json!({"name": "mail", "kind": "email", "settings": {"host": "smtp.acme.test", "from": "x", "to": ["ops@acme.test"], "username": "u"}}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["field"], "settings.from");
    assert_eq!(err["error"]["details"][1]["field"], "secret");

    let slack_url = "https://hooks.slack.com/services/T000/B000/SECRETPART1234";
    let (st, ch) = post_api(
        &server,
        &key,
        "/channels",
        json!({"name": "slack", "kind": "slack", "secret": slack_url}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let id = ch["id"].as_i64().unwrap();
    for path in [
        "/api/v1/channels".to_string(),
        format!("/api/v1/channels/{id}"),
    ] {
        let (_, body) = get_json(&server, &key, &path).await;
        assert!(!body.to_string().contains("SECRETPART"), "{body}");
        assert!(body.to_string().contains("••••1234"));
    }
    let page = s
        .client
        .get(server.url(&format!("/o/{}/channels/{id}", s.slug)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("••••1234") && !page.contains("SECRETPART"));
    // Editing without a secret keeps it; a write-only key may not manage channels.
    let (st, _) = send_json(
        &server,
        &key,
        reqwest::Method::PUT,
        &format!("/channels/{id}"),
        Some(json!({"name": "slack renamed", "kind": "slack"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let writer = api_key(&server, &s, &["read", "write"]).await;
    let (st, _) = post_api(
        &server,
        &writer,
        "/channels",
        json!({"name": "x", "kind": "slack", "secret": slack_url}),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    server.stop().await;
}

/// A local SMTP server (aiosmtpd) stopped when dropped, also when the test fails.
struct SmtpServer(std::process::Child);

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_smtp(port: u16, maildir: &std::path::Path) -> SmtpServer {
    SmtpServer(
        std::process::Command::new("python3")
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(maildir)
            .spawn()
            .expect("python3 -m aiosmtpd (installed by .ci/run: pip install aiosmtpd)"),
    )
}

fn maildir_messages(maildir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(entries) = std::fs::read_dir(maildir.join(sub)) {
            for e in entries.flatten() {
                out.push(std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_reaches_a_real_smtp_server_while_a_hanging_webhook_waits() {
    let mail_root = tempfile::tempdir().unwrap();
    // aiosmtpd's Mailbox creates the maildir (new/cur/tmp) when the directory does not exist yet.
    let maildir = mail_root.path().join("maildir");
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let _smtp = start_smtp(port, &maildir);
    // A receiver that accepts connections and never answers.
    let hanging = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hanging_url = format!("http://{}/hook", hanging.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((sock, _)) = hanging.accept().await {
            keep.lock().unwrap().push(sock);
        }
    });
    let server = TestServer::start_with(tempfile::tempdir().unwrap(), |c| {
        c.alerts.send_timeout_secs = 10;
    })
    .await;
    let s = setup(&server, "Acme", "Europe/Berlin").await;
    let key = api_key(&server, &s, &["read", "write", "admin"]).await;
    // The SMTP server needs a moment to listen.
    wait_until("the SMTP server to listen", || async {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .await;
    let (st, hook) = post_api(
        &server,
        &key,
        "/channels",
        json!({"name": "hanging", "kind": "webhook", "settings": {"url": hanging_url}}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let (st, mail) = post_api(
        &server,
        &key,
        "/channels",
        json!({
        "name": "ops mail", "kind": "email",
        "settings": {"host": "127.0.0.1", "port": port, "security": "plain",
                     "from": "vitals@acme.test", "to": ["ops@acme.test", "cfo@acme.test"]}}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{mail}");
    let (hook_id, mail_id) = (hook["id"].as_i64().unwrap(), mail["id"].as_i64().unwrap());
    // The hanging webhook is listed first, so it is queued (and started) first.
    let (st, _) = post_api(
        &server,
        &key,
        "/alert-rules",
        revenue_rule(&[hook_id, mail_id]),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    post_points(
        &server,
        &key,
        &json!([{"metric": "revenue", "timestamp": now_iso(), "value": 1234.0}]),
    )
    .await;
    let alert = wait_alert_state(&server, &key, "firing").await;

    let messages = wait_until("an email delivered", || async {
        let messages = maildir_messages(&maildir);
        (!messages.is_empty()).then_some(messages)
    })
    .await;
    assert_eq!(messages.len(), 1, "one email delivered");
    // The webhook attempt is still hanging: nothing recorded on its channel yet.
    let (_, hook_state) = get_json(&server, &key, &format!("/api/v1/channels/{hook_id}")).await;
    assert_eq!(hook_state["last_failure_at"], Value::Null, "{hook_state}");
    assert_eq!(hook_state["deliveries"][0]["attempts"], 0);
    assert!(
        !held.lock().unwrap().is_empty(),
        "the webhook connection is open"
    );

    let msg = &messages[0];
    assert!(msg.contains("To: ops@acme.test, cfo@acme.test"), "{msg}");
    assert!(msg.contains("From: vitals@acme.test"));
    assert!(msg.contains("Subject: [Vitals] FIRING (high): Revenue spike"));
    assert!(msg.contains("Revenue (sum over 1h) is EUR 1,234"), "{msg}");
    assert!(msg.contains(&format!("/alerts/{}/acknowledge", alert["id"])));
    let (_, mail_state) = get_json(&server, &key, &format!("/api/v1/channels/{mail_id}")).await;
    assert_eq!(mail_state["deliveries"][0]["state"], "sent");
    assert_ne!(mail_state["last_success_at"], Value::Null);

    // "Send test" on the email channel delivers a test message at once.
    let (st, r) = post_api(
        &server,
        &key,
        &format!("/channels/{mail_id}/test"),
        json!({}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{r}");
    assert!(
        maildir_messages(&maildir)
            .iter()
            .any(|m| m.contains("Subject: [Vitals] TEST"))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_answering_500_then_200_gets_the_message_once_and_slack_gets_text() {
    let server = TestServer::start_with(tempfile::tempdir().unwrap(), |c| {
        c.alerts.retry_base_secs = 1;
    })
    .await;
    let s = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &s, &["read", "write", "admin"]).await;
    let flaky = Receiver::start(vec![500]).await;
    let slack = Receiver::start(vec![]).await;
    let (_, hook) = post_api(&server, &key, "/channels",
        json!({"name": "flaky", "kind": "webhook", "settings": {"url": flaky.url}, "secret": "a-shared-secret-of-some-length"})).await;
    let (_, sl) = post_api(
        &server,
        &key,
        "/channels",
        json!({"name": "slack", "kind": "slack", "secret": slack.url}),
    )
    .await;
    let ids = [hook["id"].as_i64().unwrap(), sl["id"].as_i64().unwrap()];
    post_api(&server, &key, "/alert-rules", revenue_rule(&ids)).await;
    post_points(
        &server,
        &key,
        &json!([{"metric": "revenue", "timestamp": now_iso(), "value": 2000.0}]),
    )
    .await;

    let got = flaky.wait_for(2).await;
    assert_eq!((got[0].answered, got[1].answered), (500, 200));
    let keys: Vec<&str> = got
        .iter()
        .map(|r| r.headers["idempotency-key"].to_str().unwrap())
        .collect();
    assert_eq!(keys[0], keys[1], "a retry carries the same idempotency key");
    // What the receiver accepted (2xx), deduplicated by key, is one message.
    let mut accepted: Vec<&str> = got
        .iter()
        .filter(|r| r.answered == 200)
        .map(|r| r.headers["idempotency-key"].to_str().unwrap())
        .collect();
    accepted.dedup();
    assert_eq!(accepted.len(), 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(flaky.seen().len(), 2, "no further attempts after success");
    let (_, ch) = get_json(&server, &key, &format!("/api/v1/channels/{}", ids[0])).await;
    assert_eq!(ch["deliveries"][0]["state"], "sent");
    assert_eq!(ch["deliveries"][0]["attempts"], 2);
    assert!(
        ch["last_error"].as_str().unwrap().contains("HTTP 500"),
        "{ch}"
    );

    let slack_got = slack.wait_for(1).await;
    let text: Value = serde_json::from_str(&slack_got[0].body).unwrap();
    assert!(
        text["text"]
            .as_str()
            .unwrap()
            .contains("FIRING (high): Revenue spike")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undelivered_notifications_are_sent_after_a_restart() {
    // A port with nothing listening: deliveries fail with "connection refused".
    let port_holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = port_holder.local_addr().unwrap();
    drop(port_holder);
    let server = TestServer::start_with(tempfile::tempdir().unwrap(), |c| {
        c.alerts.retry_base_secs = 1;
    })
    .await;
    let s = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &s, &["read", "write", "admin"]).await;
    let (_, hook) = post_api(&server, &key, "/channels",
        json!({"name": "down", "kind": "webhook", "settings": {"url": format!("http://{addr}/hook")}})).await;
    let hook_id = hook["id"].as_i64().unwrap();
    post_api(&server, &key, "/alert-rules", revenue_rule(&[hook_id])).await;
    post_points(
        &server,
        &key,
        &json!([{"metric": "revenue", "timestamp": now_iso(), "value": 2000.0}]),
    )
    .await;
    let queued = wait_until("a first delivery attempt", || async {
        let (_, ch) = get_json(&server, &key, &format!("/api/v1/channels/{hook_id}")).await;
        (ch["deliveries"][0]["attempts"].as_i64().unwrap_or(0) >= 1).then_some(ch)
    })
    .await;
    assert_eq!(queued["deliveries"][0]["state"], "queued", "{queued}");
    let key_before = queued["deliveries"][0]["idempotency_key"]
        .as_str()
        .unwrap()
        .to_string();
    let dir = server.stop().await;

    let receiver = Receiver::start_on(TcpListener::bind(addr).await.unwrap(), vec![]).await;
    let server = TestServer::start_with(dir, |c| {
        c.alerts.retry_base_secs = 1;
    })
    .await;
    let got = receiver.wait_for(1).await;
    assert_eq!(
        got[0].headers["idempotency-key"].to_str().unwrap(),
        key_before
    );
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body["event"], "firing");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silences_mute_notifications_but_keep_the_history() {
    let server = TestServer::start().await;
    let s = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &s, &["read", "write", "admin"]).await;
    let hook = Receiver::start(vec![]).await;
    let (_, ch) = post_api(
        &server,
        &key,
        "/channels",
        json!({"name": "h", "kind": "webhook", "settings": {"url": hook.url}}),
    )
    .await;
    post_api(
        &server,
        &key,
        "/alert-rules",
        revenue_rule(&[ch["id"].as_i64().unwrap()]),
    )
    .await;
    let (st, err) = post_api(
        &server,
        &key,
        "/silences",
        json!({"matchers": "team", "duration": "2h"}),
    )
    .await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["field"], "matchers");
    let (st, _) = post_api(
        &server,
        &key,
        "/silences",
        json!({"matchers": {"team": "finance"}, "duration": "2h", "comment": "month-end close"}),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    post_points(
        &server,
        &key,
        &json!([{"metric": "revenue", "timestamp": now_iso(), "value": 2000.0}]),
    )
    .await;
    let alert = wait_alert_state(&server, &key, "firing").await;
    let (_, detail) = get_json(&server, &key, &format!("/api/v1/alerts/{}", alert["id"])).await;
    let muted = detail["history"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "muted")
        .expect("muted event");
    assert!(
        muted["note"]
            .as_str()
            .unwrap()
            .starts_with("firing notification not sent: silenced until")
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(hook.seen().is_empty(), "a silenced alert sends nothing");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_orgs_alerts_rules_channels_and_silences_are_out_of_reach() {
    let server = TestServer::start().await;
    let a = setup(&server, "Acme", "UTC").await;
    let key_a = api_key(&server, &a, &["read", "write", "admin"]).await;
    let b = create_org(&server, &a, "Beta", "beta").await;
    let key_b = api_key(&server, &b, &["read", "write", "admin"]).await;
    let hook = Receiver::start(vec![]).await;
    let (_, ch) = post_api(
        &server,
        &key_a,
        "/channels",
        json!({"name": "h", "kind": "webhook", "settings": {"url": hook.url}}),
    )
    .await;
    let ch_id = ch["id"].as_i64().unwrap();
    let (_, rule) = post_api(&server, &key_a, "/alert-rules", revenue_rule(&[ch_id])).await;
    let rule_id = rule["id"].as_i64().unwrap();
    let (_, sil) = post_api(
        &server,
        &key_a,
        "/silences",
        json!({"matchers": {"team": "x"}, "duration": "1h"}),
    )
    .await;
    // A mute window that is not open now (a fixed 22:00–06:00 muted this test's own delivery
    // when it ran at night): from two to three hours ahead, UTC.
    let hour = |ahead: i64| {
        (chrono::Utc::now() + chrono::Duration::hours(ahead))
            .format("%H:00")
            .to_string()
    };
    let (_, mw) = post_api(
        &server,
        &key_a,
        "/mute-windows",
        json!({"name": "later", "days": "every day", "start": hour(2), "end": hour(3)}),
    )
    .await;
    post_points(
        &server,
        &key_a,
        &json!([{"metric": "revenue", "timestamp": now_iso(), "value": 2000.0}]),
    )
    .await;
    let alert_id = wait_alert_state(&server, &key_a, "firing").await["id"]
        .as_i64()
        .unwrap();

    // B cannot use A's channel in its own rule either.
    let (st, err) = post_api(&server, &key_b, "/alert-rules", revenue_rule(&[ch_id])).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(err["error"]["field"], "channels[0]");
    use reqwest::Method as M;
    let cases: Vec<(M, String, Option<Value>)> = vec![
        (M::GET, format!("/alerts/{alert_id}"), None),
        (
            M::POST,
            format!("/alerts/{alert_id}/acknowledge"),
            Some(json!({})),
        ),
        (
            M::POST,
            format!("/alerts/{alert_id}/resolve"),
            Some(json!({})),
        ),
        (M::GET, format!("/alert-rules/{rule_id}"), None),
        (
            M::PUT,
            format!("/alert-rules/{rule_id}"),
            Some(revenue_rule(&[])),
        ),
        (
            M::POST,
            format!("/alert-rules/{rule_id}/test"),
            Some(json!({})),
        ),
        (M::DELETE, format!("/alert-rules/{rule_id}"), None),
        (M::GET, format!("/channels/{ch_id}"), None),
        (
            M::PUT,
            format!("/channels/{ch_id}"),
            Some(
                json!({"name": "x", "kind": "webhook", "settings": {"url": "http://127.0.0.1:1/x"}}),
            ),
        ),
        (M::POST, format!("/channels/{ch_id}/test"), Some(json!({}))),
        (M::DELETE, format!("/channels/{ch_id}"), None),
        (M::DELETE, format!("/silences/{}", sil["id"]), None),
        (M::DELETE, format!("/mute-windows/{}", mw["id"]), None),
    ];
    for (method, path, body) in cases {
        let (st, _) = send_json(&server, &key_b, method.clone(), &path, body).await;
        assert_eq!(st, StatusCode::NOT_FOUND, "{method} {path}");
    }
    for path in ["/api/v1/alerts", "/api/v1/alert-rules", "/api/v1/channels"] {
        let (_, body) = get_json(&server, &key_b, path).await;
        let list = body.as_object().unwrap().values().next().unwrap();
        assert_eq!(list, &json!([]), "{path}");
    }
    let (_, body) = get_json(&server, &key_b, "/api/v1/silences").await;
    assert_eq!(body, json!({"silences": [], "mute_windows": []}));
    // Pages: B's owner (the same person, member of both) sees B's empty lists; A's ids under B 404.
    for path in [
        format!("/o/beta/alerts/{alert_id}"),
        format!("/o/beta/alert-rules/{rule_id}"),
        format!("/o/beta/channels/{ch_id}"),
    ] {
        let r = a.client.get(server.url(&path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND, "{path}");
    }
    // A's things are intact.
    let (st, _) = get_json(&server, &key_a, &format!("/api/v1/alerts/{alert_id}")).await;
    assert_eq!(st, StatusCode::OK);
    assert_eq!(hook.wait_for(1).await.len(), 1);
    server.stop().await;
}
