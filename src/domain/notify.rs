//! Notification content and retry timing. Pure: the delivery worker renders with these and
//! schedules retries with [`retry_delay`].

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Why a notification is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    Firing,
    /// Not acknowledged within the rule's escalation time.
    Escalation,
    /// An acknowledgement ran out while the condition still holds.
    Reminder,
    Resolved,
    /// "Send test" from a channel's page.
    Test,
}

impl NoticeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            NoticeKind::Firing => "firing",
            NoticeKind::Escalation => "escalation",
            NoticeKind::Reminder => "reminder",
            NoticeKind::Resolved => "resolved",
            NoticeKind::Test => "test",
        }
    }

    fn headline(self) -> &'static str {
        match self {
            NoticeKind::Firing => "FIRING",
            NoticeKind::Escalation => "ESCALATED (not acknowledged)",
            NoticeKind::Reminder => "FIRING AGAIN (acknowledgement expired)",
            NoticeKind::Resolved => "RESOLVED",
            NoticeKind::Test => "TEST",
        }
    }
}

/// Everything a message says, already formatted for people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub kind: NoticeKind,
    /// Unique per (alert, event): receivers deduplicate on it.
    pub idempotency_key: String,
    pub org_name: String,
    pub org_slug: String,
    pub alert_id: Option<i64>,
    pub rule_name: String,
    pub severity: String,
    /// What is watched: "Revenue (sum over 1d)".
    pub watched: String,
    /// The series (dimension value) when the rule is grouped.
    pub series: String,
    pub value_text: String,
    pub condition_text: String,
    /// "Mon 2 Mar 2026 14:05 CET".
    pub since_text: String,
    pub alert_url: String,
    pub metric_url: String,
    /// Unix seconds when the event happened.
    pub at: i64,
    pub value: Option<f64>,
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
}

pub fn render(n: &Notice) -> Rendered {
    let series = if n.series.is_empty() {
        String::new()
    } else {
        format!(" [{}]", n.series)
    };
    let subject = format!(
        "[Vitals] {} ({}): {}{} — {}",
        n.kind.headline(),
        n.severity,
        n.rule_name,
        series,
        n.org_name
    );
    let mut text = String::new();
    match n.kind {
        NoticeKind::Test => {
            text.push_str(&format!(
                "This is a test notification from Vitals for {}.\nIf you can read it, the channel works.\n",
                n.org_name
            ));
        }
        NoticeKind::Resolved => {
            text.push_str(&format!(
                "Resolved: {}{}\n{} is now {} (the alert condition was {}).\nIt had been open since {}.\n",
                n.rule_name, series, n.watched, n.value_text, n.condition_text, n.since_text
            ));
        }
        _ => {
            text.push_str(&format!(
                "{}: {}{}\n{} is {}; the rule fires when it is {}.\nSince {}.\n",
                n.kind.headline(),
                n.rule_name,
                series,
                n.watched,
                n.value_text,
                n.condition_text,
                n.since_text
            ));
        }
    }
    if n.kind != NoticeKind::Test {
        text.push_str(&format!("\nMetric: {}\n", n.metric_url));
        text.push_str(&format!("Alert: {}\n", n.alert_url));
        if n.kind != NoticeKind::Resolved {
            text.push_str(&format!(
                "To acknowledge, open the alert page and press Acknowledge, or call\n  POST /api/v1/alerts/{}/acknowledge with an API key of this organisation.\n",
                n.alert_id.unwrap_or_default()
            ));
        }
    }
    Rendered { subject, text }
}

/// The generic webhook's JSON body (documented in the README; signed over its exact bytes).
pub fn webhook_body(n: &Notice) -> Value {
    json!({
        "id": n.idempotency_key,
        "event": n.kind.as_str(),
        "at": n.at,
        "org": {"slug": n.org_slug, "name": n.org_name},
        "alert": {
            "id": n.alert_id,
            "rule": n.rule_name,
            "severity": n.severity,
            "series": n.series,
            "watched": n.watched,
            "value": n.value,
            "value_text": n.value_text,
            "condition": n.condition_text,
            "since": n.since_text,
            "url": n.alert_url,
            "metric_url": n.metric_url,
        },
        "text": render(n).text,
    })
}

/// Slack incoming-webhook body.
pub fn slack_body(n: &Notice) -> Value {
    let r = render(n);
    json!({ "text": format!("*{}*\n{}", r.subject, r.text) })
}

/// Seconds to wait before attempt `attempt + 1` after `attempt` failures (1-based): exponential
/// from `base`, capped at `max`, with "equal jitter" (half fixed, half random, `unit_random` in
/// [0, 1)) so receivers that recover are not hit by every sender at once.
pub fn retry_delay(attempt: u32, base: f64, max: f64, unit_random: f64) -> f64 {
    let exp = (base * 2f64.powi(attempt.saturating_sub(1).min(30) as i32)).min(max);
    exp / 2.0 + unit_random.clamp(0.0, 1.0) * exp / 2.0
}

