//! JSON API v1. Every handler takes [`ApiKeyAuth`], so it acts on the key's org only.

use std::collections::{HashMap, HashSet};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::app::App;
use crate::domain::catalog::{self, MetricDef};
use crate::domain::ingest::{self, BatchError, Limits};
use crate::domain::ingest_arrow;
use crate::domain::roles::Scope;
use crate::services::query::{self, SeriesRequest};
use crate::store::meta::{audit, custom_metrics};
use crate::store::metrics;
use crate::web::api::reads::{self, ReadParams};
use crate::web::api::{body_bytes, json_body, json_bytes, parse_json};
use crate::web::auth::ApiKeyAuth;
use crate::web::error::ApiError;
use crate::web::rate_limit::{RateLimits, RouteClass, VerdictSlot, charge_with};

/// `POST /api/v1/metrics`: one point, a list, or `{"points": [...]}`. All or nothing: any bad
/// item rejects the whole batch with every problem listed.
pub async fn ingest(
    State(app): State<App>,
    auth: ApiKeyAuth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Write)?;
    if is_arrow_stream(&headers) {
        let body = body_bytes(body)?;
        return ingest_arrow_body(&app, auth.org.id, body).await;
    }
    let body = json_bytes(&headers, body)?;
    ingest_body(&app, auth.org.id, body).await
}

fn is_arrow_stream(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(ingest_arrow::CONTENT_TYPE))
}

/// The org's metric keys: what a batch may name.
async fn known_metrics(app: &App, org_id: i64) -> Result<HashSet<String>, ApiError> {
    Ok(app
        .meta
        .catalog(org_id)
        .await?
        .iter()
        .map(|m| m.key.clone())
        .collect())
}

fn ingest_limits(app: &App) -> Limits {
    Limits {
        now_micros: chrono::Utc::now().timestamp_micros(),
        max_future_micros: app.config.ingest.max_future_secs as i64 * 1_000_000,
        max_points: app.config.ingest.max_points_per_request as usize,
    }
}

/// Points as an Arrow IPC stream (see [`ingest_arrow`]): validated on the blocking pool like
/// a JSON batch, all or nothing, then appended as columns.
async fn ingest_arrow_body(app: &App, org_id: i64, body: Bytes) -> Result<Json<Value>, ApiError> {
    let known = known_metrics(app, org_id).await?;
    let limits = ingest_limits(app);
    let max_text = app.config.ingest.max_body_bytes as usize;
    let points = app
        .parse_work(move || {
            ingest_arrow::parse_arrow_stream(&body, |k| known.contains(k), &limits, max_text)
                .map_err(batch_error)
        })
        .await??;
    let (stored, touched) = app.store_columns(org_id, points).await?;
    Ok(Json(json!({ "accepted": stored, "metrics": touched })))
}

/// Parses, validates and stores a metric batch for `org_id` (the API and the inbound webhooks).
/// Parsing and validating up to `ingest.max_body_bytes` of JSON and
/// `ingest.max_points_per_request` points is CPU work that grows with the request: it runs on
/// the blocking pool, so a few maximal batches never hold up the async runtime.
pub(crate) async fn ingest_body(
    app: &App,
    org_id: i64,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let app = app.clone();
    let known = known_metrics(&app, org_id).await?;
    let limits = ingest_limits(&app);
    let points = app
        .parse_work(move || {
            ingest::parse_batch_bytes(&body, |k| known.contains(k), &limits).map_err(|e| match e {
                Some(e) => batch_error(e),
                // Not JSON: the same answer as every other JSON input.
                None => parse_json(&body).err().unwrap_or_else(|| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "malformed_json",
                        "the body is not valid JSON",
                    )
                }),
            })
        })
        .await??;
    let (stored, touched) = app.store_points(org_id, points).await?;
    Ok(Json(json!({ "accepted": stored, "metrics": touched })))
}

