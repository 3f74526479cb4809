//! Scheduler job runs: start, duration, outcome and message of every run.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};
use serde::Serialize;

use crate::store::StoreError;

#[derive(Debug, Clone, Serialize)]
pub struct JobRun {
    pub started_at: i64,
    pub duration_ms: Option<i64>,
    /// `running`, `ok` or `error`.
    pub outcome: String,
    pub message: String,
}

pub fn start(conn: &Connection, job: &str, started_at: i64) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO job_runs (job, started_at, outcome, message) VALUES (?1, ?2, 'running', '')",
        params![job, started_at],
    )?;
    Ok(conn.last_insert_rowid())
}

pub fn finish(
    conn: &Connection,
    id: i64,
    duration_ms: i64,
    outcome: &Result<String, String>,
) -> Result<(), StoreError> {
    let (status, message) = match outcome {
        Ok(m) => ("ok", m.as_str()),
        Err(m) => ("error", m.as_str()),
    };
    conn.execute(
        "UPDATE job_runs SET duration_ms = ?2, outcome = ?3, message = ?4 WHERE id = ?1",
        params![id, duration_ms, status, message],
    )?;
    Ok(())
}

pub fn last_started(conn: &Connection, job: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    let secs: Option<i64> = conn.query_row(
        "SELECT max(started_at) FROM job_runs WHERE job = ?1",
        [job],
        |r| r.get(0),
    )?;
    Ok(secs.and_then(|s| DateTime::from_timestamp(s, 0)))
}

/// The job's most recent runs, newest first.
pub fn recent(conn: &Connection, job: &str, limit: i64) -> Result<Vec<JobRun>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT started_at, duration_ms, outcome, message FROM job_runs WHERE job = ?1 ORDER BY started_at DESC, id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![job, limit], |r| {
        Ok(JobRun {
            started_at: r.get(0)?,
            duration_ms: r.get(1)?,
            outcome: r.get(2)?,
            message: r.get(3)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes runs older than `before` (housekeeping).
pub fn prune(conn: &Connection, before: i64) -> Result<usize, StoreError> {
    Ok(conn.execute("DELETE FROM job_runs WHERE started_at < ?1", [before])?)
}
