//! Alert evaluation: reads what each rule watches from the stores, steps the pure lifecycle
//! ([`crate::domain::alerts::Tracker`]) and, in one SQLite transaction per rule, records the
//! alert, its history and the notifications to send (the outbox). Runs on schedule (each rule's
//! interval) and right after ingest for the metrics that received points.

pub mod editing;

pub use editing::{
    SaveError, create_mute_window, create_silence, delete_channel, delete_rule, save_channel,
    save_rule,
};

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::TimeZone;
use serde::Serialize;

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::app::{App, OrgEvent, Signal};
use crate::domain::alert_rules::{self, RuleKind, RuleSpec, ScoreMode, format_duration};
use crate::domain::alerts::{Event, Observation, State, Tracker};
use crate::domain::catalog::{self, Category, MetricDef, Unit};
use crate::domain::notify::{Notice, NoticeKind};
use crate::services::query;
use crate::services::signals::{Debouncer, Heard, subscribe};
use crate::store::meta::alerts::{self, AlertRow, RuleRow};
use crate::store::meta::orgs::{self, Org};
use crate::store::meta::{channels, health_scores};
use crate::store::metrics::{self, AggregateQuery, Bucketing};
use crate::store::{StoreError, now_secs};

/// What a rule sees for one series at one instant.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesValue {
    /// `""` for an ungrouped rule, else `key=value` of the group-by dimension.
    pub series: String,
    pub value: Option<f64>,
}

/// Reads the rule's current value per series. Series with open alerts but no data now are
/// included with `None`, so no-data handling reaches them.
pub async fn observe(
    app: &App,
    org: &Org,
    rule: &RuleRow,
    now: i64,
) -> Result<Vec<SeriesValue>, StoreError> {
    let spec = rule.spec.clone();
    let org_id = org.id;
    let mut values: BTreeMap<String, Option<f64>> = BTreeMap::new();
    let group_key = spec.group_by.clone();
    let series_name = move |group: Option<String>| match (&group_key, group) {
        (Some(k), Some(v)) => format!("{k}={v}"),
        (Some(k), None) => format!("{k}="),
        (None, _) => String::new(),
    };
    match spec.kind {
        RuleKind::Threshold | RuleKind::Change => {
            let metric = spec.metric.clone().unwrap_or_default();
            let window_us = spec.window_secs * 1_000_000;
            let now_us = now * 1_000_000;
            let current_from = now_us - window_us;
            let q = AggregateQuery {
                org_id,
                metric: Some(metric),
                from_micros: if spec.kind == RuleKind::Change {
                    current_from - window_us
                } else {
                    current_from
                },
                // `now` is whole seconds: include every point stamped within the current second.
                to_micros: now_us + 1_000_000,
                bucketing: Bucketing::Split {
                    at_micros: current_from,
                },
                filters: spec.filters.clone().into_iter().collect(),
                group_by: spec.group_by.clone(),
            };
            let rows = app.metrics.read(move |c| metrics::aggregate(c, &q)).await?;
            let mut by_group: BTreeMap<String, (Option<f64>, Option<f64>)> = BTreeMap::new();
            for row in rows {
                let entry = by_group.entry(series_name(row.group.clone())).or_default();
                let v = row.value(spec.aggregation);
                if row.bucket == 1 {
                    entry.1 = Some(v);
                } else {
                    entry.0 = Some(v);
                }
            }
            for (series, (previous, current)) in by_group {
                let value = match spec.kind {
                    RuleKind::Change => match (previous, current) {
                        (Some(p), Some(c)) => alert_rules::percent_change(p, c),
                        _ => None,
                    },
                    _ => current,
                };
                values.insert(series, value);
            }
        }
        RuleKind::NoData => {
            let metric = spec.metric.clone().unwrap_or_default();
            let filters: Vec<(String, String)> = spec.filters.clone().into_iter().collect();
            let group_by = spec.group_by.clone();
            let rows = app
                .metrics
                .read(move |c| {
                    metrics::last_seen(c, org_id, &metric, &filters, group_by.as_deref())
                })
                .await?;
            for (group, ts_us) in rows {
                let age = (now - ts_us.div_euclid(1_000_000)).max(0) as f64;
                values.insert(series_name(group), Some(age));
            }
        }
        RuleKind::Score => {
            let window = spec.window_secs;
            let category = spec.score_category;
            let mode = spec.score_mode;
            let value = app
                .meta
                .call(move |c| {
                    let now_report = health_scores::report_before(c, org_id, now + 1)?;
                    let current = now_report.as_deref().and_then(|r| score_in(r, category));
                    Ok(match mode {
                        ScoreMode::Level => current,
                        ScoreMode::Drop => {
                            let before = health_scores::report_before(c, org_id, now - window + 1)?;
                            let previous = before.as_deref().and_then(|r| score_in(r, category));
                            match (previous, current) {
                                (Some(p), Some(c)) => Some(p - c),
                                _ => None,
                            }
                        }
                    })
                })
                .await?;
            values.insert(String::new(), value);
        }
        RuleKind::Integration => {
            let count = app
                .meta
                .call(move |c| {
                    Ok(crate::store::meta::integrations::list(c, org_id)?
                        .iter()
                        .filter(|i| matches!(i.status.as_str(), "reconnect" | "error"))
                        .count())
                })
                .await?;
            values.insert(String::new(), Some(count as f64));
        }
        RuleKind::Anomaly => {
            let metric = spec.metric.clone().unwrap_or_default();
            let from = now - spec.window_secs;
            let highest = app
                .meta
                .call(move |c| {
                    crate::store::meta::anomalies::max_score(c, org_id, &metric, from, now + 1)
                })
                .await?;
            // No anomaly in the window is a normal reading (0), not missing data.
            values.insert(String::new(), Some(highest.unwrap_or(0.0)));
        }
    }
    if spec.group_by.is_none() {
        values.entry(String::new()).or_insert(None);
    }
    let rule_id = rule.id;
    let open = app
        .meta
        .call(move |c| alerts::open_alerts_of_rule(c, rule_id))
        .await?;
    for a in open {
        values.entry(a.series).or_insert(None);
    }
    Ok(values
        .into_iter()
        .map(|(series, value)| SeriesValue { series, value })
        .collect())
}

