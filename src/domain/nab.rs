//! The Numenta Anomaly Benchmark's scoring, as NAB's own scorer computes it (`nab/sweeper.py`,
//! `nab/optimizer.py`, `nab/runner.py`): anomaly windows, a probationary period, the scaled
//! sigmoid that rewards early detections and weighs false positives by their distance past a
//! window, three application profiles, one threshold swept over the whole corpus, and
//! normalisation between the null detector (0) and the perfect detector (100).
//!
//! Pure: the caller reads the files; this module only counts.

/// Weights of one application profile.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Profile {
    pub name: &'static str,
    pub tp_weight: f64,
    pub fp_weight: f64,
    pub fn_weight: f64,
}

/// NAB's three profiles: standard, reward low false positives, reward low false negatives.
pub const PROFILES: [Profile; 3] = [
    Profile {
        name: "standard",
        tp_weight: 1.0,
        fp_weight: 0.11,
        fn_weight: 1.0,
    },
    Profile {
        name: "reward_low_FP_rate",
        tp_weight: 1.0,
        fp_weight: 0.22,
        fn_weight: 1.0,
    },
    Profile {
        name: "reward_low_FN_rate",
        tp_weight: 1.0,
        fp_weight: 0.11,
        fn_weight: 2.0,
    },
];

/// One scored file: its timestamps (any unit, e.g. seconds, in file order), a detector's score
/// per row, and its labelled windows as (first, last) timestamps that occur in `timestamps`.
#[derive(Debug, Clone)]
pub struct ScoredFile {
    pub name: String,
    pub timestamps: Vec<i64>,
    pub scores: Vec<f64>,
    pub windows: Vec<(i64, i64)>,
}

/// NAB's scaled sigmoid: about 0.987 at the left edge of a window (-1), 0 at its right edge,
/// and for false positives after a window, falling towards -1 with distance (-1 past 3 widths).
pub fn scaled_sigmoid(relative_position: f64) -> f64 {
    if relative_position > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * relative_position).exp()) - 1.0
    }
}

/// The first rows of a file that are not scored: 15%, at most 750.
pub fn probation_rows(rows: usize) -> usize {
    ((0.15 * rows as f64).floor()).min(0.15 * 5000.0) as usize
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Place {
    /// Outside every window, after probation: a detection here is a false positive.
    Outside,
    /// In the probationary period: ignored.
    Probation,
    /// In window number `n` (numbered across the corpus).
    Window(usize),
}

#[derive(Debug, Clone, Copy)]
struct Row {
    score: f64,
    /// Unweighted value of a detection here (positive in a window, negative outside).
    value: f64,
    place: Place,
}

/// Why a file cannot be scored.
#[derive(Debug, Clone, PartialEq)]
pub enum NabError {
    LengthMismatch(String),
    WindowEdgeMissing(String, i64),
}

impl std::fmt::Display for NabError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NabError::LengthMismatch(n) => write!(f, "{n}: timestamps and scores differ in length"),
            NabError::WindowEdgeMissing(n, t) => {
                write!(
                    f,
                    "{n}: window edge {t} is not one of the file's timestamps"
                )
            }
        }
    }
}

/// Places every row of a file and values a detection there (NAB's `calcSweepScore`).
fn sweep_file(file: &ScoredFile, first_window: usize) -> Result<(Vec<Row>, usize), NabError> {
    let ts = &file.timestamps;
    if ts.len() != file.scores.len() {
        return Err(NabError::LengthMismatch(file.name.clone()));
    }
    // The first row with that time, as NAB's `timestamps.index()` (timestamps need not be sorted).
    let index_of = |t: i64| {
        ts.iter()
            .position(|x| *x == t)
            .ok_or_else(|| NabError::WindowEdgeMissing(file.name.clone(), t))
    };
    let mut windows = Vec::new();
    for &(start, end) in &file.windows {
        windows.push((index_of(start)?, index_of(end)?));
    }
    windows.sort();
    let probation = probation_rows(ts.len());
    let max_tp = scaled_sigmoid(-1.0);
    let mut rows = Vec::with_capacity(ts.len());
    let mut next = 0usize;
    let mut current: Option<(usize, usize, usize)> = None; // (left, right, window number)
    let mut previous: Option<(usize, f64)> = None; // (right index, width)
    for (i, &score) in file.scores.iter().enumerate() {
        if current.is_none() && next < windows.len() && windows[next].0 == i {
            current = Some((windows[next].0, windows[next].1, first_window + next));
            next += 1;
        }
        let (value, window) = match current {
            Some((left, right, n)) => {
                let width = (right - left + 1) as f64;
                let position = -((right as f64) - (i as f64) + 1.0) / width;
                (scaled_sigmoid(position) / max_tp, Some(n))
            }
            None => match previous {
                None => (-1.0, None),
                Some((right, width)) => {
                    let past = (i as f64 - right as f64).abs() / (width - 1.0);
                    (scaled_sigmoid(past), None)
                }
            },
        };
        let place = if i < probation {
            Place::Probation
        } else {
            window.map_or(Place::Outside, Place::Window)
        };
        rows.push(Row {
            score,
            value,
            place,
        });
        if let Some((left, right, _)) = current
            && i == right
        {
            previous = Some((right, (right - left + 1) as f64));
            current = None;
        }
    }
    Ok((rows, windows.len()))
}

