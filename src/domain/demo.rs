//! Deterministic demo data: a small SaaS business over a given span of days, for every built-in
//! metric, with trend, weekly and yearly seasonality, noise and a few incidents. Pure: the same
//! seed and dates give the same points.

use std::collections::BTreeMap;
use std::f64::consts::PI;

use chrono::{Datelike, Duration, NaiveDate, Weekday};

use super::ingest::{Dimensions, Point};

/// A tiny, well-known PRNG (SplitMix64) so the demo never changes with a dependency's version.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let (u1, u2) = (self.unit(), self.unit());
        (-2.0 * u1.ln()).sqrt() * (2.0 * PI * u2).cos()
    }

    /// Poisson sample (Knuth for small means, normal approximation above 30).
    fn poisson(&mut self, mean: f64) -> f64 {
        if mean <= 0.0 {
            return 0.0;
        }
        if mean > 30.0 {
            return (mean + mean.sqrt() * self.normal()).round().max(0.0);
        }
        let limit = (-mean).exp();
        let mut k = 0.0;
        let mut p = 1.0;
        loop {
            p *= self.unit();
            if p <= limit {
                return k;
            }
            k += 1.0;
        }
    }
}

/// Incidents placed relative to the end of the span, so every demo shows them.
#[derive(Debug, Clone, Copy)]
pub struct Incidents {
    /// Service outage: uptime drops, tickets and resolution time spike (3 days).
    pub outage_day: i64,
    /// Payment processor trouble: failed payments spike, revenue dips (2 days).
    pub payments_day: i64,
    /// A post goes viral: traffic and leads triple (2 days).
    pub viral_day: i64,
    /// A competitor's promotion: churn doubles (7 days).
    pub churn_day: i64,
}

impl Incidents {
    fn for_span(days: i64) -> Incidents {
        Incidents {
            outage_day: days - 121,
            payments_day: days - 203,
            viral_day: days - 62,
            churn_day: days - 33,
        }
    }
}

fn round_to(v: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (v * f).round() / f
}

