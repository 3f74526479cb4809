//! Read models shared by the API and the pages: bucketed series and overview cards.

use std::collections::{BTreeMap, HashMap};

use chrono::{Duration, NaiveDateTime};
use chrono_tz::Tz;
use serde::Serialize;

use crate::app::App;
use crate::domain::catalog::{Aggregation, MetricDef};
use crate::domain::ingest::decode_dim_value;
use crate::domain::timebucket::{self, Bucket, BucketStart};
use crate::store::StoreError;
use crate::store::meta::orgs::Org;
use crate::store::metrics::{self, AggRow, AggregateQuery, Bucketing};

pub fn org_tz(org: &Org) -> Tz {
    org.time_zone.parse().unwrap_or(Tz::UTC)
}

#[derive(Debug, Clone)]
pub struct SeriesRequest {
    pub metric: String,
    pub from_micros: i64,
    pub to_micros: i64,
    pub bucket: Bucket,
    pub agg: Aggregation,
    pub filters: Vec<(String, String)>,
    pub group_by: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeriesPoint {
    #[serde(skip)]
    pub local: NaiveDateTime,
    #[serde(skip)]
    pub utc_micros: i64,
    /// Bucket start as RFC 3339 with the org's offset.
    pub start: String,
    /// `null` for a bucket without points.
    pub value: Option<f64>,
    pub count: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeriesGroup {
    /// The group-by dimension's value; `null` when not grouping, `""` for points without it.
    pub group: Option<String>,
    pub points: Vec<SeriesPoint>,
}

/// An instant as RFC 3339 with the offset of `tz` (`None` out of chrono's range).
pub fn local_rfc3339(tz: Tz, utc_micros: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_micros(utc_micros).map(|t| t.with_timezone(&tz).to_rfc3339())
}

fn rfc3339_local(tz: Tz, utc_micros: i64) -> String {
    local_rfc3339(tz, utc_micros).unwrap_or_default()
}

/// Every bucket of `[from, to)` for a range the request chose, built on the blocking pool: up to
/// 20,000 buckets (the API's cap), each a time-zone lookup, is work that grows with the request.
async fn buckets_off_runtime(
    tz: Tz,
    bucket: Bucket,
    from_micros: i64,
    to_micros: i64,
) -> Result<Vec<timebucket::BucketStart>, StoreError> {
    tokio::task::spawn_blocking(move || {
        timebucket::bucket_starts(tz, bucket, from_micros, to_micros)
    })
    .await
    .map_err(StoreError::internal)
}

/// Bucketed values of one metric in the org's time zone, every bucket present (empty ones null).
pub async fn series(
    app: &App,
    org: &Org,
    req: SeriesRequest,
) -> Result<Vec<SeriesGroup>, StoreError> {
    let tz = org_tz(org);
    let buckets = buckets_off_runtime(tz, req.bucket, req.from_micros, req.to_micros).await?;
    let query = AggregateQuery {
        org_id: org.id,
        metric: Some(req.metric.clone()),
        from_micros: req.from_micros,
        to_micros: req.to_micros,
        bucketing: Bucketing::Calendar {
            bucket: req.bucket,
            segments: timebucket::offset_segments(tz, req.from_micros, req.to_micros),
        },
        filters: req.filters.clone(),
        group_by: req.group_by.clone(),
    };
    let rows = app
        .metrics
        .read(move |c| metrics::aggregate(c, &query))
        .await?;
    let mut groups: BTreeMap<Option<String>, HashMap<i64, &AggRow>> = BTreeMap::new();
    if req.group_by.is_none() {
        groups.insert(None, HashMap::new());
    }
    for row in &rows {
        groups
            .entry(row.group.as_deref().map(decode_dim_value))
            .or_default()
            .insert(row.bucket, row);
    }
    Ok(groups
        .into_iter()
        .map(|(group, rows)| SeriesGroup {
            group,
            points: dense_points(tz, &buckets, &rows, req.agg),
        })
        .collect())
}

/// Every bucket as a point: the value (by `agg`) of the row keyed by the bucket's local start,
/// or `null` with count 0 where there is none.
fn dense_points(
    tz: Tz,
    buckets: &[BucketStart],
    rows: &HashMap<i64, &AggRow>,
    agg: Aggregation,
) -> Vec<SeriesPoint> {
    buckets
        .iter()
        .map(|b| {
            let row = rows.get(&b.local.and_utc().timestamp_micros());
            SeriesPoint {
                local: b.local,
                utc_micros: b.utc_micros,
                start: rfc3339_local(tz, b.utc_micros),
                value: row.map(|r| r.value(agg)),
                count: row.map(|r| r.count).unwrap_or(0),
            }
        })
        .collect()
}

/// Whether a read may reuse a memoised result (the org's data unchanged since, see
/// [`metrics::MetricStore::read_memo`]) or must be computed now (`Cache-Control: no-cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reuse {
    Memo,
    Fresh,
}

/// How long a memoised overview or card read is reused at most even without a write: the
/// current period ends "now", so a point stamped a little in the future (allowed up to
/// `ingest.max_future_secs`) joins the period at most this late.
const MEMO_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs `f` as a memoised read under `key`, or directly when the caller wants it fresh.
async fn read_reusing<R, F>(
    app: &App,
    reuse: Reuse,
    org_id: i64,
    key: String,
    f: F,
) -> Result<std::sync::Arc<R>, StoreError>
where
    R: Send + Sync + 'static,
    F: FnOnce(&duckdb::Connection) -> Result<R, StoreError> + Send + 'static,
{
    match reuse {
        Reuse::Memo => app.metrics.read_memo(org_id, key, MEMO_MAX_AGE, f).await,
        Reuse::Fresh => Ok(std::sync::Arc::new(app.metrics.read(f).await?)),
    }
}

/// One metric of the overview read model: its latest value and its bucketed series.
#[derive(Debug, Clone)]
pub struct OverviewMetric {
    pub def: MetricDef,
    pub latest: Option<metrics::Latest>,
    pub points: Vec<SeriesPoint>,
}

/// Every metric of the org over `[from, to)`: the latest value and the bucketed series (every
/// bucket present), each by its own aggregation unless `agg` overrides it. Two SQL statements.
pub async fn overview(
    app: &App,
    org: &Org,
    defs: Vec<MetricDef>,
    (from_micros, to_micros): (i64, i64),
    bucket: Bucket,
    agg: Option<Aggregation>,
    reuse: Reuse,
) -> Result<Vec<OverviewMetric>, StoreError> {
    let tz = org_tz(org);
    let query = AggregateQuery {
        org_id: org.id,
        metric: None,
        from_micros,
        to_micros,
        bucketing: Bucketing::Calendar {
            bucket,
            segments: timebucket::offset_segments(tz, from_micros, to_micros),
        },
        filters: Vec::new(),
        group_by: None,
    };
    let org_id = org.id;
    let key = format!("overview {from_micros} {to_micros} {bucket:?} {tz}");
    let read = read_reusing(app, reuse, org_id, key, move |c| {
        Ok((metrics::aggregate(c, &query)?, metrics::latest(c, org_id)?))
    })
    .await?;
    let (rows, latest) = &*read;
    let buckets = buckets_off_runtime(tz, bucket, from_micros, to_micros).await?;
    let mut by_metric: HashMap<&str, HashMap<i64, &AggRow>> = HashMap::new();
    for r in rows {
        by_metric
            .entry(r.metric.as_str())
            .or_default()
            .insert(r.bucket, r);
    }
    let none = HashMap::new();
    Ok(defs
        .into_iter()
        .map(|def| {
            let rows = by_metric.get(def.key.as_str()).unwrap_or(&none);
            OverviewMetric {
                points: dense_points(tz, &buckets, rows, agg.unwrap_or(def.aggregation)),
                latest: latest.get(&def.key).cloned(),
                def,
            }
        })
        .collect())
}

/// The org's catalog (built-in and custom metrics) with each metric's latest value, for the
/// API's metric list and the Metrics page.
pub async fn catalog_with_latest(
    app: &App,
    org_id: i64,
) -> Result<(Vec<MetricDef>, HashMap<String, metrics::Latest>), StoreError> {
    let defs = app.meta.catalog(org_id).await?.to_vec();
    let latest = app
        .metrics
        .read(move |c| metrics::latest(c, org_id))
        .await?;
    Ok((defs, latest))
}

/// The overview's time ranges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    Days7,
    Days30,
    Days90,
    Months12,
}

