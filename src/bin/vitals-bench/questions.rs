//! The four questions, their parameters, and the true answers computed from the generator
//! itself (every contender is checked against these before it is timed).

use crate::answers::{Answers, Q1};
use crate::dataset::{REGIONS, Spec};

#[derive(Debug, Clone, Copy)]
pub struct Questions {
    /// The org (index) Q1, Q2 and Q4 ask about, and the metric of Q2 and Q4.
    pub org: usize,
    pub metric: usize,
    pub end: i64,
    pub q1_from: i64,
    pub q2_from: i64,
    pub q3_from: i64,
    pub q4_from: i64,
}

pub const DAY: i64 = 86_400;

impl Questions {
    pub fn for_spec(spec: &Spec) -> Questions {
        let end = spec.end_secs;
        let back = |days: i64| end - days.min(spec.days) * DAY;
        Questions {
            org: spec.orgs / 2,
            metric: spec.metrics / 2,
            end,
            q1_from: back(90),
            q2_from: back(730),
            q3_from: back(30),
            q4_from: back(7),
        }
    }
}

/// Start (UTC seconds) of the Monday-based week holding `ts`.
pub fn week_start(ts: i64) -> i64 {
    let day = ts.div_euclid(DAY);
    // 1970-01-01 was a Thursday: day 0 is weekday 3 counting from Monday.
    (day - (day + 3).rem_euclid(7)) * DAY
}

pub fn day_start(ts: i64) -> i64 {
    ts.div_euclid(DAY) * DAY
}

/// The answers, straight from the generator.
pub fn reference(spec: &Spec, q: &Questions) -> Answers {
    let mut a = Answers::default();
    let step_of = |ts: i64| {
        (ts - spec.start_secs())
            .div_euclid(spec.interval_secs)
            .max(0)
    };
    let first = |from: i64| {
        let s = step_of(from);
        if spec.start_secs() + s * spec.interval_secs < from {
            s + 1
        } else {
            s
        }
    };
    let ts_of = |step: i64| spec.start_secs() + step * spec.interval_secs;
    let last_step = spec.steps() - 1;
    let mut q1 = Q1::default();
    for m in 0..spec.metrics {
        let key = Spec::metric_key(m);
        let sum: f64 = (0..REGIONS.len())
            .map(|r| spec.value(q.org, m, r, last_step))
            .sum();
        q1.latest.insert(key.clone(), (ts_of(last_step), sum));
        for step in first(q.q1_from)..spec.steps() {
            let e = q1
                .daily
                .entry((key.clone(), day_start(ts_of(step))))
                .or_default();
            for r in 0..REGIONS.len() {
                e.0 += spec.value(q.org, m, r, step);
                e.1 += 1;
            }
        }
    }
    a.q1 = q1;
    for step in first(q.q2_from)..spec.steps() {
        for (r, region) in REGIONS.iter().enumerate() {
            let e =
                a.q2.entry((week_start(ts_of(step)), region.to_string()))
                    .or_default();
            e.0 += spec.value(q.org, q.metric, r, step);
            e.1 += 1;
        }
    }
    for org in 0..spec.orgs {
        for m in 0..spec.metrics {
            let (mut sum, mut count) = (0.0, 0i64);
            for step in first(q.q3_from)..spec.steps() {
                for r in 0..REGIONS.len() {
                    sum += spec.value(org, m, r, step);
                    count += 1;
                }
            }
            a.q3.insert(
                (Spec::org_label(org), Spec::metric_key(m)),
                (sum / count as f64, count),
            );
        }
    }
    for step in first(q.q4_from)..spec.steps() {
        let mut rows: Vec<(i64, String, f64)> = REGIONS
            .iter()
            .enumerate()
            .map(|(r, region)| {
                (
                    ts_of(step),
                    region.to_string(),
                    spec.value(q.org, q.metric, r, step),
                )
            })
            .collect();
        rows.sort_by(|x, y| x.1.cmp(&y.1));
        a.q4.extend(rows);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_start_on_monday() {
        // 2026-06-01 is a Monday, 2026-06-07 a Sunday.
        let monday = 1_780_272_000;
        assert_eq!(week_start(monday), monday);
        assert_eq!(week_start(monday + 6 * DAY + 3600), monday);
        assert_eq!(week_start(monday - 1), monday - 7 * DAY);
        assert_eq!(week_start(0), -3 * DAY);
    }

    #[test]
    fn reference_answers_match_a_hand_count() {
        let spec = Spec {
            seed: 1,
            orgs: 2,
            metrics: 2,
            days: 14,
            interval_secs: 12 * 3600,
            end_secs: 1_780_272_000,
        };
        let q = Questions::for_spec(&spec);
        assert_eq!((q.org, q.metric), (1, 1));
        let a = reference(&spec, &q);
        // Q1: 14 days (the data is shorter than 90) × 2 metrics, 2 steps × 3 regions a day.
        assert_eq!(a.q1.daily.len(), 28);
        assert!(a.q1.daily.values().all(|(_, c)| *c == 6));
        let (ts, v) = a.q1.latest["m01"];
        assert_eq!(ts, spec.end_secs - 12 * 3600);
        let by_hand: f64 = (0..3).map(|r| spec.value(1, 1, r, 27)).sum();
        assert!((v - by_hand).abs() < 1e-9);
        // Q2: two whole Monday weeks, 3 regions each, 14 points per week and region.
        assert_eq!(a.q2.len(), 6);
        assert!(a.q2.values().all(|(_, c)| *c == 14));
        // Q3: 14 days (shorter than 30): 28 steps × 3 regions per org and metric.
        assert_eq!(a.q3.len(), 4);
        assert!(a.q3.values().all(|(_, c)| *c == 84));
        // Q4: 7 days × 2 steps × 3 regions, regions in name order within a timestamp.
        assert_eq!(a.q4.len(), 42);
        assert_eq!(a.q4[0].0, spec.end_secs - 7 * DAY);
        let names: Vec<&str> = a.q4[..3].iter().map(|r| r.1.as_str()).collect();
        assert_eq!(names, ["apac", "eu", "us"]);
    }
}
