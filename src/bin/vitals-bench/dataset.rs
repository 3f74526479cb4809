//! The reference dataset every contender loads: deterministic from a seed, generated on the fly
//! (no state, so any slice can be produced in any order and every contender sees the same rows).
//!
//! Each org has `metrics` metrics; each metric has one series per region. A value is
//! `level × trend × weekly season × region share × noise`, with rare spikes, rounded to cents
//! (PostgreSQL's `decimal(15,2)` then holds it exactly).

use chrono::{Datelike, TimeZone, Utc};

pub const REGIONS: [&str; 3] = ["eu", "us", "apac"];
/// A second dimension, fixed per series (so it does not multiply the series): the plan the
/// series' customers are on.
pub const PLANS: [&str; 3] = ["free", "pro", "team"];
const REGION_SHARE: [f64; 3] = [0.5, 0.35, 0.15];
pub const CATEGORIES: [&str; 5] = ["financial", "customer", "operational", "growth", "risk"];
/// Weekly season, Monday first: business days busier than the weekend.
const WEEKDAY_FACTOR: [f64; 7] = [1.08, 1.12, 1.1, 1.06, 1.0, 0.78, 0.72];
/// Chance that a point is a spike.
const SPIKE_RATE: f64 = 0.002;

#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub seed: u64,
    pub orgs: usize,
    pub metrics: usize,
    pub days: i64,
    pub interval_secs: i64,
    /// End of the data (exclusive), UTC seconds, a midnight.
    pub end_secs: i64,
}

/// One generated row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    pub org: usize,
    pub metric: usize,
    pub region: usize,
    /// Index into [`PLANS`], a function of (org, metric, region).
    pub plan: usize,
    pub ts_secs: i64,
    pub value: f64,
}

impl Spec {
    pub fn start_secs(&self) -> i64 {
        self.end_secs - self.days * 86_400
    }

    pub fn steps(&self) -> i64 {
        self.days * 86_400 / self.interval_secs
    }

    pub fn points_per_org(&self) -> usize {
        self.metrics * REGIONS.len() * self.steps() as usize
    }

    pub fn total_points(&self) -> usize {
        self.orgs * self.points_per_org()
    }

    /// One line naming the dataset, for the log and the table's header.
    pub fn describe(&self) -> String {
        let end = chrono::DateTime::from_timestamp(self.end_secs, 0)
            .map(|t| t.date_naive().to_string())
            .unwrap_or_default();
        format!(
            "{} orgs × {} metrics × {} regions × {} days to {end}, a point every {} s: {} points (seed {})",
            self.orgs,
            self.metrics,
            REGIONS.len(),
            self.days,
            self.interval_secs,
            self.total_points(),
            self.seed
        )
    }

    pub fn org_label(org: usize) -> String {
        format!("o{org:03}")
    }

    pub fn metric_key(metric: usize) -> String {
        format!("m{metric:02}")
    }

    pub fn plan(&self, org: usize, metric: usize, region: usize) -> usize {
        (mix(self.seed
            ^ 0x504C_414E
            ^ ((org as u64) << 32)
            ^ ((metric as u64) << 8)
            ^ region as u64)
            % PLANS.len() as u64) as usize
    }

    pub fn category(metric: usize) -> &'static str {
        CATEGORIES[metric % CATEGORIES.len()]
    }

    /// The value of one point.
    pub fn value(&self, org: usize, metric: usize, region: usize, step: i64) -> f64 {
        let series = mix(self.seed ^ ((org as u64) << 40) ^ ((metric as u64) << 20));
        let level = 50.0 + (unit(series) * 4.0).exp() * 100.0; // 150 .. ~5,500
        let growth_per_year = unit(mix(series ^ 1)) * 0.8 - 0.2; // -20% .. +60%
        let years = (step * self.interval_secs) as f64 / (365.0 * 86_400.0);
        let trend = 1.0 + growth_per_year * years;
        let ts = self.start_secs() + step * self.interval_secs;
        let weekday = Utc
            .timestamp_opt(ts, 0)
            .single()
            .map(|t| t.weekday().num_days_from_monday() as usize)
            .unwrap_or(0);
        let point = mix(series ^ ((region as u64) << 56) ^ (step as u64).wrapping_mul(0x9E37));
        // Sum of three uniforms: a bell-shaped noise of about ±8%.
        let noise = 1.0 + (unit(point) + unit(mix(point ^ 2)) + unit(mix(point ^ 3)) - 1.5) * 0.1;
        let spike = if unit(mix(point ^ 4)) < SPIKE_RATE {
            2.5 + unit(mix(point ^ 5)) * 3.0
        } else {
            1.0
        };
        let v = level * trend * WEEKDAY_FACTOR[weekday] * REGION_SHARE[region] * noise * spike;
        (v.max(0.0) * 100.0).round() / 100.0
    }

    /// Every row of one org, in time order (then metric, region): how a live feed arrives.
    pub fn org_rows(&self, org: usize) -> impl Iterator<Item = Row> + '_ {
        (0..self.steps()).flat_map(move |step| {
            (0..self.metrics).flat_map(move |metric| {
                (0..REGIONS.len()).map(move |region| Row {
                    org,
                    metric,
                    region,
                    plan: self.plan(org, metric, region),
                    ts_secs: self.start_secs() + step * self.interval_secs,
                    value: self.value(org, metric, region, step),
                })
            })
        })
    }
}

