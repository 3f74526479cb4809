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

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, NaiveDate};
use duckdb::{Connection, params};

use super::{StoreError, ts_value};

pub(super) const MIGRATION: &str = "CREATE TABLE point_months (
    month TIMESTAMP NOT NULL,
    compacted_at TIMESTAMP NOT NULL,
    points BIGINT NOT NULL,
    dirty BOOLEAN NOT NULL
);";

/// How long after its end a month is left alone: late points of the last days still arrive
/// (a sync that ran late, a CSV of last month) and would only make it dirty again.
pub const SETTLE_MICROS: i64 = 2 * 86_400 * 1_000_000;

/// A month is left as it lies when its rows already come in at most this many runs per org
/// (in physical order): each org's month is then a few stretches that the zone maps find, and
/// a rewrite would only cost time and leave free blocks in the file. A backfill sent org by
/// org lies so (about two runs per org in the bench); a live feed interleaves every org in
/// every group commit (thousands of runs per org a month).
pub const CLUSTERED_RUNS_PER_ORG: u64 = 4;

/// What a compaction run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Settled months looked at (not compacted yet, or dirty since).
    pub checked: u64,
    /// Of those, the months rewritten (the others already lay clustered by org).
    pub rewritten: u64,
    /// Points rewritten.
    pub points: u64,
}

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
        params![ts_value(month), ts_value(next_month(month))],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(MonthLayout {
        points: points as u64,
        orgs: orgs as u64,
        runs: runs as u64,
    })
}

/// The start (µs, UTC) of the calendar month holding `micros`.
pub fn month_start(micros: i64) -> i64 {
    let day = DateTime::from_timestamp_micros(micros)
        .map(|t| t.date_naive())
        .unwrap_or_default();
    first_of(day.year(), day.month())
}

/// The start of the month after the one starting at `month`.
pub fn next_month(month: i64) -> i64 {
    let day = DateTime::from_timestamp_micros(month)
        .map(|t| t.date_naive())
        .unwrap_or_default();
    if day.month() == 12 {
        first_of(day.year() + 1, 1)
    } else {
        first_of(day.year(), day.month() + 1)
    }
}

fn first_of(year: i32, month: u32) -> i64 {
    NaiveDate::from_ymd_opt(year, month, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_micros())
        .unwrap_or(0)
}

/// The months compacted so far, as the writer knows them: month start → dirty. Loaded at
/// start; changed only by the writer, after its commits.
#[derive(Debug, Default)]
pub(super) struct CompactedMonths {
    months: BTreeMap<i64, bool>,
}

impl CompactedMonths {
    pub(super) fn load(conn: &Connection) -> Result<CompactedMonths, StoreError> {
        let mut stmt = conn.prepare("SELECT epoch_us(month), dirty FROM point_months")?;
        let months = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<BTreeMap<i64, bool>, _>>()?;
        Ok(CompactedMonths { months })
    }

    /// The clean compacted months that points at these times fall in: what a write of them
    /// must mark dirty. Times past the newest compacted month cost one comparison.
    pub(super) fn dirtied_by(&self, times: impl Iterator<Item = i64>) -> BTreeSet<i64> {
        let Some(horizon) = self.months.keys().next_back().map(|m| next_month(*m)) else {
            return BTreeSet::new();
        };
        times
            .filter(|ts| *ts < horizon)
            .map(month_start)
            .filter(|m| self.months.get(m) == Some(&false))
            .collect()
    }

    /// Marks months dirty inside the caller's transaction; [`set_dirty`](Self::set_dirty)
    /// after its commit.
    pub(super) fn mark_dirty(conn: &Connection, months: &BTreeSet<i64>) -> Result<(), StoreError> {
        let mut stmt = conn.prepare("UPDATE point_months SET dirty = true WHERE month = ?")?;
        for month in months {
            stmt.execute([ts_value(*month)])?;
        }
        Ok(())
    }

    pub(super) fn set_dirty(&mut self, months: &BTreeSet<i64>) {
        for month in months {
            self.months.insert(*month, true);
        }
    }
}

/// The settled months that hold points and are not compacted, or dirty since: oldest first.
/// A month is settled once [`SETTLE_MICROS`] have passed since its end.
pub(super) fn due_months(conn: &Connection, now_micros: i64) -> Result<Vec<i64>, StoreError> {
    let cutoff = month_start(now_micros - SETTLE_MICROS);
    let mut stmt = conn.prepare(
        "SELECT epoch_us(d.month) FROM (
             SELECT DISTINCT date_trunc('month', ts) AS month FROM points WHERE ts < ?
         ) d
         WHERE NOT EXISTS (SELECT 1 FROM point_months c WHERE c.month = d.month AND NOT c.dirty)
         ORDER BY 1",
    )?;
    let months = stmt
        .query_map([ts_value(cutoff)], |r| r.get(0))?
        .collect::<Result<Vec<i64>, _>>()?;
    Ok(months)
}

