//! JSON API for alerts, alert rules, channels, silences and mute windows. Every handler takes
//! [`ApiKeyAuth`] and acts on the key's org only; another org's ids answer 404.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use crate::app::App;
use crate::domain::alert_rules::FieldProblem;
use crate::domain::ingest::ItemError;
use crate::domain::roles::Scope;
use crate::services::Alerting;
use crate::services::alerting::{self, AlertActionError, SaveError};
use crate::store::meta::alerts::{self, AlertEventRow, AlertFilter, AlertRow, RuleRow};
use crate::store::meta::channels::{self, ChannelRow};
use crate::web::api::{json_body, parse_query};
use crate::web::auth::ApiKeyAuth;
use crate::web::error::ApiError;

fn iso(at: i64) -> Value {
    chrono::DateTime::from_timestamp(at, 0)
        .map(|t| json!(t.to_rfc3339()))
        .unwrap_or(Value::Null)
}

fn iso_opt(at: Option<i64>) -> Value {
    at.map(iso).unwrap_or(Value::Null)
}

pub fn alert_json(a: &AlertRow) -> Value {
    json!({
        "id": a.id,
        "rule_id": a.rule_id,
        "rule": a.rule_name,
        "series": a.series,
        "state": a.state,
        "severity": a.severity,
        "category": a.category,
        "value": a.value,
        "started_at": iso(a.started_at),
        "fired_at": iso_opt(a.fired_at),
        "updated_at": iso(a.updated_at),
        "resolved_at": iso_opt(a.resolved_at),
        "acknowledged": if a.ack_by.is_empty() { Value::Null } else {
            json!({"by": a.ack_by, "note": a.ack_note, "until": iso_opt(a.ack_until)})
        },
    })
}

fn event_json(e: &AlertEventRow) -> Value {
    json!({"at": iso(e.at), "event": e.kind, "by": e.actor, "note": e.note, "value": e.value})
}

pub fn rule_json(r: &RuleRow) -> Value {
    let mut v = r.spec.to_input();
    if let Some(o) = v.as_object_mut() {
        o.insert("id".into(), json!(r.id));
        o.insert("created_at".into(), iso(r.created_at));
        o.insert("updated_at".into(), iso(r.updated_at));
        o.insert("last_evaluated_at".into(), iso_opt(r.last_evaluated_at));
        o.insert("last_error".into(), json!(r.last_error));
    }
    v
}

/// A channel as the API shows it. Where it delivers (URL, SMTP host and recipients), its
/// masked secret and its error texts are for admin keys only (`reveal`): a target can carry
/// a secret, and an error can describe the network behind it.
pub fn channel_json(c: &ChannelRow, reveal: bool) -> Value {
    let mut v = json!({
        "id": c.id,
        "name": c.name,
        "kind": c.kind,
        "last_success_at": iso_opt(c.last_success_at),
        "last_failure_at": iso_opt(c.last_failure_at),
    });
    if reveal {
        v["settings"] = c.settings.clone();
        v["secret"] = json!(c.secret_hint);
        v["last_error"] = json!(c.last_error);
    }
    v
}

fn reveals_targets(auth: &ApiKeyAuth) -> bool {
    Scope::satisfied_by(Scope::Admin, &auth.key.scopes)
}

fn invalid(problems: Vec<FieldProblem>) -> ApiError {
    let first = &problems[0];
    let mut err = ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid",
        format!(
            "{} problem(s); nothing was saved. First: {}: {}",
            problems.len(),
            first.field,
            first.message
        ),
    )
    .field(first.field.clone());
    err.details = problems
        .into_iter()
        .map(|p| ItemError {
            index: 0,
            field: p.field,
            reason: p.message,
        })
        .collect();
    err
}

impl From<SaveError> for ApiError {
    fn from(e: SaveError) -> ApiError {
        match e {
            SaveError::Store(s) => s.into(),
            SaveError::Invalid(p) => invalid(p),
        }
    }
}

