//! The health score over the API: latest, recompute, history.

use axum::Json;
use axum::extract::{RawQuery, State};
use serde_json::{Value, json};

use crate::app::App;
use crate::domain::roles::Scope;
use crate::domain::timebucket::{self, Bucket};
use crate::services::query::{self};
use crate::web::api::parse_query;
use crate::web::auth::ApiKeyAuth;
use crate::web::error::ApiError;

/// The score report as the API returns it, with trend against yesterday and last week.
async fn score_json(
    app: &App,
    org: &crate::store::meta::orgs::Org,
    report: crate::services::scoring::ScoreReport,
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
    let report = match crate::services::scoring::latest(&app, auth.org.id).await? {
        Some(r) => r,
        None => crate::services::scoring::recompute(&app, &auth.org).await?,
    };
    Ok(Json(score_json(&app, &auth.org, report).await?))
}

/// `POST /api/v1/health/score/recompute`: recompute now and return the new score.
pub async fn health_recompute(
    State(app): State<App>,
    auth: ApiKeyAuth,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Write)?;
    let report = crate::services::scoring::recompute(&app, &auth.org).await?;
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
                from =
                    Some(timebucket::parse_time(&value, tz).ok_or_else(|| {
                        ApiError::bad_request("from", timebucket::TIME_PARAM_RULE)
                    })?)
            }
            "to" => {
                to = Some(
                    timebucket::parse_time(&value, tz)
                        .ok_or_else(|| ApiError::bad_request("to", timebucket::TIME_PARAM_RULE))?,
                )
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
