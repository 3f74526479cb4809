//! Notification delivery: the outbox worker and the three channel kinds (email over SMTP, Slack
//! incoming webhook, generic signed webhook).
//!
//! Every attempt runs in its own task with a timeout, so a dead channel never delays another;
//! failures are retried with exponential backoff and jitter and recorded on the channel. Rows
//! are leased when taken, so a crash mid-send is retried after restart (at least once; the
//! idempotency key lets receivers drop the duplicate).

use std::time::Duration;

use tokio::sync::broadcast;

use crate::app::{App, Signal};
use crate::domain::notify::{self, Notice, NoticeKind};
use crate::outbound;
use crate::security;
use crate::store::meta::channels::{self, ChannelRow, OutboxRow};
use crate::store::meta::orgs::Org;
use crate::store::{StoreError, now_secs};

/// Rows taken per round.
const CLAIM_BATCH: i64 = 32;

/// Runs until shutdown: takes due outbox rows and sends each in its own task. Wakes when
/// notices are queued ([`Signal::NoticesQueued`]) and at least every second for retries.
pub async fn run_worker(app: App, mut signals: broadcast::Receiver<Signal>) {
    let lease = app.config.alerts.send_timeout_secs as i64 * 2 + 10;
    loop {
        if app.shutdown.is_cancelled() {
            break;
        }
        let now = now_secs();
        match app
            .meta
            .call(move |c| channels::claim_due(c, now, lease, CLAIM_BATCH))
            .await
        {
            Ok(rows) => {
                for row in rows {
                    tokio::spawn(deliver(app.clone(), row));
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read the notification outbox"),
        }
        let next = app
            .meta
            .call(|c| channels::next_due(c))
            .await
            .ok()
            .flatten();
        let wait = next.map(|t| (t - now_secs()).clamp(0, 1)).unwrap_or(1);
        tokio::select! {
            _ = notices_queued(&mut signals) => {}
            _ = tokio::time::sleep(Duration::from_millis(wait as u64 * 1000 + 20)) => {}
            _ = app.shutdown.cancelled() => break,
        }
    }
}

/// Waits for the next [`Signal::NoticesQueued`] (or for missed signals, which may have been
/// one). Cancel-safe, as `recv` is.
async fn notices_queued(signals: &mut broadcast::Receiver<Signal>) {
    loop {
        match signals.recv().await {
            Ok(Signal::NoticesQueued) | Err(broadcast::error::RecvError::Lagged(_)) => return,
            Ok(_) => {}
            Err(broadcast::error::RecvError::Closed) => std::future::pending::<()>().await,
        }
    }
}

async fn deliver(app: App, row: OutboxRow) {
    let (org_id, channel_id, id) = (row.org_id, row.channel_id, row.id);
    let attempts = row.attempts + 1;
    let outcome: Result<(), String> = async {
        let channel = app
            .meta
            .call(move |c| channels::get(c, org_id, channel_id))
            .await
            .map_err(|e| format!("channel unavailable: {e}"))?;
        let notice: Notice =
            serde_json::from_str(&row.notice).map_err(|e| format!("unreadable notice: {e}"))?;
        send(&app, &channel, &notice).await
    }
    .await;
    let now = now_secs();
    let cfg = &app.config.alerts;
    let result = match &outcome {
        Ok(()) => {
            app.meta
                .call(move |c| {
                    channels::mark_sent(c, id, attempts, now)?;
                    channels::record_outcome(c, channel_id, now, None)
                })
                .await
        }
        Err(error) => {
            tracing::warn!(channel_id, outbox_id = id, attempts, %error, "notification attempt failed");
            let next = (attempts < cfg.max_attempts as i64).then(|| {
                let delay = notify::retry_delay(
                    attempts as u32,
                    cfg.retry_base_secs as f64,
                    cfg.retry_max_secs as f64,
                    rand::random::<f64>(),
                );
                now + delay.ceil() as i64
            });
            let error = error.clone();
            app.meta
                .call(move |c| {
                    let shown = match next {
                        Some(_) => format!("attempt {attempts}: {error}"),
                        None => format!("gave up after {attempts} attempts: {error}"),
                    };
                    channels::mark_attempt_failed(c, id, attempts, next, &shown)?;
                    channels::record_outcome(c, channel_id, now, Some(&shown))
                })
                .await
        }
    };
    if let Err(e) = result {
        tracing::error!(error = %e, outbox_id = id, "could not record a delivery outcome");
    }
}

/// Sends one notice on one channel, within the configured timeout.
pub async fn send(app: &App, channel: &ChannelRow, notice: &Notice) -> Result<(), String> {
    let timeout = Duration::from_secs(app.config.alerts.send_timeout_secs);
    let secret = app
        .secrets
        .open_sealed(&channel.sealed_secret)
        .map_err(|e| format!("the channel's secret: {e}"))?;
    let attempt = async {
        match channel.kind.as_str() {
            "webhook" => send_webhook(app, channel, &secret, notice).await,
            "slack" => send_slack(app, &secret, notice).await,
            "email" => send_email(app, channel, secret.clone(), notice, timeout).await,
            other => Err(format!("unknown channel kind {other:?}")),
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("timed out after {}s", timeout.as_secs())))
}

/// Success is a 2xx. Anything else is reported by its status alone: the body is the
/// receiver's, and a redirect (never followed) says only where it points.
fn check_response(response: reqwest::Response) -> Result<(), String> {
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let hint = if status.is_redirection() {
        " (redirects are not followed: give the final URL)"
    } else {
        ""
    };
    let reason = status
        .canonical_reason()
        .map(|r| format!(" {r}"))
        .unwrap_or_default();
    Err(format!("HTTP {}{reason}{hint}", status.as_u16()))
}

async fn send_webhook(
    app: &App,
    channel: &ChannelRow,
    signing_secret: &str,
    notice: &Notice,
) -> Result<(), String> {
    let url = channel
        .settings
        .get("url")
        .and_then(|u| u.as_str())
        .ok_or("the channel has no URL")?;
    let body = serde_json::to_vec(&notify::webhook_body(notice)).map_err(|e| e.to_string())?;
    let signature = security::sign_payload(signing_secret, now_secs(), &body);
    let response = app
        .http
        .post(url)?
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("X-Vitals-Signature", signature)
        .header("X-Vitals-Event", notice.kind.as_str())
        .header("Idempotency-Key", &notice.idempotency_key)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("request failed: {}", outbound::describe(e)))?;
    check_response(response)
}

/// The Slack incoming-webhook URL is the channel's secret.
async fn send_slack(app: &App, url: &str, notice: &Notice) -> Result<(), String> {
    let response = app
        .http
        .post(url)?
        .json(&notify::slack_body(notice))
        .send()
        .await
        .map_err(|e| format!("request failed: {}", outbound::describe(e)))?;
    check_response(response)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

async fn send_email(
    app: &App,
    channel: &ChannelRow,
    password: String,
    notice: &Notice,
    timeout: Duration,
) -> Result<(), String> {
    use lettre::message::{Mailbox, header::ContentType};
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{Message, SmtpTransport, Transport};

    let s = &channel.settings;
    let text = |k: &str| s.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let host = text("host");
    let port = s.get("port").and_then(|p| p.as_u64()).unwrap_or(587) as u16;
    let security = text("security");
    let username = text("username");
    let from: Mailbox = text("from")
        .parse()
        .map_err(|e| format!("bad sender address: {e}"))?;
    let rendered = notify::render(notice);
    let mut builder = Message::builder()
        .from(from)
        .subject(rendered.subject)
        .message_id(Some(format!("<{}@vitals>", notice.idempotency_key)))
        .header(ContentType::TEXT_PLAIN);
    for to in s.get("to").and_then(|t| t.as_array()).into_iter().flatten() {
        let mailbox: Mailbox = to
            .as_str()
            .unwrap_or("")
            .parse()
            .map_err(|e| format!("bad recipient {to}: {e}"))?;
        builder = builder.to(mailbox);
    }
    let message = builder
        .body(rendered.text)
        .map_err(|e| format!("could not build the message: {e}"))?;
    // The connection goes to an address checked here, not to whatever a second lookup of the
    // name gives; TLS still verifies the certificate against the name.
    let address = outbound::resolve_permitted(app.http.policy(), &host, port)
        .await
        .map_err(|e| format!("SMTP: {e}"))?
        .first()
        .map(|a| a.ip().to_string())
        .ok_or("SMTP: the host has no address")?;
    // lettre's SMTP client is blocking: run it off the async runtime.
    tokio::task::spawn_blocking(move || {
        let tls = |host: String| TlsParameters::new(host).map_err(|e| format!("SMTP: {e}"));
        let tls = match security.as_str() {
            "plain" => Tls::None,
            "tls" => Tls::Wrapper(tls(host)?),
            _ => Tls::Required(tls(host)?),
        };
        let mut builder = SmtpTransport::builder_dangerous(address)
            .tls(tls)
            .port(port)
            .timeout(Some(timeout));
        if !username.is_empty() {
            builder = builder.credentials(Credentials::new(username, password));
        }
        builder
            .build()
            .send(&message)
            .map(|_| ())
            .map_err(|e| format!("SMTP: {}", error_chain(&e)))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// "Send test": sends a test notice now (not through the outbox) and records the outcome.
pub async fn send_test(app: &App, org: &Org, channel: &ChannelRow) -> Result<(), StoreError> {
    let now = now_secs();
    let notice = Notice {
        kind: NoticeKind::Test,
        idempotency_key: format!("vitals-{}-test-{}-{now}", org.id, channel.id),
        org_name: org.name.clone(),
        org_slug: org.slug.clone(),
        alert_id: None,
        rule_name: "Test notification".into(),
        severity: "low".into(),
        watched: String::new(),
        series: String::new(),
        value_text: String::new(),
        condition_text: String::new(),
        since_text: String::new(),
        alert_url: String::new(),
        metric_url: String::new(),
        at: now,
        value: None,
    };
    let outcome = send(app, channel, &notice).await;
    let channel_id = channel.id;
    let error = outcome.as_ref().err().cloned();
    app.meta
        .call(move |c| channels::record_outcome(c, channel_id, now, error.as_deref()))
        .await?;
    outcome.map_err(StoreError::Conflict)
}
