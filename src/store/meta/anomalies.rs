//! Anomalies found by the insights job: one row per anomalous daily point of a metric.

use rusqlite::{Connection, params};
use serde::Serialize;

use crate::store::StoreError;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnomalyRow {
    pub metric: String,
    /// Start of the day (UTC seconds) and the local date it is in the org's time zone.
    pub at: i64,
    pub day: String,
    pub value: f64,
    pub expected: f64,
    /// Half-width of the normal band.
    pub band: f64,
    pub score: f64,
    pub detected_at: i64,
}

/// Replaces the metric's anomalies from `from` (UTC seconds) on with `rows`, in one transaction:
/// a re-run over the same days gives the same rows, never duplicates.
pub fn replace_for_metric(
    conn: &mut Connection,
    org_id: i64,
    metric: &str,
    from: i64,
    rows: &[AnomalyRow],
) -> Result<(), StoreError> {
    let tx = conn.transaction()?;
    tx.execute(
        "DELETE FROM anomalies WHERE org_id = ?1 AND metric = ?2 AND at >= ?3",
        params![org_id, metric, from],
    )?;
    {
        let mut insert = tx.prepare(
            "INSERT OR REPLACE INTO anomalies
                (org_id, metric, at, day, value, expected, band, score, detected_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        for r in rows {
            insert.execute(params![
                org_id,
                metric,
                r.at,
                r.day,
                r.value,
                r.expected,
                r.band,
                r.score,
                r.detected_at
            ])?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AnomalyRow> {
    Ok(AnomalyRow {
        metric: r.get(0)?,
        at: r.get(1)?,
        day: r.get(2)?,
        value: r.get(3)?,
        expected: r.get(4)?,
        band: r.get(5)?,
        score: r.get(6)?,
        detected_at: r.get(7)?,
    })
}

/// The org's anomalies since `since` (UTC seconds), newest first; one metric or all.
pub fn list(
    conn: &Connection,
    org_id: i64,
    metric: Option<&str>,
    since: i64,
    limit: i64,
) -> Result<Vec<AnomalyRow>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT metric, at, day, value, expected, band, score, detected_at FROM anomalies
         WHERE org_id = ?1 AND (?2 IS NULL OR metric = ?2) AND at >= ?3
         ORDER BY at DESC, score DESC LIMIT ?4",
    )?;
    let rows = stmt.query_map(params![org_id, metric, since, limit], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The highest anomaly score of a metric with `from <= at < to` (for anomaly alert rules).
pub fn max_score(
    conn: &Connection,
    org_id: i64,
    metric: &str,
    from: i64,
    to: i64,
) -> Result<Option<f64>, StoreError> {
    Ok(conn.query_row(
        "SELECT max(score) FROM anomalies WHERE org_id = ?1 AND metric = ?2 AND at >= ?3 AND at < ?4",
        params![org_id, metric, from, to],
        |r| r.get(0),
    )?)
}