/// The result of scoring a corpus under one profile.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileScore {
    pub profile: &'static str,
    /// The threshold that maximised the raw corpus score (a row detects when score ≥ it).
    pub threshold: f64,
    pub raw: f64,
    pub null_raw: f64,
    pub perfect_raw: f64,
    /// 100 × (raw − null) / (perfect − null).
    pub normalized: f64,
    pub true_positives: usize,
    pub false_positives: usize,
    pub missed_windows: usize,
}

/// Scores a corpus under every profile. As in NAB's runner, the perfect score is one earliest
/// detection per labelled window (`windows × A_tp`); the null score misses every window that
/// reaches past probation.
pub fn score_corpus(files: &[ScoredFile]) -> Result<Vec<ProfileScore>, NabError> {
    let mut rows = Vec::new();
    let mut window_count = 0;
    for file in files {
        let (file_rows, n) = sweep_file(file, window_count)?;
        window_count += n;
        rows.extend(file_rows);
    }
    // Highest scores first: lowering the threshold adds detections one score level at a time.
    rows.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut scored_windows = vec![false; window_count];
    for r in &rows {
        if let Place::Window(n) = r.place {
            scored_windows[n] = true;
        }
    }
    let live_windows = scored_windows.iter().filter(|s| **s).count();
    Ok(PROFILES
        .iter()
        .map(|p| sweep_profile(&rows, window_count, live_windows, p))
        .collect())
}

fn sweep_profile(
    rows: &[Row],
    window_count: usize,
    live_windows: usize,
    p: &Profile,
) -> ProfileScore {
    let null_raw = -p.fn_weight * live_windows as f64;
    let mut best_in_window: Vec<Option<f64>> = vec![None; window_count];
    let (mut fp_sum, mut window_sum) = (0.0, null_raw);
    let (mut tp, mut fp) = (0usize, 0usize);
    // Threshold 1.1: nothing detected.
    let mut best = (null_raw, 1.1, 0usize, 0usize);
    let mut i = 0;
    while i < rows.len() {
        let level = rows[i].score;
        while i < rows.len() && rows[i].score == level {
            let r = rows[i];
            match r.place {
                Place::Outside => {
                    fp_sum += r.value * p.fp_weight;
                    fp += 1;
                }
                Place::Probation => {}
                Place::Window(n) => {
                    let v = r.value * p.tp_weight;
                    match best_in_window[n] {
                        None => {
                            window_sum += v + p.fn_weight;
                            best_in_window[n] = Some(v);
                            tp += 1;
                        }
                        Some(old) if v > old => {
                            window_sum += v - old;
                            best_in_window[n] = Some(v);
                        }
                        Some(_) => {}
                    }
                }
            }
            i += 1;
        }
        let total = fp_sum + window_sum;
        if total > best.0 {
            best = (total, level, tp, fp);
        }
    }
    let perfect_raw = p.tp_weight * window_count as f64;
    let (raw, threshold, tp, fp) = best;
    ProfileScore {
        profile: p.name,
        threshold,
        raw,
        null_raw,
        perfect_raw,
        normalized: 100.0 * (raw - null_raw) / (perfect_raw - null_raw),
        true_positives: tp,
        false_positives: fp,
        missed_windows: live_windows - tp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(scores: Vec<f64>, windows: Vec<(i64, i64)>) -> ScoredFile {
        ScoredFile {
            name: "f".into(),
            timestamps: (0..scores.len() as i64).collect(),
            scores,
            windows,
        }
    }

    #[test]
    fn the_sigmoid_rewards_early_detections() {
        assert!((scaled_sigmoid(-1.0) - 0.986_614_298_2).abs() < 1e-9);
        assert_eq!(scaled_sigmoid(0.0), 0.0);
        assert_eq!(scaled_sigmoid(3.5), -1.0);
    }

    #[test]
    fn probation_is_fifteen_percent_at_most_750_rows() {
        assert_eq!(probation_rows(100), 15);
        assert_eq!(probation_rows(4999), 749);
        assert_eq!(probation_rows(10_000), 750);
    }

    #[test]
    fn a_detection_at_the_left_edge_is_perfect_and_never_detecting_is_zero() {
        // 100 rows, probation 15, one window 40..=49.
        let mut perfect = vec![0.0; 100];
        perfect[40] = 1.0;
        let s = score_corpus(&[file(perfect, vec![(40, 49)])]).unwrap();
        assert!((s[0].normalized - 100.0).abs() < 1e-9, "{s:?}");
        let s = score_corpus(&[file(vec![0.5; 100], vec![(40, 49)])]).unwrap();
        assert_eq!(s[0].normalized, 0.0);
        assert_eq!(s[0].threshold, 1.1);
    }

    #[test]
    fn a_late_detection_and_a_false_positive_cost_what_nab_says() {
        // Detection at the window's last row: worth σ(-1/10)/σ(-1); a false positive with no
        // window before it: -1 × A_fp.
        let mut scores = vec![0.0; 100];
        scores[49] = 1.0;
        scores[20] = 1.0;
        let s = score_corpus(&[file(scores, vec![(40, 49)])]).unwrap();
        let tp = scaled_sigmoid(-0.1) / scaled_sigmoid(-1.0);
        let raw = tp - 0.11;
        assert!((s[0].raw - raw).abs() < 1e-12, "{s:?}");
        assert!((s[0].normalized - 100.0 * (raw + 1.0) / 2.0).abs() < 1e-9);
    }
}
