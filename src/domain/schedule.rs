//! Cron schedules: parsing (the `cron` crate, seconds first) and when a job runs next. Pure:
//! the scheduler service runs jobs by these, config validates them, pages show them.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use cron::Schedule;

/// Parses a cron expression (6 or 7 fields, seconds first); empty means "disabled".
pub fn parse_schedule(expr: &str) -> Result<Option<Schedule>, String> {
    if expr.trim().is_empty() {
        return Ok(None);
    }
    Schedule::from_str(expr.trim()).map(Some).map_err(|e| {
        format!("{expr:?} is not a cron expression (sec min hour day month weekday): {e}")
    })
}

/// When a job should run next: now, if a scheduled time passed since its last run (a run
/// missed while the server was down runs once, not once per missed slot); otherwise at its
/// next scheduled time. A job that never ran waits for its first scheduled time.
pub fn next_run(
    schedule: &Schedule,
    last_run: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    if let Some(last) = last_run
        && let Some(missed) = schedule.after(&last).next()
        && missed <= now
    {
        return Some(now);
    }
    schedule.after(&now).next()
}

/// The shortest pull interval an integration schedule may have: providers rate-limit, and a
/// sync rereads days of data.
pub const MIN_SYNC_INTERVAL_SECS: i64 = 300;

/// The shortest gap between the next `runs` times of `schedule` after `from` (None when it
/// fires fewer than two more times).
pub fn shortest_gap(schedule: &Schedule, from: DateTime<Utc>, runs: usize) -> Option<i64> {
    let times: Vec<DateTime<Utc>> = schedule.after(&from).take(runs).collect();
    times.windows(2).map(|w| (w[1] - w[0]).num_seconds()).min()
}

/// An integration's schedule: a cron expression firing at most every five minutes, or empty
/// (only by hand and webhooks). The gap is checked over the next 500 runs, which covers a day
/// of any schedule allowed.
pub fn parse_sync_schedule(expr: &str) -> Result<Option<Schedule>, String> {
    let Some(schedule) = parse_schedule(expr)? else {
        return Ok(None);
    };
    match shortest_gap(&schedule, Utc::now(), 500) {
        Some(gap) if gap < MIN_SYNC_INTERVAL_SECS => Err(format!(
            "{expr:?} runs every {gap} s at times; integrations sync at most every {} minutes",
            MIN_SYNC_INTERVAL_SECS / 60
        )),
        _ => Ok(Some(schedule)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every 10 s and every minute are refused; every 5 minutes, hourly and a schedule that
    /// fires twice five minutes apart each hour (at :00 and :05) pass; :00 and :01 does not.
    #[test]
    fn sync_schedules_fire_at_most_every_five_minutes() {
        for bad in ["*/10 * * * * *", "0 * * * * *", "0 0,1 * * * *"] {
            assert!(parse_sync_schedule(bad).is_err(), "{bad}");
        }
        for ok in ["0 */5 * * * *", "0 0 * * * *", "0 0,5 * * * *", ""] {
            assert!(parse_sync_schedule(ok).is_ok(), "{ok}");
        }
        let every5 = parse_schedule("0 */5 * * * *").unwrap().unwrap();
        assert_eq!(
            shortest_gap(&every5, at("2026-01-01T10:02:00Z"), 10),
            Some(300)
        );
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn next_run_follows_the_cadence_and_catches_up_once() {
        let every5 = parse_schedule("0 */5 * * * *").unwrap().unwrap();
        // Ran at 10:00, now 10:02: next at 10:05.
        assert_eq!(
            next_run(
                &every5,
                Some(at("2026-01-01T10:00:00Z")),
                at("2026-01-01T10:02:00Z")
            ),
            Some(at("2026-01-01T10:05:00Z"))
        );
        // Ran at 10:00, server down until 12:31: run now, once.
        assert_eq!(
            next_run(
                &every5,
                Some(at("2026-01-01T10:00:00Z")),
                at("2026-01-01T12:31:00Z")
            ),
            Some(at("2026-01-01T12:31:00Z"))
        );
        // Never ran: wait for the first slot.
        assert_eq!(
            next_run(&every5, None, at("2026-01-01T10:02:00Z")),
            Some(at("2026-01-01T10:05:00Z"))
        );
        assert!(parse_schedule("").unwrap().is_none());
        assert!(parse_schedule("every five minutes").is_err());
    }
}