/// The overall score, or one category's, from a stored report.
fn score_in(report: &str, category: Option<Category>) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(report).ok()?;
    match category {
        None => v.get("overall")?.as_f64(),
        Some(c) => v
            .get("categories")?
            .as_array()?
            .iter()
            .find(|x| x.get("category").and_then(|k| k.as_str()) == Some(c.as_str()))?
            .get("score")?
            .as_f64(),
    }
}

/// How values of a rule are written for people.
pub fn value_formatter(
    spec: &RuleSpec,
    def: Option<&MetricDef>,
    currency: &str,
) -> impl Fn(f64) -> String {
    let kind = spec.kind;
    let unit = def.map(|d| d.unit);
    let currency = currency.to_string();
    move |v: f64| match kind {
        RuleKind::Change => format!("{v:+.1}%"),
        RuleKind::Score => format!("{v:.1}"),
        RuleKind::Anomaly => format!("anomaly score {v:.2}"),
        RuleKind::Integration => format!("{v:.0} needing attention"),
        RuleKind::NoData => format_age(v as i64),
        _ => match unit {
            Some(u) => catalog::format_value(u, v, &currency),
            None => catalog::format_value(Unit::Count, v, &currency),
        },
    }
}

fn format_age(secs: i64) -> String {
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60);
    match (d, h) {
        (0, 0) => format!("{m}m old"),
        (0, _) => format!("{h}h {m}m old"),
        _ => format!("{d}d {h}h old"),
    }
}

