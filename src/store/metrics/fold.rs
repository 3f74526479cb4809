//! Adds up per-series bucket aggregates into per-group rows, in Rust rather than in a second
//! SQL aggregation: DuckDB's hash aggregate has a fixed cost of about 1.5 ms per query even for
//! a few hundred rows (bench Q2: 6.6 → 2.5 ms with the fold here and a cached statement), while
//! folding the few thousand per-series rows a read returns takes microseconds.
//!
//! Memory is bounded by the output (one row per metric, bucket and group), not by the number of
//! series: rows are folded as they stream from DuckDB.

use std::collections::{BTreeMap, HashMap};

use super::AggRow;

/// One series' aggregates in one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeriesBucket {
    pub sum: f64,
    pub count: i64,
    pub min: f64,
    pub max: f64,
    /// The series' latest value in the bucket.
    pub last: f64,
}

/// The still-escaped value of dimension `key` in canonical `dims` (`k=v&k2=v2`), `""` when
/// absent: what `split_part(split_part('&' || dims, '&key=', 2), '&', 1)` gives in SQL.
pub fn dim_value<'a>(dims: &'a str, key: &str) -> &'a str {
    dims.split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .unwrap_or("")
}

#[derive(Default)]
struct Groups {
    ungrouped: BTreeMap<i64, AggRow>,
    by_value: HashMap<String, BTreeMap<i64, AggRow>>,
}

/// Accumulates per-series rows into one row per (metric, bucket, group): sums and counts add,
/// minima and maxima fold, and `last` adds each series' latest value.
#[derive(Default)]
pub struct GroupFold {
    metrics: HashMap<String, Groups>,
}

impl GroupFold {
    pub fn add(&mut self, metric: &str, bucket: i64, group: Option<&str>, s: SeriesBucket) {
        if !self.metrics.contains_key(metric) {
            self.metrics.insert(metric.to_string(), Groups::default());
        }
        let Some(groups) = self.metrics.get_mut(metric) else {
            return;
        };
        let buckets = match group {
            None => &mut groups.ungrouped,
            Some(value) => {
                if !groups.by_value.contains_key(value) {
                    groups.by_value.insert(value.to_string(), BTreeMap::new());
                }
                match groups.by_value.get_mut(value) {
                    Some(b) => b,
                    None => return,
                }
            }
        };
        buckets
            .entry(bucket)
            .and_modify(|row| {
                row.sum += s.sum;
                row.count += s.count;
                row.min = row.min.min(s.min);
                row.max = row.max.max(s.max);
                row.last += s.last;
            })
            .or_insert_with(|| AggRow {
                metric: metric.to_string(),
                bucket,
                group: group.map(str::to_string),
                sum: s.sum,
                count: s.count,
                min: s.min,
                max: s.max,
                last: s.last,
            });
    }

    /// The rows ordered by metric, bucket, then group (`None` before any value), as the SQL
    /// `ORDER BY metric, bucket, grp` it replaces.
    pub fn finish(self) -> Vec<AggRow> {
        let mut rows: Vec<AggRow> = self
            .metrics
            .into_values()
            .flat_map(|g| {
                g.ungrouped
                    .into_values()
                    .chain(g.by_value.into_values().flat_map(BTreeMap::into_values))
            })
            .collect();
        rows.sort_by(|a, b| (&a.metric, a.bucket, &a.group).cmp(&(&b.metric, b.bucket, &b.group)));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sb(sum: f64, count: i64, min: f64, max: f64, last: f64) -> SeriesBucket {
        SeriesBucket {
            sum,
            count,
            min,
            max,
            last,
        }
    }

    #[test]
    fn dim_value_reads_one_key_of_canonical_dims() {
        assert_eq!(dim_value("plan=pro&region=eu", "region"), "eu");
        assert_eq!(dim_value("plan=pro&region=eu", "plan"), "pro");
        assert_eq!(dim_value("plan=pro&region=eu", "country"), "");
        assert_eq!(dim_value("", "region"), "");
        // A key that is a suffix of another is not confused with it.
        assert_eq!(dim_value("subregion=x&region=y", "region"), "y");
        // Values stay escaped (the caller decodes).
        assert_eq!(dim_value("name=a%26b", "name"), "a%26b");
    }

    /// Two series of `revenue` grouped by region in bucket 10: eu (sum 5, count 2, min 2, max 3,
    /// last 3) and eu again from another plan (sum 4, count 1, 4, 4, last 4) fold into sum 9,
    /// count 3, min 2, max 4, last 3 + 4 = 7; us stays alone; bucket 20 is its own row.
    #[test]
    fn series_of_one_group_add_up_and_rows_come_ordered() {
        let mut fold = GroupFold::default();
        fold.add("revenue", 20, Some("eu"), sb(1.0, 1, 1.0, 1.0, 1.0));
        fold.add("revenue", 10, Some("us"), sb(7.0, 1, 7.0, 7.0, 7.0));
        fold.add("revenue", 10, Some("eu"), sb(5.0, 2, 2.0, 3.0, 3.0));
        fold.add("revenue", 10, Some("eu"), sb(4.0, 1, 4.0, 4.0, 4.0));
        fold.add("cash", 10, Some(""), sb(2.0, 1, 2.0, 2.0, 2.0));
        let rows = fold.finish();
        let keys: Vec<(&str, i64, Option<&str>)> = rows
            .iter()
            .map(|r| (r.metric.as_str(), r.bucket, r.group.as_deref()))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("cash", 10, Some("")),
                ("revenue", 10, Some("eu")),
                ("revenue", 10, Some("us")),
                ("revenue", 20, Some("eu")),
            ]
        );
        let eu = &rows[1];
        assert_eq!(
            (eu.sum, eu.count, eu.min, eu.max, eu.last),
            (9.0, 3, 2.0, 4.0, 7.0)
        );
    }

    /// Without grouping every series of a metric and bucket lands in one row.
    #[test]
    fn ungrouped_rows_fold_every_series() {
        let mut fold = GroupFold::default();
        fold.add("m", 0, None, sb(1.5, 1, 1.5, 1.5, 1.5));
        fold.add("m", 0, None, sb(-2.0, 2, -3.0, 1.0, 1.0));
        let rows = fold.finish();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].group, None);
        assert_eq!(
            (
                rows[0].sum,
                rows[0].count,
                rows[0].min,
                rows[0].max,
                rows[0].last
            ),
            (-0.5, 3, -3.0, 1.5, 2.5)
        );
    }
}
