//! The event analyses over the API: `POST /api/v1/analytics/{trends,funnels,retention}` with the
//! question as JSON (a read: the `read` scope is enough). Times in the answers are RFC 3339;
//! buckets and periods are calendar ones in the org's time zone.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use chrono_tz::Tz;
use serde_json::{Value, json};

use crate::app::App;
use crate::domain::analytics;
use crate::domain::roles::Scope;
use crate::domain::timebucket::{self, Bucket, BucketStart};
use crate::services::analytics as service;
use crate::web::api::events::MAX_RANGE_MICROS;
use crate::web::api::{MAX_BUCKETS, json_body};
use crate::web::auth::ApiKeyAuth;
use crate::web::error::ApiError;

fn invalid((field, reason): (String, String)) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_query",
        format!("{field}: {reason}"),
    )
    .field(field)
}

/// `from` / `to` of a question (RFC 3339 or a date in the org's zone; default the 30 days up
/// to now), bounded, with at most [`MAX_BUCKETS`] buckets of `bucket`.
pub fn range(body: &Value, tz: Tz, bucket: Bucket) -> Result<(i64, i64), ApiError> {
    let read = |name: &str| -> Result<Option<i64>, ApiError> {
        match body.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => timebucket::parse_time(s, tz)
                .map(Some)
                .ok_or_else(|| ApiError::bad_request(name, timebucket::TIME_PARAM_RULE)),
            Some(_) => Err(ApiError::bad_request(name, timebucket::TIME_PARAM_RULE)),
        }
    };
    let now = chrono::Utc::now().timestamp_micros();
    let to = read("to")?.unwrap_or(now);
    let from = read("from")?.unwrap_or(to - 30 * 86_400_000_000);
    if from >= to {
        return Err(ApiError::bad_request("from", "must be before `to`"));
    }
    if to - from > MAX_RANGE_MICROS {
        return Err(ApiError::bad_request(
            "from",
            "the range may span at most 1,830 days",
        ));
    }
    if timebucket::estimate_bucket_count(bucket, from, to) > MAX_BUCKETS {
        return Err(ApiError::bad_request(
            "interval",
            format!("the range holds more than {MAX_BUCKETS} buckets; choose a longer interval"),
        ));
    }
    Ok((from, to))
}

pub fn time_text(micros: i64) -> Option<String> {
    chrono::DateTime::from_timestamp_micros(micros).map(|t| t.to_rfc3339())
}

fn bucket_json(b: &BucketStart) -> Value {
    json!(time_text(b.utc_micros))
}

fn org_tz(auth: &ApiKeyAuth) -> Tz {
    auth.org.time_zone.parse().unwrap_or(chrono_tz::UTC)
}

pub fn trend_json(answer: &service::TrendAnswer) -> Value {
    let series = |s: &[service::TrendSeries]| -> Vec<Value> {
        s.iter()
            .map(|s| json!({"label": s.label, "values": s.values, "total": s.total}))
            .collect()
    };
    json!({
        "buckets": answer.buckets.iter().map(bucket_json).collect::<Vec<_>>(),
        "series": series(&answer.series),
        "previous": answer.previous.as_deref().map(series),
    })
}

/// `POST /api/v1/analytics/trends`.
pub async fn trends(
    State(app): State<App>,
    auth: ApiKeyAuth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let body = json_body(&headers, body)?;
    let req = analytics::parse_trend(&body).map_err(invalid)?;
    let tz = org_tz(&auth);
    let (from, to) = range(&body, tz, req.interval)?;
    let answer = service::trend(&app, auth.org.id, tz, req, from, to).await?;
    Ok(Json(trend_json(&answer)))
}

pub fn funnel_json(answer: &service::FunnelAnswer) -> Value {
    let result = |r: &analytics::FunnelResult| {
        json!({
            "breakdown": r.breakdown,
            "steps": r.steps.iter().map(|s| json!({
                "event": s.event,
                "count": s.count,
                "conversion": s.conversion,
                "step_conversion": s.step_conversion,
                "dropped": s.dropped,
                "median_time_seconds": s.median_time_micros.map(|t| t as f64 / 1e6),
                "mean_time_seconds": s.mean_time_micros.map(|t| t as f64 / 1e6),
            })).collect::<Vec<_>>(),
            "time_to_convert_seconds": histogram(&r.convert_times_micros),
        })
    };
    json!({
        "steps": result(&answer.all)["steps"],
        "time_to_convert_seconds": result(&answer.all)["time_to_convert_seconds"],
        "breakdowns": answer.breakdowns.iter().map(result).collect::<Vec<_>>(),
        "dropped_units": answer.dropped_units,
    })
}