impl From<AlertActionError> for ApiError {
    fn from(e: AlertActionError) -> ApiError {
        match e {
            AlertActionError::Store(s) => s.into(),
            AlertActionError::State(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
            AlertActionError::Invalid(field, m) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!("{field} {m}"),
            )
            .field(field),
        }
    }
}

fn actor(auth: &ApiKeyAuth) -> String {
    format!("apikey:{}", auth.key.prefix)
}

/// `GET /api/v1/alerts?state=open|pending|firing|acknowledged|resolved&severity&category&limit`.
pub async fn list(
    State(app): State<App>,
    auth: ApiKeyAuth,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let filter = parse_filter(&parse_query(raw.as_deref().unwrap_or(""))?)?;
    let org_id = auth.org.id;
    let rows = app
        .meta
        .call(move |c| alerts::list_alerts(c, org_id, &filter))
        .await?;
    Ok(Json(
        json!({ "alerts": rows.iter().map(alert_json).collect::<Vec<_>>() }),
    ))
}

pub fn parse_filter(params: &[(String, String)]) -> Result<AlertFilter, ApiError> {
    let mut f = AlertFilter {
        limit: 200,
        ..Default::default()
    };
    for (k, v) in params {
        if v.is_empty() {
            continue;
        }
        match k.as_str() {
            "state" => {
                if ![
                    "open",
                    "pending",
                    "firing",
                    "acknowledged",
                    "resolved",
                    "cleared",
                ]
                .contains(&v.as_str())
                {
                    return Err(ApiError::bad_request(
                        "state",
                        format!(
                            "{v:?} is not one of open, pending, firing, acknowledged, resolved, cleared"
                        ),
                    ));
                }
                f.state = Some(v.clone());
            }
            "severity" => {
                if crate::domain::alerts::Severity::parse(v).is_none() {
                    return Err(ApiError::bad_request(
                        "severity",
                        format!("{v:?} is not one of low, medium, high, critical"),
                    ));
                }
                f.severity = Some(v.clone());
            }
            "category" => {
                if crate::domain::catalog::Category::parse(v).is_none() {
                    return Err(ApiError::bad_request(
                        "category",
                        format!("{v:?} is not a category"),
                    ));
                }
                f.category = Some(v.clone());
            }
            "rule_id" => {
                f.rule_id = Some(v.parse().map_err(|_| {
                    ApiError::bad_request("rule_id", format!("{v:?} is not a rule id"))
                })?)
            }
            "limit" => {
                f.limit = v
                    .parse::<i64>()
                    .ok()
                    .filter(|l| (1..=1000).contains(l))
                    .ok_or_else(|| ApiError::bad_request("limit", "must be 1 to 1000"))?
            }
            other => {
                return Err(ApiError::bad_request(
                    other,
                    "unknown parameter; known: state, severity, category, rule_id, limit",
                ));
            }
        }
    }
    Ok(f)
}

/// `GET /api/v1/alerts/{id}`: the alert with its history.
pub async fn get(
    State(app): State<App>,
    auth: ApiKeyAuth,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let org_id = auth.org.id;
    let (alert, events) = app
        .meta
        .call(move |c| {
            Ok((
                alerts::get_alert(c, org_id, id)?,
                alerts::events(c, org_id, id)?,
            ))
        })
        .await
        .map_err(|e| not_found_as(e, "alert", id))?;
    let mut v = alert_json(&alert);
    v["history"] = json!(events.iter().map(event_json).collect::<Vec<_>>());
    Ok(Json(v))
}

fn not_found_as(e: crate::store::StoreError, what: &str, id: i64) -> ApiError {
    match e {
        crate::store::StoreError::NotFound => {
            ApiError::not_found(format!("no {what} {id} in this organisation")).field("id")
        }
        other => other.into(),
    }
}