impl Range {
    pub const ALL: [Range; 4] = [Range::Days7, Range::Days30, Range::Days90, Range::Months12];

    pub fn parse(s: &str) -> Option<Range> {
        Range::ALL.into_iter().find(|r| r.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Range::Days7 => "7d",
            Range::Days30 => "30d",
            Range::Days90 => "90d",
            Range::Months12 => "12m",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Range::Days7 => "7 days",
            Range::Days30 => "30 days",
            Range::Days90 => "90 days",
            Range::Months12 => "12 months",
        }
    }

    pub fn days(self) -> i64 {
        match self {
            Range::Days7 => 7,
            Range::Days30 => 30,
            Range::Days90 => 90,
            Range::Months12 => 364,
        }
    }

    pub fn bucket(self) -> Bucket {
        match self {
            Range::Months12 => Bucket::Week,
            _ => Bucket::Day,
        }
    }
}

/// `[previous start, current start, end)`: the current period is the last `days` local days
/// including today; the previous period is the same number of days before it.
pub fn periods(tz: Tz, range: Range, now_micros: i64) -> (i64, i64, i64) {
    let today = timebucket::truncate(timebucket::local_naive(tz, now_micros), Bucket::Day);
    let start = today - Duration::days(range.days() - 1);
    let prev = start - Duration::days(range.days());
    (
        timebucket::local_to_utc_micros(tz, prev),
        timebucket::local_to_utc_micros(tz, start),
        now_micros,
    )
}

