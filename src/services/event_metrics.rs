//! Metrics computed from events (signups a day, daily active users, API calls): after events
//! are stored, each of the org's event metrics is recomputed for the local days the events
//! fell on and written as points through [`App::store_points`], so the score, alerts, anomaly
//! detection and forecasts see them like any metric. Recomputing a day replaces its point, so
//! re-sent events and late ones give the same answer as a single pass.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono_tz::Tz;
use tokio::sync::broadcast;

use crate::app::{App, Signal};
use crate::domain::analytics::{self, EventMetricDef};
use crate::domain::ingest::Point;
use crate::domain::timebucket::{self, Bucket};
use crate::services::signals::{Debouncer, Heard, subscribe};
use crate::store::StoreError;
use crate::store::events::analytics as sql;
use crate::store::meta::event_metrics;
use crate::store::meta::orgs::Org;
use crate::store::metrics::Bucketing;

/// The widest span one recomputation covers (a backfill of older events is cut to this).
pub const MAX_DAYS: i64 = 800;
/// After missed signals: recompute this far back for every org.
const MISSED_SPAN_MICROS: i64 = 2 * 86_400_000_000;

/// The org's event metrics, parsed.
async fn definitions(app: &App, org_id: i64) -> Result<Vec<(String, EventMetricDef)>, StoreError> {
    let rows = app
        .meta
        .call(move |c| event_metrics::list(c, org_id))
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(key, text)| {
            let value: serde_json::Value = serde_json::from_str(&text).ok()?;
            analytics::parse_event_metric(&value).ok().map(|d| (key, d))
        })
        .collect())
}

/// The daily points of `def` over the local days covering `[from, to)`: every day, 0 when
/// nothing happened (a quiet day is a value, not a gap).
pub fn daily_points(
    conn: &duckdb::Connection,
    org_id: i64,
    tz: Tz,
    key: &str,
    def: &EventMetricDef,
    from: i64,
    to: i64,
) -> Result<Vec<Point>, StoreError> {
    let start = timebucket::start_of_local_day(tz, from);
    let end = timebucket::start_of_local_day(tz, to) + 86_400_000_000;
    let end = end.min(start + MAX_DAYS * 86_400_000_000);
    let days = timebucket::bucket_starts(tz, Bucket::Day, start, end);
    let rows = sql::trend(
        conn,
        &sql::TrendQuery {
            org_id,
            from_micros: start,
            to_micros: end,
            bucketing: Bucketing::Calendar {
                bucket: Bucket::Day,
                segments: timebucket::offset_segments(tz, start, end),
            },
            series: &def.series,
            math: def.math,
            property: def.property.as_deref(),
            breakdown: None,
            cohort: None,
        },
    )?;
    let by_key: HashMap<i64, f64> = rows
        .into_iter()
        .filter_map(|r| r.value.map(|v| (r.bucket, v)))
        .collect();
    Ok(days
        .iter()
        .map(|d| Point {
            metric: key.to_string(),
            ts_micros: d.utc_micros,
            value: by_key
                .get(&d.local.and_utc().timestamp_micros())
                .copied()
                .unwrap_or(0.0),
            dims: Default::default(),
        })
        .collect())
}

/// The time of the org's first `event` from `from` on.
fn first_event(
    conn: &duckdb::Connection,
    org_id: i64,
    event: &str,
    from: i64,
) -> Result<Option<i64>, StoreError> {
    Ok(conn.query_row(
        "SELECT epoch_us(min(ts)) FROM events WHERE org_id = ? AND name = ? AND ts >= make_timestamp(?)",
        duckdb::params![org_id, event, from],
        |r| r.get(0),
    )?)
}

/// Recomputes the org's event metrics (or only `only`) over `[from, to)`. A backfill starts at
/// the first matching event instead (a metric has no zeros before its event ever happened).
pub async fn recompute(
    app: &App,
    org: &Org,
    only: Option<&str>,
    from: i64,
    to: i64,
    backfill: bool,
) -> Result<usize, StoreError> {
    let defs: Vec<(String, EventMetricDef)> = definitions(app, org.id)
        .await?
        .into_iter()
        .filter(|(k, _)| only.is_none_or(|o| o == k))
        .collect();
    if defs.is_empty() {
        return Ok(0);
    }
    let tz: Tz = org.time_zone.parse().unwrap_or(chrono_tz::UTC);
    let org_id = org.id;
    let points = app
        .events
        .read(move |c| {
            let mut all = Vec::new();
            for (key, def) in &defs {
                let start = if backfill {
                    match first_event(c, org_id, &def.series.event, from)? {
                        Some(first) => first,
                        None => continue,
                    }
                } else {
                    from
                };
                all.extend(daily_points(c, org_id, tz, key, def, start, to)?);
            }
            Ok(all)
        })
        .await?;
    let (stored, _) = app.store_points(org_id, points).await?;
    Ok(stored)
}

/// Listens for stored events and recomputes the days they touched (debounced per org, 500 ms).
#[derive(Clone, Default)]
pub struct EventMetrics {
    debounce: Debouncer,
    /// Per org, the time range of the events stored since its last recomputation.
    touched: Arc<Mutex<HashMap<i64, (i64, i64)>>>,
}

impl EventMetrics {
    pub fn listen(&self, app: &App, signals: broadcast::Receiver<Signal>) {
        let (this, target) = (self.clone(), app.clone());
        subscribe(app, signals, move |heard| {
            let work = {
                let this = this.clone();
                let app = target.clone();
                move |org: Org| {
                    let (this, app) = (this.clone(), app.clone());
                    async move {
                        let now = chrono::Utc::now().timestamp_micros();
                        let range = this
                            .touched
                            .lock()
                            .ok()
                            .and_then(|mut t| t.remove(&org.id))
                            .unwrap_or((now - MISSED_SPAN_MICROS, now));
                        if let Err(e) =
                            recompute(&app, &org, None, range.0, range.1 + 1, false).await
                        {
                            tracing::error!(org_id = org.id, error = %e, "event metrics recomputation failed");
                        }
                    }
                }
            };
            match heard {
                Heard::Signal(Signal::EventsStored {
                    org_id,
                    from_micros,
                    to_micros,
                }) => {
                    if let Ok(mut t) = this.touched.lock() {
                        let e = t.entry(org_id).or_insert((from_micros, to_micros));
                        e.0 = e.0.min(from_micros);
                        e.1 = e.1.max(to_micros);
                    }
                    this.debounce
                        .schedule(&target, org_id, Duration::from_millis(500), work)
                }
                Heard::Signal(_) => {}
                Heard::Missed => {
                    this.debounce
                        .schedule_all(&target, Duration::from_millis(500), work)
                }
            }
        });
    }
}