fn optional_body(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Value, ApiError> {
    match &body {
        Ok(b) if b.is_empty() => Ok(json!({})),
        _ => json_body(headers, body),
    }
}

/// `POST /api/v1/alerts/{id}/acknowledge` with optional `{"note": "…", "hours": 4}`.
pub async fn acknowledge(
    State(alerts_service): State<Alerting>,
    auth: ApiKeyAuth,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Write)?;
    let body = optional_body(&headers, body)?;
    let note = match body.get("note") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(ApiError::bad_request("note", "must be a string")),
    };
    let hours = match body.get("hours") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_f64()
                .ok_or_else(|| ApiError::bad_request("hours", "must be a number of hours"))?,
        ),
    };
    let alert = alerts_service
        .acknowledge(&auth.org, id, &actor(&auth), &note, hours)
        .await
        .map_err(|e| match e {
            AlertActionError::Store(s) => not_found_as(s, "alert", id),
            other => other.into(),
        })?;
    Ok(Json(alert_json(&alert)))
}

/// `POST /api/v1/alerts/{id}/resolve`.
pub async fn resolve(
    State(alerts_service): State<Alerting>,
    auth: ApiKeyAuth,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Write)?;
    let alert = alerts_service
        .resolve(&auth.org, id, &actor(&auth))
        .await
        .map_err(|e| match e {
            AlertActionError::Store(s) => not_found_as(s, "alert", id),
            other => other.into(),
        })?;
    Ok(Json(alert_json(&alert)))
}

/// `GET /api/v1/alert-rules`.
pub async fn list_rules(State(app): State<App>, auth: ApiKeyAuth) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let org_id = auth.org.id;
    let rules = app
        .meta
        .call(move |c| alerts::list_rules(c, org_id))
        .await?;
    Ok(Json(
        json!({ "rules": rules.iter().map(rule_json).collect::<Vec<_>>() }),
    ))
}

/// `POST /api/v1/alert-rules`.
pub async fn create_rule(
    State(app): State<App>,
    auth: ApiKeyAuth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    auth.require(Scope::Write)?;
    let body = json_body(&headers, body)?;
    let rule = alerting::save_rule(&app, auth.org.id, None, body, &actor(&auth)).await?;
    Ok((StatusCode::CREATED, Json(rule_json(&rule))))
}

/// `GET /api/v1/alert-rules/{id}`.
pub async fn get_rule(
    State(app): State<App>,
    auth: ApiKeyAuth,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let org_id = auth.org.id;
    let rule = app
        .meta
        .call(move |c| alerts::get_rule(c, org_id, id))
        .await
        .map_err(|e| not_found_as(e, "alert rule", id))?;
    Ok(Json(rule_json(&rule)))
}

/// `PUT /api/v1/alert-rules/{id}`: replaces the rule; open alerts keep their state.
pub async fn update_rule(
    State(app): State<App>,
    auth: ApiKeyAuth,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Write)?;
    let body = json_body(&headers, body)?;
    let rule = alerting::save_rule(&app, auth.org.id, Some(id), body, &actor(&auth))
        .await
        .map_err(|e| match e {
            SaveError::Store(s) => not_found_as(s, "alert rule", id),
            other => other.into(),
        })?;
    Ok(Json(rule_json(&rule)))
}

