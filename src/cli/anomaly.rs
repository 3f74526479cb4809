//! `vitals anomaly score FILE.csv` (per-row anomaly scores for any `timestamp,value` file) and
//! `vitals anomaly nab DIR` (the Numenta Anomaly Benchmark, scored as NAB's own scorer does).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, bail};

use crate::domain::anomaly;
use crate::domain::nab::{self, ProfileScore, ScoredFile};

/// A `timestamp,value` series as read from CSV: the timestamps as written, in seconds, and the
/// values.
#[derive(Debug, Clone, Default)]
pub struct SeriesCsv {
    pub raw_timestamps: Vec<String>,
    pub timestamps: Vec<i64>,
    pub values: Vec<f64>,
}

/// Seconds since the epoch (UTC) of `2014-04-01 00:05:00[.ffffff]`, `2014-04-01T00:05:00Z`,
/// RFC 3339 with an offset, `2014-04-01`, or unix seconds.
pub fn parse_timestamp(raw: &str) -> Option<i64> {
    let s = raw.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Some(t.timestamp());
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = chrono::NaiveDateTime::parse_from_str(s, format) {
            return Some(t.and_utc().timestamp());
        }
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp());
    }
    s.parse::<i64>().ok()
}

/// Reads `timestamp,value` (a header line is optional); every bad line is an error naming it.
pub fn parse_series_csv(text: &str) -> Result<SeriesCsv, String> {
    let mut out = SeriesCsv::default();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim_start_matches('\u{feff}').trim();
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split(',');
        let (Some(ts), Some(value)) = (fields.next(), fields.next()) else {
            problems.push(format!("line {line_no}: expected timestamp,value"));
            continue;
        };
        let (ts, value) = (ts.trim().trim_matches('"'), value.trim().trim_matches('"'));
        if i == 0 && parse_timestamp(ts).is_none() && value.parse::<f64>().is_err() {
            continue; // the header
        }
        let Some(seconds) = parse_timestamp(ts) else {
            problems.push(format!(
                "line {line_no}: timestamp {ts:?} is not a date and time"
            ));
            continue;
        };
        match value.parse::<f64>() {
            // Rows are scored in file order, as a stream would deliver them (NAB's own data has
            // a clock that steps back an hour).
            Ok(v) if v.is_finite() => {
                out.raw_timestamps.push(ts.to_string());
                out.timestamps.push(seconds);
                out.values.push(v);
            }
            _ => problems.push(format!("line {line_no}: value {value:?} is not a number")),
        }
        if problems.len() >= 20 {
            break;
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems.join("\n"))
    }
}

/// Writes `timestamp,value,anomaly_score` for every row of a `timestamp,value` file.
pub fn score_csv(path: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("while reading {}", path.display()))?;
    let series =
        parse_series_csv(&text).map_err(|e| anyhow::anyhow!("{}:\n{e}", path.display()))?;
    let scores = anomaly::score_series(&series.timestamps, &series.values);
    writeln!(out, "timestamp,value,anomaly_score")?;
    for ((ts, v), s) in series
        .raw_timestamps
        .iter()
        .zip(&series.values)
        .zip(&scores)
    {
        writeln!(out, "{ts},{v},{:.6}", s.score)?;
    }
    Ok(())
}

/// Reads a NAB corpus (`combined_windows.json` and `data/…csv`) and scores it: with the Vitals
/// detector, or with a detector's per-row scores from `scores_dir` (files with the same relative
/// paths, columns `timestamp,anomaly_score`, as in NAB's results).
pub fn run_nab(corpus: &Path, scores_dir: Option<&Path>) -> anyhow::Result<Vec<ProfileScore>> {
    let windows_path = corpus.join("combined_windows.json");
    let windows: BTreeMap<String, Vec<(String, String)>> = serde_json::from_str(
        &std::fs::read_to_string(&windows_path)
            .with_context(|| format!("while reading {}", windows_path.display()))?,
    )
    .with_context(|| format!("while parsing {}", windows_path.display()))?;
    let mut files = Vec::new();
    for (name, file_windows) in &windows {
        let path = match scores_dir {
            Some(dir) => dir.join(name),
            None => corpus.join("data").join(name),
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("while reading {}", path.display()))?;
        let series =
            parse_series_csv(&text).map_err(|e| anyhow::anyhow!("{}:\n{e}", path.display()))?;
        let scores = match scores_dir {
            Some(_) => series.values.clone(),
            None => anomaly::score_series(&series.timestamps, &series.values)
                .into_iter()
                .map(|p| p.score)
                .collect(),
        };
        let mut edges = Vec::new();
        for (start, end) in file_windows {
            let (Some(a), Some(b)) = (parse_timestamp(start), parse_timestamp(end)) else {
                bail!("{name}: window {start} – {end} is not a pair of timestamps");
            };
            edges.push((a, b));
        }
        files.push(ScoredFile {
            name: name.clone(),
            timestamps: series.timestamps,
            scores,
            windows: edges,
        });
    }
    nab::score_corpus(&files).map_err(|e| anyhow::anyhow!("{e}"))
}

/// The NAB results as a markdown table.
pub fn nab_table(results: &[ProfileScore]) -> String {
    let mut t = String::from(
        "| profile | score | threshold | windows detected | windows missed | false positives |\n\
         | --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in results {
        t.push_str(&format!(
            "| {} | {:.2} | {:.4} | {} | {} | {} |\n",
            r.profile,
            r.normalized,
            r.threshold,
            r.true_positives,
            r.missed_windows,
            r.false_positives
        ));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/nab")
    }

    #[test]
    fn numentas_published_scores_reproduce_to_the_hundredth() {
        let dir = corpus();
        let results = run_nab(&dir, Some(&dir.join("reference/numenta"))).expect("scored");
        let got: Vec<f64> = results.iter().map(|r| r.normalized).collect();
        for (g, want) in got.iter().zip([66.59, 60.81, 71.06]) {
            assert!((g - want).abs() < 0.01, "{got:?}");
        }
    }

    #[test]
    fn the_vitals_detector_beats_62_on_the_standard_profile() {
        let results = run_nab(&corpus(), None).expect("scored");
        assert!(results[0].normalized > 62.0, "{}", nab_table(&results));
    }

    #[test]
    fn csv_rows_are_checked_with_line_numbers() {
        let ok =
            parse_series_csv("\u{feff}timestamp,value\n2024-01-01,1\n2024-01-02 00:00:00,2.5\n")
                .expect("parsed");
        assert_eq!(ok.values, vec![1.0, 2.5]);
        assert_eq!(ok.timestamps[1] - ok.timestamps[0], 86_400);
        let err = parse_series_csv("timestamp,value\n2024-01-01,x\nyesterday,3\n2023-01-01,1\n")
            .unwrap_err();
        assert!(err.contains("line 2: value \"x\""), "{err}");
        assert!(err.contains("line 3: timestamp \"yesterday\""), "{err}");
    }
}