/// A validated channel: name, kind, non-secret settings and the secret.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelSpec {
    pub name: String,
    pub kind: String,
    pub settings: Value,
    pub secret: String,
}

fn looks_like_email(s: &str) -> bool {
    let mut parts = s.split('@');
    matches!((parts.next(), parts.next(), parts.next()), (Some(l), Some(d), None)
        if !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
            && !s.contains(char::is_whitespace) && !s.contains(['<', '>', ',', ';']))
}

fn valid_http_url(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://"))
        && s.split("://").nth(1).is_some_and(|rest| {
            let host = rest.split(['/', '?', '#']).next().unwrap_or("");
            !host.is_empty() && !host.contains(char::is_whitespace)
        })
}

/// Validates a channel from its input JSON. `existing_secret` is the stored secret when editing:
/// an empty secret field keeps it (pages never show it). A webhook without a secret gets one from
/// `fresh_secret`.
pub fn validate_channel(
    input: &Value,
    existing_secret: Option<&str>,
    fresh_secret: impl FnOnce() -> String,
) -> Result<ChannelSpec, Vec<super::alert_rules::FieldProblem>> {
    use super::alert_rules::FieldProblem;
    let mut problems = Vec::new();
    let mut problem = |field: &str, message: String| {
        problems.push(FieldProblem {
            field: field.into(),
            message,
        })
    };
    let text = |key: &str| -> String {
        match input.get(key) {
            Some(Value::String(s)) => s.trim().to_string(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        }
    };
    let name = text("name");
    if name.is_empty() {
        problem("name", "is required".into());
    } else if name.chars().count() > 80 {
        problem("name", "is longer than 80 characters".into());
    }
    let kind = text("kind");
    let given_secret = text("secret");
    let secret = if given_secret.is_empty() {
        existing_secret.unwrap_or_default().to_string()
    } else {
        given_secret
    };
    let settings_in = input.get("settings").cloned().unwrap_or(Value::Null);
    let setting = |key: &str| -> String {
        match settings_in.get(key) {
            Some(Value::String(s)) => s.trim().to_string(),
            Some(Value::Number(n)) => n.to_string(),
            _ => String::new(),
        }
    };
    let (settings, secret) = match kind.as_str() {
        "email" => {
            let host = setting("host");
            if host.is_empty() || host.contains(char::is_whitespace) {
                problem(
                    "settings.host",
                    "is required: the SMTP server's host name".into(),
                );
            }
            let security = match setting("security").as_str() {
                "" | "starttls" => "starttls",
                "tls" => "tls",
                "plain" => "plain",
                other => {
                    problem(
                        "settings.security",
                        format!("{other:?} is not one of starttls, tls, plain"),
                    );
                    "starttls"
                }
            };
            let default_port = match security {
                "tls" => 465,
                "plain" => 25,
                _ => 587,
            };
            let port = match setting("port").as_str() {
                "" => default_port,
                p => match p.parse::<u16>() {
                    Ok(p) if p > 0 => p,
                    _ => {
                        problem("settings.port", format!("{p:?} is not a port number"));
                        default_port
                    }
                },
            };
            let from = setting("from");
            if !looks_like_email(&from) {
                problem(
                    "settings.from",
                    "needs a sender address such as alerts@example.com".into(),
                );
            }
            let to: Vec<String> = match settings_in.get("to") {
                Some(Value::Array(items)) => items
                    .iter()
                    .filter_map(|v| v.as_str().map(|s| s.trim().to_string()))
                    .filter(|s| !s.is_empty())
                    .collect(),
                Some(Value::String(s)) => s
                    .split([',', '\n', ';'])
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
                _ => Vec::new(),
            };
            if to.is_empty() {
                problem("settings.to", "needs at least one recipient".into());
            }
            for (i, addr) in to.iter().enumerate() {
                if !looks_like_email(addr) {
                    problem(
                        &format!("settings.to[{i}]"),
                        format!("{addr:?} is not an email address"),
                    );
                }
            }
            let username = setting("username");
            if !username.is_empty() && secret.is_empty() {
                problem(
                    "secret",
                    "the SMTP password is required when a user name is set".into(),
                );
            }
            (
                json!({"host": host, "port": port, "security": security, "username": username, "from": from, "to": to}),
                secret,
            )
        }
        "slack" => {
            if !valid_http_url(&secret) {
                problem(
                    "secret",
                    "needs the Slack incoming-webhook URL (https://hooks.slack.com/services/…)"
                        .into(),
                );
            }
            (json!({}), secret)
        }
        "webhook" => {
            let url = setting("url");
            if !valid_http_url(&url) {
                problem("settings.url", "needs an http:// or https:// URL".into());
            }
            let secret = if secret.is_empty() {
                fresh_secret()
            } else {
                secret
            };
            if secret.len() < 16 {
                problem(
                    "secret",
                    "a signing secret needs at least 16 characters".into(),
                );
            }
            (json!({"url": url}), secret)
        }
        "" => {
            problem("kind", "is required: email, slack or webhook".into());
            (Value::Null, secret)
        }
        other => {
            problem(
                "kind",
                format!("{other:?} is not one of email, slack, webhook"),
            );
            (Value::Null, secret)
        }
    };
    if problems.is_empty() {
        Ok(ChannelSpec {
            name,
            kind,
            settings,
            secret,
        })
    } else {
        Err(problems)
    }
}

/// How a secret is shown: never in full, only its last four characters.
pub fn mask_secret(secret: &str) -> String {
    if secret.is_empty() {
        return String::new();
    }
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("••••{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(kind: NoticeKind) -> Notice {
        Notice {
            kind,
            idempotency_key: "a7-fired-1700000000".into(),
            org_name: "Acme".into(),
            org_slug: "acme".into(),
            alert_id: Some(7),
            rule_name: "Revenue low".into(),
            severity: "high".into(),
            watched: "Revenue (sum over 1d)".into(),
            series: String::new(),
            value_text: "EUR 800".into(),
            condition_text: "below EUR 1,000".into(),
            since_text: "Mon 2 Mar 2026 14:05 CET".into(),
            alert_url: "http://vitals.local/o/acme/alerts/7".into(),
            metric_url: "http://vitals.local/o/acme/metrics/revenue".into(),
            at: 1_700_000_000,
            value: Some(800.0),
        }
    }

    #[test]
    fn a_firing_message_says_what_value_threshold_since_and_how_to_ack() {
        let r = render(&notice(NoticeKind::Firing));
        assert_eq!(r.subject, "[Vitals] FIRING (high): Revenue low — Acme");
        for needle in [
            "Revenue (sum over 1d) is EUR 800",
            "below EUR 1,000",
            "Since Mon 2 Mar 2026 14:05 CET",
            "http://vitals.local/o/acme/metrics/revenue",
            "http://vitals.local/o/acme/alerts/7",
            "POST /api/v1/alerts/7/acknowledge",
        ] {
            assert!(r.text.contains(needle), "{needle:?} missing in {}", r.text);
        }
        let resolved = render(&notice(NoticeKind::Resolved));
        assert!(resolved.subject.starts_with("[Vitals] RESOLVED"));
        assert!(!resolved.text.contains("acknowledge"));
        let body = webhook_body(&notice(NoticeKind::Firing));
        assert_eq!(body["id"], "a7-fired-1700000000");
        assert_eq!(body["alert"]["value"], 800.0);
    }

    #[test]
    fn retry_delays_grow_exponentially_with_bounded_jitter() {
        assert_eq!(retry_delay(1, 30.0, 3600.0, 0.0), 15.0);
        assert_eq!(retry_delay(1, 30.0, 3600.0, 1.0), 30.0);
        assert_eq!(retry_delay(3, 30.0, 3600.0, 1.0), 120.0);
        assert_eq!(retry_delay(20, 30.0, 3600.0, 1.0), 3600.0);
        for attempt in 1..40 {
            for r in [0.0, 0.3, 0.99] {
                let d = retry_delay(attempt, 30.0, 3600.0, r);
                let exp = (30.0 * 2f64.powi(attempt as i32 - 1)).min(3600.0);
                assert!(d >= exp / 2.0 && d <= exp, "attempt {attempt}: {d}");
            }
        }
    }

    #[test]
    fn channels_validate_per_field_and_secrets_are_masked() {
        let email = validate_channel(
            &json!({"name": "Ops mail", "kind": "email",
                    "settings": {"host": "127.0.0.1", "port": "2525", "security": "plain",
                                 "from": "vitals@acme.test", "to": "a@acme.test, b@acme.test"}}),
            None,
            || unreachable!(),
        )
        .unwrap();
        assert_eq!(email.settings["port"], 2525);
        assert_eq!(email.settings["to"], json!(["a@acme.test", "b@acme.test"]));
        let bad = validate_channel(
            &json!({"kind": "email", "settings": {"security": "ssl", "to": "nobody"}}),
            None,
            || unreachable!(),
        )
        .unwrap_err();
        let fields: Vec<&str> = bad.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "name",
                "settings.host",
                "settings.security",
                "settings.from",
                "settings.to[0]"
            ]
        );
        let hook = validate_channel(
            &json!({"name": "h", "kind": "webhook", "settings": {"url": "http://127.0.0.1:9/x"}}),
            None,
            || "generated-secret-0123456789".into(),
        )
        .unwrap();
        assert_eq!(hook.secret, "generated-secret-0123456789");
        // Editing without a secret keeps the stored one.
        let kept = validate_channel(
            &json!({"name": "s", "kind": "slack"}),
            Some("https://hooks.slack.com/services/T0/B0/XYZW"),
            || unreachable!(),
        )
        .unwrap();
        assert_eq!(kept.secret, "https://hooks.slack.com/services/T0/B0/XYZW");
        assert_eq!(mask_secret(&kept.secret), "••••XYZW");
        assert_eq!(mask_secret(""), "");
    }
}
