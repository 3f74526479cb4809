//! Read endpoints beyond one series: the whole overview in one request, raw points of a metric,
//! and (for server admins) the fleet's period averages. They share one query-parameter parser
//! with the series endpoint, so every read names a bad parameter the same way.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use chrono_tz::Tz;
use serde_json::{Value, json};

use crate::app::App;
use crate::domain::catalog::Aggregation;
use crate::domain::ingest::{self, decode_dims};
use crate::domain::roles::Scope;
use crate::domain::timebucket::{self, Bucket};
use crate::services::query;
use crate::store::meta::{health_scores, orgs};
use crate::store::metrics;
use crate::web::api::{MAX_BUCKETS, parse_query};
use crate::web::auth::{ApiKeyAuth, CurrentUser};
use crate::web::error::ApiError;

/// Raw points returned by one request unless `limit` says otherwise, and the most it may say.
pub const DEFAULT_POINT_LIMIT: usize = 10_000;
pub const MAX_POINT_LIMIT: usize = 100_000;

/// The query parameters of the read endpoints. Each endpoint lists the ones it accepts; any
/// other is refused by name.
#[derive(Debug, Clone)]
pub struct ReadParams {
    pub from: i64,
    pub to: i64,
    pub bucket: Bucket,
    pub agg: Option<Aggregation>,
    pub group_by: Option<String>,
    pub filters: Vec<(String, String)>,
    pub limit: Option<usize>,
}

/// Parses `from`, `to` (RFC 3339 or YYYY-MM-DD in `tz`; default the 30 days up to now),
/// `bucket`, `agg`, `group_by`, `limit` and `dim.KEY=VALUE`, accepting only those in `accepted`
/// (`"dim"` stands for every `dim.KEY`).
pub fn parse_read_params(
    raw: Option<&str>,
    tz: Tz,
    now_micros: i64,
    accepted: &[&str],
) -> Result<ReadParams, ApiError> {
    let (mut from, mut to) = (None, None);
    let mut params = ReadParams {
        from: 0,
        to: 0,
        bucket: Bucket::Day,
        agg: None,
        group_by: None,
        filters: Vec::new(),
        limit: None,
    };
    for (name, value) in parse_query(raw.unwrap_or(""))? {
        // `dim.KEY` is the family `dim`; a bare `dim` (no key) is no parameter at all.
        let family = if name.starts_with("dim.") {
            "dim"
        } else if name == "dim" {
            "dim."
        } else {
            name.as_str()
        };
        if !accepted.contains(&family) {
            let names: Vec<String> = accepted
                .iter()
                .map(|a| {
                    if *a == "dim" {
                        "dim.KEY".into()
                    } else {
                        a.to_string()
                    }
                })
                .collect();
            return Err(ApiError::bad_request(
                &name,
                format!("unknown parameter `{name}`; use {}", names.join(", ")),
            ));
        }
        match family {
            "from" | "to" => {
                let t = timebucket::parse_time(&value, tz)
                    .ok_or_else(|| ApiError::bad_request(&name, timebucket::TIME_PARAM_RULE))?;
                if family == "from" {
                    from = Some(t);
                } else {
                    to = Some(t);
                }
            }
            "bucket" => {
                params.bucket = Bucket::parse(&value).ok_or_else(|| {
                    ApiError::bad_request("bucket", "must be hour, day, week or month")
                })?
            }
            "agg" => {
                params.agg = Some(Aggregation::parse(&value).ok_or_else(|| {
                    ApiError::bad_request("agg", "must be sum, avg, min, max or last")
                })?)
            }
            "group_by" => {
                ingest::validate_dimension_key(&value)
                    .map_err(|m| ApiError::bad_request("group_by", m))?;
                params.group_by = Some(value);
            }
            "limit" => {
                let n = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_POINT_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "limit",
                            format!("must be a whole number from 1 to {MAX_POINT_LIMIT}"),
                        )
                    })?;
                params.limit = Some(n);
            }
            _ => {
                let key = &name["dim.".len()..];
                ingest::validate_dimension_key(key).map_err(|m| ApiError::bad_request(&name, m))?;
                // A point has at most this many dimensions, so more filters can match nothing;
                // each one is a SQL predicate, so they are bounded.
                if params.filters.len() == ingest::MAX_DIMENSIONS {
                    return Err(ApiError::bad_request(
                        &name,
                        format!(
                            "at most {} dim.* filters per request (a point has at most {} dimensions)",
                            ingest::MAX_DIMENSIONS,
                            ingest::MAX_DIMENSIONS
                        ),
                    ));
                }
                params.filters.push((key.to_string(), value));
            }
        }
    }
    params.to = to.unwrap_or(now_micros);
    params.from = from.unwrap_or(params.to - 30 * 86_400_000_000);
    if params.from >= params.to {
        return Err(ApiError::bad_request("from", "must be before `to`"));
    }
    Ok(params)
}

/// Refuses a range that would produce more buckets than one response may hold.
pub fn check_bucket_count(params: &ReadParams) -> Result<(), ApiError> {
    if timebucket::estimate_bucket_count(params.bucket, params.from, params.to) > MAX_BUCKETS {
        return Err(ApiError::bad_request(
            "bucket",
            format!(
                "the range holds more than {MAX_BUCKETS} buckets; use a coarser bucket or a shorter range"
            ),
        ));
    }
    Ok(())
}

