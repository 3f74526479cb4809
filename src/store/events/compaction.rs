//! Compaction: every settled week of events rewritten sorted by (org, name, time), in one
//! transaction, on the event writer's thread.
//!
//! SDK batches arrive in time order with every event name interleaved, so a row group holds
//! a few hours of every name, and a question about one event (a trend, a funnel's three steps)
//! reads every row group of its range. Rewritten, each name's week lies in a few row groups
//! that the zone maps on `name` pick out: on bench-shaped data (30 names, 4 M events) a 30-day
//! trend of one event took 13 ms instead of 47 (`bench/probes/event_compaction.py`). The copy,
//! the delete, the insert and the log row (`event_weeks`) commit together, so a crash at any
//! step leaves the week as it was or as it is after, never half. A checkpoint follows each
//! week, so the blocks the old rows held are free for the next week's rewrite.

use duckdb::{Connection, params};

use super::super::StoreError;
use crate::store::compaction::{CompactionLog, Period, failpoint, ts_value};

/// Migration 7 of the DuckDB file: the log of weeks of events rewritten in storage order.
pub(crate) const MIGRATION: &str = "CREATE TABLE event_weeks (
    week TIMESTAMP NOT NULL,
    compacted_at TIMESTAMP NOT NULL,
    events BIGINT NOT NULL,
    dirty BOOLEAN NOT NULL
);";

/// A week is left as it lies when its rows already come in at most this many runs per
/// (org, event name) in physical order: a compacted week that a few late events dirtied, or a
/// backfill sent name by name. A live feed interleaves every name in every batch.
pub const CLUSTERED_RUNS_PER_NAME: u64 = 4;

const COLUMNS: &str =
    "org_id, uuid, name, distinct_id, ts, session_id, props, ip, user_agent, received_at";

/// How a week's rows lie: events, distinct (org, name) pairs, and runs of one pair in
/// physical order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct WeekLayout {
    pub events: u64,
    pub names: u64,
    pub runs: u64,
}

pub(super) fn week_layout(conn: &Connection, week: i64) -> Result<WeekLayout, StoreError> {
    let (events, names, runs): (i64, i64, i64) = conn.query_row(
        "SELECT count(*), count(DISTINCT (org_id, name)),
                count(*) FILTER (WHERE org_id IS DISTINCT FROM prev_org OR name IS DISTINCT FROM prev_name)
           FROM (SELECT org_id, name,
                        lag(org_id) OVER (ORDER BY rowid) AS prev_org,
                        lag(name) OVER (ORDER BY rowid) AS prev_name
                   FROM events WHERE ts >= ? AND ts < ?)",
        params![ts_value(week), ts_value(Period::Week.next(week))],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(WeekLayout {
        events: events as u64,
        names: names as u64,
        runs: runs as u64,
    })
}

/// The settled weeks that hold events and are not compacted, or dirty since: oldest first.
pub(super) fn due_weeks(conn: &Connection, now_micros: i64) -> Result<Vec<i64>, StoreError> {
    crate::store::compaction::due(conn, Period::Week, now_micros)
}

/// Rewrites one week sorted by (org, name, ts) and logs it clean, all in one transaction,
/// unless its rows already lie in at most `runs_per_name` runs per (org, name): then it is
/// only logged clean. Returns the events rewritten (0 for a week left as it lay).
pub(super) fn compact_week(
    conn: &Connection,
    weeks: &mut CompactionLog,
    week: i64,
    now_micros: i64,
    runs_per_name: u64,
) -> Result<u64, StoreError> {
    let layout = week_layout(conn, week)?;
    if layout.runs <= runs_per_name * layout.names {
        weeks.log_clean(conn, week, now_micros, layout.events)?;
        weeks.set_clean(week);
        return Ok(0);
    }
    let (from, to) = (ts_value(week), ts_value(Period::Week.next(week)));
    conn.execute_batch("BEGIN TRANSACTION;")?;
    let rewrite = || -> Result<u64, StoreError> {
        conn.execute(
            &format!(
                "CREATE OR REPLACE TEMP TABLE event_compacting AS
                   SELECT {COLUMNS} FROM events WHERE ts >= ? AND ts < ?"
            ),
            params![from, to],
        )?;
        failpoint("event-compaction-copied");
        let events = conn.execute(
            "DELETE FROM events WHERE ts >= ? AND ts < ?",
            params![from, to],
        )?;
        failpoint("event-compaction-deleted");
        conn.execute_batch(&format!(
            "INSERT INTO events ({COLUMNS}) SELECT {COLUMNS} FROM event_compacting
               ORDER BY org_id, name, ts, uuid;"
        ))?;
        weeks.log_clean(conn, week, now_micros, events as u64)?;
        failpoint("event-compaction-inserted");
        Ok(events as u64)
    };
    let committed = match rewrite() {
        Ok(events) => match conn.execute_batch("COMMIT;") {
            Ok(()) => Ok(events),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK;");
                Err(e.into())
            }
        },
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK;");
            Err(e)
        }
    };
    let _ = conn.execute_batch("DROP TABLE IF EXISTS event_compacting;");
    let events = committed?;
    weeks.set_clean(week);
    // The old rows' blocks are free once checkpointed: the next week's rewrite reuses them
    // instead of growing the file by a week (DuckDB never shrinks it).
    if let Err(e) = conn.execute_batch("CHECKPOINT;") {
        tracing::warn!(error = %e, "checkpoint after compaction failed");
    }
    Ok(events)
}
