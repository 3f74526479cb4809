//! Calendar buckets in an org's time zone. Pure.
//!
//! DuckDB's bundled build has no ICU, so local-time bucketing is done here: a range is split into
//! segments of constant UTC offset (they change only at DST transitions), the store shifts each
//! point by its segment's offset and truncates the resulting local wall-clock time, and the
//! bucket starts are turned back into UTC instants with the tz database.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, Offset, TimeZone, Timelike};
use chrono_tz::Tz;
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    Hour,
    Day,
    Week,
    Month,
}

impl Bucket {
    pub fn parse(s: &str) -> Option<Bucket> {
        match s {
            "hour" => Some(Bucket::Hour),
            "day" => Some(Bucket::Day),
            "week" => Some(Bucket::Week),
            "month" => Some(Bucket::Month),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Bucket::Hour => "hour",
            Bucket::Day => "day",
            Bucket::Week => "week",
            Bucket::Month => "month",
        }
    }
}

/// A span `[start, next start)` during which the zone's UTC offset is constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetSegment {
    pub start_micros: i64,
    pub offset_secs: i32,
}

const HOUR_MICROS: i64 = 3_600_000_000;

fn utc_naive(micros: i64) -> NaiveDateTime {
    DateTime::from_timestamp_micros(micros)
        .unwrap_or_default()
        .naive_utc()
}

pub fn offset_at(tz: Tz, micros: i64) -> i32 {
    tz.offset_from_utc_datetime(&utc_naive(micros))
        .fix()
        .local_minus_utc()
}