/// `DELETE /api/v1/alert-rules/{id}`: the rule, its alerts and their history.
pub async fn delete_rule(
    State(app): State<App>,
    auth: ApiKeyAuth,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    auth.require(Scope::Write)?;
    alerting::delete_rule(&app, auth.org.id, id, &actor(&auth))
        .await
        .map_err(|e| not_found_as(e, "alert rule", id))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/alert-rules/{id}/test`: evaluates now against stored data; records nothing.
pub async fn test_rule(
    State(app): State<App>,
    auth: ApiKeyAuth,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let org_id = auth.org.id;
    let rule = app
        .meta
        .call(move |c| alerts::get_rule(c, org_id, id))
        .await
        .map_err(|e| not_found_as(e, "alert rule", id))?;
    let results = alerting::test_rule(&app, &auth.org, &rule, crate::store::now_secs()).await?;
    Ok(Json(json!({ "rule_id": id, "series": results })))
}

/// `POST /api/v1/alert-rules/test`: validates and tests an unsaved rule.
pub async fn test_draft(
    State(app): State<App>,
    auth: ApiKeyAuth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let body = json_body(&headers, body)?;
    let rule = draft_rule(&app, auth.org.id, &body).await?;
    let results = alerting::test_rule(&app, &auth.org, &rule, crate::store::now_secs()).await?;
    Ok(Json(json!({ "series": results })))
}

/// A rule from input that is validated but not stored (for "test rule" in the editor).
pub async fn draft_rule(app: &App, org_id: i64, body: &Value) -> Result<RuleRow, SaveError> {
    let catalog = app.meta.catalog(org_id).await?.to_vec();
    let spec = crate::domain::alert_rules::validate(body, &catalog, |_| true)
        .map_err(SaveError::Invalid)?;
    Ok(RuleRow {
        id: 0,
        org_id,
        spec,
        created_at: 0,
        updated_at: 0,
        last_evaluated_at: None,
        last_error: String::new(),
    })
}

/// `GET /api/v1/channels` (secrets masked).
pub async fn list_channels(
    State(app): State<App>,
    auth: ApiKeyAuth,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let org_id = auth.org.id;
    let rows = app.meta.call(move |c| channels::list(c, org_id)).await?;
    Ok(Json(
        json!({ "channels": rows.iter().map(|c| channel_json(c, reveals_targets(&auth))).collect::<Vec<_>>() }),
    ))
}

/// `POST /api/v1/channels` (admin scope). A new webhook's generated signing secret is in the
/// response once, as `signing_secret`.
pub async fn create_channel(
    State(app): State<App>,
    auth: ApiKeyAuth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    auth.require(Scope::Admin)?;
    let body = json_body(&headers, body)?;
    let (row, generated) =
        alerting::save_channel(&app, auth.org.id, None, body, &actor(&auth)).await?;
    let mut v = channel_json(&row, true);
    if let Some(secret) = generated {
        v["signing_secret"] = json!(secret);
    }
    Ok((StatusCode::CREATED, Json(v)))
}

pub async fn get_channel(
    State(app): State<App>,
    auth: ApiKeyAuth,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let org_id = auth.org.id;
    let (row, recent) = app
        .meta
        .call(move |c| {
            Ok((
                channels::get(c, org_id, id)?,
                channels::recent(c, org_id, id, 20)?,
            ))
        })
        .await
        .map_err(|e| not_found_as(e, "channel", id))?;
    let reveal = reveals_targets(&auth);
    let mut v = channel_json(&row, reveal);
    v["deliveries"] = json!(recent
        .iter()
        .map(|d| json!({
            "id": d.id, "alert_id": d.alert_id, "idempotency_key": d.idempotency_key,
            "state": d.state, "attempts": d.attempts,
            "last_error": if reveal { json!(d.last_error) } else { Value::Null },
            "created_at": iso(d.created_at), "sent_at": iso_opt(d.sent_at),
            "next_attempt_at": if d.state == "queued" { iso(d.next_attempt_at) } else { Value::Null },
        }))
        .collect::<Vec<_>>());
    Ok(Json(v))
}

/// `PUT /api/v1/channels/{id}` (admin scope); an empty or missing `secret` keeps the stored one.
pub async fn update_channel(
    State(app): State<App>,
    auth: ApiKeyAuth,
    Path(id): Path<i64>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Admin)?;
    let body = json_body(&headers, body)?;
    let (row, _) = alerting::save_channel(&app, auth.org.id, Some(id), body, &actor(&auth))
        .await
        .map_err(|e| match e {
            SaveError::Store(s) => not_found_as(s, "channel", id),
            other => other.into(),
        })?;
    Ok(Json(channel_json(&row, true)))
}

pub async fn delete_channel(
    State(app): State<App>,
    auth: ApiKeyAuth,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    auth.require(Scope::Admin)?;
    alerting::delete_channel(&app, auth.org.id, id, &actor(&auth))
        .await
        .map_err(|e| not_found_as(e, "channel", id))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/channels/{id}/test`: sends a test message now; 502 with the reason if it fails.
pub async fn test_channel(
    State(app): State<App>,
    auth: ApiKeyAuth,
    Path(id): Path<i64>,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Write)?;
    let org_id = auth.org.id;
    let row = app
        .meta
        .call(move |c| channels::get(c, org_id, id))
        .await
        .map_err(|e| not_found_as(e, "channel", id))?;
    match crate::services::notify::send_test(&app, &auth.org, &row).await {
        Ok(()) => Ok(Json(json!({ "delivered": true }))),
        Err(crate::store::StoreError::Conflict(reason)) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            "delivery_failed",
            format!("the test message was not delivered: {reason}"),
        )),
        Err(e) => Err(e.into()),
    }
}