/// Aggregates per metric over `[prev_start, start)` (bucket 0) and `[start, end)` (bucket 1).
fn period_query(
    org_id: i64,
    metric: Option<String>,
    prev_start: i64,
    start: i64,
    end: i64,
) -> AggregateQuery {
    AggregateQuery {
        org_id,
        metric,
        from_micros: prev_start,
        to_micros: end,
        bucketing: Bucketing::Split { at_micros: start },
        filters: Vec::new(),
        group_by: None,
    }
}

/// Each metric's value over the current period and the one before (by its aggregation), in one
/// SQL statement: what the health score reads.
pub async fn period_values(
    app: &App,
    org: &Org,
    defs: &[MetricDef],
    range: Range,
    now_micros: i64,
) -> Result<HashMap<String, (Option<f64>, Option<f64>)>, StoreError> {
    let (prev_start, start, end) = periods(org_tz(org), range, now_micros);
    let q = period_query(org.id, None, prev_start, start, end);
    let rows = app.metrics.read(move |c| metrics::aggregate(c, &q)).await?;
    let mut out: HashMap<String, (Option<f64>, Option<f64>)> = HashMap::new();
    for def in defs {
        let pick = |bucket: i64| {
            rows.iter()
                .find(|r| r.metric == def.key && r.bucket == bucket)
                .map(|r| r.value(def.aggregation))
        };
        out.insert(def.key.clone(), (pick(1), pick(0)));
    }
    Ok(out)
}

#[derive(Debug, Clone)]
pub struct Card {
    pub def: MetricDef,
    /// The metric over the current period, by its aggregation.
    pub value: Option<f64>,
    pub previous: Option<f64>,
    /// Percent change vs the previous period (`None` without both values or when previous is 0).
    pub change_pct: Option<f64>,
    /// (bucket start UTC seconds, value) for the chart.
    pub spark: Vec<(i64, Option<f64>)>,
}

impl Card {
    /// Whether the change is good news, given the metric's direction.
    pub fn change_is_good(&self) -> Option<bool> {
        self.change_pct
            .filter(|c| *c != 0.0)
            .map(|c| (c > 0.0) == self.def.higher_is_better)
    }
}

