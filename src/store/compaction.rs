//! What the two DuckDB compactions share: the calendar periods they rewrite (UTC months of
//! points, UTC weeks of events), the log of periods compacted (clean, or dirty since a late
//! write landed in one), the due list, and the failpoint hook of the crash tests.
//!
//! Each compaction runs on its table's writer thread, the only writer of that table, so nothing
//! can land in a period between its copy and its insert; a write into a compacted period marks
//! it dirty in the write's own transaction, so the next run looks at it again.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, NaiveDate};
use duckdb::{Connection, params};

use super::StoreError;
use duckdb::types::{TimeUnit, Value};

/// How long after its end a period is left alone: late rows of its last days still arrive
/// (a sync that ran late, a CSV of last month, a phone that was offline) and would only make
/// it dirty again.
pub const SETTLE_MICROS: i64 = 2 * 86_400 * 1_000_000;

const DAY_MICROS: i64 = 86_400 * 1_000_000;

/// What a compaction run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Settled periods looked at (not compacted yet, or dirty since).
    pub checked: u64,
    /// Of those, the periods rewritten (the others already lay in storage order).
    pub rewritten: u64,
    /// Rows (points or events) rewritten.
    pub rows: u64,
}

/// The unit a compaction rewrites in one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// A calendar month: the points.
    Month,
    /// A week from Monday 00:00: the events (a month of events is too much to rewrite while
    /// ingest waits; a day holds too few row groups per event name for zone maps to skip).
    Week,
}

impl Period {
    /// The start (µs, UTC) of the period holding `micros`.
    pub fn start(self, micros: i64) -> i64 {
        match self {
            Period::Month => {
                let day = DateTime::from_timestamp_micros(micros)
                    .map(|t| t.date_naive())
                    .unwrap_or_default();
                first_of(day.year(), day.month())
            }
            Period::Week => {
                // 1970-01-01 was a Thursday, three days after a Monday.
                let days = micros.div_euclid(DAY_MICROS);
                (days - (days + 3).rem_euclid(7)) * DAY_MICROS
            }
        }
    }

    /// The start of the period after the one starting at `start`.
    pub fn next(self, start: i64) -> i64 {
        match self {
            Period::Month => {
                let day = DateTime::from_timestamp_micros(start)
                    .map(|t| t.date_naive())
                    .unwrap_or_default();
                if day.month() == 12 {
                    first_of(day.year() + 1, 1)
                } else {
                    first_of(day.year(), day.month() + 1)
                }
            }
            Period::Week => start + 7 * DAY_MICROS,
        }
    }

    /// The log table and its period column.
    fn log(self) -> (&'static str, &'static str) {
        match self {
            Period::Month => ("point_months", "month"),
            Period::Week => ("event_weeks", "week"),
        }
    }

    /// The compacted table.
    fn data(self) -> &'static str {
        match self {
            Period::Month => "points",
            Period::Week => "events",
        }
    }

    /// DuckDB's `date_trunc` part for the period (its weeks start on Monday, as ours).
    fn trunc(self) -> &'static str {
        match self {
            Period::Month => "month",
            Period::Week => "week",
        }
    }
}

fn first_of(year: i32, month: u32) -> i64 {
    NaiveDate::from_ymd_opt(year, month, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_micros())
        .unwrap_or(0)
}

pub(super) fn ts_value(micros: i64) -> Value {
    Value::Timestamp(TimeUnit::Microsecond, micros)
}

/// The periods compacted so far, as the writer knows them: period start → dirty. Loaded at
/// start; changed only by the writer, after its commits.
#[derive(Debug)]
pub(crate) struct CompactionLog {
    period: Period,
    periods: BTreeMap<i64, bool>,
}

impl CompactionLog {
    pub(crate) fn empty(period: Period) -> CompactionLog {
        CompactionLog {
            period,
            periods: BTreeMap::new(),
        }
    }

    pub(crate) fn load(conn: &Connection, period: Period) -> Result<CompactionLog, StoreError> {
        let (table, column) = period.log();
        let mut stmt = conn.prepare(&format!("SELECT epoch_us({column}), dirty FROM {table}"))?;
        let periods = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<BTreeMap<i64, bool>, _>>()?;
        Ok(CompactionLog { period, periods })
    }

    /// The end of the newest compacted period: rows at or past it dirty nothing.
    pub(crate) fn horizon(&self) -> i64 {
        self.periods
            .keys()
            .next_back()
            .map_or(i64::MIN, |p| self.period.next(*p))
    }

    /// The clean compacted periods that rows at these times fall in: what a write of them
    /// must mark dirty. Times past the newest compacted period cost one comparison.
    pub(crate) fn dirtied_by(&self, times: impl Iterator<Item = i64>) -> BTreeSet<i64> {
        let horizon = self.horizon();
        times
            .filter(|ts| *ts < horizon)
            .map(|ts| self.period.start(ts))
            .filter(|p| self.periods.get(p) == Some(&false))
            .collect()
    }

    /// Marks periods dirty inside the caller's transaction; [`set_dirty`](Self::set_dirty)
    /// after its commit.
    pub(crate) fn mark_dirty(
        &self,
        conn: &Connection,
        periods: &BTreeSet<i64>,
    ) -> Result<(), StoreError> {
        let (table, column) = self.period.log();
        let mut stmt = conn.prepare(&format!(
            "UPDATE {table} SET dirty = true WHERE {column} = ?"
        ))?;
        for start in periods {
            stmt.execute([ts_value(*start)])?;
        }
        Ok(())
    }

