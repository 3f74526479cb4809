//! JSON API for insights: anomalies, forecasts and the overview's insight cards.

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use serde_json::{Value, json};

use crate::app::App;
use crate::domain::catalog::MetricDef;
use crate::domain::roles::Scope;
use crate::services::Insights;
use crate::services::insights;
use crate::web::api::parse_query;
use crate::web::auth::ApiKeyAuth;
use crate::web::error::ApiError;

async fn metric_def(app: &App, org_id: i64, key: &str) -> Result<MetricDef, ApiError> {
    let catalog = app.meta.catalog(org_id).await?;
    catalog
        .iter()
        .find(|d| d.key == key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("unknown metric `{key}`")).field("key"))
}

/// A whole number in `min..=max` from a query parameter.
fn bounded(name: &str, value: &str, min: i64, max: i64) -> Result<i64, ApiError> {
    match value.parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::bad_request(
            name,
            format!("must be a whole number from {min} to {max}"),
        )),
    }
}

/// Reads the only allowed parameters (name, min, max, default) from the query string.
fn params(raw: Option<&str>, allowed: &[(&str, i64, i64, i64)]) -> Result<Vec<i64>, ApiError> {
    let mut values: Vec<i64> = allowed.iter().map(|a| a.3).collect();
    for (k, v) in parse_query(raw.unwrap_or(""))? {
        let Some(i) = allowed.iter().position(|a| a.0 == k) else {
            let names: Vec<&str> = allowed.iter().map(|a| a.0).collect();
            return Err(ApiError::bad_request(
                &k,
                format!("unknown parameter `{k}`; use {}", names.join(" or ")),
            ));
        };
        values[i] = bounded(&k, &v, allowed[i].1, allowed[i].2)?;
    }
    Ok(values)
}

/// `GET /api/v1/insights?days=30&top=5`: the most important recent anomalies (ranked by impact
/// on the health score) and the business forecasts.
pub async fn insights(
    State(insight_service): State<Insights>,
    auth: ApiKeyAuth,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let p = params(raw.as_deref(), &[("days", 1, 730, 30), ("top", 1, 100, 5)])?;
    let found = insight_service
        .highlights(&auth.org, p[0], p[1] as usize)
        .await?;
    Ok(Json(json!({
        "days": p[0],
        "anomaly_threshold": insights::ANOMALY_THRESHOLD,
        "anomalies": found.anomalies,
        "outlooks": found.outlooks,
    })))
}

/// `GET /api/v1/metrics/{key}/anomalies?days=90`: the metric's anomalies, newest first.
pub async fn anomalies(
    State(app): State<App>,
    auth: ApiKeyAuth,
    Path(key): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let def = metric_def(&app, auth.org.id, &key).await?;
    let p = params(raw.as_deref(), &[("days", 1, 730, 90)])?;
    let list = insights::list_anomalies(&app, &auth.org, Some(def.key.clone()), p[0], 1000).await?;
    Ok(Json(json!({
        "metric": def.key,
        "days": p[0],
        "anomaly_threshold": insights::ANOMALY_THRESHOLD,
        "anomalies": list,
    })))
}

/// `GET /api/v1/metrics/{key}/forecast?horizon=30`: daily forecast with 95% intervals and its
/// backtest against seasonal naive.
pub async fn forecast(
    State(app): State<App>,
    auth: ApiKeyAuth,
    Path(key): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let def = metric_def(&app, auth.org.id, &key).await?;
    let p = params(raw.as_deref(), &[("horizon", 1, 365, 30)])?;
    let view = insights::forecast_metric(&app, &auth.org, &def, p[0] as usize).await?;
    Ok(Json(serde_json::to_value(view).map_err(|e| {
        ApiError::from(crate::store::StoreError::internal(e))
    })?))
}
