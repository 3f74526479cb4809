//! Saved insights in the JSON API: `GET/POST /api/v1/analytics/insights`,
//! `GET/PUT/DELETE /api/v1/analytics/insights/{id}` and `GET …/{id}/result`, which runs the
//! question now (a rolling `last_days` range ends now). Every call acts on the key's org.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::app::App;
use crate::domain::roles::Scope;
use crate::domain::saved_insights::{self, InsightKind, SavedInsightInput};
use crate::store::StoreError;
use crate::store::meta::orgs::Org;
use crate::store::meta::saved_insights::{self as store, SavedInsightFields, SavedInsightRow};
use crate::web::api::analytics::{answer, resolve_cohort, time_text};
use crate::web::api::json_body;
use crate::web::auth::ApiKeyAuth;
use crate::web::error::ApiError;

fn invalid((field, reason): (String, String)) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
        format!("{field}: {reason}"),
    )
    .field(field)
}

pub fn saved_json(row: &SavedInsightRow) -> Value {
    let at = |secs: i64| chrono::DateTime::from_timestamp(secs, 0).map(|t| t.to_rfc3339());
    json!({
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "kind": row.kind,
        "query": serde_json::from_str::<Value>(&row.query).unwrap_or(Value::Null),
        "last_days": row.last_days,
        "created_by": row.created_by,
        "created_at": at(row.created_at),
        "updated_at": at(row.updated_at),
    })
}

/// Reads and checks a saved insight, including that its cohort (if any) is the org's.
pub async fn parse_input(
    app: &App,
    org_id: i64,
    body: &Value,
) -> Result<SavedInsightInput, ApiError> {
    let input = saved_insights::parse_saved_insight(body).map_err(invalid)?;
    resolve_cohort(app, org_id, &input.query)
        .await
        .map_err(|mut e| {
            if let Some(f) = &e.field {
                e.field = Some(format!("query.{f}"));
                e.message = format!("query.{}", e.message);
            }
            e
        })?;
    Ok(input)
}

/// A checked saved insight as the store keeps it (the question as JSON text).
pub struct StoredForm {
    input: SavedInsightInput,
    query: String,
}

impl StoredForm {
    pub fn as_fields(&self) -> SavedInsightFields<'_> {
        SavedInsightFields {
            name: &self.input.name,
            description: &self.input.description,
            kind: self.input.kind.as_str(),
            query: &self.query,
            last_days: self.input.last_days,
        }
    }
}

pub fn fields_of(input: &SavedInsightInput) -> StoredForm {
    StoredForm {
        input: input.clone(),
        query: input.query.to_string(),
    }
}

/// The question a saved insight asks now: its rolling range turned into from / to.
pub fn question_now(row: &SavedInsightRow) -> Result<(InsightKind, Value), ApiError> {
    let kind = InsightKind::parse(&row.kind)
        .ok_or_else(|| StoreError::internal("a saved insight has an unknown kind"))?;
    let mut query: Value = serde_json::from_str(&row.query)
        .map_err(|_| StoreError::internal("a saved insight's question is not JSON"))?;
    if let (Some(days), Some(map)) = (row.last_days, query.as_object_mut()) {
        let now = chrono::Utc::now().timestamp_micros();
        map.insert("to".into(), json!(time_text(now)));
        map.insert(
            "from".into(),
            json!(time_text(now - i64::from(days) * 86_400_000_000)),
        );
    }
    Ok((kind, query))
}

/// Runs a saved insight of the org: its answer, as its analysis's API gives it.
pub async fn run(app: &App, org: &Org, row: &SavedInsightRow) -> Result<Value, ApiError> {
    let (kind, query) = question_now(row)?;
    answer(app, org, kind, &query).await
}

/// `GET /api/v1/analytics/insights`.
pub async fn list(State(app): State<App>, auth: ApiKeyAuth) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let org_id = auth.org.id;
    let rows = app.meta.call(move |c| store::list(c, org_id)).await?;
    Ok(Json(
        json!({ "insights": rows.iter().map(saved_json).collect::<Vec<_>>() }),
    ))
}

/// `POST /api/v1/analytics/insights` (write scope): 201 with the saved insight.
pub async fn create(
    State(app): State<App>,
    auth: ApiKeyAuth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    auth.require(Scope::Write)?;
    let body = json_body(&headers, body)?;
    let input = parse_input(&app, auth.org.id, &body).await?;
    let who = auth.actor();
    let row = auth
        .record(&app, "insight.save", move |tx, org_id| {
            let id = store::create(tx, org_id, &fields_of(&input).as_fields(), &who)?;
            Ok((store::get(tx, org_id, id)?, input.name))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(saved_json(&row))))
}

/// `GET /api/v1/analytics/insights/{id}`.
pub async fn get(
    State(app): State<App>,
    auth: ApiKeyAuth,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let org_id = auth.org.id;
    let row = app.meta.call(move |c| store::get(c, org_id, id)).await?;
    Ok(Json(saved_json(&row)))
}

/// `GET /api/v1/analytics/insights/{id}/result`: the insight and its answer now.
pub async fn result(
    State(app): State<App>,
    auth: ApiKeyAuth,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let org_id = auth.org.id;
    let row = app.meta.call(move |c| store::get(c, org_id, id)).await?;
    let result = run(&app, &auth.org, &row).await?;
    Ok(Json(
        json!({ "insight": saved_json(&row), "result": result }),
    ))
}

/// `PUT /api/v1/analytics/insights/{id}` (write scope): replaces it.
pub async fn update(
    State(app): State<App>,
    auth: ApiKeyAuth,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Write)?;
    let body = json_body(&headers, body)?;
    let input = parse_input(&app, auth.org.id, &body).await?;
    let row = auth
        .record(&app, "insight.update", move |tx, org_id| {
            store::update(tx, org_id, id, &fields_of(&input).as_fields())?;
            Ok((store::get(tx, org_id, id)?, input.name))
        })
        .await?;
    Ok(Json(saved_json(&row)))
}

/// `DELETE /api/v1/analytics/insights/{id}` (write scope): 204.
pub async fn delete(
    State(app): State<App>,
    auth: ApiKeyAuth,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    auth.require(Scope::Write)?;
    auth.record(&app, "insight.delete", move |tx, org_id| {
        let row = store::get(tx, org_id, id)?;
        store::delete(tx, org_id, id)?;
        Ok(((), row.name))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}