    pub(crate) fn set_dirty(&mut self, periods: &BTreeSet<i64>) {
        for start in periods {
            self.periods.insert(*start, true);
        }
    }

    /// Records the period as checked and clean (replacing an earlier entry) inside the
    /// caller's transaction, if any; [`set_clean`](Self::set_clean) after its commit.
    pub(crate) fn log_clean(
        &self,
        conn: &Connection,
        start: i64,
        now_micros: i64,
        rows: u64,
    ) -> Result<(), StoreError> {
        let (table, column) = self.period.log();
        conn.execute(
            &format!("DELETE FROM {table} WHERE {column} = ?"),
            [ts_value(start)],
        )?;
        conn.execute(
            &format!("INSERT INTO {table} VALUES (?, ?, ?, false)"),
            params![ts_value(start), ts_value(now_micros), rows as i64],
        )?;
        Ok(())
    }

    pub(crate) fn set_clean(&mut self, start: i64) {
        self.periods.insert(start, false);
    }
}

/// The settled periods that hold rows and are not compacted, or dirty since: oldest first.
/// A period is settled once [`SETTLE_MICROS`] have passed since its end.
pub(crate) fn due(
    conn: &Connection,
    period: Period,
    now_micros: i64,
) -> Result<Vec<i64>, StoreError> {
    let cutoff = period.start(now_micros - SETTLE_MICROS);
    let (log, column) = period.log();
    let mut stmt = conn.prepare(&format!(
        "SELECT epoch_us(d.p) FROM (
             SELECT DISTINCT date_trunc('{trunc}', ts) AS p FROM {data} WHERE ts < ?
         ) d
         WHERE NOT EXISTS (SELECT 1 FROM {log} c WHERE c.{column} = d.p AND NOT c.dirty)
         ORDER BY 1",
        trunc = period.trunc(),
        data = period.data(),
    ))?;
    let periods = stmt
        .query_map([ts_value(cutoff)], |r| r.get(0))?
        .collect::<Result<Vec<i64>, _>>()?;
    Ok(periods)
}

/// Compacts `due` periods oldest first, each through `compact_one` (one turn of its writer,
/// so ingest goes on between periods), and tallies what was rewritten.
pub(crate) async fn compact_each<F, Fut>(
    due: Vec<i64>,
    mut compact_one: F,
) -> Result<CompactionReport, StoreError>
where
    F: FnMut(i64) -> Fut,
    Fut: std::future::Future<Output = Result<u64, StoreError>>,
{
    let mut report = CompactionReport::default();
    for period in due {
        let rewritten = compact_one(period).await?;
        report.checked += 1;
        if rewritten > 0 {
            report.rewritten += 1;
            report.rows += rewritten;
        }
    }
    Ok(report)
}

/// A test hook: with `FAILPOINTS` set to `name`, the calling thread says so on
/// stderr and stops here for good, so a test can kill the process in the middle of a step.
/// Unset (always, outside those tests), it costs one environment lookup per compaction step.
pub(crate) fn failpoint(name: &str) {
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
            assert_eq!(Period::Month.start(at(at_time)), at(start), "{at_time}");
        }
        for (month, next) in [
            ("2026-03-01T00:00:00Z", "2026-04-01T00:00:00Z"),
            ("2025-12-01T00:00:00Z", "2026-01-01T00:00:00Z"),
        ] {
            assert_eq!(Period::Month.next(at(month)), at(next), "{month}");
        }
    }

    /// 2026-12-04 is a Friday: its week starts Monday 2026-11-30. A Monday's first
    /// microsecond is its own start, the Sunday before belongs to the week of Nov 23, and
    /// a week before the epoch (Thursday 1970-01-01) starts Monday 1969-12-29.
    #[test]
    fn weeks_start_on_monday_utc() {
        for (at_time, start) in [
            ("2026-12-04T15:30:00Z", "2026-11-30T00:00:00Z"),
            ("2026-11-30T00:00:00Z", "2026-11-30T00:00:00Z"),
            ("2026-11-29T23:59:59.999999Z", "2026-11-23T00:00:00Z"),
            ("1970-01-01T00:00:00Z", "1969-12-29T00:00:00Z"),
        ] {
            assert_eq!(Period::Week.start(at(at_time)), at(start), "{at_time}");
        }
        assert_eq!(
            Period::Week.next(at("2026-12-28T00:00:00Z")),
            at("2027-01-04T00:00:00Z")
        );
    }

    /// Compacted: January (clean) and February (dirty). Points on Jan 10 and Jan 20 dirty
    /// January once; Feb 5 is dirty already; Mar 3 lies past the newest compacted month.
    #[test]
    fn only_clean_compacted_periods_are_dirtied() {
        let mut log = CompactionLog::empty(Period::Month);
        log.periods.insert(at("2026-01-01T00:00:00Z"), false);
        log.periods.insert(at("2026-02-01T00:00:00Z"), true);
        let times = [
            at("2026-01-10T00:00:00Z"),
            at("2026-01-20T00:00:00Z"),
            at("2026-02-05T00:00:00Z"),
            at("2026-03-03T00:00:00Z"),
        ];
        let dirtied = log.dirtied_by(times.into_iter());
        assert_eq!(
            dirtied.into_iter().collect::<Vec<_>>(),
            vec![at("2026-01-01T00:00:00Z")]
        );
        assert!(
            CompactionLog::empty(Period::Month)
                .dirtied_by(times.into_iter())
                .is_empty()
        );
    }
}
