//! Alert rule evaluation and the alert lifecycle (pending → firing → acknowledged → resolved),
//! silences and recurring mute windows. Pure: the caller passes every observation and the clock
//! (Unix seconds), so the state machine is tested with a controllable clock.
//!
//! What users of other tools complain about is designed out here: a pending period ("for")
//! applies to no-data too; recovery needs the value back past a separate level *and* for a
//! duration, so a value oscillating around the threshold fires once; acknowledgements can
//! expire; escalation happens once; mute windows are evaluated in the org's time zone.

use chrono::{Datelike, NaiveTime, TimeZone, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

/// A threshold condition with its recovery level (hysteresis).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Condition {
    /// Breach above `threshold`; recovered at or below `recovery`.
    Above { threshold: f64, recovery: f64 },
    /// Breach below `threshold`; recovered at or above `recovery`.
    Below { threshold: f64, recovery: f64 },
    /// Breach outside `[low, high]`; recovered inside `[low + margin, high − margin]`.
    Outside { low: f64, high: f64, margin: f64 },
    /// Breach when equal (within 1e-9).
    Equals { value: f64 },
}

/// What one evaluation saw.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Observation {
    Breach(f64),
    /// Back past the recovery level.
    Recovered(f64),
    /// Between threshold and recovery level: keeps the current state.
    Between(f64),
    /// No points in the evaluation window.
    NoData,
}

impl Condition {
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        match *self {
            Condition::Above {
                threshold,
                recovery,
            } if recovery > threshold => Err((
                "recovery",
                "must be at or below the threshold for an `above` rule".into(),
            )),
            Condition::Below {
                threshold,
                recovery,
            } if recovery < threshold => Err((
                "recovery",
                "must be at or above the threshold for a `below` rule".into(),
            )),
            Condition::Outside { low, high, margin }
                if low > high || margin < 0.0 || low + margin > high - margin =>
            {
                Err((
                    "margin",
                    "needs low ≤ high and a margin that leaves a recovery band".into(),
                ))
            }
            _ => Ok(()),
        }
    }

    pub fn observe(&self, value: Option<f64>) -> Observation {
        let Some(v) = value else {
            return Observation::NoData;
        };
        match *self {
            Condition::Above {
                threshold,
                recovery,
            } => {
                if v > threshold {
                    Observation::Breach(v)
                } else if v <= recovery {
                    Observation::Recovered(v)
                } else {
                    Observation::Between(v)
                }
            }
            Condition::Below {
                threshold,
                recovery,
            } => {
                if v < threshold {
                    Observation::Breach(v)
                } else if v >= recovery {
                    Observation::Recovered(v)
                } else {
                    Observation::Between(v)
                }
            }
            Condition::Outside { low, high, margin } => {
                if v < low || v > high {
                    Observation::Breach(v)
                } else if v >= low + margin && v <= high - margin {
                    Observation::Recovered(v)
                } else {
                    Observation::Between(v)
                }
            }
            Condition::Equals { value } => {
                if (v - value).abs() < 1e-9 {
                    Observation::Breach(v)
                } else {
                    Observation::Recovered(v)
                }
            }
        }
    }
}

/// How a rule treats a window without data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoDataPolicy {
    /// No data changes nothing.
    Keep,
    /// No data is a breach (a "no data / stale" rule), subject to the pending period.
    Alert,
    /// No data counts as recovered.
    Ok,
}

/// The timing of a rule, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// The breach must hold this long before the alert fires ("for").
    pub pending_for: i64,
    /// The value must stay recovered this long before the alert resolves.
    pub recovery_for: i64,
    /// A firing alert not acknowledged within this time re-notifies on the escalation channels.
    pub escalate_after: Option<i64>,
    pub no_data: NoDataPolicy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum State {
    Ok,
    Pending {
        since: i64,
    },
    /// `notified_at` is when the last notification went out (firing or an expired
    /// acknowledgement); escalation counts from it.
    Firing {
        since: i64,
        notified_at: i64,
        escalated: bool,
    },
    Acknowledged {
        since: i64,
        by: String,
        until: Option<i64>,
    },
}