/// Demo points for the `days` days ending with `last_day` (inclusive), one reading per metric per
/// day at 12:00 UTC (so it falls on the same calendar day in every time zone from -11 to +11).
pub fn generate(last_day: NaiveDate, days: i64, seed: u64) -> Vec<Point> {
    let mut rng = Rng(seed);
    let first_day = last_day - Duration::days(days - 1);
    let inc = Incidents::for_span(days);
    let mut out = Vec::with_capacity(days as usize * 36);

    let mut customers = 420.0_f64;
    let mut cash = 185_000.0_f64;
    let mut overdue = 3_200.0_f64;
    let mut concentration = 9.0_f64;
    let mut history_rev: Vec<f64> = Vec::new();
    let mut history_exp: Vec<f64> = Vec::new();
    let mut history_mrr: Vec<f64> = Vec::new();

    let channels = [
        ("organic", 0.5),
        ("paid", 0.25),
        ("social", 0.15),
        ("referral", 0.10),
    ];
    let products = [("starter", 0.3), ("pro", 0.5), ("enterprise", 0.2)];

    for i in 0..days {
        let day = first_day + Duration::days(i);
        let ts = day
            .and_hms_opt(12, 0, 0)
            .map(|t| t.and_utc().timestamp_micros())
            .unwrap_or_default();
        let years = i as f64 / 365.0;
        let growth = (0.35 * years).exp();
        let weekly = match day.weekday() {
            Weekday::Sat => 0.72,
            Weekday::Sun => 0.64,
            Weekday::Mon => 1.08,
            _ => 1.0,
        };
        let doy = f64::from(day.ordinal());
        // Busiest in November, quietest in May.
        let yearly = 1.0 + 0.12 * (2.0 * PI * (doy - 230.0) / 365.0).sin();
        let in_window = |start: i64, len: i64| i >= start && i < start + len;
        let outage = in_window(inc.outage_day, 3);
        let payments = in_window(inc.payments_day, 2);
        let viral = in_window(inc.viral_day, 2);
        let churn_spike = in_window(inc.churn_day, 7);

        let mut push = |metric: &str, value: f64, dims: Dimensions| {
            out.push(Point {
                metric: metric.to_string(),
                ts_micros: ts,
                value,
                dims,
            });
        };
        let dim = |k: &str, v: &str| Dimensions::from([(k.to_string(), v.to_string())]);

        // Growth funnel.
        let viral_factor = if viral { 3.2 } else { 1.0 };
        let traffic_mean = 3_800.0 * growth * weekly * yearly * viral_factor;
        let mut traffic_total = 0.0;
        for (channel, share) in channels {
            let boost = if viral && channel == "social" {
                4.0
            } else {
                1.0
            };
            let v = rng.poisson(traffic_mean * share * boost / if viral { 1.6 } else { 1.0 });
            traffic_total += v;
            push("traffic", v, dim("channel", channel));
        }
        let leads = rng.poisson(traffic_total * 0.021);
        push("leads", leads, Dimensions::new());
        let conversion = (2.1 + 0.25 * rng.normal() - if viral { 0.6 } else { 0.0 }).max(0.2);
        push(
            "conversion_rate",
            round_to(conversion, 2),
            Dimensions::new(),
        );
        let new_customers = rng.poisson(leads * 0.02);
        push("new_customers", new_customers, Dimensions::new());

        // Customers and churn.
        let churn_rate =
            (if churn_spike { 4.3 } else { 2.2 - 0.3 * years } + 0.18 * rng.normal()).max(0.3);
        push("churn_rate", round_to(churn_rate, 2), Dimensions::new());
        let churned = rng.poisson(customers * churn_rate / 100.0 / 30.0);
        customers = (customers + new_customers - churned).max(1.0);
        push("customers", customers, Dimensions::new());

        // Revenue.
        let arpa = 86.0 + 14.0 * years;
        let mrr = customers * arpa;
        history_mrr.push(mrr);
        push("mrr", round_to(mrr, 2), Dimensions::new());
        let month_ago = history_mrr.len().saturating_sub(31);
        let mrr_growth = (mrr / history_mrr[month_ago] - 1.0) * 100.0;
        push("mrr_growth", round_to(mrr_growth, 2), Dimensions::new());
        let payment_dip = if payments { 0.55 } else { 1.0 };
        let mut revenue_total = 0.0;
        for (product, share) in products {
            let v = (mrr / 30.0
                * share
                * (0.92 + 0.16 * weekly / 1.0)
                * payment_dip
                * (1.0 + 0.06 * rng.normal()))
            .max(0.0);
            let v = round_to(v, 2);
            revenue_total += v;
            push("revenue", v, dim("product", product));
        }
        history_rev.push(revenue_total);

        // Costs and cash.
        let payroll = if day.day() == 1 { 0.45 * mrr } else { 0.0 };
        let expenses = round_to(
            (mrr / 30.0 * 0.62 + 310.0 * growth) * (1.0 + 0.05 * rng.normal()) + payroll,
            2,
        );
        history_exp.push(expenses);
        push("expenses", expenses, Dimensions::new());
        let cash_flow = round_to(revenue_total - expenses, 2);
        push("cash_flow", cash_flow, Dimensions::new());
        cash += cash_flow;
        push("cash_balance", round_to(cash, 2), Dimensions::new());
        let from = history_rev.len().saturating_sub(30);
        let rev_30: f64 = history_rev[from..].iter().sum();
        let exp_30: f64 = history_exp[from..].iter().sum();
        let scale = 30.0 / (history_rev.len() - from) as f64;
        let burn = ((exp_30 - rev_30) * scale).max(0.0);
        push("burn_rate", round_to(burn, 2), Dimensions::new());
        let runway = if burn > 0.0 {
            (cash / burn).min(60.0)
        } else {
            60.0
        };
        push("runway_months", round_to(runway, 2), Dimensions::new());
        let margin = if rev_30 > 0.0 {
            (rev_30 - exp_30) / rev_30 * 100.0
        } else {
            0.0
        };
        push("profit_margin", round_to(margin, 2), Dimensions::new());

        // Unit economics.
        push(
            "cac",
            round_to(
                340.0 * (1.0 + 0.12 * rng.normal()) + if viral { -120.0 } else { 0.0 },
                2,
            ),
            Dimensions::new(),
        );
        push(
            "ltv",
            round_to(arpa / (churn_rate / 100.0), 2),
            Dimensions::new(),
        );
        if day.weekday() == Weekday::Mon {
            push(
                "nps",
                (41.0 + 4.0 * rng.normal() - if churn_spike { 9.0 } else { 0.0 }).round(),
                Dimensions::new(),
            );
        }

        // Operations.
        let uptime = if outage {
            97.1 + 0.8 * rng.unit()
        } else {
            (99.96 + 0.03 * rng.normal()).min(100.0)
        };
        push("uptime", round_to(uptime, 3), Dimensions::new());
        let ticket_mean = customers * 0.028 * weekly * if outage { 3.5 } else { 1.0 };
        push(
            "support_tickets",
            rng.poisson(ticket_mean),
            Dimensions::new(),
        );
        let resolution = (6.2 + 1.3 * rng.normal() + if outage { 9.0 } else { 0.0 }).max(0.5);
        push(
            "resolution_time",
            round_to(resolution, 2),
            Dimensions::new(),
        );
        push(
            "fulfilment_rate",
            round_to((97.6 + 0.7 * rng.normal()).min(100.0), 2),
            Dimensions::new(),
        );
        push(
            "inventory_turnover",
            round_to(
                5.1 + 0.4 * (2.0 * PI * doy / 365.0).sin() + 0.08 * rng.normal(),
                2,
            ),
            Dimensions::new(),
        );

        // Risk.
        overdue = (overdue + 180.0 * rng.normal() + if payments { 2_500.0 } else { 0.0 }).max(0.0);
        push(
            "overdue_receivables",
            round_to(overdue, 2),
            Dimensions::new(),
        );
        concentration = (concentration - 0.004 + 0.05 * rng.normal()).clamp(2.0, 40.0);
        push(
            "customer_concentration",
            round_to(concentration, 2),
            Dimensions::new(),
        );
        let failed_mean = customers * 0.0015 * if payments { 9.0 } else { 1.0 };
        push(
            "failed_payments",
            rng.poisson(failed_mean),
            Dimensions::new(),
        );
    }
    out
}

