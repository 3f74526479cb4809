//! Event analyses as read models: a trend, a funnel or a retention table for an org over a
//! range, in the org's time zone. Each runs on the blocking pool in one read (SQL in
//! `store::events::analytics`, the walk and the table in `domain::analytics`).

use std::collections::{BTreeMap, HashMap};

use chrono_tz::Tz;
use serde::Serialize;

use crate::app::App;
use crate::domain::analytics::{
    self, FunnelRequest, FunnelResult, RetentionKind, RetentionRequest, TrendMath, TrendRequest,
    UnitProgress,
};
use crate::domain::timebucket::{self, BucketStart};
use crate::store::StoreError;
use crate::store::events::analytics as sql;
use crate::store::events::cohorts::CohortFilter;
use crate::store::metrics::Bucketing;

/// The most units whose ids a funnel lists per step (who dropped there).
pub const MAX_LISTED_UNITS: usize = 100;

#[derive(Debug, Clone, Serialize)]
pub struct TrendSeries {
    /// The breakdown value (None without a breakdown).
    pub label: Option<String>,
    pub values: Vec<Option<f64>>,
    /// Over the whole range, for count-like maths (the sum of the buckets; unique users are
    /// counted per bucket, so their total is not a sum and is left out).
    pub total: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TrendAnswer {
    pub buckets: Vec<BucketStart>,
    pub series: Vec<TrendSeries>,
    /// The period before, of the same length, bucket for bucket (with `compare`).
    pub previous: Option<Vec<TrendSeries>>,
}

fn calendar(tz: Tz, bucket: timebucket::Bucket, from: i64, to: i64) -> Bucketing {
    Bucketing::Calendar {
        bucket,
        segments: timebucket::offset_segments(tz, from, to),
    }
}

fn trend_series(
    conn: &duckdb::Connection,
    org_id: i64,
    cohort: Option<&CohortFilter>,
    tz: Tz,
    req: &TrendRequest,
    from: i64,
    to: i64,
) -> Result<(Vec<BucketStart>, Vec<TrendSeries>), StoreError> {
    let buckets = timebucket::bucket_starts(tz, req.interval, from, to);
    let index = bucket_index(&buckets);
    let rows = sql::trend(
        conn,
        &sql::TrendQuery {
            org_id,
            from_micros: from,
            to_micros: to,
            bucketing: calendar(tz, req.interval, from, to),
            series: &req.series,
            math: req.math,
            property: req.property.as_deref(),
            breakdown: req.breakdown.as_ref(),
            cohort,
        },
    )?;
    let empty = if req.math.zero_when_empty() {
        Some(0.0)
    } else {
        None
    };
    let mut groups: BTreeMap<Option<String>, Vec<Option<f64>>> = BTreeMap::new();
    if req.breakdown.is_none() {
        groups.insert(None, vec![empty; buckets.len()]);
    }
    for row in rows {
        let values = groups
            .entry(row.group.clone())
            .or_insert_with(|| vec![empty; buckets.len()]);
        if let Some(i) = index.get(&row.bucket) {
            values[*i] = row.value.or(empty);
        }
    }
    let mut series: Vec<TrendSeries> = groups
        .into_iter()
        .map(|(label, values)| TrendSeries {
            total: (req.math != TrendMath::UniqueUsers && req.math.zero_when_empty())
                .then(|| values.iter().flatten().sum()),
            label,
            values,
        })
        .collect();
    // Busiest first; "(other)" and "(none)" last.
    series.sort_by(|a, b| {
        let rank = |s: &TrendSeries| {
            matches!(
                s.label.as_deref(),
                Some(sql::OTHER_LABEL) | Some(sql::NONE_LABEL)
            )
        };
        let sum = |s: &TrendSeries| s.values.iter().flatten().sum::<f64>();
        rank(a)
            .cmp(&rank(b))
            .then(sum(b).total_cmp(&sum(a)))
            .then(a.label.cmp(&b.label))
    });
    Ok((buckets, series))
}

pub async fn trend(
    app: &App,
    org_id: i64,
    cohort: Option<CohortFilter>,
    tz: Tz,
    req: TrendRequest,
    from: i64,
    to: i64,
) -> Result<TrendAnswer, StoreError> {
    app.events
        .read(move |c| {
            let (buckets, series) = trend_series(c, org_id, cohort.as_ref(), tz, &req, from, to)?;
            let previous = if req.compare {
                let span = to - from;
                let (_, prev) =
                    trend_series(c, org_id, cohort.as_ref(), tz, &req, from - span, from)?;
                Some(prev)
            } else {
                None
            };
            Ok(TrendAnswer {
                buckets,
                series,
                previous,
            })
        })
        .await
}

#[derive(Debug, Clone, Serialize)]
pub struct FunnelAnswer {
    pub all: FunnelResult,
    /// Per breakdown value (first step's property), the busiest first.
    pub breakdowns: Vec<FunnelResult>,
    /// Per step (from the second), the units that reached the step before and stopped there
    /// (at most [`MAX_LISTED_UNITS`] each).
    pub dropped_units: Vec<Vec<String>>,
}

pub async fn funnel(
    app: &App,
    org_id: i64,
    cohort: Option<CohortFilter>,
    req: FunnelRequest,
    from: i64,
    to: i64,
) -> Result<FunnelAnswer, StoreError> {
    app.events
        .read(move |c| {
            let units = sql::funnel_events(c, org_id, cohort.as_ref(), from, to, &req)?;
            let n = req.steps.len();
            let progress: Vec<(String, UnitProgress)> = units
                .into_iter()
                .map(|(unit, events)| {
                    let p = analytics::walk(&events, n, req.window_micros, req.order);
                    (unit, p)
                })
                .filter(|(_, p)| p.reached > 0)
                .collect();
            let names: Vec<String> = req.steps.iter().map(|s| s.event.clone()).collect();
            let all = analytics::summarise(
                &names,
                &progress.iter().map(|(_, p)| p).collect::<Vec<_>>(),
                None,
            );
            let mut breakdowns = Vec::new();
            if let Some(b) = &req.breakdown {
                let mut by_value: BTreeMap<String, Vec<&UnitProgress>> = BTreeMap::new();
                for (_, p) in &progress {
                    let label = p
                        .breakdown
                        .clone()
                        .unwrap_or_else(|| sql::NONE_LABEL.into());
                    by_value.entry(label).or_default().push(p);
                }
                let mut groups: Vec<(String, Vec<&UnitProgress>)> = by_value.into_iter().collect();
                groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
                let mut other: Vec<&UnitProgress> = Vec::new();
                for (i, (label, units)) in groups.into_iter().enumerate() {
                    if i < b.limit {
                        breakdowns.push(analytics::summarise(&names, &units, Some(label)));
                    } else {
                        other.extend(units);
                    }
                }
                if !other.is_empty() {
                    breakdowns.push(analytics::summarise(
                        &names,
                        &other,
                        Some(sql::OTHER_LABEL.into()),
                    ));
                }
            }
            let mut dropped_units = vec![Vec::new(); n.saturating_sub(1)];
            for (unit, p) in &progress {
                if p.reached < n && dropped_units[p.reached - 1].len() < MAX_LISTED_UNITS {
                    dropped_units[p.reached - 1].push(unit.clone());
                }
            }
            Ok(FunnelAnswer {
                all,
                breakdowns,
                dropped_units,
            })
        })
        .await
}

#[derive(Debug, Clone, Serialize)]
pub struct RetentionAnswer {
    pub periods: Vec<BucketStart>,
    pub cohorts: Vec<analytics::CohortRow>,
}

pub async fn retention(
    app: &App,
    org_id: i64,
    cohort: Option<CohortFilter>,
    tz: Tz,
    req: RetentionRequest,
    from: i64,
    to: i64,
) -> Result<RetentionAnswer, StoreError> {
    app.events
        .read(move |c| {
            let audience = sql::Audience {
                org_id,
                cohort: cohort.as_ref(),
            };
            let periods = timebucket::bucket_starts(tz, req.period, from, to);
            let index = bucket_index(&periods);
            let bucketing = calendar(tz, req.period, from, to);
            let to_index = |pairs| at_positions(pairs, &index);
            let first_time = req.kind == RetentionKind::FirstTime;
            let cohorts = to_index(sql::retention_pairs(
                c,
                audience,
                from,
                to,
                &bucketing,
                &req.target,
                first_time,
            )?);
            let returns = to_index(sql::retention_pairs(
                c,
                audience,
                from,
                to,
                &bucketing,
                &req.returning,
                false,
            )?);
            let last = periods.len().saturating_sub(1);
            let table =
                analytics::retention_table(&cohorts, &returns, periods.len(), req.periods, last);
            Ok(RetentionAnswer {
                periods,
                cohorts: table,
            })
        })
        .await
}

#[derive(Debug, Clone, Serialize)]
pub struct StickinessAnswer {
    /// People active in exactly k intervals, k = 1 … the range's interval count.
    pub users: Vec<usize>,
}

pub async fn stickiness(
    app: &App,
    org_id: i64,
    cohort: Option<CohortFilter>,
    tz: Tz,
    req: analytics::ActivityRequest,
    from: i64,
    to: i64,
) -> Result<StickinessAnswer, StoreError> {
    app.events
        .read(move |c| {
            let audience = sql::Audience {
                org_id,
                cohort: cohort.as_ref(),
            };
            let periods = timebucket::bucket_starts(tz, req.interval, from, to);
            let index = bucket_index(&periods);
            let pairs = sql::retention_pairs(
                c,
                audience,
                from,
                to,
                &calendar(tz, req.interval, from, to),
                &req.event,
                false,
            )?;
            let active = at_positions(pairs, &index);
            Ok(StickinessAnswer {
                users: analytics::stickiness(&active, periods.len()),
            })
        })
        .await
}

/// (person, bucket key) pairs as (person, bucket position), leaving out keys outside the
/// calendar.
fn at_positions(pairs: Vec<(String, i64)>, index: &HashMap<i64, usize>) -> Vec<(String, usize)> {
    pairs
        .into_iter()
        .filter_map(|(p, key)| index.get(&key).map(|i| (p, *i)))
        .collect()
}

/// Bucket key (the local wall-clock start, as the store's bucketing gives it) → position.
fn bucket_index(periods: &[BucketStart]) -> HashMap<i64, usize> {
    periods
        .iter()
        .enumerate()
        .map(|(i, b)| (b.local.and_utc().timestamp_micros(), i))
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct LifecycleAnswer {
    pub periods: Vec<BucketStart>,
    pub lifecycle: analytics::Lifecycle,
}

pub async fn lifecycle(
    app: &App,
    org_id: i64,
    cohort: Option<CohortFilter>,
    tz: Tz,
    req: analytics::ActivityRequest,
    from: i64,
    to: i64,
) -> Result<LifecycleAnswer, StoreError> {
    app.events
        .read(move |c| {
            let audience = sql::Audience {
                org_id,
                cohort: cohort.as_ref(),
            };
            // One interval before the range gives "returning" and "dormant" their context.
            let first_start = timebucket::bucket_starts(tz, req.interval, from, to)
                .first()
                .map_or(from, |b| b.utc_micros);
            let before = timebucket::local_to_utc_micros(
                tz,
                timebucket::truncate(timebucket::local_naive(tz, first_start - 1), req.interval),
            );
            let all = timebucket::bucket_starts(tz, req.interval, before, to);
            let index = bucket_index(&all);
            let bucketing = calendar(tz, req.interval, before, to);
            let to_index = |pairs| at_positions(pairs, &index);
            let active = to_index(sql::retention_pairs(
                c, audience, before, to, &bucketing, &req.event, false,
            )?);
            let first: HashMap<String, usize> = to_index(sql::retention_pairs(
                c, audience, before, to, &bucketing, &req.event, true,
            )?)
            .into_iter()
            .collect();
            let n = all.len().saturating_sub(1);
            Ok(LifecycleAnswer {
                periods: all.into_iter().skip(1).collect(),
                lifecycle: analytics::lifecycle(&active, &first, n),
            })
        })
        .await
}

#[derive(Debug, Clone)]
pub struct ApiUsageAnswer {
    pub buckets: Vec<BucketStart>,
    /// Per bucket, in order (empty buckets have zero requests).
    pub series: Vec<sql::RequestStats>,
    pub total: sql::RequestStats,
    /// The busiest routes first.
    pub routes: Vec<sql::RequestStats>,
}

pub async fn api_usage(
    app: &App,
    org_id: i64,
    cohort: Option<CohortFilter>,
    tz: Tz,
    req: analytics::ApiUsageRequest,
    from: i64,
    to: i64,
) -> Result<ApiUsageAnswer, StoreError> {
    app.events
        .read(move |c| {
            let buckets = timebucket::bucket_starts(tz, req.interval, from, to);
            let index = bucket_index(&buckets);
            let bucketing = calendar(tz, req.interval, from, to);
            let q = sql::ApiUsageQuery {
                org_id,
                cohort: cohort.as_ref(),
                from_micros: from,
                to_micros: to,
                bucketing: &bucketing,
                request: &req,
            };
            let empty = |bucket: Option<i64>| sql::RequestStats {
                route: None,
                bucket,
                requests: 0,
                client_errors: 0,
                server_errors: 0,
                p50_ms: None,
                p95_ms: None,
                p99_ms: None,
            };
            let mut series: Vec<sql::RequestStats> =
                (0..buckets.len()).map(|_| empty(None)).collect();
            for row in sql::api_usage(c, &q, sql::RequestGrouping::PerBucket)? {
                if let Some(i) = row.bucket.and_then(|b| index.get(&b)) {
                    series[*i] = row;
                }
            }
            let total = sql::api_usage(c, &q, sql::RequestGrouping::Total)?
                .into_iter()
                .next()
                .unwrap_or_else(|| empty(None));
            let routes = sql::api_usage(c, &q, sql::RequestGrouping::PerRoute)?;
            Ok(ApiUsageAnswer {
                buckets,
                series,
                total,
                routes,
            })
        })
        .await
}
