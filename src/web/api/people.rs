//! People in the JSON API: cohorts (saved user segments, `GET/POST /api/v1/cohorts`,
//! `GET/PUT/DELETE /api/v1/cohorts/{id}`) and the person list (`GET /api/v1/persons`, with a
//! cohort, a search and a cursor). A person's event timeline is `GET /api/v1/events?person=`.
//! Every call acts on the key's org; another org's ids answer 404.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use serde_json::{Value, json};

use crate::app::App;
use crate::domain::cohorts::{self, CohortInput};
use crate::domain::roles::Scope;
use crate::store::StoreError;
use crate::store::events::cohorts::{
    self as sql, CohortFilter, PersonCursor, PersonQuery, PersonRow,
};
use crate::store::meta::cohorts::{self as store, CohortRow};
use crate::web::api::analytics::time_text;
use crate::web::api::{json_body, parse_query};
use crate::web::auth::ApiKeyAuth;
use crate::web::error::ApiError;

/// The most persons one page lists.
pub const MAX_PERSONS_PER_PAGE: usize = 500;
const DEFAULT_PERSONS_PER_PAGE: usize = 100;
const MAX_SEARCH_CHARS: usize = 200;

fn invalid((field, reason): (String, String)) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
        format!("{field}: {reason}"),
    )
    .field(field)
}

fn definition_of(row: &CohortRow) -> Result<cohorts::CohortDef, ApiError> {
    let value: Value = serde_json::from_str(&row.definition)
        .map_err(|_| StoreError::internal("a stored cohort definition is not JSON"))?;
    Ok(cohorts::parse_definition(&value)
        .map_err(|_| StoreError::internal("a stored cohort definition could not be read"))?)
}

fn cohort_json(row: &CohortRow, size: Option<i64>) -> Result<Value, ApiError> {
    let def = definition_of(row)?.to_json();
    let at = |secs: i64| chrono::DateTime::from_timestamp(secs, 0).map(|t| t.to_rfc3339());
    Ok(json!({
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "match": def["match"],
        "conditions": def["conditions"],
        "size": size,
        "created_by": row.created_by,
        "created_at": at(row.created_at),
        "updated_at": at(row.updated_at),
    }))
}

fn parse_input(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<CohortInput, ApiError> {
    let body = json_body(headers, body)?;
    cohorts::parse_cohort(&body).map_err(invalid)
}

/// `GET /api/v1/cohorts`.
pub async fn list(State(app): State<App>, auth: ApiKeyAuth) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let org_id = auth.org.id;
    let rows = app.meta.call(move |c| store::list(c, org_id)).await?;
    let cohorts = rows
        .iter()
        .map(|r| cohort_json(r, None))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Json(json!({ "cohorts": cohorts })))
}

/// `POST /api/v1/cohorts` (write scope): answers 201 with the cohort and its current size.
pub async fn create(
    State(app): State<App>,
    auth: ApiKeyAuth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    auth.require(Scope::Write)?;
    let input = parse_input(&headers, body)?;
    let who = auth.actor();
    let definition = input.def.to_json().to_string();
    let id = auth
        .record(&app, "cohort.create", move |tx, org_id| {
            let id = store::create(
                tx,
                org_id,
                &input.name,
                &input.description,
                &definition,
                &who,
            )?;
            Ok((id, input.name))
        })
        .await?;
    Ok((StatusCode::CREATED, Json(one(&app, auth.org.id, id).await?)))
}

async fn one(app: &App, org_id: i64, id: i64) -> Result<Value, ApiError> {
    let row = app.meta.call(move |c| store::get(c, org_id, id)).await?;
    let filter = CohortFilter {
        def: definition_of(&row)?,
        now_micros: chrono::Utc::now().timestamp_micros(),
    };
    let size = app
        .events
        .read(move |c| sql::count_members(c, org_id, &filter))
        .await?;
    cohort_json(&row, Some(size))
}

/// `GET /api/v1/cohorts/{id}`: the cohort and how many people it holds now.
pub async fn get(
    State(app): State<App>,
    auth: ApiKeyAuth,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    Ok(Json(one(&app, auth.org.id, id).await?))
}

/// `PUT /api/v1/cohorts/{id}` (write scope): replaces the name, description and definition.
pub async fn update(
    State(app): State<App>,
    auth: ApiKeyAuth,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Write)?;
    let input = parse_input(&headers, body)?;
    let definition = input.def.to_json().to_string();
    auth.record(&app, "cohort.update", move |tx, org_id| {
        store::update(tx, org_id, id, &input.name, &input.description, &definition)?;
        Ok(((), input.name))
    })
    .await?;
    Ok(Json(one(&app, auth.org.id, id).await?))
}

