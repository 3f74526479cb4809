//! Compaction: every settled month of points rewritten in storage order, in one transaction.
//!
//! Live points arrive interleaved across orgs, so a row group holds a few hours of many orgs
//! and one org's two-year question reads every row group of the two years. Once a calendar
//! month (UTC) has settled, the writer thread rewrites it sorted by (org, ts, metric, dims):
//! each org's month then lies in a few row groups that the zone maps on `org_id` and `ts`
//! pick out, and the fully deleted old row groups are freed at the next checkpoint. The copy,
//! the delete, the insert and the log row (`point_months`) commit together, so a crash at any
//! step leaves the month as it was before or as it is after, never half. Only the writer
//! thread writes points, so nothing can land in the month between the copy and the insert.
//!
//! A write that lands in a compacted month (a late point, a re-sent one) marks the month dirty
//! in the same transaction; the next run compacts it again.

use duckdb::{Connection, params};

use super::{StoreError, ts_value};
use crate::store::compaction::{CompactionLog, Period, failpoint};

pub(super) const MIGRATION: &str = "CREATE TABLE point_months (
    month TIMESTAMP NOT NULL,
    compacted_at TIMESTAMP NOT NULL,
    points BIGINT NOT NULL,
    dirty BOOLEAN NOT NULL
);";

/// A month is left as it lies when its rows already come in at most this many runs per org
/// (in physical order): each org's month is then a few stretches that the zone maps find, and
/// a rewrite would only cost time and leave free blocks in the file. A backfill sent org by
/// org lies so (about two runs per org in the bench); a live feed interleaves every org in
/// every group commit (thousands of runs per org a month).
pub const CLUSTERED_RUNS_PER_ORG: u64 = 4;

/// How a month's rows lie: points, distinct orgs, and runs of one org in physical order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MonthLayout {
    pub points: u64,
    pub orgs: u64,
    pub runs: u64,
}

impl MonthLayout {
    pub(super) fn is_clustered(&self, runs_per_org: u64) -> bool {
        self.runs <= runs_per_org * self.orgs
    }
}

pub(super) fn month_layout(conn: &Connection, month: i64) -> Result<MonthLayout, StoreError> {
    let (points, orgs, runs): (i64, i64, i64) = conn.query_row(
        "SELECT count(*), count(DISTINCT org_id), count(*) FILTER (WHERE org_id IS DISTINCT FROM prev)
         FROM (SELECT org_id, lag(org_id) OVER (ORDER BY rowid) AS prev
               FROM points WHERE ts >= ? AND ts < ?)",
        params![ts_value(month), ts_value(Period::Month.next(month))],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(MonthLayout {
        points: points as u64,
        orgs: orgs as u64,
        runs: runs as u64,
    })
}

/// The settled months that hold points and are not compacted, or dirty since: oldest first.
pub(super) fn due_months(conn: &Connection, now_micros: i64) -> Result<Vec<i64>, StoreError> {
    crate::store::compaction::due(conn, Period::Month, now_micros)
}

/// Rewrites one month in storage order and logs it clean, all in one transaction, unless its
/// rows already lie in at most `runs_per_org` runs per org: then it is only logged clean.
/// Returns the points rewritten (0 for a month left as it lay).
pub(super) fn compact_month(
    conn: &Connection,
    months: &mut CompactionLog,
    month: i64,
    now_micros: i64,
    runs_per_org: u64,
) -> Result<u64, StoreError> {
    let layout = month_layout(conn, month)?;
    if layout.is_clustered(runs_per_org) {
        months.log_clean(conn, month, now_micros, layout.points)?;
        months.set_clean(month);
        return Ok(0);
    }
    let (from, to) = (ts_value(month), ts_value(Period::Month.next(month)));
    conn.execute_batch("BEGIN TRANSACTION;")?;
    let rewrite = || -> Result<u64, StoreError> {
        conn.execute(
            "CREATE OR REPLACE TEMP TABLE compacting AS
               SELECT org_id, metric, ts, value, dims FROM points WHERE ts >= ? AND ts < ?",
            params![from, to],
        )?;
        failpoint("compaction-copied");
        let points = conn.execute(
            "DELETE FROM points WHERE ts >= ? AND ts < ?",
            params![from, to],
        )?;
        failpoint("compaction-deleted");
        conn.execute_batch(
            "INSERT INTO points SELECT org_id, metric, ts, value, dims FROM compacting
               ORDER BY org_id, ts, metric, dims;",
        )?;
        months.log_clean(conn, month, now_micros, points as u64)?;
        failpoint("compaction-inserted");
        Ok(points as u64)
    };
    let result = rewrite();
    match result {
        Ok(points) => {
            conn.execute_batch("COMMIT;")?;
            let _ = conn.execute_batch("DROP TABLE IF EXISTS compacting;");
            months.set_clean(month);
            Ok(points)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK;");
            let _ = conn.execute_batch("DROP TABLE IF EXISTS compacting;");
            Err(e)
        }
    }
}
