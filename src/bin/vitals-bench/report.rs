//! Latency statistics and the one markdown table the bench prints.

use std::time::Duration;

/// Warm runs (p50, p95) and the cold run of one question on one contender.
#[derive(Debug, Clone, Copy, Default)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub cold_ms: f64,
    pub runs: usize,
}

/// Nearest-rank percentile of samples (need not be sorted).
pub fn percentile(samples: &[Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    let mut sorted: Vec<Duration> = samples.to_vec();
    sorted.sort();
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1e3
}

pub fn latency(warm: &[Duration], cold: Duration) -> Latency {
    Latency {
        p50_ms: percentile(warm, 0.5),
        p95_ms: percentile(warm, 0.95),
        cold_ms: cold.as_secs_f64() * 1e3,
        runs: warm.len(),
    }
}

/// How many warm runs fit in `budget` given one run took `one`, between `min` and `max`.
pub fn runs_within(one: Duration, budget: Duration, min: usize, max: usize) -> usize {
    let fit = (budget.as_secs_f64() / one.as_secs_f64().max(1e-6)) as usize;
    fit.clamp(min, max)
}

pub fn ms(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v < 10.0 {
        format!("{v:.2} ms")
    } else if v < 1000.0 {
        format!("{v:.1} ms")
    } else {
        format!("{:.2} s", v / 1e3)
    }
}

pub fn rate(points_per_sec: f64) -> String {
    if points_per_sec >= 1e6 {
        format!("{:.2} M/s", points_per_sec / 1e6)
    } else {
        format!("{:.0} k/s", points_per_sec / 1e3)
    }
}

pub fn mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

/// `a ÷ b` with two decimals, or a dash when either is missing.
pub fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "–".into()
    }
}

pub const COLUMNS: [&str; 9] = [
    "Measure",
    "Vitals (HTTP)",
    "Vitals (store)",
    "DuckDB ceiling",
    "PostgreSQL 15",
    "InfluxDB 1.6",
    "Vitals ÷ DuckDB",
    "Vitals ÷ PostgreSQL",
    "Vitals ÷ InfluxDB",
];

/// One table: a row per measure, a column per contender, then the ratios.
#[derive(Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn row(&mut self, cells: &[&str]) {
        let mut row: Vec<String> = cells.iter().map(|c| c.to_string()).collect();
        row.resize(COLUMNS.len(), "–".into());
        for c in &mut row {
            if c.is_empty() {
                *c = "–".into();
            }
        }
        self.rows.push(row);
    }

    pub fn markdown(&self) -> String {
        let mut out = format!("| {} |\n", COLUMNS.join(" | "));
        out.push_str(&format!(
            "|{}\n",
            COLUMNS
                .iter()
                .enumerate()
                .map(|(i, _)| if i == 0 { "---|" } else { "---:|" })
                .collect::<String>()
        ));
        for r in &self.rows {
            out.push_str(&format!("| {} |\n", r.join(" | ")));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let s: Vec<Duration> = [5, 1, 4, 2, 3, 10, 6, 7, 8, 9]
            .iter()
            .map(|m| Duration::from_millis(*m))
            .collect();
        assert_eq!(percentile(&s, 0.5), 5.0);
        assert_eq!(percentile(&s, 0.95), 10.0);
        assert_eq!(percentile(&s[..1], 0.95), 5.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn runs_fit_the_budget_within_bounds() {
        let b = Duration::from_secs(10);
        assert_eq!(runs_within(Duration::from_millis(100), b, 3, 30), 30);
        assert_eq!(runs_within(Duration::from_secs(2), b, 3, 30), 5);
        assert_eq!(runs_within(Duration::from_secs(60), b, 3, 30), 3);
    }

    #[test]
    fn table_fills_missing_cells_and_formats() {
        let mut t = Table::default();
        t.row(&["Ingest", "400 k/s", "", "1.80 M/s"]);
        let md = t.markdown();
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2].matches('|').count(), COLUMNS.len() + 1);
        assert!(lines[2].starts_with("| Ingest | 400 k/s | – | 1.80 M/s | – |"));
        assert_eq!(ratio(1.0, 4.0), "0.25");
        assert_eq!(ratio(1.0, 0.0), "–");
        assert_eq!(ms(1234.0), "1.23 s");
        assert_eq!(rate(1_800_000.0), "1.80 M/s");
    }
}