fn state_name(state: &State) -> &'static str {
    match state {
        State::Ok => "ok",
        State::Pending { .. } => "pending",
        State::Firing { .. } => "firing",
        State::Acknowledged { .. } => "acknowledged",
    }
}

/// The labels silences and mute windows match on: the rule's own plus `rule`, `severity`,
/// `metric`, `category` and the series' group dimension.
pub fn alert_labels(spec: &RuleSpec, category: &str, series: &str) -> Vec<(String, String)> {
    let mut labels: Vec<(String, String)> = spec
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    labels.push(("rule".into(), spec.name.clone()));
    labels.push(("severity".into(), spec.severity.as_str().into()));
    if let Some(m) = &spec.metric {
        labels.push(("metric".into(), m.clone()));
    }
    if !category.is_empty() {
        labels.push(("category".into(), category.into()));
    }
    if let Some((k, v)) = series.split_once('=') {
        labels.push((k.into(), v.into()));
    }
    labels
}

/// Context to render notices for one rule.
struct NoticeContext {
    org: Org,
    spec: RuleSpec,
    metric_name: String,
    def: Option<MetricDef>,
    base_url: String,
}

impl NoticeContext {
    fn notice(&self, kind: NoticeKind, alert: &AlertRow, at: i64, key: String) -> Notice {
        let fmt = value_formatter(&self.spec, self.def.as_ref(), &self.org.currency);
        let tz = query::org_tz(&self.org);
        let since = alert.fired_at.unwrap_or(alert.started_at);
        let since_text = tz
            .timestamp_opt(since, 0)
            .single()
            .map(|t| t.format("%a %-d %b %Y %H:%M %Z").to_string())
            .unwrap_or_default();
        let slug = crate::domain::url::urlencode(&self.org.slug);
        let metric_url = match &self.spec.metric {
            Some(m) => format!(
                "{}/o/{slug}/metrics/{}",
                self.base_url,
                crate::domain::url::urlencode(m)
            ),
            None => format!("{}/o/{slug}/", self.base_url),
        };
        Notice {
            kind,
            idempotency_key: key,
            org_name: self.org.name.clone(),
            org_slug: self.org.slug.clone(),
            alert_id: Some(alert.id),
            rule_name: self.spec.name.clone(),
            severity: self.spec.severity.as_str().into(),
            watched: self.spec.subject(&self.metric_name),
            series: alert.series.clone(),
            value_text: alert.value.map(&fmt).unwrap_or_else(|| "no data".into()),
            condition_text: self.spec.describe_condition(&fmt),
            since_text,
            alert_url: format!("{}/o/{slug}/alerts/{}", self.base_url, alert.id),
            metric_url,
            at,
            value: alert.value,
        }
    }
}

/// The outcome of evaluating one rule.
#[derive(Debug, Clone, Serialize)]
pub struct RuleOutcome {
    pub series: String,
    pub value: Option<f64>,
    pub state: String,
    pub events: Vec<String>,
}

pub(crate) async fn catalog_of(app: &App, org_id: i64) -> Result<Vec<MetricDef>, StoreError> {
    Ok(app.meta.catalog(org_id).await?.to_vec())
}