/// SplitMix64's finaliser: a well-mixed 64-bit hash.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A uniform number in [0, 1) from a hash.
fn unit(h: u64) -> f64 {
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> Spec {
        Spec {
            seed: 7,
            orgs: 3,
            metrics: 4,
            days: 56,
            interval_secs: 86_400,
            end_secs: 1_780_272_000, // 2026-06-01T00:00:00Z, a Monday
        }
    }

    #[test]
    fn sizes_follow_the_spec() {
        let s = spec();
        assert_eq!(s.steps(), 56);
        assert_eq!(s.points_per_org(), 4 * 3 * 56);
        assert_eq!(s.total_points(), 3 * 4 * 3 * 56);
        assert_eq!(s.org_rows(1).count(), s.points_per_org());
        let first = s.org_rows(1).next().unwrap();
        assert_eq!(first.ts_secs, s.end_secs - 56 * 86_400);
        assert!(s.org_rows(1).all(|r| r.ts_secs < s.end_secs));
    }

    #[test]
    fn the_plan_is_fixed_per_series_and_every_plan_occurs() {
        let s = Spec {
            orgs: 10,
            metrics: 10,
            ..spec()
        };
        let mut seen = [0usize; PLANS.len()];
        for org in 0..s.orgs {
            let rows: Vec<Row> = s.org_rows(org).collect();
            for r in &rows {
                assert_eq!(r.plan, s.plan(org, r.metric, r.region));
                seen[r.plan] += 1;
            }
        }
        assert!(seen.iter().all(|n| *n > 0), "{seen:?}");
    }

    #[test]
    fn the_same_seed_gives_the_same_values_and_another_seed_does_not() {
        let a: Vec<Row> = spec().org_rows(2).collect();
        let b: Vec<Row> = spec().org_rows(2).collect();
        assert_eq!(a, b);
        let other = Spec { seed: 8, ..spec() };
        let c: Vec<Row> = other.org_rows(2).collect();
        assert_ne!(a, c);
    }

    #[test]
    fn values_are_cents_non_negative_and_shaped() {
        let s = Spec {
            days: 728,
            ..spec()
        };
        let rows: Vec<Row> = (0..s.orgs)
            .flat_map(|o| s.org_rows(o).collect::<Vec<_>>())
            .collect();
        assert!(rows.iter().all(|r| r.value >= 0.0 && r.value < 1e13));
        assert!(
            rows.iter()
                .all(|r| ((r.value * 100.0).round() - r.value * 100.0).abs() < 1e-6)
        );
        // Weekly season: Tuesdays beat Sundays on average.
        let mean_on = |weekday: u32| {
            let vs: Vec<f64> = rows
                .iter()
                .filter(|r| {
                    Utc.timestamp_opt(r.ts_secs, 0)
                        .unwrap()
                        .weekday()
                        .num_days_from_monday()
                        == weekday
                })
                .map(|r| r.value)
                .collect();
            vs.iter().sum::<f64>() / vs.len() as f64
        };
        assert!(mean_on(1) > mean_on(6) * 1.3);
        // Region shares: eu about 0.5 / 0.15 = 3.3 times apac.
        let total = |region: usize| -> f64 {
            rows.iter()
                .filter(|r| r.region == region)
                .map(|r| r.value)
                .sum()
        };
        let ratio = total(0) / total(2);
        assert!((3.0..3.7).contains(&ratio), "eu/apac {ratio}");
        // Spikes are rare: about 0.2% of points.
        let series: Vec<f64> = rows
            .iter()
            .filter(|r| r.org == 0 && r.metric == 0 && r.region == 0)
            .map(|r| r.value)
            .collect();
        assert_eq!(series.len(), 728);
        let mut sorted = series.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted[sorted.len() / 2];
        let spikes = series.iter().filter(|v| **v > median * 2.2).count();
        assert!(spikes <= 10, "{spikes} spikes");
    }
}