/// Rewrites one month in storage order and logs it clean, all in one transaction, unless its
/// rows already lie in at most `runs_per_org` runs per org: then it is only logged clean.
/// Returns the points rewritten (0 for a month left as it lay).
pub(super) fn compact_month(
    conn: &Connection,
    months: &mut CompactedMonths,
    month: i64,
    now_micros: i64,
    runs_per_org: u64,
) -> Result<u64, StoreError> {
    let layout = month_layout(conn, month)?;
    if layout.is_clustered(runs_per_org) {
        log_clean(conn, month, now_micros, layout.points)?;
        months.months.insert(month, false);
        return Ok(0);
    }
    let (from, to) = (ts_value(month), ts_value(next_month(month)));
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
        log_clean(conn, month, now_micros, points as u64)?;
        failpoint("compaction-inserted");
        Ok(points as u64)
    };
    let result = rewrite();
    match result {
        Ok(points) => {
            conn.execute_batch("COMMIT;")?;
            let _ = conn.execute_batch("DROP TABLE IF EXISTS compacting;");
            months.months.insert(month, false);
            Ok(points)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK;");
            let _ = conn.execute_batch("DROP TABLE IF EXISTS compacting;");
            Err(e)
        }
    }
}

/// Records the month as checked and clean (replacing an earlier entry).
fn log_clean(
    conn: &Connection,
    month: i64,
    now_micros: i64,
    points: u64,
) -> Result<(), StoreError> {
    conn.execute(
        "DELETE FROM point_months WHERE month = ?",
        [ts_value(month)],
    )?;
    conn.execute(
        "INSERT INTO point_months VALUES (?, ?, ?, false)",
        params![ts_value(month), ts_value(now_micros), points as i64],
    )?;
    Ok(())
}

/// A test hook: with `FAILPOINTS` set to `name`, the calling thread says so on
/// stderr and stops here for good, so a test can kill the process in the middle of a step.
/// Unset (always, outside those tests), it costs one environment lookup per compaction step.
fn failpoint(name: &str) {
    if std::env::var("FAILPOINTS").is_ok_and(|v| v == name) {
        eprintln!("failpoint {name} reached");
        loop {
            std::thread::park();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(date: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(date)
            .unwrap()
            .timestamp_micros()
    }

    /// 2026-03-15T12:00Z is in March, which starts 2026-03-01T00:00Z; April follows. The
    /// first microsecond of a month is its own start; December rolls over to January.
    #[test]
    fn months_are_utc_calendar_months() {
        for (at_time, start) in [
            ("2026-03-15T12:00:00Z", "2026-03-01T00:00:00Z"),
            ("2026-03-01T00:00:00Z", "2026-03-01T00:00:00Z"),
            ("2026-02-28T23:59:59.999999Z", "2026-02-01T00:00:00Z"),
        ] {
            assert_eq!(month_start(at(at_time)), at(start), "{at_time}");
        }
        for (month, next) in [
            ("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"),
            ("2025-12-01T00:00:00Z", "2026-01-01T00:00:00Z"),
        ] {
            assert_eq!(next_month(at(month)), at(next), "{month}");
        }
    }

    /// Compacted: January (clean) and February (dirty). Points on Jan 10 and Jan 20 dirty
    /// January once; Feb 5 is dirty already; Mar 3 lies past the newest compacted month.
    #[test]
    fn only_clean_compacted_months_are_dirtied() {
        let mut months = CompactedMonths::default();
        months.months.insert(at("2026-01-01T00:00:00Z"), false);
        months.months.insert(at("2026-02-01T00:00:00Z"), true);
        let times = [
            at("2026-01-10T00:00:00Z"),
            at("2026-01-20T00:00:00Z"),
            at("2026-02-05T00:00:00Z"),
            at("2026-03-03T00:00:00Z"),
        ];
        let dirtied = months.dirtied_by(times.into_iter());
        assert_eq!(
            dirtied.into_iter().collect::<Vec<_>>(),
            vec![at("2026-01-01T00:00:00Z")]
        );
        assert!(
            CompactedMonths::default()
                .dirtied_by(times.into_iter())
                .is_empty()
        );
    }
}