/// A state change to record (history) and possibly notify about.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum Event {
    Pending {
        at: i64,
    },
    Fired {
        at: i64,
        value: Option<f64>,
    },
    Escalated {
        at: i64,
    },
    Acknowledged {
        at: i64,
        by: String,
        until: Option<i64>,
    },
    /// An acknowledgement ran out while the condition still holds: firing again.
    AckExpired {
        at: i64,
    },
    Resolved {
        at: i64,
        by: Option<String>,
    },
    /// A pending breach cleared before firing.
    Cleared {
        at: i64,
    },
}

/// One alert series (one rule, one dimension set): its state and the clocks it keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tracker {
    pub state: State,
    /// Since when the value has been recovered (for the recovery duration).
    pub recovered_since: Option<i64>,
}

impl Default for Tracker {
    fn default() -> Self {
        Tracker {
            state: State::Ok,
            recovered_since: None,
        }
    }
}

impl Tracker {
    /// Feeds one evaluation at `now`; returns the events it caused (usually none).
    pub fn step(&mut self, observation: Observation, now: i64, timing: &Timing) -> Vec<Event> {
        let mut events = Vec::new();
        // An acknowledgement that ran out turns back into firing before anything else.
        if let State::Acknowledged {
            since,
            until: Some(until),
            ..
        } = self.state
            && now >= until
        {
            self.state = State::Firing {
                since,
                notified_at: now,
                escalated: false,
            };
            events.push(Event::AckExpired { at: now });
        }
        let (breach, recovered, value) = match observation {
            Observation::Breach(v) => (true, false, Some(v)),
            Observation::Recovered(v) => (false, true, Some(v)),
            Observation::Between(v) => (false, false, Some(v)),
            Observation::NoData => match timing.no_data {
                NoDataPolicy::Alert => (true, false, None),
                NoDataPolicy::Ok => (false, true, None),
                NoDataPolicy::Keep => (false, false, None),
            },
        };
        if recovered {
            self.recovered_since.get_or_insert(now);
        } else {
            self.recovered_since = None;
        }
        match self.state.clone() {
            State::Ok => {
                if breach {
                    self.state = State::Pending { since: now };
                    events.push(Event::Pending { at: now });
                    if timing.pending_for <= 0 {
                        self.state = State::Firing {
                            since: now,
                            notified_at: now,
                            escalated: false,
                        };
                        events.push(Event::Fired { at: now, value });
                    }
                }
            }
            State::Pending { since } => {
                if breach && now - since >= timing.pending_for {
                    self.state = State::Firing {
                        since: now,
                        notified_at: now,
                        escalated: false,
                    };
                    events.push(Event::Fired { at: now, value });
                } else if recovered {
                    // Not yet fired: any recovery clears the pending breach.
                    self.state = State::Ok;
                    events.push(Event::Cleared { at: now });
                }
            }
            State::Firing {
                since,
                notified_at,
                escalated,
            } => {
                if self.recovery_done(now, timing) {
                    self.resolve(now, None, &mut events);
                } else if !escalated
                    && let Some(after) = timing.escalate_after
                    && now - notified_at >= after
                {
                    self.state = State::Firing {
                        since,
                        notified_at,
                        escalated: true,
                    };
                    events.push(Event::Escalated { at: now });
                }
            }
            State::Acknowledged { .. } => {
                if self.recovery_done(now, timing) {
                    self.resolve(now, None, &mut events);
                }
            }
        }
        events
    }

    fn recovery_done(&self, now: i64, timing: &Timing) -> bool {
        self.recovered_since
            .is_some_and(|since| now - since >= timing.recovery_for)
    }

    fn resolve(&mut self, now: i64, by: Option<String>, events: &mut Vec<Event>) {
        self.state = State::Ok;
        self.recovered_since = None;
        events.push(Event::Resolved { at: now, by });
    }

    /// A user acknowledges a firing alert, optionally only until `until`.
    pub fn acknowledge(&mut self, by: &str, until: Option<i64>, now: i64) -> Result<Event, String> {
        match self.state {
            State::Firing { since, .. } | State::Acknowledged { since, .. } => {
                if until.is_some_and(|u| u <= now) {
                    return Err("the acknowledgement must end in the future".into());
                }
                self.state = State::Acknowledged {
                    since,
                    by: by.to_string(),
                    until,
                };
                Ok(Event::Acknowledged {
                    at: now,
                    by: by.to_string(),
                    until,
                })
            }
            _ => Err("only a firing alert can be acknowledged".into()),
        }
    }