/// A refused batch as the API answers it: the first bad point named in `field`, all in
/// `details`.
fn batch_error(e: BatchError) -> ApiError {
    match e {
        BatchError::Shape(m) => ApiError::new(StatusCode::BAD_REQUEST, "bad_shape", m),
        BatchError::Column { column, reason } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_column",
            format!("column `{column}` {reason}"),
        )
        .field(column),
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
    }
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
    let catalog = app.meta.catalog(org_id).await?;
    let def = catalog
        .iter()
        .find(|d| d.key == key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("unknown metric `{key}`")).field("key"))?;
    let tz = query::org_tz(&org);
    let params = reads::parse_read_params(
        raw.as_deref(),
        tz,
        chrono::Utc::now().timestamp_micros(),
        &["from", "to", "bucket", "agg", "group_by", "dim"],
    )?;
    reads::check_bucket_count(&params)?;
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

/// `POST /api/v1/custom-metrics` (admin scope): define a metric beside the built-in catalog.
pub async fn create_custom_metric(
    State(app): State<App>,
    auth: ApiKeyAuth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    auth.require(Scope::Admin)?;
    let mut body = json_body(&headers, body)?;
    // `events`: the metric is computed from events (its daily count, unique users or sum).
    let from_events = match body.as_object_mut().and_then(|m| m.remove("events")) {
        None => None,
        Some(spec) => {
            let def = crate::domain::analytics::parse_event_metric(&spec).map_err(|(f, r)| {
                let field = if f.is_empty() {
                    "events".to_string()
                } else {
                    format!("events.{f}")
                };
                ApiError::bad_request(&field, r).with_status(StatusCode::UNPROCESSABLE_ENTITY)
            })?;
            Some((def, spec.to_string()))
        }
    };
    if let (Some((event_def, _)), Some(map)) = (&from_events, body.as_object_mut()) {
        map.entry("aggregation")
            .or_insert_with(|| Value::String(event_def.aggregation().as_str().to_string()));
    }
    let def = parse_metric_def(&body)?;
    let org_id = auth.org.id;
    let actor = format!("apikey:{}", auth.key.prefix);
    let stored = def.clone();
    let definition = from_events.as_ref().map(|(_, text)| text.clone());
    let created = app
        .meta
        .call(move |c| {
            let tx = c.unchecked_transaction()?;
            custom_metrics::create(&tx, org_id, &stored)?;
            if let Some(text) = &definition {
                crate::store::meta::event_metrics::create(&tx, org_id, &stored.key, text)?;
            }
            audit::record(&tx, Some(org_id), &actor, "metric.create", &stored.key, "")?;
            tx.commit()?;
            Ok(())
        })
        .await;
    app.meta.catalog_changed(org_id);
    created?;
    let mut answer = metric_json(&def, None);
    if let Some((_, spec)) = from_events {
        // Backfill from the events already stored (the days since then follow each write).
        let now = chrono::Utc::now().timestamp_micros();
        let from = now - (crate::services::event_metrics::MAX_DAYS - 1) * 86_400_000_000;
        let days = crate::services::event_metrics::recompute(
            &app,
            &auth.org,
            Some(&def.key),
            from,
            now,
            true,
        )
        .await?;
        answer["events"] = serde_json::from_str(&spec).unwrap_or(Value::Null);
        answer["backfilled_days"] = json!(days);
    }
    Ok((StatusCode::CREATED, Json(answer)))
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

/// `POST /hooks/{token}`: an inbound webhook. The secret URL stands for the org (no API key, for
/// Zapier-style tools); the body and its validation are those of `POST /api/v1/metrics`.
pub async fn inbound_hook(
    State(app): State<App>,
    Extension(limits): Extension<std::sync::Arc<RateLimits>>,
    Extension(slot): Extension<VerdictSlot>,
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
    charge_with(
        &limits,
        &slot,
        RouteClass::Ingest,
        &format!("hook:{}", hook.id),
    )?;
    let body = json_bytes(&headers, body)?;
    ingest_body(&app, hook.org_id, body).await
}
