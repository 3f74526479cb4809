//! Health score recomputation: reads each metric's last 30 days against the 30 before from the
//! metric store, runs the pure engine (`domain::health`), stores the report and pushes it to
//! open pages.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use tokio::sync::broadcast;

use crate::app::{App, OrgEvent, Signal};
use crate::domain::catalog::{self, MetricDef};
use crate::domain::health::{self, CategoryScore, Coverage, MetricScore, Reading};
use crate::services::query::{self, Range};
use crate::services::signals::Debouncer;
use crate::store::StoreError;
use crate::store::meta::orgs::{self, Org};
use crate::store::meta::{custom_metrics, health_scores, org_settings};
use crate::store::metrics;

/// A stored, explained score.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScoreReport {
    /// Unix seconds.
    pub computed_at: i64,
    pub overall: Option<f64>,
    pub business_kind: String,
    pub categories: Vec<CategoryScore>,
    pub metrics: Vec<MetricScore>,
    pub coverage: Coverage,
    pub top_drags: Vec<String>,
    pub top_lifts: Vec<String>,
    pub recommendations: Vec<String>,
}

/// Computes the org's score now, stores it and announces it.
pub async fn recompute(app: &App, org: &Org) -> Result<ScoreReport, StoreError> {
    recompute_at(app, org, chrono::Utc::now()).await
}