/// The distribution of conversion times: median and ten equal-width bins.
fn histogram(sorted_micros: &[i64]) -> Value {
    if sorted_micros.is_empty() {
        return json!({"median": null, "bins": []});
    }
    let secs: Vec<f64> = sorted_micros.iter().map(|t| *t as f64 / 1e6).collect();
    let n = secs.len();
    let median = if n % 2 == 1 {
        secs[n / 2]
    } else {
        (secs[n / 2 - 1] + secs[n / 2]) / 2.0
    };
    let (lo, hi) = (secs[0], secs[n - 1]);
    let width = ((hi - lo) / 10.0).max(1.0);
    let mut bins = [0usize; 10];
    for s in &secs {
        let i = (((s - lo) / width) as usize).min(9);
        bins[i] += 1;
    }
    json!({
        "median": median,
        "bins": bins.iter().enumerate().map(|(i, c)| json!({
            "from": lo + width * i as f64,
            "to": lo + width * (i + 1) as f64,
            "count": c,
        })).collect::<Vec<_>>(),
    })
}

/// `POST /api/v1/analytics/funnels`.
pub async fn funnels(
    State(app): State<App>,
    auth: ApiKeyAuth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let body = json_body(&headers, body)?;
    let req = analytics::parse_funnel(&body).map_err(invalid)?;
    let (from, to) = range(&body, org_tz(&auth), Bucket::Day)?;
    let answer = service::funnel(&app, auth.org.id, req, from, to).await?;
    Ok(Json(funnel_json(&answer)))
}

pub fn retention_json(answer: &service::RetentionAnswer) -> Value {
    json!({
        "cohorts": answer.cohorts.iter().map(|c| json!({
            "period": answer.periods.get(c.period).map(bucket_json),
            "size": c.size,
            "retained": c.retained,
            "percent": c.retained.iter().map(|r| if c.size == 0 { 0.0 } else { 100.0 * *r as f64 / c.size as f64 }).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

/// `POST /api/v1/analytics/retention`.
pub async fn retention(
    State(app): State<App>,
    auth: ApiKeyAuth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let body = json_body(&headers, body)?;
    let req = analytics::parse_retention(&body).map_err(invalid)?;
    let tz = org_tz(&auth);
    let (from, to) = range(&body, tz, req.period)?;
    let answer = service::retention(&app, auth.org.id, tz, req, from, to).await?;
    Ok(Json(retention_json(&answer)))
}

/// `POST /api/v1/analytics/stickiness`: how many people were active in 1, 2, … intervals.
pub async fn stickiness(
    State(app): State<App>,
    auth: ApiKeyAuth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let body = json_body(&headers, body)?;
    let req = analytics::parse_activity(&body).map_err(invalid)?;
    let tz = org_tz(&auth);
    let (from, to) = range(&body, tz, req.interval)?;
    let answer = service::stickiness(&app, auth.org.id, tz, req, from, to).await?;
    Ok(Json(json!({
        "intervals": answer.users.iter().enumerate().map(|(k, n)| json!({"active": k + 1, "users": n})).collect::<Vec<_>>(),
    })))
}

/// `POST /api/v1/analytics/lifecycle`: new, returning, resurrecting and dormant people per
/// interval.
pub async fn lifecycle(
    State(app): State<App>,
    auth: ApiKeyAuth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let body = json_body(&headers, body)?;
    let req = analytics::parse_activity(&body).map_err(invalid)?;
    let tz = org_tz(&auth);
    let (from, to) = range(&body, tz, req.interval)?;
    let answer = service::lifecycle(&app, auth.org.id, tz, req, from, to).await?;
    Ok(Json(json!({
        "periods": answer.periods.iter().map(bucket_json).collect::<Vec<_>>(),
        "new": answer.lifecycle.new,
        "returning": answer.lifecycle.returning,
        "resurrecting": answer.lifecycle.resurrecting,
        "dormant": answer.lifecycle.dormant,
    })))
}
