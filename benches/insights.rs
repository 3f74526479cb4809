//! Insights benchmark (not a test): anomaly detection and forecasting time per series, and
//! forecast accuracy by rolling-origin backtest (MASE against seasonal naive) on the demo's
//! metrics and on synthetic business series (trend, weekly season, noise, spikes).
//!
//!     cargo bench --bench insights            # 2,000 synthetic series of 730 days
//!     cargo bench --bench insights -- 10000
//!
//! Pure: no server, no store; it measures the domain code the insights job runs per series.

use std::time::Instant;

use vitals::domain::{anomaly, demo, forecast};

/// Deterministic noise in [-1, 1].
fn noise(i: usize, seed: usize) -> f64 {
    let x = ((i * 7919 + seed * 104_729) as f64 * 12.9898).sin() * 43_758.545_3;
    2.0 * (x - x.floor()) - 1.0
}

/// A daily business series: level, growth, a weekly pattern, noise and a few spikes.
fn synthetic(seed: usize, days: usize) -> Vec<f64> {
    let level = 100.0 + (seed % 50) as f64 * 40.0;
    let growth = 0.0005 * ((seed % 7) as f64 - 2.0);
    let weekly = 0.05 * (seed % 5) as f64;
    let noisy = 0.02 + 0.02 * (seed % 4) as f64;
    (0..days)
        .map(|d| {
            let weekend = if matches!(d % 7, 5 | 6) {
                1.0 - 3.0 * weekly
            } else {
                1.0
            };
            let spike = if (d * 31 + seed * 17).is_multiple_of(211) {
                2.5
            } else {
                1.0
            };
            (level
                * (1.0 + growth).powi(d as i32)
                * weekend
                * spike
                * (1.0 + noisy * noise(d, seed)))
            .max(0.0)
        })
        .collect()
}

struct Tally {
    series: usize,
    detect_us: f64,
    forecast_us: f64,
    shown: usize,
    mase: Vec<f64>,
    naive: Vec<f64>,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            series: 0,
            detect_us: 0.0,
            forecast_us: 0.0,
            shown: 0,
            mase: Vec::new(),
            naive: Vec::new(),
        }
    }

    fn run(&mut self, values: &[f64]) {
        let t = Instant::now();
        let mut detector = anomaly::Detector::new(86_400);
        for v in values {
            detector.step(*v);
        }
        self.detect_us += t.elapsed().as_secs_f64() * 1e6;
        let t = Instant::now();
        let f = forecast::forecast(values, detector.period(), 30);
        self.forecast_us += t.elapsed().as_secs_f64() * 1e6;
        self.series += 1;
        if let (Some(m), Some(n)) = (f.mase, f.naive_mase) {
            self.mase.push(m);
            self.naive.push(n);
            if m < n {
                self.shown += 1;
            }
        }
    }

    fn row(&self, name: &str) -> String {
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let mut sorted = self.mase.clone();
        sorted.sort_by(f64::total_cmp);
        let median = sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN);
        format!(
            "| {name} | {} | {:.0} µs | {:.0} µs | {:.3} | {:.3} | {:.3} | {:.0}% |",
            self.series,
            self.detect_us / self.series.max(1) as f64,
            self.forecast_us / self.series.max(1) as f64,
            mean(&self.mase),
            median,
            mean(&self.naive),
            100.0 * self.shown as f64 / self.series.max(1) as f64
        )
    }
}

fn main() {
    let count: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2_000);
    let days = 730;

    let mut demo_tally = Tally::new();
    let last = chrono::Utc::now().date_naive() - chrono::Duration::days(1);
    let points = demo::generate(last, days as i64, 7);
    let mut metrics: Vec<String> = points.iter().map(|p| p.metric.clone()).collect();
    metrics.sort();
    metrics.dedup();
    for m in &metrics {
        let values: Vec<f64> = demo::daily_totals(&points, m).into_values().collect();
        demo_tally.run(&values);
    }

    let mut synthetic_tally = Tally::new();
    for seed in 0..count {
        synthetic_tally.run(&synthetic(seed, days));
    }

    println!(
        "| series | count | detection per series ({days} days) | forecast + 5-origin backtest per series | MASE mean | MASE median | seasonal-naive MASE mean | forecasts shown |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    println!("{}", demo_tally.row("demo metrics (daily totals)"));
    println!("{}", synthetic_tally.row("synthetic business series"));
}