fn body_text(body: &Value, key: &str) -> String {
    match body.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    v.as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| v.to_string())
                )
            })
            .collect::<Vec<_>>()
            .join(","),
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str())
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(),
    }
}

/// `GET /api/v1/silences`: silences in force (and those ended within a day).
pub async fn list_silences(
    State(app): State<App>,
    auth: ApiKeyAuth,
) -> Result<Json<Value>, ApiError> {
    auth.require(Scope::Read)?;
    let org_id = auth.org.id;
    let now = crate::store::now_secs();
    let (silences, windows) = app
        .meta
        .call(move |c| {
            Ok((
                alerts::list_silences(c, org_id, now)?,
                alerts::list_mute_windows(c, org_id)?,
            ))
        })
        .await?;
    Ok(Json(json!({
        "silences": silences.iter().map(|s| json!({
            "id": s.id, "matchers": s.matchers.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
            "ends_at": iso(s.ends_at), "active": s.ends_at > now, "comment": s.comment, "created_by": s.created_by,
        })).collect::<Vec<_>>(),
        "mute_windows": windows.iter().map(|w| json!({
            "id": w.id, "name": w.name,
            "days": w.window.days.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            "start": w.window.start.format("%H:%M").to_string(), "end": w.window.end.format("%H:%M").to_string(),
            "matchers": w.matchers.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
        })).collect::<Vec<_>>(),
    })))
}

/// `POST /api/v1/silences` `{"matchers": {"severity": "low"}, "duration": "2h", "comment": "…"}`.
pub async fn create_silence(
    State(app): State<App>,
    auth: ApiKeyAuth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    auth.require(Scope::Write)?;
    let body = json_body(&headers, body)?;
    let id = alerting::create_silence(
        &app,
        auth.org.id,
        &body_text(&body, "matchers"),
        &body_text(&body, "duration"),
        &body_text(&body, "comment"),
        &actor(&auth),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))))
}

/// `DELETE /api/v1/silences/{id}`: ends it now.
pub async fn expire_silence(
    State(app): State<App>,
    auth: ApiKeyAuth,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    auth.require(Scope::Write)?;
    let org_id = auth.org.id;
    let now = crate::store::now_secs();
    app.meta
        .call(move |c| alerts::expire_silence(c, org_id, id, now))
        .await
        .map_err(|e| not_found_as(e, "silence", id))?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /api/v1/mute-windows` `{"name", "days": "weekend", "start": "22:00", "end": "07:00", "matchers"}`.
pub async fn create_mute_window(
    State(app): State<App>,
    auth: ApiKeyAuth,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    auth.require(Scope::Write)?;
    let body = json_body(&headers, body)?;
    let id = alerting::create_mute_window(
        &app,
        auth.org.id,
        &body_text(&body, "name"),
        &body_text(&body, "days"),
        &body_text(&body, "start"),
        &body_text(&body, "end"),
        &body_text(&body, "matchers"),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))))
}

pub async fn delete_mute_window(
    State(app): State<App>,
    auth: ApiKeyAuth,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    auth.require(Scope::Write)?;
    let org_id = auth.org.id;
    app.meta
        .call(move |c| alerts::delete_mute_window(c, org_id, id))
        .await
        .map_err(|e| not_found_as(e, "mute window", id))?;
    Ok(StatusCode::NO_CONTENT)
}