/// Evaluates one rule at `now` (the caller holds the alert lock): steps every series and
/// records alerts, history and notifications.
async fn evaluate_rule_locked(
    app: &App,
    org: &Org,
    rule: &RuleRow,
    now: i64,
) -> Result<Vec<RuleOutcome>, StoreError> {
    let observed = match observe(app, org, rule, now).await {
        Ok(v) => v,
        Err(e) => {
            let (id, msg) = (rule.id, e.to_string());
            app.meta
                .call(move |c| alerts::mark_evaluated(c, id, now, &msg))
                .await?;
            return Err(e);
        }
    };
    let catalog = catalog_of(app, org.id).await?;
    let def = rule
        .spec
        .metric
        .as_ref()
        .and_then(|m| catalog.iter().find(|d| &d.key == m))
        .cloned();
    let category = rule
        .spec
        .category(&catalog)
        .map(|c| c.as_str().to_string())
        .unwrap_or_default();
    let ctx = NoticeContext {
        org: org.clone(),
        spec: rule.spec.clone(),
        metric_name: def.as_ref().map(|d| d.name.clone()).unwrap_or_default(),
        def,
        base_url: app.base_url(),
    };
    let rule = rule.clone();
    let tz = query::org_tz(org);
    let (outcomes, changed, queued) = app
        .meta
        .call(move |c| {
            let tx = c.transaction()?;
            let mut outcomes = Vec::new();
            let mut changed = Vec::new();
            let mut queued = 0;
            for sv in observed {
                let open = alerts::open_alert(&tx, rule.id, &sv.series)?;
                let mut tracker = open.as_ref().map(|a| a.tracker.clone()).unwrap_or_default();
                let observation = rule.spec.condition.observe(sv.value);
                let events = tracker.step(observation, now, &rule.spec.timing);
                let mut names = Vec::new();
                if !events.is_empty() || open.is_some() {
                    let mut alert = open.unwrap_or_else(|| AlertRow {
                        id: 0,
                        org_id: rule.org_id,
                        rule_id: rule.id,
                        rule_name: rule.spec.name.clone(),
                        series: sv.series.clone(),
                        state: "pending".into(),
                        severity: rule.spec.severity.as_str().into(),
                        category: category.clone(),
                        tracker: Tracker::default(),
                        value: None,
                        started_at: now,
                        fired_at: None,
                        updated_at: now,
                        resolved_at: None,
                        ack_by: String::new(),
                        ack_note: String::new(),
                        ack_until: None,
                    });
                    if sv.value.is_some() || !matches!(observation, Observation::NoData) {
                        alert.value = sv.value;
                    }
                    alert.severity = rule.spec.severity.as_str().into();
                    let was_open = alert.id != 0;
                    apply_events(&mut alert, &tracker, &events, now);
                    if alert.id == 0 && tracker.state == State::Ok && events.is_empty() {
                        // Nothing happened on a series without an alert.
                    } else if was_open || !events.is_empty() {
                        if !events.is_empty() || alert.value.is_some() {
                            alert.updated_at = if events.is_empty() {
                                alert.updated_at
                            } else {
                                now
                            };
                        }
                        alert.tracker = tracker.clone();
                        alert.id = alerts::save_alert(&tx, &alert)?;
                        for e in &events {
                            let (kind, actor, note) = event_record(e);
                            alerts::add_event(
                                &tx,
                                alert.org_id,
                                alert.id,
                                now,
                                kind,
                                &actor,
                                &note,
                                alert.value,
                            )?;
                            names.push(kind.to_string());
                        }
                        if !events.is_empty() {
                            changed.push(alert.id);
                        }
                        queued += enqueue_notices(&tx, &ctx, &rule.spec, &alert, &events, now, tz)?;
                    }
                }
                outcomes.push(RuleOutcome {
                    series: sv.series,
                    value: sv.value,
                    state: state_name(&tracker.state).into(),
                    events: names,
                });
            }
            alerts::mark_evaluated(&tx, rule.id, now, "")?;
            tx.commit()?;
            Ok((outcomes, changed, queued))
        })
        .await?;
    for id in changed {
        let _ = app.live.send(OrgEvent::alert_changed(org.id, id));
    }
    if queued > 0 {
        app.announce(Signal::NoticesQueued);
    }
    Ok(outcomes)
}

