//! The four questions' answers in one canonical form, so every contender's numbers can be
//! compared before anything is timed.

use std::collections::BTreeMap;

/// Values agree when they differ by no more than this absolute amount plus a relative part
/// (sums of cents in binary floating point against PostgreSQL's exact decimals).
const ABS_TOLERANCE: f64 = 0.005;
const REL_TOLERANCE: f64 = 1e-9;

/// (sum, count)
pub type SumCount = (f64, i64);

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Q1 {
    /// metric → (latest timestamp s, sum over series of the values at it)
    pub latest: BTreeMap<String, (i64, f64)>,
    /// (metric, UTC day start s) → (sum, count)
    pub daily: BTreeMap<(String, i64), SumCount>,
}

/// (Monday week start s, region) → (sum, count)
pub type Q2 = BTreeMap<(i64, String), SumCount>;
/// (org label, metric) → (average, count)
pub type Q3 = BTreeMap<(String, String), (f64, i64)>;
/// (timestamp s, region, value); compared in time then region order, whatever order the
/// contender returned rows of one timestamp in (Vitals orders by its dimension string,
/// InfluxDB by series).
pub type Q4 = Vec<(i64, String, f64)>;

fn in_canonical_order(rows: &Q4) -> Q4 {
    let mut sorted = rows.clone();
    sorted.sort_by(|x, y| (x.0, &x.1).cmp(&(y.0, &y.1)));
    sorted
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Answers {
    pub q1: Q1,
    pub q2: Q2,
    pub q3: Q3,
    pub q4: Q4,
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= ABS_TOLERANCE + REL_TOLERANCE * a.abs().max(b.abs())
}

fn compare_maps<K: Ord + std::fmt::Debug>(
    what: &str,
    a: &BTreeMap<K, (f64, i64)>,
    b: &BTreeMap<K, (f64, i64)>,
    problems: &mut Vec<String>,
) {
    if a.len() != b.len() {
        problems.push(format!("{what}: {} rows against {}", a.len(), b.len()));
    }
    for (k, (va, ca)) in a {
        match b.get(k) {
            None => problems.push(format!("{what}: {k:?} missing")),
            Some((vb, cb)) if ca != cb || !close(*va, *vb) => problems.push(format!(
                "{what}: {k:?} is ({va}, {ca}) against ({vb}, {cb})"
            )),
            _ => {}
        }
    }
}

/// Every difference between two contenders' answers (empty when they agree), at most a few
/// per question so a failure stays readable.
pub fn differences(a: &Answers, b: &Answers) -> Vec<String> {
    let mut problems = Vec::new();
    let latest_a: BTreeMap<String, (f64, i64)> =
        a.q1.latest
            .iter()
            .map(|(k, (t, v))| (k.clone(), (*v, *t)))
            .collect();
    let latest_b: BTreeMap<String, (f64, i64)> =
        b.q1.latest
            .iter()
            .map(|(k, (t, v))| (k.clone(), (*v, *t)))
            .collect();
    let mut q1 = Vec::new();
    compare_maps("Q1 latest", &latest_a, &latest_b, &mut q1);
    compare_maps("Q1 daily", &a.q1.daily, &b.q1.daily, &mut q1);
    let mut q2 = Vec::new();
    compare_maps("Q2", &a.q2, &b.q2, &mut q2);
    let mut q3 = Vec::new();
    compare_maps("Q3", &a.q3, &b.q3, &mut q3);
    let mut q4 = Vec::new();
    if a.q4.len() != b.q4.len() {
        q4.push(format!("Q4: {} rows against {}", a.q4.len(), b.q4.len()));
    }
    let (q4a, q4b) = (in_canonical_order(&a.q4), in_canonical_order(&b.q4));
    for (i, (ra, rb)) in q4a.iter().zip(&q4b).enumerate() {
        if ra.0 != rb.0 || ra.1 != rb.1 || !close(ra.2, rb.2) {
            q4.push(format!("Q4 row {i}: {ra:?} against {rb:?}"));
        }
    }
    for list in [q1, q2, q3, q4] {
        problems.extend(list.into_iter().take(5));
    }
    problems
}

/// A short fingerprint of the answers, printed so a reader sees what was compared.
pub fn summary(a: &Answers) -> String {
    let q3_total: f64 = a.q3.values().map(|(avg, _)| avg).sum();
    format!(
        "Q1 {} metrics × {} daily rows; Q2 {} week×region rows; Q3 {} org×metric averages (sum of averages {:.2}); Q4 {} raw points",
        a.q1.latest.len(),
        a.q1.daily.len(),
        a.q2.len(),
        a.q3.len(),
        q3_total,
        a.q4.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Answers {
        let mut a = Answers::default();
        a.q1.latest.insert("m00".into(), (100, 12.5));
        a.q1.daily.insert(("m00".into(), 0), (30.25, 3));
        a.q2.insert((0, "eu".into()), (1.0, 1));
        a.q3.insert(("o000".into(), "m00".into()), (10.0 / 3.0, 3));
        a.q4.push((100, "eu".into(), 12.5));
        a
    }

    #[test]
    fn equal_answers_and_rounding_noise_pass() {
        let a = sample();
        let mut b = sample();
        assert!(differences(&a, &b).is_empty());
        // A decimal average rounded to 6 places, as PostgreSQL might print it.
        b.q3.insert(("o000".into(), "m00".into()), (3.333333, 3));
        b.q1.daily.insert(("m00".into(), 0), (30.250000000001, 3));
        assert!(differences(&a, &b).is_empty(), "{:?}", differences(&a, &b));
    }

    #[test]
    fn raw_rows_of_one_timestamp_may_come_in_any_order() {
        let mut a = sample();
        a.q4.push((100, "us".into(), 1.0));
        let mut b = a.clone();
        b.q4.swap(0, 1);
        assert!(differences(&a, &b).is_empty());
        b.q4[0].2 = 2.0;
        assert_eq!(differences(&a, &b).len(), 1);
    }

    #[test]
    fn a_wrong_value_count_timestamp_or_missing_row_is_reported() {
        let a = sample();
        let mut b = sample();
        b.q1.daily.insert(("m00".into(), 0), (30.26, 3));
        b.q2.insert((0, "eu".into()), (1.0, 2));
        b.q1.latest.insert("m00".into(), (101, 12.5));
        b.q4[0].1 = "us".into();
        b.q3.clear();
        let d = differences(&a, &b);
        assert_eq!(d.len(), 6, "{d:?}");
        assert!(d.iter().any(|p| p.starts_with("Q1 daily")));
        assert!(d.iter().any(|p| p.starts_with("Q1 latest")));
        assert!(d.iter().any(|p| p.starts_with("Q2")));
        assert!(d.iter().any(|p| p.starts_with("Q3: 1 rows against 0")));
        assert!(d.iter().any(|p| p.contains("missing")));
        assert!(d.iter().any(|p| p.starts_with("Q4 row 0")));
    }
}
