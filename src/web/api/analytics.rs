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
use crate::domain::cohorts;
use crate::domain::roles::Scope;
use crate::domain::saved_insights::InsightKind;
use crate::domain::timebucket::{self, Bucket, BucketStart};
use crate::services::analytics as service;
use crate::store::StoreError;
use crate::store::events::analytics as sql;
use crate::store::events::cohorts::CohortFilter;
use crate::store::meta::cohorts as meta_cohorts;
use crate::store::meta::orgs::Org;
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

fn org_tz(org: &Org) -> Tz {
    org.time_zone.parse().unwrap_or(chrono_tz::UTC)
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

/// The cohort an analysis names (`"cohort": id`), as a filter evaluated now; another org's
/// id is refused like an unknown one.
pub async fn resolve_cohort(
    app: &App,
    org_id: i64,
    body: &Value,
) -> Result<Option<CohortFilter>, ApiError> {
    let Some(id) = cohorts::cohort_id(body).map_err(invalid)? else {
        return Ok(None);
    };
    let row = match app
        .meta
        .call(move |c| meta_cohorts::get(c, org_id, id))
        .await
    {
        Ok(row) => row,
        Err(StoreError::NotFound) => {
            return Err(invalid((
                "cohort".into(),
                format!("no cohort {id} in this organisation"),
            )));
        }
        Err(e) => return Err(e.into()),
    };
    let def =
        cohorts::parse_definition(&serde_json::from_str(&row.definition).unwrap_or(Value::Null))
            .map_err(|_| StoreError::internal("a stored cohort definition could not be read"))?;
    Ok(Some(CohortFilter {
        def,
        now_micros: chrono::Utc::now().timestamp_micros(),
    }))
}

/// Answers an analysis of `kind` for the org: the question checked (a 422 names the field),
/// its cohort resolved, the range bounded, then the read model as the API's JSON.
pub async fn answer(
    app: &App,
    org: &Org,
    kind: InsightKind,
    body: &Value,
) -> Result<Value, ApiError> {
    let tz = org_tz(org);
    let org_id = org.id;
    // The question first, so its own field problems are named before the cohort's.
    kind.check(body).map_err(invalid)?;
    let cohort = resolve_cohort(app, org_id, body).await?;
    Ok(match kind {
        InsightKind::Trends => {
            let req = analytics::parse_trend(body).map_err(invalid)?;
            let (from, to) = range(body, tz, req.interval)?;
            trend_json(&service::trend(app, org_id, cohort, tz, req, from, to).await?)
        }
        InsightKind::Funnels => {
            let req = analytics::parse_funnel(body).map_err(invalid)?;
            let (from, to) = range(body, tz, Bucket::Day)?;
            funnel_json(&service::funnel(app, org_id, cohort, req, from, to).await?)
        }
        InsightKind::Retention => {
            let req = analytics::parse_retention(body).map_err(invalid)?;
            let (from, to) = range(body, tz, req.period)?;
            retention_json(&service::retention(app, org_id, cohort, tz, req, from, to).await?)
        }
        InsightKind::Stickiness => {
            let req = analytics::parse_activity(body).map_err(invalid)?;
            let (from, to) = range(body, tz, req.interval)?;
            let a = service::stickiness(app, org_id, cohort, tz, req, from, to).await?;
            json!({
                "intervals": a.users.iter().enumerate().map(|(k, n)| json!({"active": k + 1, "users": n})).collect::<Vec<_>>(),
            })
        }
        InsightKind::Lifecycle => {
            let req = analytics::parse_activity(body).map_err(invalid)?;
            let (from, to) = range(body, tz, req.interval)?;
            let a = service::lifecycle(app, org_id, cohort, tz, req, from, to).await?;
            json!({
                "periods": a.periods.iter().map(bucket_json).collect::<Vec<_>>(),
                "new": a.lifecycle.new,
                "returning": a.lifecycle.returning,
                "resurrecting": a.lifecycle.resurrecting,
                "dormant": a.lifecycle.dormant,
            })
        }
        InsightKind::Api => {
            let req = analytics::parse_api_usage(body).map_err(invalid)?;
            let (from, to) = range(body, tz, req.interval)?;
            let minutes = (to - from) as f64 / 60e6;
            api_json(
                &service::api_usage(app, org_id, cohort, tz, req, from, to).await?,
                minutes,
            )
        }
    })
}

fn request_stats_json(r: &sql::RequestStats, minutes: Option<f64>) -> Value {
    let rate = |n: i64| {
        if r.requests == 0 {
            0.0
        } else {
            n as f64 / r.requests as f64
        }
    };
    let mut v = json!({
        "requests": r.requests,
        "client_errors": r.client_errors,
        "server_errors": r.server_errors,
        "error_rate": rate(r.server_errors),
        "client_error_rate": rate(r.client_errors),
        "p50_ms": r.p50_ms,
        "p95_ms": r.p95_ms,
        "p99_ms": r.p99_ms,
    });
    if let Some(m) = minutes.filter(|m| *m > 0.0) {
        v["requests_per_minute"] = json!(r.requests as f64 / m);
    }
    if let Some(route) = &r.route {
        v["route"] = json!(route);
    }
    v
}

/// API analytics as JSON: totals, per route, and per bucket. `error_rate` counts 5xx answers
/// (the server's failures); 4xx are `client_errors`.
pub fn api_json(a: &service::ApiUsageAnswer, minutes: f64) -> Value {
    json!({
        "totals": request_stats_json(&a.total, Some(minutes)),
        "routes": a.routes.iter().map(|r| request_stats_json(r, Some(minutes))).collect::<Vec<_>>(),
        "buckets": a.buckets.iter().map(bucket_json).collect::<Vec<_>>(),
        "series": a.series.iter().map(|r| request_stats_json(r, None)).collect::<Vec<_>>(),
    })
}

async fn handle(
    app: App,
    auth: ApiKeyAuth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    kind: InsightKind,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let body = json_body(&headers, body)?;
    Ok(Json(answer(&app, &auth.org, kind, &body).await?))
}

macro_rules! analysis_route {
    ($name:ident, $kind:expr, $doc:literal) => {
        #[doc = $doc]
        pub async fn $name(
            State(app): State<App>,
            auth: ApiKeyAuth,
            headers: HeaderMap,
            body: Result<Bytes, BytesRejection>,
        ) -> Result<Json<Value>, ApiError> {
            handle(app, auth, headers, body, $kind).await
        }
    };
}

analysis_route!(
    trends,
    InsightKind::Trends,
    "`POST /api/v1/analytics/trends`."
);
analysis_route!(
    funnels,
    InsightKind::Funnels,
    "`POST /api/v1/analytics/funnels`."
);
analysis_route!(
    retention,
    InsightKind::Retention,
    "`POST /api/v1/analytics/retention`."
);
analysis_route!(
    api_usage,
    InsightKind::Api,
    "`POST /api/v1/analytics/api`: request rate, errors and latency per route, from request events."
);
analysis_route!(
    stickiness,
    InsightKind::Stickiness,
    "`POST /api/v1/analytics/stickiness`: how many people were active in 1, 2, … intervals."
);
analysis_route!(
    lifecycle,
    InsightKind::Lifecycle,
    "`POST /api/v1/analytics/lifecycle`: new, returning, resurrecting and dormant people per interval."
);