/// `DELETE /api/v1/cohorts/{id}` (write scope): 204.
pub async fn delete(
    State(app): State<App>,
    auth: ApiKeyAuth,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    auth.require(Scope::Write)?;
    auth.record(&app, "cohort.delete", move |tx, org_id| {
        let row = store::get(tx, org_id, id)?;
        store::delete(tx, org_id, id)?;
        Ok(((), row.name))
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

pub fn encode_person_cursor(c: &PersonCursor) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{}:{}", c.last_seen_micros, c.person_key))
}

fn decode_person_cursor(s: &str) -> Option<PersonCursor> {
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (ts, key) = text.split_once(':')?;
    Some(PersonCursor {
        last_seen_micros: ts.parse().ok()?,
        person_key: key.to_string(),
    })
}

pub fn person_json(p: &PersonRow) -> Value {
    let props: Value = p
        .props_json
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_else(|| json!({}));
    json!({
        "person_key": p.person_key,
        "identified": p.identified,
        "properties": props,
        "events": p.events,
        "first_seen": time_text(p.first_seen_micros),
        "last_seen": time_text(p.last_seen_micros),
    })
}

/// What the person list is asked for.
pub struct PersonListParams {
    pub cohort: Option<i64>,
    pub search: Option<String>,
    pub cursor: Option<PersonCursor>,
    pub limit: usize,
}

pub fn parse_person_params(raw: &str) -> Result<PersonListParams, ApiError> {
    let mut out = PersonListParams {
        cohort: None,
        search: None,
        cursor: None,
        limit: DEFAULT_PERSONS_PER_PAGE,
    };
    for (k, v) in parse_query(raw)? {
        match k.as_str() {
            "cohort" => {
                out.cohort = Some(
                    v.parse::<i64>()
                        .ok()
                        .filter(|id| *id > 0)
                        .ok_or_else(|| ApiError::bad_request("cohort", "must be a cohort id"))?,
                )
            }
            "search" => {
                let s = v.trim();
                if s.chars().count() > MAX_SEARCH_CHARS {
                    return Err(ApiError::bad_request(
                        "search",
                        format!("at most {MAX_SEARCH_CHARS} characters"),
                    ));
                }
                out.search = (!s.is_empty()).then(|| s.to_string());
            }
            "cursor" => {
                out.cursor = Some(decode_person_cursor(&v).ok_or_else(|| {
                    ApiError::bad_request("cursor", "is not a cursor this list gave")
                })?)
            }
            "limit" => {
                out.limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_PERSONS_PER_PAGE).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "limit",
                            format!("must be from 1 to {MAX_PERSONS_PER_PAGE}"),
                        )
                    })?
            }
            other => {
                return Err(ApiError::bad_request(
                    other,
                    "unknown parameter; allowed: cohort, search, cursor, limit",
                ));
            }
        }
    }
    Ok(out)
}

/// A page of the person list (most recently active first) and the cursor of the next.
pub async fn person_page(
    app: &App,
    org_id: i64,
    params: PersonListParams,
) -> Result<(Vec<PersonRow>, Option<String>), ApiError> {
    let cohort = match params.cohort {
        Some(id) => {
            let q = json!({ "cohort": id });
            crate::web::api::analytics::resolve_cohort(app, org_id, &q).await?
        }
        None => None,
    };
    let limit = params.limit;
    let mut rows = app
        .events
        .read(move |c| {
            sql::persons(
                c,
                &PersonQuery {
                    org_id,
                    cohort: cohort.as_ref(),
                    search: params.search.as_deref(),
                    cursor: params.cursor.as_ref(),
                    limit: limit + 1,
                },
            )
        })
        .await?;
    let next = if rows.len() > limit {
        rows.truncate(limit);
        rows.last().map(|p| {
            encode_person_cursor(&PersonCursor {
                last_seen_micros: p.last_seen_micros,
                person_key: p.person_key.clone(),
            })
        })
    } else {
        None
    };
    Ok((rows, next))
}

/// `GET /api/v1/persons?cohort=&search=&limit=&cursor=`.
pub async fn persons(
    State(app): State<App>,
    auth: ApiKeyAuth,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let params = parse_person_params(raw.as_deref().unwrap_or(""))?;
    let (rows, next) = person_page(&app, auth.org.id, params).await?;
    Ok(Json(json!({
        "persons": rows.iter().map(person_json).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}