    /// A user resolves the alert by hand.
    pub fn resolve_by_hand(&mut self, by: &str, now: i64) -> Result<Event, String> {
        if self.state == State::Ok {
            return Err("the alert is not open".into());
        }
        let mut events = Vec::new();
        self.resolve(now, Some(by.to_string()), &mut events);
        events.pop().ok_or_else(|| "nothing to resolve".to_string())
    }
}

/// A recurring mute window in the org's time zone: on `days`, from `start` to `end` local time.
/// When `end` is not after `start` the window runs across midnight into the next day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MuteWindow {
    pub days: Vec<Weekday>,
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl MuteWindow {
    /// Whether the window covers the instant `at` (Unix seconds) in `tz`.
    pub fn covers(&self, tz: Tz, at: i64) -> bool {
        let Some(utc) = chrono::DateTime::from_timestamp(at, 0) else {
            return false;
        };
        let local = tz.from_utc_datetime(&utc.naive_utc());
        let (day, time) = (local.weekday(), local.time());
        if self.start < self.end {
            self.days.contains(&day) && time >= self.start && time < self.end
        } else {
            // Across midnight: the evening part belongs to `day`, the morning part to the day before.
            (self.days.contains(&day) && time >= self.start)
                || (self.days.contains(&day.pred()) && time < self.end)
        }
    }
}

/// An ad-hoc silence: mutes alerts whose labels match every matcher, until `ends_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Silence {
    pub matchers: Vec<(String, String)>,
    pub ends_at: i64,
}

impl Silence {
    pub fn mutes(&self, labels: &[(String, String)], now: i64) -> bool {
        now < self.ends_at && self.matchers.iter().all(|m| labels.contains(m))
    }
}

