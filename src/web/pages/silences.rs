//! Silences and mute windows.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::alerts::{local_time, not_found};
use super::render_status;
use super::rules::form_values;
use crate::app::App;
use crate::domain::roles::Permission;
use crate::services::alerting::{self, SaveError};
use crate::store::meta::alerts::{self};
use crate::store::now_secs;
use crate::web::auth::OrgMember;
use crate::web::error::PageError;
use crate::web::pages::{FormAction, FormData, Nav, nav};

pub struct SilenceItem {
    pub id: i64,
    pub matchers: String,
    pub ends: String,
    pub active: bool,
    pub comment: String,
    pub by: String,
}

pub struct MuteItem {
    pub id: i64,
    pub name: String,
    pub days: String,
    pub hours: String,
    pub matchers: String,
}

#[derive(Template)]
#[template(path = "silences.html")]
pub struct SilencesPage {
    pub nav: Nav,
    pub slug: String,
    pub time_zone: String,
    pub silences: Vec<SilenceItem>,
    pub windows: Vec<MuteItem>,
    pub values: HashMap<String, String>,
    pub errors: HashMap<String, String>,
    pub can_edit: bool,
}

impl SilencesPage {
    pub fn v(&self, f: &str) -> &str {
        self.values.get(f).map(String::as_str).unwrap_or("")
    }
    pub fn e(&self, f: &str) -> &str {
        self.errors.get(f).map(String::as_str).unwrap_or("")
    }
}

fn join_matchers(m: &[(String, String)]) -> String {
    if m.is_empty() {
        return "all alerts".into();
    }
    m.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn silences_page(
    app: &App,
    m: &OrgMember,
    values: HashMap<String, String>,
    errors: HashMap<String, String>,
) -> Result<SilencesPage, PageError> {
    let org_id = m.org.id;
    let now = now_secs();
    let (silences, windows) = app
        .meta
        .call(move |c| {
            Ok((
                alerts::list_silences(c, org_id, now)?,
                alerts::list_mute_windows(c, org_id)?,
            ))
        })
        .await?;
    Ok(SilencesPage {
        nav: nav(app, m, "silences").await?,
        slug: m.org.slug.clone(),
        time_zone: m.org.time_zone.clone(),
        silences: silences
            .iter()
            .map(|s| SilenceItem {
                id: s.id,
                matchers: join_matchers(&s.matchers),
                ends: local_time(m, s.ends_at),
                active: s.ends_at > now,
                comment: s.comment.clone(),
                by: s.created_by.clone(),
            })
            .collect(),
        windows: windows
            .iter()
            .map(|w| MuteItem {
                id: w.id,
                name: w.name.clone(),
                days: w
                    .window
                    .days
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                hours: format!(
                    "{}–{}",
                    w.window.start.format("%H:%M"),
                    w.window.end.format("%H:%M")
                ),
                matchers: join_matchers(&w.matchers),
            })
            .collect(),
        values,
        errors,
        can_edit: m.role.allows(Permission::WriteData),
    })
}

/// `GET /o/{slug}/silences`.
pub async fn silences_list(State(app): State<App>, m: OrgMember) -> Result<Response, PageError> {
    render_status(
        StatusCode::OK,
        &silences_page(&app, &m, HashMap::new(), HashMap::new()).await?,
    )
}

/// `POST /o/{slug}/silences` (a silence) and `POST /o/{slug}/mute-windows` share the page.
pub async fn create_silence(
    State(app): State<App>,
    m: OrgMember,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(&m, form, Permission::WriteData)?;
    let result = alerting::create_silence(
        &app,
        m.org.id,
        form.get("matchers"),
        form.get("duration"),
        form.get("comment"),
        &m.actor(),
    )
    .await;
    silence_outcome(&app, &m, &form, result, "").await
}

pub async fn create_mute_window(
    State(app): State<App>,
    m: OrgMember,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(&m, form, Permission::WriteData)?;
    let result = alerting::create_mute_window(
        &app,
        m.org.id,
        form.get("mw_name"),
        form.get("mw_days"),
        form.get("mw_start"),
        form.get("mw_end"),
        form.get("mw_matchers"),
    )
    .await;
    silence_outcome(&app, &m, &form, result, "mw_").await
}

async fn silence_outcome(
    app: &App,
    m: &OrgMember,
    form: &FormData,
    result: Result<i64, SaveError>,
    prefix: &str,
) -> Result<Response, PageError> {
    match result {
        Ok(_) => Ok(Redirect::to(&format!("/o/{}/silences", m.org.slug)).into_response()),
        Err(SaveError::Invalid(problems)) => {
            let errors = problems
                .iter()
                .map(|p| (format!("{prefix}{}", p.field), p.message.clone()))
                .collect();
            let page = silences_page(app, m, form_values(form), errors).await?;
            render_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(SaveError::Store(e)) => Err(e.into()),
    }
}

/// `POST /o/{slug}/silences/{id}/expire`.
pub async fn expire_silence(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(&m, form, Permission::WriteData)?;
    let (org_id, now) = (m.org.id, now_secs());
    app.meta
        .call(move |c| alerts::expire_silence(c, org_id, id, now))
        .await
        .map_err(|e| not_found(e, "silence"))?;
    form.done("silences")
}

/// `POST /o/{slug}/mute-windows/{id}/delete`.
pub async fn delete_mute_window(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(&m, form, Permission::WriteData)?;
    let org_id = m.org.id;
    app.meta
        .call(move |c| alerts::delete_mute_window(c, org_id, id))
        .await
        .map_err(|e| not_found(e, "mute window"))?;
    form.done("silences")
}
