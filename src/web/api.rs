//! JSON API v1. Every handler takes [`ApiKeyAuth`], so it acts on the key's org only.

use std::collections::{HashMap, HashSet};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};

use super::auth::ApiKeyAuth;
use super::error::ApiError;
use super::read_api::{self, ReadParams};
use crate::app::App;
use crate::domain::catalog::{self, MetricDef};
use crate::domain::ingest::{self, BatchError, Limits};
use crate::domain::roles::Scope;
use crate::domain::timebucket::{self, Bucket};
use crate::query::{self, SeriesRequest};
use crate::store::meta::{audit, custom_metrics};
use crate::store::metrics;

/// The largest number of buckets one series request may produce.
pub const MAX_BUCKETS: i64 = 20_000;

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct
        .split(';')
        .next()
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
    {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as JSON with `Content-Type: application/json`",
        ))
    }
}

/// Reads a JSON body, mapping every failure to a clear 4xx.
pub(crate) fn json_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, ApiError> {
    require_json(headers)?;
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "the request body is larger than ingest.max_body_bytes; split it into smaller batches",
            )
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_body", "the request body could not be read")
        }
    })?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )
    })
}

/// `POST /api/v1/metrics`: one point, a list, or `{"points": [...]}`. All or nothing: any bad
/// item rejects the whole batch with every problem listed.
pub async fn ingest(
    State(app): State<App>,
    auth: ApiKeyAuth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Write)?;
    let body = json_body(&headers, body)?;
    ingest_value(&app, auth.org.id, body).await
}

/// Validates and stores a metric batch for `org_id` (the API and the inbound webhooks).
pub(crate) async fn ingest_value(
    app: &App,
    org_id: i64,
    body: Value,
) -> Result<Json<Value>, ApiError> {
    let app = app.clone();
    let known: HashSet<String> = app
        .meta
        .call(move |c| custom_metrics::catalog(c, org_id))
        .await?
        .into_iter()
        .map(|m| m.key)
        .collect();
    let limits = Limits {
        now_micros: chrono::Utc::now().timestamp_micros(),
        max_future_micros: app.config.ingest.max_future_secs as i64 * 1_000_000,
        max_points: app.config.ingest.max_points_per_request as usize,
    };
    let points =
        ingest::parse_batch(&body, |k| known.contains(k), &limits).map_err(|e| match e {
            BatchError::Shape(m) => ApiError::new(StatusCode::BAD_REQUEST, "bad_shape", m),
            BatchError::Empty => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "empty_batch",
                "the batch holds no points",
            )
            .field("points"),
            BatchError::TooMany { count, max } => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "batch_too_large",
                format!("the batch holds {count} points; at most {max} are accepted per request"),
            )
            .field("points"),
            BatchError::Items(items) => {
                let first = &items[0];
                let message = format!(
                    "{} of the points are invalid; nothing was stored. First: points[{}].{}: {}",
                    items.len(),
                    first.index,
                    first.field,
                    first.reason
                );
                let field = if first.field.is_empty() {
                    format!("points[{}]", first.index)
                } else {
                    format!("points[{}].{}", first.index, first.field)
                };
                let mut err =
                    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_points", message)
                        .field(field);
                err.details = items;
                err
            }
        })?;
    let (stored, touched) = app.store_points(org_id, points).await?;
    Ok(Json(json!({ "accepted": stored, "metrics": touched })))
}

fn metric_json(def: &MetricDef, latest: Option<&metrics::Latest>) -> Value {
    json!({
        "key": def.key,
        "name": def.name,
        "description": def.description,
        "category": def.category,
        "unit": def.unit,
        "higher_is_better": def.higher_is_better,
        "aggregation": def.aggregation,
        "custom": def.custom,
        "latest": latest.map(|l| json!({
            "timestamp": chrono::DateTime::from_timestamp_micros(l.ts_micros).map(|t| t.to_rfc3339()),
            "value": l.value,
        })),
    })
}

/// `GET /api/v1/metrics`: the org's catalog with each metric's latest value.
pub async fn list_metrics(
    State(app): State<App>,
    auth: ApiKeyAuth,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let (catalog, latest) = query::catalog_with_latest(&app, auth.org.id).await?;
    let items: Vec<Value> = catalog
        .iter()
        .map(|d| metric_json(d, latest.get(&d.key)))
        .collect();
    Ok(Json(
        json!({ "org": auth.org.slug, "currency": auth.org.currency, "time_zone": auth.org.time_zone, "metrics": items }),
    ))
}