pub fn change_pct(current: Option<f64>, previous: Option<f64>) -> Option<f64> {
    match (current, previous) {
        (Some(c), Some(p)) if p != 0.0 => Some((c - p) / p.abs() * 100.0),
        _ => None,
    }
}

/// Cards for the given metrics (all of the catalog, or one) over a range: the period value, the
/// change against the previous period, and the chart series. Two SQL statements in all.
pub async fn cards(
    app: &App,
    org: &Org,
    defs: Vec<MetricDef>,
    range: Range,
    now_micros: i64,
    reuse: Reuse,
) -> Result<Vec<Card>, StoreError> {
    let tz = org_tz(org);
    let (prev_start, start, end) = periods(tz, range, now_micros);
    let only = if defs.len() == 1 {
        Some(defs[0].key.clone())
    } else {
        None
    };
    let spark_query = AggregateQuery {
        org_id: org.id,
        metric: only.clone(),
        from_micros: start,
        to_micros: end,
        bucketing: Bucketing::Calendar {
            bucket: range.bucket(),
            segments: timebucket::offset_segments(tz, start, end),
        },
        filters: Vec::new(),
        group_by: None,
    };
    // The key leaves out the end ("now"): see MEMO_MAX_AGE.
    let key = format!(
        "cards {} {prev_start} {start} {only:?} {tz}",
        range.as_str()
    );
    let period_query = period_query(org.id, only, prev_start, start, end);
    let read = read_reusing(app, reuse, org.id, key, move |c| {
        Ok((
            metrics::aggregate(c, &spark_query)?,
            metrics::aggregate(c, &period_query)?,
        ))
    })
    .await?;
    let (spark_rows, period_rows) = &*read;
    let buckets = timebucket::bucket_starts(tz, range.bucket(), start, end);
    let mut by_metric: HashMap<&str, Vec<&AggRow>> = HashMap::new();
    for r in spark_rows {
        by_metric.entry(r.metric.as_str()).or_default().push(r);
    }
    let mut periods: HashMap<(&str, i64), &AggRow> = HashMap::new();
    for r in period_rows {
        periods.insert((r.metric.as_str(), r.bucket), r);
    }
    Ok(defs
        .into_iter()
        .map(|def| {
            let agg = def.aggregation;
            let rows: HashMap<i64, f64> = by_metric
                .get(def.key.as_str())
                .map(|rs| rs.iter().map(|r| (r.bucket, r.value(agg))).collect())
                .unwrap_or_default();
            let spark = buckets
                .iter()
                .map(|b| {
                    (
                        b.utc_micros / 1_000_000,
                        rows.get(&b.local.and_utc().timestamp_micros()).copied(),
                    )
                })
                .collect();
            let value = periods.get(&(def.key.as_str(), 1)).map(|r| r.value(agg));
            let previous = periods.get(&(def.key.as_str(), 0)).map(|r| r.value(agg));
            Card {
                change_pct: change_pct(value, previous),
                def,
                value,
                previous,
                spark,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_whole_local_days() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        let now = chrono::DateTime::parse_from_rfc3339("2026-07-10T15:00:00Z")
            .unwrap()
            .timestamp_micros();
        let (prev, start, end) = periods(tz, Range::Days7, now);
        let at = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .unwrap()
                .timestamp_micros()
        };
        assert_eq!(start, at("2026-07-03T22:00:00Z"));
        assert_eq!(prev, at("2026-06-26T22:00:00Z"));
        assert_eq!(end, now);
    }

    #[test]
    fn change_needs_a_nonzero_previous_value() {
        assert!((change_pct(Some(110.0), Some(100.0)).unwrap() - 10.0).abs() < 1e-9);
        assert_eq!(change_pct(Some(-50.0), Some(-100.0)), Some(50.0));
        assert_eq!(change_pct(Some(1.0), Some(0.0)), None);
        assert_eq!(change_pct(None, Some(1.0)), None);
    }
}