/// A memoised answer serves unless the request says `Cache-Control: no-cache` (or `no-store`):
/// then it is computed now. Both give the same numbers; a memo lives until the org's next write.
fn reuse_of(headers: &axum::http::HeaderMap) -> query::Reuse {
    let fresh = headers
        .get_all(axum::http::header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| {
            matches!(
                d.trim().to_ascii_lowercase().as_str(),
                "no-cache" | "no-store"
            )
        });
    if fresh {
        query::Reuse::Fresh
    } else {
        query::Reuse::Memo
    }
}

/// `GET /api/v1/overview?from&to&bucket&agg`: every metric of the org with its latest value and
/// its bucketed series, in one request (what a dashboard or a report reads).
pub async fn overview(
    State(app): State<App>,
    auth: ApiKeyAuth,
    headers: axum::http::HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let org = auth.org.clone();
    let tz = query::org_tz(&org);
    let params = parse_read_params(
        raw.as_deref(),
        tz,
        chrono::Utc::now().timestamp_micros(),
        &["from", "to", "bucket", "agg"],
    )?;
    check_bucket_count(&params)?;
    let org_id = org.id;
    let defs = app.meta.catalog(org_id).await?.to_vec();
    let metrics = query::overview(
        &app,
        &org,
        defs,
        (params.from, params.to),
        params.bucket,
        params.agg,
        reuse_of(&headers),
    )
    .await?;
    let items: Vec<Value> = metrics
        .iter()
        .map(|m| {
            json!({
                "key": m.def.key,
                "unit": m.def.unit,
                "agg": params.agg.unwrap_or(m.def.aggregation),
                "latest": m.latest.as_ref().map(|l| json!({
                    "timestamp": query::local_rfc3339(tz, l.ts_micros),
                    "value": l.value,
                })),
                "points": m.points,
            })
        })
        .collect();
    Ok(Json(json!({
        "org": org.slug,
        "time_zone": org.time_zone,
        "from": query::local_rfc3339(tz, params.from),
        "to": query::local_rfc3339(tz, params.to),
        "bucket": params.bucket,
        "metrics": items,
    })))
}

/// `GET /api/v1/metrics/{key}/points?from&to&limit&dim.KEY=VALUE`: raw points in time order. When
/// more than `limit` match, the first `limit` are returned with `truncated: true`.
pub async fn points(
    State(app): State<App>,
    auth: ApiKeyAuth,
    Path(key): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let org = auth.org.clone();
    let org_id = org.id;
    let tz = query::org_tz(&org);
    let known = app.meta.catalog(org_id).await?.iter().any(|d| d.key == key);
    if !known {
        return Err(ApiError::not_found(format!("unknown metric `{key}`")).field("key"));
    }
    let params = parse_read_params(
        raw.as_deref(),
        tz,
        chrono::Utc::now().timestamp_micros(),
        &["from", "to", "limit", "dim"],
    )?;
    let limit = params.limit.unwrap_or(DEFAULT_POINT_LIMIT);
    let (metric, filters) = (key.clone(), params.filters.clone());
    let (from, to) = (params.from, params.to);
    let mut rows = app
        .metrics
        .read(move |c| metrics::raw_points(c, org_id, &metric, from, to, &filters, limit + 1))
        .await?;
    let truncated = rows.len() > limit;
    rows.truncate(limit);
    let points: Vec<Value> = rows
        .iter()
        .map(|p| {
            json!({
                "timestamp": query::local_rfc3339(tz, p.ts_micros),
                "value": p.value,
                "dimensions": decode_dims(&p.dims),
            })
        })
        .collect();
    Ok(Json(json!({
        "metric": key,
        "from": query::local_rfc3339(tz, from),
        "to": query::local_rfc3339(tz, to),
        "truncated": truncated,
        "points": points,
    })))
}

/// `GET /admin/fleet.json?from&to` (server admins): for every org, each metric's average, count
/// and sum over the range (default the last 30 days), read in one scan: what the score job reads.
pub async fn fleet(
    State(app): State<App>,
    user: CurrentUser,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    if !user.user.is_server_admin {
        return Err(ApiError::forbidden(
            "only a server admin can read the whole fleet",
        ));
    }
    let params = parse_read_params(
        raw.as_deref(),
        Tz::UTC,
        chrono::Utc::now().timestamp_micros(),
        &["from", "to"],
    )?;
    let everyone = app
        .meta
        .call(|c| {
            health_scores::org_ids(c)?
                .into_iter()
                .map(|id| orgs::by_id(c, id))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    let ids: Vec<i64> = everyone.iter().map(|o| o.id).collect();
    let (from, to) = (params.from, params.to);
    let rows = app
        .metrics
        .read(move |c| metrics::period_fleet(c, &ids, from, from, to))
        .await?;
    let mut per_org: HashMap<i64, Vec<Value>> = HashMap::new();
    let mut sorted: Vec<_> = rows.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    for ((org_id, metric, _), row) in sorted {
        per_org.entry(org_id).or_default().push(json!({
            "key": metric,
            "avg": row.value(Aggregation::Avg),
            "sum": row.sum,
            "count": row.count,
        }));
    }
    let orgs: Vec<Value> = everyone
        .iter()
        .map(|o| {
            json!({
                "org": o.slug,
                "metrics": per_org.remove(&o.id).unwrap_or_default(),
            })
        })
        .collect();
    Ok(Json(json!({
        "from": query::local_rfc3339(Tz::UTC, from),
        "to": query::local_rfc3339(Tz::UTC, to),
        "orgs": orgs,
    })))
}