/// `GET /api/v1/metrics/{key}/series?from&to&bucket&agg&group_by&dim.KEY=VALUE`.
pub async fn series(
    State(app): State<App>,
    auth: ApiKeyAuth,
    Path(key): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let org = auth.org.clone();
    let org_id = org.id;
    let catalog = app
        .meta
        .call(move |c| custom_metrics::catalog(c, org_id))
        .await?;
    let def = catalog
        .into_iter()
        .find(|d| d.key == key)
        .ok_or_else(|| ApiError::not_found(format!("unknown metric `{key}`")).field("key"))?;
    let tz = query::org_tz(&org);
    let params = read_api::parse_read_params(
        raw.as_deref(),
        tz,
        chrono::Utc::now().timestamp_micros(),
        &["from", "to", "bucket", "agg", "group_by", "dim"],
    )?;
    read_api::check_bucket_count(&params)?;
    let ReadParams {
        from,
        to,
        bucket,
        agg,
        group_by,
        filters,
        ..
    } = params;
    let agg = agg.unwrap_or(def.aggregation);
    let groups = query::series(
        &app,
        &org,
        SeriesRequest {
            metric: def.key.clone(),
            from_micros: from,
            to_micros: to,
            bucket,
            agg,
            filters: filters.clone(),
            group_by: group_by.clone(),
        },
    )
    .await?;
    Ok(Json(json!({
        "metric": def.key,
        "unit": def.unit,
        "bucket": bucket,
        "agg": agg,
        "time_zone": org.time_zone,
        "from": query::local_rfc3339(tz, from),
        "to": query::local_rfc3339(tz, to),
        "filters": filters.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<HashMap<_, _>>(),
        "group_by": group_by,
        "series": groups,
    })))
}

pub(crate) fn parse_query(raw: &str) -> Result<Vec<(String, String)>, ApiError> {
    let mut out = Vec::new();
    for pair in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let k = percent_decode(k)
            .ok_or_else(|| ApiError::bad_request(k, "is not valid percent-encoding"))?;
        let v = percent_decode(v)
            .ok_or_else(|| ApiError::bad_request(&k, "is not valid percent-encoding"))?;
        if out.iter().any(|(seen, _): &(String, String)| *seen == k) {
            return Err(ApiError::bad_request(&k, "is given more than once"));
        }
        out.push((k, v));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = s.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// `POST /api/v1/custom-metrics` (admin scope): define a metric beside the built-in catalog.
pub async fn create_custom_metric(
    State(app): State<App>,
    auth: ApiKeyAuth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    auth.require(Scope::Admin)?;
    let body = json_body(&headers, body)?;
    let def = parse_metric_def(&body)?;
    let org_id = auth.org.id;
    let actor = format!("apikey:{}", auth.key.prefix);
    let stored = def.clone();
    app.meta
        .call(move |c| {
            custom_metrics::create(c, org_id, &stored)?;
            audit::record(c, Some(org_id), &actor, "metric.create", &stored.key, "")
        })
        .await?;
    Ok((StatusCode::CREATED, Json(metric_json(&def, None))))
}

fn parse_metric_def(body: &Value) -> Result<MetricDef, ApiError> {
    let Value::Object(map) = body else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_shape",
            "expected a JSON object",
        ));
    };
    for k in map.keys() {
        if ![
            "key",
            "name",
            "description",
            "category",
            "unit",
            "higher_is_better",
            "aggregation",
        ]
        .contains(&k.as_str())
        {
            return Err(ApiError::bad_request(k, "unknown field"));
        }
    }
    let invalid = |field: &str, m: String| {
        ApiError::bad_request(field, m).with_status(StatusCode::UNPROCESSABLE_ENTITY)
    };
    let text = |field: &'static str| -> Result<&str, ApiError> {
        match map.get(field) {
            Some(Value::String(s)) => Ok(s.as_str()),
            None => Ok(""),
            Some(_) => Err(invalid(field, "must be a string".into())),
        }
    };
    let higher_is_better = match map.get("higher_is_better") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(invalid("higher_is_better", "must be true or false".into())),
    };
    catalog::custom_metric(&catalog::CustomMetricInput {
        key: text("key")?,
        name: text("name")?,
        description: text("description")?,
        category: text("category")?,
        unit: text("unit")?,
        aggregation: text("aggregation")?,
        higher_is_better,
    })
    .map_err(|(field, m)| invalid(field, m))
}

impl ApiError {
    fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        if status == StatusCode::UNPROCESSABLE_ENTITY {
            self.code = "invalid_field";
        }
        self
    }
}

/// `GET /api/v1/org`: which org and scopes this key has.
pub async fn whoami(auth: ApiKeyAuth) -> Json<Value> {
    Json(json!({
        "org": { "slug": auth.org.slug, "name": auth.org.name, "time_zone": auth.org.time_zone, "currency": auth.org.currency },
        "key": { "name": auth.key.name, "prefix": auth.key.prefix, "scopes": auth.key.scopes },
    }))
}

/// Fallback for unknown API paths: JSON, not HTML.
pub async fn not_found() -> ApiError {
    ApiError::not_found("no such API endpoint; see the README for the API")
}