/// Sum of a metric's values per day index, for tests and the demo summary.
pub fn daily_totals(points: &[Point], metric: &str) -> BTreeMap<i64, f64> {
    let mut out = BTreeMap::new();
    for p in points.iter().filter(|p| p.metric == metric) {
        *out.entry(p.ts_micros).or_insert(0.0) += p.value;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::catalog;

    fn sample() -> Vec<Point> {
        generate(NaiveDate::from_ymd_opt(2026, 11, 22).unwrap(), 400, 7)
    }

    #[test]
    fn deterministic_and_covers_every_builtin_metric() {
        let a = sample();
        assert_eq!(a, sample());
        for m in catalog::builtins() {
            let n = a.iter().filter(|p| p.metric == m.key).count();
            assert!(n >= 52, "{} has {n} points", m.key);
        }
        assert!(a.iter().all(|p| p.value.is_finite()));
        let first = a.iter().map(|p| p.ts_micros).min().unwrap();
        let last = a.iter().map(|p| p.ts_micros).max().unwrap();
        assert_eq!((last - first) / 86_400_000_000, 399);
    }

    #[test]
    fn incidents_show_in_the_data() {
        let points = sample();
        let uptime: Vec<f64> = daily_totals(&points, "uptime").into_values().collect();
        let inc = Incidents::for_span(400);
        let outage = inc.outage_day as usize;
        assert!(uptime[outage] < 98.0);
        assert!(uptime[outage - 5] > 99.8);
        let traffic: Vec<f64> = daily_totals(&points, "traffic").into_values().collect();
        let viral = inc.viral_day as usize;
        assert!(traffic[viral] > 2.0 * traffic[viral - 7]);
    }

    #[test]
    fn trend_and_weekly_seasonality_are_present() {
        let points = sample();
        let traffic: Vec<f64> = daily_totals(&points, "traffic").into_values().collect();
        // The same four weeks a year apart (same season): 35 % a year of growth shows.
        let first: f64 = traffic[..28].iter().sum();
        let year_later: f64 = traffic[365..393].iter().sum();
        assert!(year_later > first * 1.3, "{first} {year_later}");
        // Weekends are quieter than weekdays.
        let weekday_mean = |wd: Weekday| {
            let days: Vec<f64> = (0..400)
                .filter(|i| {
                    (NaiveDate::from_ymd_opt(2026, 11, 22).unwrap() - Duration::days(399 - i))
                        .weekday()
                        == wd
                })
                .map(|i| traffic[i as usize])
                .collect();
            days.iter().sum::<f64>() / days.len() as f64
        };
        assert!(weekday_mean(Weekday::Sun) < 0.8 * weekday_mean(Weekday::Wed));
    }
}
