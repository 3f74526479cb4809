//! Health score recomputation: reads each metric's last 30 days against the 30 before from the
//! metric store, runs the pure engine (`domain::health`), stores the report and pushes it to
//! open pages.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::app::{App, OrgEvent};
use crate::domain::catalog::{self, MetricDef};
use crate::domain::health::{self, CategoryScore, Coverage, MetricScore, Reading};
use crate::query::{self, Range};
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
    let defs: Vec<MetricDef> = app
        .meta
        .call(move |c| custom_metrics::catalog(c, org_id))
        .await?;
    let values =
        query::period_values(app, org, &defs, Range::Days30, now.timestamp_micros()).await?;
    // Staleness needs each metric's last point only within its longest cadence.
    let window = now.timestamp_micros() - 40 * 86_400_000_000;
    let latest = app
        .metrics
        .read(move |c| metrics::latest_since(c, org_id, window))
        .await?;
    let settings = app
        .meta
        .call(move |c| org_settings::health(c, org_id))
        .await?;
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
                    && latest
                        .get(&def.key)
                        .is_none_or(|l| l.ts_micros < fresh_after),
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
    let report = ScoreReport {
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
    };
    let json = serde_json::to_string(&report).map_err(StoreError::internal)?;
    let (at, overall) = (report.computed_at, report.overall);
    app.meta
        .call(move |c| health_scores::insert(c, org_id, at, overall, &json))
        .await?;
    let _ = app.events.send(OrgEvent {
        org_id,
        metrics: Vec::new(),
        score: Some(overall),
    });
    Ok(report)
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
        .call(move |c| health_scores::latest(c, org_id))
        .await
    {
        Ok(stored) => Ok(serde_json::from_str(&stored.report).ok()),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Recomputes every org's score (the scheduled job).
pub async fn recompute_all(app: &App) -> Result<usize, StoreError> {
    let ids = app.meta.call(|c| health_scores::org_ids(c)).await?;
    let mut done = 0;
    for id in ids {
        let org = app.meta.call(move |c| orgs::by_id(c, id)).await?;
        recompute(app, &org).await?;
        done += 1;
    }
    Ok(done)
}

/// Asks for a recomputation soon; a burst of ingests within the delay causes one recomputation.
pub fn recompute_soon(app: &App, org_id: i64, delay: Duration) {
    {
        let Ok(mut pending) = app.pending_scores.lock() else {
            return;
        };
        if !pending.insert(org_id) {
            return;
        }
    }
    let app = app.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = app.shutdown.cancelled() => return,
        }
        if let Ok(mut pending) = app.pending_scores.lock() {
            pending.remove(&org_id);
        }
        let result = async {
            let org = app.meta.call(move |c| orgs::by_id(c, org_id)).await?;
            recompute(&app, &org).await
        }
        .await;
        if let Err(e) = result {
            tracing::error!(org_id, error = %e, "score recomputation after ingest failed");
        }
    });
}