/// Mirrors the tracker's state and the events onto the stored alert row.
fn apply_events(alert: &mut AlertRow, tracker: &Tracker, events: &[Event], now: i64) {
    for e in events {
        match e {
            Event::Fired { .. } => alert.fired_at = Some(now),
            Event::Resolved { .. } => alert.resolved_at = Some(now),
            Event::Cleared { .. } => alert.resolved_at = Some(now),
            _ => {}
        }
    }
    alert.state = match &tracker.state {
        State::Ok => {
            if alert.fired_at.is_some() {
                "resolved".into()
            } else {
                "cleared".into()
            }
        }
        other => state_name(other).into(),
    };
    if let State::Acknowledged { by, until, .. } = &tracker.state {
        alert.ack_by = by.clone();
        alert.ack_until = *until;
    } else if !matches!(tracker.state, State::Ok) {
        alert.ack_until = None;
    }
}

fn event_record(e: &Event) -> (&'static str, String, String) {
    match e {
        Event::Pending { .. } => ("pending", String::new(), String::new()),
        Event::Fired { .. } => ("fired", String::new(), String::new()),
        Event::Escalated { .. } => ("escalated", String::new(), String::new()),
        Event::Acknowledged { by, until, .. } => (
            "acknowledged",
            by.clone(),
            until
                .map(|u| format!("until {}", fmt_utc(u)))
                .unwrap_or_default(),
        ),
        Event::AckExpired { .. } => ("ack_expired", String::new(), String::new()),
        Event::Resolved { by, .. } => ("resolved", by.clone().unwrap_or_default(), String::new()),
        Event::Cleared { .. } => ("cleared", String::new(), String::new()),
    }
}