/// Computes the score as it stood at `now` (history backfill passes past instants; staleness
/// is judged only for the present), stores it and announces it.
pub async fn recompute_at(
    app: &App,
    org: &Org,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<ScoreReport, StoreError> {
    let is_present = (chrono::Utc::now() - now).num_seconds() < 60;
    let org_id = org.id;
    let (defs, settings) = app
        .meta
        .call(move |c| {
            Ok((
                custom_metrics::catalog(c, org_id)?,
                org_settings::health(c, org_id)?,
            ))
        })
        .await?;
    let values =
        query::period_values(app, org, &defs, Range::Days30, now.timestamp_micros()).await?;
    // Staleness needs each metric's last point only within its longest cadence.
    let window = now.timestamp_micros() - 40 * 86_400_000_000;
    let latest: HashMap<String, i64> = app
        .metrics
        .read(move |c| metrics::latest_since(c, org_id, window))
        .await?
        .into_iter()
        .map(|(k, l)| (k, l.ts_micros))
        .collect();
    let report = build_report(org, &defs, &settings, &values, &latest, now, is_present);
    store_and_announce(app, vec![(org_id, report.clone())]).await?;
    Ok(report)
}

/// Turns one org's readings into an explained report. No I/O.
fn build_report(
    org: &Org,
    defs: &[MetricDef],
    settings: &health::HealthSettings,
    values: &HashMap<String, (Option<f64>, Option<f64>)>,
    latest: &HashMap<String, i64>,
    now: chrono::DateTime<chrono::Utc>,
    is_present: bool,
) -> ScoreReport {
    let targets = settings.targets();
    let readings: Vec<Reading> = defs
        .iter()
        .map(|def| {
            let (current, previous) = values.get(&def.key).copied().unwrap_or((None, None));
            let fresh_after =
                now.timestamp_micros() - health::expected_cadence_days(&def.key) * 86_400_000_000;
            Reading {
                key: def.key.clone(),
                current,
                previous,
                stale: is_present
                    && current.is_some()
                    && latest.get(&def.key).is_none_or(|ts| *ts < fresh_after),
            }
        })
        .collect();
    let score = health::compute(&targets, &readings, &settings.weights);
    let by_key: HashMap<&str, &MetricDef> = defs.iter().map(|d| (d.key.as_str(), d)).collect();
    let recommendations = health::recommendations(
        &score,
        &targets,
        |k| {
            by_key
                .get(k)
                .map(|d| d.name.clone())
                .unwrap_or_else(|| k.to_string())
        },
        |k, v| match by_key.get(k) {
            Some(d) => catalog::format_value(d.unit, v, &org.currency),
            None => format!("{v}"),
        },
    );
    ScoreReport {
        computed_at: now.timestamp(),
        overall: score.overall,
        business_kind: settings.kind.as_str().into(),
        top_drags: score
            .top_drags(3)
            .iter()
            .filter(|m| m.points_lost > 0.5)
            .map(|m| m.key.clone())
            .collect(),
        top_lifts: score.top_lifts(3).iter().map(|m| m.key.clone()).collect(),
        recommendations,
        categories: score.categories,
        metrics: score.metrics,
        coverage: score.coverage,
    }
}

/// Stores reports in one transaction, then tells the open pages.
async fn store_and_announce(app: &App, reports: Vec<(i64, ScoreReport)>) -> Result<(), StoreError> {
    let mut rows = Vec::with_capacity(reports.len());
    for (org_id, r) in &reports {
        let json = serde_json::to_string(r).map_err(StoreError::internal)?;
        rows.push((*org_id, r.computed_at, r.overall, json));
    }
    app.meta
        .call(move |c| {
            let tx = c.transaction()?;
            for (org_id, at, overall, json) in &rows {
                health_scores::insert(&tx, *org_id, *at, *overall, json)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await?;
    for (org_id, r) in reports {
        let _ = app.live.send(OrgEvent {
            org_id,
            metrics: Vec::new(),
            score: Some(r.overall),
            alert: None,
            events: None,
        });
    }
    Ok(())
}

/// Stores a daily score for each of the last `days` days (as it stood just before local
/// midnight), so an organisation with imported history has a score history from the start.
pub async fn backfill(app: &App, org: &Org, days: i64) -> Result<usize, StoreError> {
    let tz = query::org_tz(org);
    let today =
        crate::domain::timebucket::start_of_local_day(tz, chrono::Utc::now().timestamp_micros());
    // Recomputing replaces what was stored for those days.
    let (org_id, from, to) = (
        org.id,
        (today - days * 86_400_000_000) / 1_000_000,
        today / 1_000_000,
    );
    app.meta
        .call(move |c| health_scores::delete_range(c, org_id, from, to))
        .await?;
    let mut stored = 0;
    for d in (0..days).rev() {
        let closing = today - d * 86_400_000_000 - 1_000_000;
        if let Some(at) = chrono::DateTime::from_timestamp_micros(closing) {
            recompute_at(app, org, at).await?;
            stored += 1;
        }
    }
    Ok(stored)
}

/// The latest stored report, if any.
pub async fn latest(app: &App, org_id: i64) -> Result<Option<ScoreReport>, StoreError> {
    match app
        .meta
        .read(move |c| health_scores::latest(c, org_id))
        .await
    {
        Ok(stored) => Ok(serde_json::from_str(&stored.report).ok()),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Recomputes every org's score (the scheduled job). Orgs sharing period boundaries (the same
/// local midnight) are read together: one aggregate query and one latest-point query per
/// group, then one SQLite transaction for all reports.
pub async fn recompute_all(app: &App) -> Result<usize, StoreError> {
    let now = chrono::Utc::now();
    let everything = app
        .meta
        .call(|c| {
            let mut out = Vec::new();
            for id in health_scores::org_ids(c)? {
                out.push((
                    orgs::by_id(c, id)?,
                    custom_metrics::catalog(c, id)?,
                    org_settings::health(c, id)?,
                ));
            }
            Ok(out)
        })
        .await?;
    let mut groups: HashMap<(i64, i64, i64), Vec<usize>> = HashMap::new();
    for (i, (org, _, _)) in everything.iter().enumerate() {
        let periods = query::periods(query::org_tz(org), Range::Days30, now.timestamp_micros());
        groups.entry(periods).or_default().push(i);
    }
    let window = now.timestamp_micros() - 40 * 86_400_000_000;
    let mut reports = Vec::with_capacity(everything.len());
    for ((prev_start, start, end), members) in groups {
        let ids: Vec<i64> = members.iter().map(|&i| everything[i].0.id).collect();
        let (rows, latest) = app
            .metrics
            .read(move |c| {
                Ok((
                    metrics::period_fleet(c, &ids, prev_start, start, end)?,
                    metrics::latest_ts_fleet(c, &ids, window)?,
                ))
            })
            .await?;
        for &i in &members {
            let (org, defs, settings) = &everything[i];
            let mut values: HashMap<String, (Option<f64>, Option<f64>)> = HashMap::new();
            for def in defs {
                let pick = |bucket: i64| {
                    rows.get(&(org.id, def.key.clone(), bucket))
                        .map(|r| r.value(def.aggregation))
                };
                values.insert(def.key.clone(), (pick(1), pick(0)));
            }
            let latest_org: HashMap<String, i64> = latest
                .iter()
                .filter(|((o, _), _)| *o == org.id)
                .map(|((_, k), ts)| (k.clone(), *ts))
                .collect();
            reports.push((
                org.id,
                build_report(org, defs, settings, &values, &latest_org, now, true),
            ));
        }
    }
    let n = reports.len();
    store_and_announce(app, reports).await?;
    Ok(n)
}

/// Recomputes an org's score a second after points are stored for it (a burst of ingests causes
/// one recomputation), until shutdown.
pub fn listen(app: App, signals: broadcast::Receiver<Signal>) {
    let scorer = app.clone();
    let work = move |org: Org| {
        let app = scorer.clone();
        async move {
            if let Err(e) = recompute(&app, &org).await {
                tracing::error!(org_id = org.id, error = %e, "score recomputation after ingest failed");
            }
        }
    };
    Debouncer::default().after_points_stored(&app, signals, Duration::from_secs(1), work);
}