/// Parses label matchers written as `key=value, key=value` (an empty text matches everything).
pub fn parse_matchers(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    if text.len() > MAX_MATCHER_TEXT {
        return Err(format!("is longer than {MAX_MATCHER_TEXT} characters"));
    }
    for part in text
        .split([',', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let Some((k, v)) = part.split_once('=') else {
            return Err(format!("{part:?} is not key=value"));
        };
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() || v.is_empty() {
            return Err(format!("{part:?} needs both a key and a value"));
        }
        out.push((k.to_string(), v.to_string()));
        if out.len() > MAX_MATCHERS {
            return Err(format!("names more than {MAX_MATCHERS} labels"));
        }
    }
    Ok(out)
}

/// Labels one silence or mute window may match on, and the length of their text: every alert
/// is compared with every matcher of every active silence, so both are bounded.
pub const MAX_MATCHERS: usize = 20;
pub const MAX_MATCHER_TEXT: usize = 2_000;

/// Parses days as `mon,tue,…`, `weekdays`, `weekend` or `every day`.
pub fn parse_days(text: &str) -> Result<Vec<Weekday>, String> {
    use Weekday::*;
    let t = text.trim().to_ascii_lowercase();
    match t.as_str() {
        "weekdays" => return Ok(vec![Mon, Tue, Wed, Thu, Fri]),
        "weekend" => return Ok(vec![Sat, Sun]),
        "every day" | "daily" | "all" => return Ok(vec![Mon, Tue, Wed, Thu, Fri, Sat, Sun]),
        _ => {}
    }
    let mut days = Vec::new();
    for part in t.split([',', ' ']).filter(|p| !p.is_empty()) {
        let day: Weekday = part
            .parse()
            .map_err(|_| format!("{part:?} is not a day (mon, tue, … or weekdays, weekend)"))?;
        if !days.contains(&day) {
            days.push(day);
        }
    }
    if days.is_empty() {
        return Err("name at least one day".into());
    }
    Ok(days)
}

/// Parses a local time of day `HH:MM`.
pub fn parse_time_of_day(text: &str) -> Result<NaiveTime, String> {
    NaiveTime::parse_from_str(text.trim(), "%H:%M")
        .map_err(|_| format!("{:?} is not a time of day such as 22:30", text.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_780_000_000;

    fn timing() -> Timing {
        Timing {
            pending_for: 60,
            recovery_for: 120,
            escalate_after: Some(900),
            no_data: NoDataPolicy::Keep,
        }
    }

    fn kinds(events: &[Event]) -> Vec<&'static str> {
        events
            .iter()
            .map(|e| match e {
                Event::Pending { .. } => "pending",
                Event::Fired { .. } => "fired",
                Event::Escalated { .. } => "escalated",
                Event::Acknowledged { .. } => "acknowledged",
                Event::AckExpired { .. } => "ack_expired",
                Event::Resolved { .. } => "resolved",
                Event::Cleared { .. } => "cleared",
            })
            .collect()
    }

    /// Runs observations at 30-second steps from T0 and collects every event.
    fn run(
        tracker: &mut Tracker,
        cond: &Condition,
        values: &[Option<f64>],
        timing: &Timing,
    ) -> Vec<&'static str> {
        let mut all = Vec::new();
        for (i, v) in values.iter().enumerate() {
            all.extend(tracker.step(cond.observe(*v), T0 + 30 * i as i64, timing));
        }
        kinds(&all).into_iter().collect()
    }

    #[test]
    fn the_pending_period_must_hold_before_firing() {
        let cond = Condition::Above {
            threshold: 100.0,
            recovery: 90.0,
        };
        let mut t = Tracker::default();
        // Breach for 30 s then back below recovery: pending, cleared, never fired.
        assert_eq!(
            run(
                &mut t,
                &cond,
                &[Some(101.0), Some(102.0), Some(80.0)],
                &timing()
            ),
            ["pending", "cleared"]
        );
        let mut t = Tracker::default();
        // Breach held for 60 s: fires at the third observation.
        assert_eq!(
            run(
                &mut t,
                &cond,
                &[Some(101.0), Some(102.0), Some(103.0)],
                &timing()
            ),
            ["pending", "fired"]
        );
    }

    #[test]
    fn a_value_oscillating_around_the_threshold_fires_once() {
        let cond = Condition::Above {
            threshold: 100.0,
            recovery: 90.0,
        };
        let mut t = Tracker::default();
        let mut values = vec![Some(101.0); 3];
        for i in 0..20 {
            values.push(Some(if i % 2 == 0 { 99.0 } else { 101.0 }));
        }
        // Recovered (≤ 90) for 120 s = five observations 30 s apart (0, 30, …, 120).
        values.extend(vec![Some(85.0); 5]);
        let events = run(
            &mut t,
            &cond,
            &values,
            &Timing {
                escalate_after: None,
                ..timing()
            },
        );
        assert_eq!(events, ["pending", "fired", "resolved"]);
        assert_eq!(t.state, State::Ok);
    }

    #[test]
    fn recovery_must_last_its_duration() {
        let cond = Condition::Below {
            threshold: 10.0,
            recovery: 12.0,
        };
        let mut t = Tracker::default();
        let values = [
            Some(5.0),
            Some(5.0),
            Some(5.0),
            Some(13.0),
            Some(13.0),
            Some(5.0),
            Some(13.0),
        ];
        let events = run(
            &mut t,
            &cond,
            &values,
            &Timing {
                escalate_after: None,
                ..timing()
            },
        );
        assert_eq!(
            events,
            ["pending", "fired"],
            "60 s of recovery is not enough"
        );
    }

    #[test]
    fn no_data_honours_the_pending_period() {
        let cond = Condition::Above {
            threshold: 100.0,
            recovery: 90.0,
        };
        let timing = Timing {
            pending_for: 120,
            no_data: NoDataPolicy::Alert,
            escalate_after: None,
            ..timing()
        };
        let mut t = Tracker::default();
        assert_eq!(
            run(&mut t, &cond, &[None, None, None], &timing),
            ["pending"],
            "60 s of no data < 120 s"
        );
        let mut t = Tracker::default();
        assert_eq!(
            run(&mut t, &cond, &[None, None, None, None, None], &timing),
            ["pending", "fired"]
        );
        // With `Keep`, no data neither fires nor resolves.
        let keep = Timing {
            no_data: NoDataPolicy::Keep,
            ..timing
        };
        let mut t = Tracker::default();
        assert!(run(&mut t, &cond, &[None; 10], &keep).is_empty());
    }

    #[test]
    fn escalation_happens_once_when_not_acknowledged() {
        let cond = Condition::Above {
            threshold: 100.0,
            recovery: 90.0,
        };
        let mut t = Tracker::default();
        let events = run(&mut t, &cond, &[Some(200.0); 80], &timing());
        // Fired at 60 s; escalated 900 s later; never again.
        assert_eq!(events, ["pending", "fired", "escalated"]);
        // An acknowledged alert does not escalate.
        let mut t = Tracker::default();
        run(&mut t, &cond, &[Some(200.0); 3], &timing());
        t.acknowledge("ann@acme.test", None, T0 + 100).unwrap();
        let later: Vec<Event> = (4..80)
            .flat_map(|i| t.step(Observation::Breach(200.0), T0 + 30 * i, &timing()))
            .collect();
        assert!(later.is_empty(), "{later:?}");
    }

    #[test]
    fn an_acknowledgement_can_expire_and_recovery_resolves_it() {
        let cond = Condition::Above {
            threshold: 100.0,
            recovery: 90.0,
        };
        let mut t = Tracker::default();
        run(&mut t, &cond, &[Some(200.0); 3], &timing());
        let ack = t
            .acknowledge("ann@acme.test", Some(T0 + 3_600), T0 + 90)
            .unwrap();
        assert_eq!(
            ack,
            Event::Acknowledged {
                at: T0 + 90,
                by: "ann@acme.test".into(),
                until: Some(T0 + 3_600)
            }
        );
        assert!(
            t.step(Observation::Breach(200.0), T0 + 3_000, &timing())
                .is_empty()
        );
        assert_eq!(
            kinds(&t.step(Observation::Breach(200.0), T0 + 3_600, &timing())),
            ["ack_expired"]
        );
        assert!(matches!(t.state, State::Firing { .. }));
        // Acknowledge again without expiry; recovery for 120 s resolves it.
        t.acknowledge("bob@acme.test", None, T0 + 3_700).unwrap();
        assert!(
            t.step(Observation::Recovered(50.0), T0 + 3_800, &timing())
                .is_empty()
        );
        assert_eq!(
            kinds(&t.step(Observation::Recovered(50.0), T0 + 3_920, &timing())),
            ["resolved"]
        );
        assert!(
            t.acknowledge("x", None, T0 + 4_000).is_err(),
            "nothing to acknowledge"
        );
        assert!(t.acknowledge("x", Some(T0), T0 + 4_000).is_err());
    }

    #[test]
    fn resolving_by_hand_records_who() {
        let cond = Condition::Outside {
            low: 10.0,
            high: 20.0,
            margin: 1.0,
        };
        let mut t = Tracker::default();
        run(&mut t, &cond, &[Some(25.0); 3], &timing());
        assert_eq!(
            t.resolve_by_hand("ann", T0 + 500),
            Ok(Event::Resolved {
                at: T0 + 500,
                by: Some("ann".into())
            })
        );
        assert!(t.resolve_by_hand("ann", T0 + 501).is_err());
        assert_eq!(cond.observe(Some(10.5)), Observation::Between(10.5));
        assert_eq!(cond.observe(Some(15.0)), Observation::Recovered(15.0));
    }

    #[test]
    fn conditions_are_validated() {
        assert!(
            Condition::Above {
                threshold: 10.0,
                recovery: 11.0
            }
            .validate()
            .is_err()
        );
        assert!(
            Condition::Below {
                threshold: 10.0,
                recovery: 9.0
            }
            .validate()
            .is_err()
        );
        assert!(
            Condition::Outside {
                low: 10.0,
                high: 12.0,
                margin: 1.5
            }
            .validate()
            .is_err()
        );
        assert!(
            Condition::Above {
                threshold: 10.0,
                recovery: 8.0
            }
            .validate()
            .is_ok()
        );
    }

    fn at(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s).unwrap().timestamp()
    }

    #[test]
    fn mute_windows_cross_midnight_in_local_time() {
        // Every night Mon–Fri from 22:00 to 06:00 in New York.
        let tz: Tz = "America/New_York".parse().unwrap();
        let w = MuteWindow {
            days: vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
            ],
            start: NaiveTime::from_hms_opt(22, 0, 0).unwrap(),
            end: NaiveTime::from_hms_opt(6, 0, 0).unwrap(),
        };
        // Friday 2026-01-09 23:30 EST = Saturday 04:30 UTC: muted (Friday night).
        assert!(w.covers(tz, at("2026-01-10T04:30:00Z")));
        // Saturday 05:00 local (10:00 UTC): still Friday night's window.
        assert!(w.covers(tz, at("2026-01-10T10:00:00Z")));
        // Saturday 23:00 local: Saturday is not a window day.
        assert!(!w.covers(tz, at("2026-01-11T04:00:00Z")));
        // Monday 05:59 local: Sunday night is not in the window.
        assert!(!w.covers(tz, at("2026-01-12T10:59:00Z")));
        // Monday 21:59 vs 22:00 local.
        assert!(!w.covers(tz, at("2026-01-13T02:59:00Z")));
        assert!(w.covers(tz, at("2026-01-13T03:00:00Z")));
    }

    #[test]
    fn mute_windows_follow_the_clock_across_dst() {
        // Weekends 01:00–05:00 in Berlin; 2026-03-29 (Sunday) clocks jump 02:00 → 03:00.
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let w = MuteWindow {
            days: vec![Weekday::Sat, Weekday::Sun],
            start: NaiveTime::from_hms_opt(1, 0, 0).unwrap(),
            end: NaiveTime::from_hms_opt(5, 0, 0).unwrap(),
        };
        // 00:30 UTC = 01:30 CET: muted. 02:30 UTC = 04:30 CEST: muted. 03:00 UTC = 05:00 CEST: not.
        assert!(w.covers(tz, at("2026-03-29T00:30:00Z")));
        assert!(w.covers(tz, at("2026-03-29T02:30:00Z")));
        assert!(!w.covers(tz, at("2026-03-29T03:00:00Z")));
        // The week before (CET all night), 04:00 UTC = 05:00 CET: not muted; 03:59 UTC is.
        assert!(!w.covers(tz, at("2026-03-22T04:00:00Z")));
        assert!(w.covers(tz, at("2026-03-22T03:59:00Z")));
        // Autumn: 2026-10-25, 02:00–03:00 happens twice; both are inside the window.
        assert!(w.covers(tz, at("2026-10-25T00:30:00Z")));
        assert!(w.covers(tz, at("2026-10-25T01:30:00Z")));
        assert!(!w.covers(tz, at("2026-10-25T04:00:00Z")), "05:00 CET");
    }

    #[test]
    fn silences_match_all_labels_until_they_end() {
        let s = Silence {
            matchers: vec![("team".into(), "ops".into())],
            ends_at: T0 + 60,
        };
        let labels = vec![
            ("team".to_string(), "ops".to_string()),
            ("env".to_string(), "prod".to_string()),
        ];
        assert!(s.mutes(&labels, T0));
        assert!(!s.mutes(&labels, T0 + 60));
        assert!(!s.mutes(&[("team".into(), "sales".into())], T0));
    }

    #[test]
    fn matchers_days_and_times_parse() {
        assert_eq!(
            parse_matchers("team=finance, severity = high").unwrap(),
            vec![
                ("team".to_string(), "finance".to_string()),
                ("severity".to_string(), "high".to_string())
            ]
        );
        assert!(parse_matchers("").unwrap().is_empty());
        assert!(parse_matchers("team").is_err());
        assert_eq!(
            parse_days("weekend").unwrap(),
            vec![Weekday::Sat, Weekday::Sun]
        );
        assert_eq!(
            parse_days("mon, fri").unwrap(),
            vec![Weekday::Mon, Weekday::Fri]
        );
        assert!(parse_days("funday").is_err());
        assert_eq!(
            parse_time_of_day("22:30").unwrap(),
            NaiveTime::from_hms_opt(22, 30, 0).unwrap()
        );
        assert!(parse_time_of_day("25:00").is_err());
    }
}