fn fmt_utc(at: i64) -> String {
    chrono::DateTime::from_timestamp(at, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

/// Queues the notifications the events call for, unless a silence or mute window covers the
/// alert (then the history says so). Returns how many rows were queued.
fn enqueue_notices(
    conn: &rusqlite::Connection,
    ctx: &NoticeContext,
    spec: &RuleSpec,
    alert: &AlertRow,
    events: &[Event],
    now: i64,
    tz: chrono_tz::Tz,
) -> Result<usize, StoreError> {
    let mut queued = 0;
    for e in events {
        let (kind, targets): (NoticeKind, &[i64]) = match e {
            Event::Fired { .. } => (NoticeKind::Firing, &spec.channels),
            Event::AckExpired { .. } => (NoticeKind::Reminder, &spec.channels),
            Event::Escalated { .. } => (NoticeKind::Escalation, &spec.escalation_channels),
            // Only alerts people were told about get a "resolved" message.
            Event::Resolved { .. } if alert.fired_at.is_some() => {
                (NoticeKind::Resolved, &spec.channels)
            }
            _ => continue,
        };
        if targets.is_empty() {
            continue;
        }
        let labels = alert_labels(spec, &alert.category, &alert.series);
        if let Some(reason) = muted_by(conn, alert.org_id, &labels, now, tz)? {
            alerts::add_event(
                conn,
                alert.org_id,
                alert.id,
                now,
                "muted",
                "",
                &format!("{} notification not sent: {reason}", kind.as_str()),
                alert.value,
            )?;
            continue;
        }
        let key = format!(
            "vitals-{}-{}-{}-{now}",
            alert.org_id,
            alert.id,
            kind.as_str()
        );
        let notice = ctx.notice(kind, alert, now, key.clone());
        let json = serde_json::to_string(&notice).map_err(StoreError::internal)?;
        for channel in targets {
            if channels::enqueue(
                conn,
                alert.org_id,
                *channel,
                Some(alert.id),
                &key,
                &json,
                now,
            )? {
                queued += 1;
            }
        }
    }
    Ok(queued)
}

/// Which silence or mute window (if any) covers these labels now.
fn muted_by(
    conn: &rusqlite::Connection,
    org_id: i64,
    labels: &[(String, String)],
    now: i64,
    tz: chrono_tz::Tz,
) -> Result<Option<String>, StoreError> {
    for s in alerts::list_silences(conn, org_id, now)? {
        let silence = crate::domain::alerts::Silence {
            matchers: s.matchers.clone(),
            ends_at: s.ends_at,
        };
        if silence.mutes(labels, now) {
            return Ok(Some(format!("silenced until {}", fmt_utc(s.ends_at))));
        }
    }
    for w in alerts::list_mute_windows(conn, org_id)? {
        if w.matchers.iter().all(|m| labels.contains(m)) && w.window.covers(tz, now) {
            return Ok(Some(format!("mute window “{}”", w.name)));
        }
    }
    Ok(None)
}

/// "Test rule": what the rule sees now and what it would do, without recording or notifying.
pub async fn test_rule(
    app: &App,
    org: &Org,
    rule: &RuleRow,
    now: i64,
) -> Result<Vec<serde_json::Value>, StoreError> {
    let observed = observe(app, org, rule, now).await?;
    let catalog = catalog_of(app, org.id).await?;
    let def = rule
        .spec
        .metric
        .as_ref()
        .and_then(|m| catalog.iter().find(|d| &d.key == m));
    let fmt = value_formatter(&rule.spec, def, &org.currency);
    let mut out = Vec::new();
    for sv in observed {
        let observation = rule.spec.condition.observe(sv.value);
        let (verdict, breach) = match observation {
            Observation::Breach(_) => ("breach", true),
            Observation::Recovered(_) => ("ok", false),
            Observation::Between(_) => ("between threshold and recovery level", false),
            Observation::NoData => match rule.spec.timing.no_data {
                crate::domain::alerts::NoDataPolicy::Alert => {
                    ("no data (counts as a breach)", true)
                }
                _ => ("no data", false),
            },
        };
        let would = if !breach {
            "would not fire".to_string()
        } else if rule.spec.timing.pending_for > 0 {
            format!(
                "would fire after the condition holds for {}",
                format_duration(rule.spec.timing.pending_for)
            )
        } else {
            "would fire now".to_string()
        };
        out.push(serde_json::json!({
            "series": sv.series,
            "value": sv.value,
            "value_text": sv.value.map(&fmt).unwrap_or_else(|| "no data".into()),
            "condition": rule.spec.describe_condition(&fmt),
            "verdict": verdict,
            "breach": breach,
            "outcome": would,
        }));
    }
    Ok(out)
}

/// A user acknowledges an alert (the caller holds the alert lock).
async fn acknowledge_locked(
    app: &App,
    org: &Org,
    alert_id: i64,
    by: &str,
    note: &str,
    hours: Option<f64>,
) -> Result<AlertRow, AlertActionError> {
    let now = now_secs();
    let until = match hours {
        None => None,
        Some(h) if h > 0.0 && h <= 24.0 * 90.0 => Some(now + (h * 3600.0).round() as i64),
        Some(_) => {
            return Err(AlertActionError::Invalid(
                "hours",
                "must be more than 0 and at most 2160 (90 days)".into(),
            ));
        }
    };
    let (org_id, by, note) = (org.id, by.to_string(), note.trim().to_string());
    if note.chars().count() > 1000 {
        return Err(AlertActionError::Invalid(
            "note",
            "is longer than 1000 characters".into(),
        ));
    }
    let result = app
        .meta
        .call(move |c| {
            let tx = c.transaction()?;
            let mut alert = alerts::get_alert(&tx, org_id, alert_id)?;
            let mut tracker = alert.tracker.clone();
            let event = match tracker.acknowledge(&by, until, now) {
                Ok(e) => e,
                Err(m) => return Ok(Err(m)),
            };
            apply_events(&mut alert, &tracker, std::slice::from_ref(&event), now);
            alert.tracker = tracker;
            alert.ack_note = note.clone();
            alert.updated_at = now;
            alerts::save_alert(&tx, &alert)?;
            let (kind, actor, mut detail) = event_record(&event);
            if !note.is_empty() {
                detail = if detail.is_empty() {
                    note.clone()
                } else {
                    format!("{detail}; {note}")
                };
            }
            alerts::add_event(
                &tx,
                org_id,
                alert.id,
                now,
                kind,
                &actor,
                &detail,
                alert.value,
            )?;
            tx.commit()?;
            Ok(Ok(alert))
        })
        .await?;
    let alert = result.map_err(AlertActionError::State)?;
    let _ = app.live.send(OrgEvent::alert_changed(org.id, alert.id));
    Ok(alert)
}

/// A user resolves an open alert by hand (the caller holds the alert lock).
async fn resolve_locked(
    app: &App,
    org: &Org,
    alert_id: i64,
    by: &str,
) -> Result<AlertRow, AlertActionError> {
    let now = now_secs();
    let org_id = org.id;
    let current = app
        .meta
        .call(move |c| alerts::get_alert(c, org_id, alert_id))
        .await?;
    let rule_id = current.rule_id;
    let rule = app
        .meta
        .call(move |c| alerts::get_rule(c, org_id, rule_id))
        .await?;
    let catalog = catalog_of(app, org.id).await?;
    let def = rule
        .spec
        .metric
        .as_ref()
        .and_then(|m| catalog.iter().find(|d| &d.key == m))
        .cloned();
    let ctx = NoticeContext {
        org: org.clone(),
        spec: rule.spec.clone(),
        metric_name: def.as_ref().map(|d| d.name.clone()).unwrap_or_default(),
        def,
        base_url: app.base_url(),
    };
    let tz = query::org_tz(org);
    let by = by.to_string();
    let result = app
        .meta
        .call(move |c| {
            let tx = c.transaction()?;
            let mut alert = alerts::get_alert(&tx, org_id, alert_id)?;
            let mut tracker = alert.tracker.clone();
            let event = match tracker.resolve_by_hand(&by, now) {
                Ok(e) => e,
                Err(m) => return Ok(Err(m)),
            };
            let events = [event];
            apply_events(&mut alert, &tracker, &events, now);
            alert.tracker = tracker;
            alert.updated_at = now;
            alerts::save_alert(&tx, &alert)?;
            let (kind, actor, note) = event_record(&events[0]);
            alerts::add_event(&tx, org_id, alert.id, now, kind, &actor, &note, alert.value)?;
            let queued = enqueue_notices(&tx, &ctx, &rule.spec, &alert, &events, now, tz)?;
            tx.commit()?;
            Ok(Ok((alert, queued)))
        })
        .await?;
    let (alert, queued) = result.map_err(AlertActionError::State)?;
    if queued > 0 {
        app.announce(Signal::NoticesQueued);
    }
    let _ = app.live.send(OrgEvent::alert_changed(org.id, alert.id));
    Ok(alert)
}

#[derive(Debug, thiserror::Error)]
pub enum AlertActionError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The alert is not in a state that allows the action.
    #[error("{0}")]
    State(String),
    #[error("{0}: {1}")]
    Invalid(&'static str, String),
}

/// The alerting service: evaluations, acknowledgements and resolutions run one at a time (its
/// lock), so no two interleave on an alert; evaluation after new data is debounced per org.
#[derive(Clone)]
pub struct Alerting {
    app: App,
    lock: Arc<tokio::sync::Mutex<()>>,
    pending: Debouncer,
}

impl Alerting {
    pub fn new(app: App) -> Alerting {
        Alerting {
            app,
            lock: Arc::new(tokio::sync::Mutex::new(())),
            pending: Debouncer::default(),
        }
    }

    /// Evaluates one rule at `now`: steps every series and records alerts, history and
    /// notifications.
    pub async fn evaluate_rule(
        &self,
        org: &Org,
        rule: &RuleRow,
        now: i64,
    ) -> Result<Vec<RuleOutcome>, StoreError> {
        let _guard = self.lock.lock().await;
        evaluate_rule_locked(&self.app, org, rule, now).await
    }

    /// A user acknowledges an alert (optionally for `hours`), with an optional note.
    pub async fn acknowledge(
        &self,
        org: &Org,
        alert_id: i64,
        by: &str,
        note: &str,
        hours: Option<f64>,
    ) -> Result<AlertRow, AlertActionError> {
        let _guard = self.lock.lock().await;
        acknowledge_locked(&self.app, org, alert_id, by, note, hours).await
    }

    /// A user resolves an open alert by hand; channels that heard it fire hear it resolved.
    pub async fn resolve(
        &self,
        org: &Org,
        alert_id: i64,
        by: &str,
    ) -> Result<AlertRow, AlertActionError> {
        let _guard = self.lock.lock().await;
        resolve_locked(&self.app, org, alert_id, by).await
    }

    /// Evaluates every due rule of every org (the scheduler job).
    pub async fn evaluate_due(&self) -> Result<usize, StoreError> {
        let app = &self.app;
        let now = now_secs();
        let rules = app.meta.call(move |c| alerts::due_rules(c, now)).await?;
        let mut evaluated = 0;
        let mut failures = Vec::new();
        for rule in rules {
            let org_id = rule.org_id;
            let org = app.meta.call(move |c| orgs::by_id(c, org_id)).await?;
            match self.evaluate_rule(&org, &rule, now).await {
                Ok(_) => evaluated += 1,
                Err(e) => failures.push(format!("rule {}: {e}", rule.id)),
            }
        }
        if failures.is_empty() {
            Ok(evaluated)
        } else {
            Err(StoreError::Internal(failures.join("; ")))
        }
    }

    /// Evaluates the org's enabled metric and integration rules shortly (debounced, so a burst
    /// of batches is evaluated once, after the last of them is stored).
    pub fn evaluate_soon(&self, org_id: i64, delay: Duration) {
        let this = self.clone();
        self.pending
            .schedule(&self.app, org_id, delay, move |org| async move {
                this.evaluate_changed(&org).await
            });
    }

    async fn evaluate_changed(&self, org: &Org) {
        let org_id = org.id;
        let result: Result<(), StoreError> = async {
            let rules = self
                .app
                .meta
                .call(move |c| alerts::list_rules(c, org_id))
                .await?;
            let now = now_secs();
            for rule in rules {
                if rule.spec.enabled
                    && (rule.spec.metric.is_some() || rule.spec.kind == RuleKind::Integration)
                {
                    self.evaluate_rule(org, &rule, now).await?;
                }
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(org_id, error = %e, "alert evaluation after new data failed");
        }
    }

    /// Evaluates an org's rules after its points are stored (200 ms later), after a sync or
    /// after anomaly detection (50 ms: integration and anomaly rules read what was just
    /// stored), until shutdown.
    pub fn listen(&self, signals: broadcast::Receiver<Signal>) {
        let this = self.clone();
        subscribe(&self.app, signals, move |heard| match heard {
            Heard::Signal(Signal::PointsStored { org_id, .. }) => {
                this.evaluate_soon(org_id, Duration::from_millis(200))
            }
            Heard::Signal(
                Signal::SyncFinished { org_id } | Signal::AnomaliesDetected { org_id },
            ) => this.evaluate_soon(org_id, Duration::from_millis(50)),
            // Event metrics reach the rules as points (PointsStored).
            Heard::Signal(Signal::NoticesQueued | Signal::EventsStored { .. }) => {}
            Heard::Missed => {
                let evaluator = this.clone();
                this.pending
                    .schedule_all(&this.app, Duration::from_millis(200), move |org| {
                        let evaluator = evaluator.clone();
                        async move { evaluator.evaluate_changed(&org).await }
                    })
            }
        });
    }
}

/// Housekeeping: alert history and delivered notifications older than the retention.
pub async fn purge_history(app: &App) -> Result<(usize, usize), StoreError> {
    let before = now_secs() - app.config.alerts.history_retention_days as i64 * 86_400;
    app.meta
        .call(move |c| {
            Ok((
                alerts::purge_closed(c, before)?,
                channels::purge(c, before)?,
            ))
        })
        .await
}