/// The score report as the API returns it, with trend against yesterday and last week.
async fn score_json(
    app: &App,
    org: &crate::store::meta::orgs::Org,
    report: crate::scoring::ScoreReport,
) -> Result<Value, ApiError> {
    let org_id = org.id;
    let at = report.computed_at;
    let (day_ago, week_ago) = app
        .meta
        .call(move |c| {
            Ok((
                crate::store::meta::health_scores::before(c, org_id, at - 86_400)?,
                crate::store::meta::health_scores::before(c, org_id, at - 7 * 86_400)?,
            ))
        })
        .await?;
    let delta = |then: Option<f64>| match (report.overall, then) {
        (Some(now), Some(then)) => Some(now - then),
        _ => None,
    };
    let mut body = serde_json::to_value(&report)
        .map_err(|e| ApiError::from(crate::store::StoreError::internal(e)))?;
    body["computed_at"] = json!(chrono::DateTime::from_timestamp(at, 0).map(|t| t.to_rfc3339()));
    body["change_vs_yesterday"] = json!(delta(day_ago));
    body["change_vs_last_week"] = json!(delta(week_ago));
    Ok(body)
}

/// `GET /api/v1/health/score`: the latest score with breakdown and coverage (computed now if the
/// org has none yet).
pub async fn health_score(
    State(app): State<App>,
    auth: ApiKeyAuth,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let report = match crate::scoring::latest(&app, auth.org.id).await? {
        Some(r) => r,
        None => crate::scoring::recompute(&app, &auth.org).await?,
    };
    Ok(Json(score_json(&app, &auth.org, report).await?))
}

/// `POST /api/v1/health/score/recompute`: recompute now and return the new score.
pub async fn health_recompute(
    State(app): State<App>,
    auth: ApiKeyAuth,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Write)?;
    let report = crate::scoring::recompute(&app, &auth.org).await?;
    Ok(Json(score_json(&app, &auth.org, report).await?))
}

/// `GET /api/v1/health/score/history?from&to&bucket=raw|hour|day|week|month`: stored scores;
/// with a bucket, the closing (last) score of each bucket in the org's time zone.
pub async fn health_history(
    State(app): State<App>,
    auth: ApiKeyAuth,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let tz = query::org_tz(&auth.org);
    let now = chrono::Utc::now().timestamp_micros();
    let (mut from, mut to, mut bucket) = (None, None, Some(Bucket::Day));
    for (name, value) in parse_query(raw.as_deref().unwrap_or(""))? {
        match name.as_str() {
            "from" => {
                from = Some(timebucket::parse_time(&value, tz).ok_or_else(|| {
                    ApiError::bad_request("from", "must be RFC 3339 or YYYY-MM-DD")
                })?)
            }
            "to" => {
                to =
                    Some(timebucket::parse_time(&value, tz).ok_or_else(|| {
                        ApiError::bad_request("to", "must be RFC 3339 or YYYY-MM-DD")
                    })?)
            }
            "bucket" if value == "raw" => bucket = None,
            "bucket" => {
                bucket = Some(Bucket::parse(&value).ok_or_else(|| {
                    ApiError::bad_request("bucket", "must be raw, hour, day, week or month")
                })?)
            }
            other => {
                return Err(ApiError::bad_request(
                    other,
                    format!("unknown parameter `{other}`; use from, to or bucket"),
                ));
            }
        }
    }
    // Scores are stored to the second: by default include the current second too.
    let to = to.unwrap_or(now + 1_000_000);
    let from = from.unwrap_or(to - 90 * 86_400_000_000);
    if from >= to {
        return Err(ApiError::bad_request("from", "must be before `to`"));
    }
    let org_id = auth.org.id;
    let rows = app
        .meta
        .call(move |c| {
            crate::store::meta::health_scores::history(c, org_id, from / 1_000_000, to / 1_000_000)
        })
        .await?;
    let mut points: Vec<(i64, Option<f64>)> = Vec::new();
    for (at, overall) in rows {
        let key = match bucket {
            None => at,
            Some(b) => {
                timebucket::local_to_utc_micros(
                    tz,
                    timebucket::truncate(timebucket::local_naive(tz, at * 1_000_000), b),
                ) / 1_000_000
            }
        };
        match points.last_mut() {
            Some(last) if last.0 == key => last.1 = overall,
            _ => points.push((key, overall)),
        }
    }
    let to_rfc = |secs: i64| {
        chrono::DateTime::from_timestamp(secs, 0).map(|t| t.with_timezone(&tz).to_rfc3339())
    };
    Ok(Json(json!({
        "bucket": bucket.map(|b| b.as_str()).unwrap_or("raw"),
        "time_zone": auth.org.time_zone,
        "points": points.iter().map(|(t, v)| json!({"at": to_rfc(*t), "overall": v})).collect::<Vec<_>>(),
    })))
}

/// `POST /hooks/{token}`: an inbound webhook. The secret URL stands for the org (no API key, for
/// Zapier-style tools); the body and its validation are those of `POST /api/v1/metrics`.
pub async fn inbound_hook(
    State(app): State<App>,
    Path(token): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let hash = crate::security::sha256_hex(&token);
    let hook = app
        .meta
        .call(move |c| crate::store::meta::inbound_hooks::find_active(c, &hash))
        .await
        .map_err(|e| match e {
            crate::store::StoreError::NotFound => ApiError::not_found(
                "unknown or revoked webhook URL; create one on the Webhooks page",
            ),
            other => ApiError::from(other),
        })?;
    let body = json_body(&headers, body)?;
    ingest_value(&app, hook.org_id, body).await
}