/// Splits `[from, to)` into segments of constant offset. Transitions are found by stepping an
/// hour at a time (zones never change twice within an hour) and bisecting to the second.
pub fn offset_segments(tz: Tz, from_micros: i64, to_micros: i64) -> Vec<OffsetSegment> {
    let mut segments = vec![OffsetSegment {
        start_micros: from_micros,
        offset_secs: offset_at(tz, from_micros),
    }];
    let mut t = from_micros;
    while t < to_micros {
        let next = (t + HOUR_MICROS).min(to_micros);
        let current = segments.last().map(|s| s.offset_secs).unwrap_or(0);
        let next_offset = offset_at(tz, next);
        if next_offset != current {
            // Bisect (t, next] to the first microsecond-aligned second with the new offset.
            let (mut lo, mut hi) = (t, next);
            while hi - lo > 1_000_000 {
                let mid = lo + (hi - lo) / 2;
                if offset_at(tz, mid) == current {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            let start = hi - hi.rem_euclid(1_000_000);
            let start = if offset_at(tz, start) == current {
                hi
            } else {
                start
            };
            segments.push(OffsetSegment {
                start_micros: start,
                offset_secs: next_offset,
            });
        }
        t = next;
    }
    segments
}

/// Wall-clock time in `tz` at a UTC instant.
pub fn local_naive(tz: Tz, micros: i64) -> NaiveDateTime {
    tz.from_utc_datetime(&utc_naive(micros)).naive_local()
}

/// The start of the bucket holding a local wall-clock time.
pub fn truncate(t: NaiveDateTime, bucket: Bucket) -> NaiveDateTime {
    let day = t.date();
    match bucket {
        Bucket::Hour => day.and_hms_opt(t.hour(), 0, 0).unwrap_or(t),
        Bucket::Day => day.and_hms_opt(0, 0, 0).unwrap_or(t),
        Bucket::Week => day
            .checked_sub_signed(Duration::days(i64::from(
                day.weekday().num_days_from_monday(),
            )))
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .unwrap_or(t),
        Bucket::Month => NaiveDate::from_ymd_opt(day.year(), day.month(), 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .unwrap_or(t),
    }
}

/// The start of the next bucket after a bucket start.
pub fn advance(t: NaiveDateTime, bucket: Bucket) -> NaiveDateTime {
    match bucket {
        Bucket::Hour => t
            .checked_add_signed(Duration::hours(1))
            .unwrap_or(NaiveDateTime::MAX),
        Bucket::Day => t
            .checked_add_signed(Duration::days(1))
            .unwrap_or(NaiveDateTime::MAX),
        Bucket::Week => t
            .checked_add_signed(Duration::days(7))
            .unwrap_or(NaiveDateTime::MAX),
        Bucket::Month => {
            let (y, m) = if t.month() == 12 {
                (t.year() + 1, 1)
            } else {
                (t.year(), t.month() + 1)
            };
            NaiveDate::from_ymd_opt(y, m, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .or_else(|| t.checked_add_signed(Duration::days(31)))
                .unwrap_or(NaiveDateTime::MAX)
        }
    }
}

/// The UTC instant of a local wall-clock time. Ambiguous times (DST fall-back) take the earlier
/// instant; times in a gap (spring-forward) take the first valid instant after the gap.
pub fn local_to_utc_micros(tz: Tz, t: NaiveDateTime) -> i64 {
    let mut probe = t;
    for _ in 0..48 {
        if let Some(dt) = tz.from_local_datetime(&probe).earliest() {
            if probe == t {
                return dt.timestamp_micros();
            }
            // In a gap: the instant the gap ends is the first valid local time.
            let end = dt.timestamp_micros();
            let mut lo = end - HOUR_MICROS * 2;
            let mut hi = end;
            while hi - lo > 1_000_000 {
                let mid = lo + (hi - lo) / 2;
                if local_naive(tz, mid) >= t {
                    hi = mid;
                } else {
                    lo = mid;
                }
            }
            return hi - hi.rem_euclid(1_000_000);
        }
        probe += Duration::minutes(15);
    }
    t.and_utc().timestamp_micros()
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BucketStart {
    /// Local wall-clock start, the bucket's key.
    pub local: NaiveDateTime,
    /// The same start as a UTC instant in microseconds.
    pub utc_micros: i64,
}

/// Every bucket overlapping `[from, to)`, in order.
pub fn bucket_starts(tz: Tz, bucket: Bucket, from_micros: i64, to_micros: i64) -> Vec<BucketStart> {
    let mut out = Vec::new();
    let mut local = truncate(local_naive(tz, from_micros), bucket);
    loop {
        let utc = local_to_utc_micros(tz, local);
        if utc >= to_micros {
            break;
        }
        // A local hour skipped by a DST gap resolves to the same instant as the next one: it
        // has no bucket of its own.
        if out
            .last()
            .is_none_or(|prev: &BucketStart| prev.utc_micros < utc)
        {
            out.push(BucketStart {
                local,
                utc_micros: utc,
            });
        }
        let next = advance(local, bucket);
        // At chrono's last instant nothing comes after: stop rather than loop.
        if next <= local {
            break;
        }
        local = next;
    }
    out
}

/// How many buckets `[from, to)` spans, counted without building them.
pub fn estimate_bucket_count(bucket: Bucket, from_micros: i64, to_micros: i64) -> i64 {
    let span = to_micros.saturating_sub(from_micros).max(0);
    let size = match bucket {
        Bucket::Hour => HOUR_MICROS,
        Bucket::Day => 24 * HOUR_MICROS,
        Bucket::Week => 7 * 24 * HOUR_MICROS,
        Bucket::Month => 28 * 24 * HOUR_MICROS,
    };
    span / size + 2
}

/// The first instant Vitals accepts anywhere a request gives one (reads, CSV, imports):
/// 1970-01-01T00:00:00Z. Bounding every instant keeps bucket arithmetic far from chrono's limits
/// (±262,000 years), where it would overflow or panic.
pub const EARLIEST_MICROS: i64 = 0;
/// The end of the accepted instants: 2200-01-01T00:00:00Z (exclusive).
pub const LATEST_MICROS: i64 = 7_258_118_400 * 1_000_000;
/// What a time parameter must be, for error messages.
pub const TIME_PARAM_RULE: &str =
    "must be RFC 3339 or YYYY-MM-DD, from 1970-01-01 to before 2200-01-01";

/// Whether an instant lies in the accepted range.
pub fn in_accepted_range(micros: i64) -> bool {
    (EARLIEST_MICROS..LATEST_MICROS).contains(&micros)
}

/// Parses a time parameter: RFC 3339 (`2026-03-01T00:00:00Z`) or a date (`2026-03-01`, local
/// midnight in `tz`), within the accepted range (else `None`).
pub fn parse_time(s: &str, tz: Tz) -> Option<i64> {
    let micros = if let Ok(dt) = DateTime::parse_from_rfc3339(s) {
        dt.timestamp_micros()
    } else {
        let date = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
        // Outside the range, local-time arithmetic could reach chrono's limits: check first.
        if !(1969..=2200).contains(&date.year()) {
            return None;
        }
        local_to_utc_micros(tz, date.and_hms_opt(0, 0, 0)?)
    };
    in_accepted_range(micros).then_some(micros)
}

/// Local midnight at the start of the day holding `micros`.
pub fn start_of_local_day(tz: Tz, micros: i64) -> i64 {
    local_to_utc_micros(tz, truncate(local_naive(tz, micros), Bucket::Day))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros()
    }

    #[test]
    fn segments_split_at_dst_transitions() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        // 2026-03-29 01:00 UTC: CET (+1) -> CEST (+2). 2026-10-25 01:00 UTC: back to +1.
        let segs = offset_segments(tz, us("2026-03-01T00:00:00Z"), us("2026-11-01T00:00:00Z"));
        assert_eq!(
            segs,
            vec![
                OffsetSegment {
                    start_micros: us("2026-03-01T00:00:00Z"),
                    offset_secs: 3600
                },
                OffsetSegment {
                    start_micros: us("2026-03-29T01:00:00Z"),
                    offset_secs: 7200
                },
                OffsetSegment {
                    start_micros: us("2026-10-25T01:00:00Z"),
                    offset_secs: 3600
                },
            ]
        );
        let utc = offset_segments(Tz::UTC, 0, us("2026-01-01T00:00:00Z"));
        assert_eq!(utc.len(), 1);
    }

    #[test]
    fn day_buckets_follow_local_midnight_across_dst() {
        let tz: Tz = "America/New_York".parse().unwrap();
        // 2026-03-08 is the 23-hour day in New York.
        let b = bucket_starts(
            tz,
            Bucket::Day,
            us("2026-03-07T12:00:00Z"),
            us("2026-03-10T00:00:00Z"),
        );
        let starts: Vec<i64> = b.iter().map(|b| b.utc_micros).collect();
        assert_eq!(
            starts,
            vec![
                us("2026-03-07T05:00:00Z"),
                us("2026-03-08T05:00:00Z"),
                us("2026-03-09T04:00:00Z"),
            ]
        );
    }

    #[test]
    fn weeks_start_monday_and_months_on_the_first() {
        let tz: Tz = "Asia/Kolkata".parse().unwrap();
        let w = bucket_starts(
            tz,
            Bucket::Week,
            us("2026-01-07T00:00:00Z"),
            us("2026-01-13T00:00:00Z"),
        );
        assert_eq!(w[0].local.to_string(), "2026-01-05 00:00:00");
        assert_eq!(w[0].utc_micros, us("2026-01-04T18:30:00Z"));
        assert_eq!(w.len(), 2);
        let m = bucket_starts(
            Tz::UTC,
            Bucket::Month,
            us("2025-11-15T00:00:00Z"),
            us("2026-02-01T00:00:00Z"),
        );
        let locals: Vec<String> = m.iter().map(|b| b.local.date().to_string()).collect();
        assert_eq!(locals, ["2025-11-01", "2025-12-01", "2026-01-01"]);
    }

    #[test]
    fn gaps_and_overlaps_resolve_predictably() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let gap = NaiveDate::from_ymd_opt(2026, 3, 29)
            .unwrap()
            .and_hms_opt(2, 30, 0)
            .unwrap();
        assert_eq!(local_to_utc_micros(tz, gap), us("2026-03-29T01:00:00Z"));
        let overlap = NaiveDate::from_ymd_opt(2026, 10, 25)
            .unwrap()
            .and_hms_opt(2, 30, 0)
            .unwrap();
        assert_eq!(local_to_utc_micros(tz, overlap), us("2026-10-25T00:30:00Z"));
    }

    #[test]
    fn time_params_parse_as_instants_or_local_dates() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(
            parse_time("2026-01-01", tz),
            Some(us("2025-12-31T23:00:00Z"))
        );
        assert_eq!(
            parse_time("2026-01-01T00:00:00Z", tz),
            Some(us("2026-01-01T00:00:00Z"))
        );
        assert_eq!(parse_time("tomorrow", tz), None);
    }

    /// Property: buckets tile the range with no gaps and strictly increasing starts.
    #[test]
    fn buckets_are_contiguous_for_many_zones() {
        for zone in [
            "UTC",
            "Europe/London",
            "Australia/Lord_Howe",
            "America/Santiago",
            "Asia/Kathmandu",
        ] {
            let tz: Tz = zone.parse().unwrap();
            for bucket in [Bucket::Hour, Bucket::Day, Bucket::Week, Bucket::Month] {
                let b = bucket_starts(
                    tz,
                    bucket,
                    us("2025-01-01T00:00:00Z"),
                    us("2026-01-01T00:00:00Z"),
                );
                assert!(
                    b.windows(2).all(|w| w[0].utc_micros < w[1].utc_micros),
                    "{zone} {bucket:?}"
                );
                assert!(b[0].utc_micros <= us("2025-01-01T00:00:00Z"));
                assert!(
                    b.len() as i64
                        <= estimate_bucket_count(
                            bucket,
                            us("2025-01-01T00:00:00Z"),
                            us("2026-01-01T00:00:00Z")
                        )
                );
            }
        }
    }

    /// The accepted range is 1970-01-01 to before 2200-01-01, for instants and local dates;
    /// chrono's extremes, which it can parse, are refused rather than overflowing later.
    #[test]
    fn time_params_outside_1970_to_2200_are_refused() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        assert_eq!(parse_time("1970-01-01T00:00:00Z", Tz::UTC), Some(0));
        assert_eq!(
            parse_time("2199-12-31T23:59:59Z", Tz::UTC),
            Some(LATEST_MICROS - 1_000_000)
        );
        assert_eq!(parse_time("2200-01-01T00:00:00Z", Tz::UTC), None);
        assert_eq!(parse_time("1969-12-31T23:59:59Z", Tz::UTC), None);
        // Berlin's midnight of 1970-01-01 is 23:00 UTC the day before: outside.
        assert_eq!(parse_time("1970-01-01", tz), None);
        assert_eq!(parse_time("1970-01-02", tz), Some(23 * 3_600_000_000));
        for extreme in ["-262143-01-02", "+262142-11-15", "262142-11-15"] {
            assert_eq!(parse_time(extreme, tz), None, "{extreme}");
        }
    }

    /// Bucket arithmetic at chrono's own limits neither panics nor loops: truncating the first
    /// representable week keeps the day, advancing past the last month stops at MAX, and the
    /// estimate of a span from MIN to MAX saturates instead of wrapping below the cap.
    #[test]
    fn bucket_arithmetic_at_chronos_limits_neither_panics_nor_loops() {
        let first = NaiveDateTime::MIN;
        assert!(truncate(first, Bucket::Week) <= first + Duration::days(7));
        let last = NaiveDateTime::MAX;
        for b in [Bucket::Hour, Bucket::Day, Bucket::Week, Bucket::Month] {
            assert_eq!(advance(last, b), NaiveDateTime::MAX);
        }
        assert!(estimate_bucket_count(Bucket::Month, i64::MIN, i64::MAX) > 20_000);
        assert_eq!(estimate_bucket_count(Bucket::Day, 10, 0), 2);
    }
}
