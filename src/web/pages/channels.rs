//! Notification channels: list, editor, test message, recent deliveries.

use std::collections::HashMap;

use askama::Template;
use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::alerts::{local_time, not_found};
use super::render_status;
use super::rules::{form_values, problems_map};
use crate::app::App;
use crate::domain::roles::Permission;
use crate::services::alerting::{self, SaveError};
use crate::store::StoreError;
use crate::store::meta::channels::{self, ChannelRow, OutboxRow};
use crate::web::auth::OrgMember;
use crate::web::error::PageError;
use crate::web::pages::{FormAction, FormData, Nav, nav};

pub struct ChannelItem {
    pub id: i64,
    pub name: String,
    pub kind: String,
    pub target: String,
    pub secret: String,
    pub last_success: String,
    pub last_failure: String,
    pub last_error: String,
}

/// Where a channel delivers, its masked secret and its errors are shown to Admins only (a
/// target can carry a secret; an error can describe the network behind it).
fn channel_item(m: &OrgMember, c: &ChannelRow) -> ChannelItem {
    let reveal = m.role.allows(Permission::ManageOrg);
    let target = match c.kind.as_str() {
        _ if !reveal => "(shown to Admins)".to_string(),
        "email" => format!(
            "{} via {}:{}",
            c.settings["to"]
                .as_array()
                .map(|a| a
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", "))
                .unwrap_or_default(),
            c.settings["host"].as_str().unwrap_or(""),
            c.settings["port"]
        ),
        "webhook" => c.settings["url"].as_str().unwrap_or("").to_string(),
        _ => "Slack incoming webhook".into(),
    };
    ChannelItem {
        id: c.id,
        name: c.name.clone(),
        kind: c.kind.clone(),
        target,
        secret: if reveal {
            c.secret_hint.clone()
        } else {
            String::new()
        },
        last_success: c
            .last_success_at
            .map(|t| local_time(m, t))
            .unwrap_or_default(),
        last_failure: c
            .last_failure_at
            .map(|t| local_time(m, t))
            .unwrap_or_default(),
        last_error: if reveal {
            c.last_error.clone()
        } else {
            String::new()
        },
    }
}

pub struct DeliveryItem {
    pub created: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt: String,
    pub error: String,
    pub alert_id: Option<i64>,
}

#[derive(Template)]
#[template(path = "channels.html")]
pub struct ChannelsPage {
    pub nav: Nav,
    pub slug: String,
    pub channels: Vec<ChannelItem>,
    pub editing: Option<ChannelItem>,
    pub deliveries: Vec<DeliveryItem>,
    pub values: HashMap<String, String>,
    pub errors: HashMap<String, String>,
    pub can_manage: bool,
    pub notice: String,
}

impl ChannelsPage {
    pub fn v(&self, f: &str) -> &str {
        self.values.get(f).map(String::as_str).unwrap_or("")
    }
    pub fn e(&self, f: &str) -> &str {
        self.errors.get(f).map(String::as_str).unwrap_or("")
    }
}

fn channel_values(c: &ChannelRow) -> HashMap<String, String> {
    let mut v = HashMap::from([
        ("name".to_string(), c.name.clone()),
        ("kind".to_string(), c.kind.clone()),
    ]);
    for key in ["host", "security", "username", "from", "url"] {
        v.insert(
            key.into(),
            c.settings[key].as_str().unwrap_or("").to_string(),
        );
    }
    if let Some(p) = c.settings["port"].as_u64() {
        v.insert("port".into(), p.to_string());
    }
    if let Some(to) = c.settings["to"].as_array() {
        v.insert(
            "to".into(),
            to.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    v
}

async fn channels_page(
    app: &App,
    m: &OrgMember,
    editing: Option<i64>,
    values: Option<HashMap<String, String>>,
    errors: HashMap<String, String>,
    notice: String,
) -> Result<ChannelsPage, PageError> {
    let org_id = m.org.id;
    let rows = app.meta.call(move |c| channels::list(c, org_id)).await?;
    let (edit_row, deliveries): (Option<ChannelRow>, Vec<OutboxRow>) = match editing {
        Some(id) => {
            let (row, recent) = app
                .meta
                .call(move |c| {
                    Ok((
                        channels::get(c, org_id, id)?,
                        channels::recent(c, org_id, id, 20)?,
                    ))
                })
                .await
                .map_err(|e| not_found(e, "channel"))?;
            (Some(row), recent)
        }
        None => (None, vec![]),
    };
    let values = values.unwrap_or_else(|| {
        edit_row
            .as_ref()
            .map(channel_values)
            .unwrap_or_else(|| HashMap::from([("kind".into(), "webhook".into())]))
    });
    Ok(ChannelsPage {
        nav: nav(app, m, "channels").await?,
        slug: m.org.slug.clone(),
        channels: rows.iter().map(|c| channel_item(m, c)).collect(),
        editing: edit_row.as_ref().map(|c| channel_item(m, c)),
        deliveries: deliveries
            .iter()
            .map(|d| DeliveryItem {
                created: local_time(m, d.created_at),
                state: d.state.clone(),
                attempts: d.attempts,
                next_attempt: if d.state == "queued" {
                    local_time(m, d.next_attempt_at)
                } else {
                    String::new()
                },
                error: if m.role.allows(Permission::ManageOrg) {
                    d.last_error.clone()
                } else {
                    String::new()
                },
                alert_id: d.alert_id,
            })
            .collect(),
        values,
        errors,
        can_manage: m.role.allows(Permission::ManageOrg),
        notice,
    })
}

/// `GET /o/{slug}/channels`.
pub async fn channels_list(State(app): State<App>, m: OrgMember) -> Result<Response, PageError> {
    render_status(
        StatusCode::OK,
        &channels_page(&app, &m, None, None, HashMap::new(), String::new()).await?,
    )
}

/// `GET /o/{slug}/channels/{id}`.
pub async fn channel_detail(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
) -> Result<Response, PageError> {
    render_status(
        StatusCode::OK,
        &channels_page(&app, &m, Some(id), None, HashMap::new(), String::new()).await?,
    )
}

fn channel_json_from_form(form: &FormData) -> Value {
    json!({
        "name": form.get("name"),
        "kind": form.get("kind"),
        "secret": form.get("secret"),
        "settings": {
            "host": form.get("host"), "port": form.get("port"), "security": form.get("security"),
            "username": form.get("username"), "from": form.get("from"), "to": form.get("to"),
            "url": form.get("url"),
        }
    })
}

async fn save_channel_from_form(
    app: &App,
    m: &OrgMember,
    id: Option<i64>,
    fields: Vec<(String, String)>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(m, fields, Permission::ManageOrg)?;
    match alerting::save_channel(app, m.org.id, id, channel_json_from_form(&form), &m.actor()).await
    {
        Ok((row, generated)) => {
            let notice = match generated {
                Some(s) => format!(
                    "Saved. Signing secret (shown once; receivers verify X-Vitals-Signature with it): {s}"
                ),
                None => "Saved.".into(),
            };
            render_status(
                StatusCode::OK,
                &channels_page(app, m, Some(row.id), None, HashMap::new(), notice).await?,
            )
        }
        Err(SaveError::Invalid(problems)) => {
            let mut values = form_values(&form);
            values.remove("secret");
            let page = channels_page(
                app,
                m,
                id,
                Some(values),
                problems_map(&problems),
                String::new(),
            )
            .await?;
            form.invalid(&page)
        }
        Err(SaveError::Store(e)) => Err(not_found(e, "channel")),
    }
}

/// `POST /o/{slug}/channels`.
pub async fn create_channel(
    State(app): State<App>,
    m: OrgMember,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    save_channel_from_form(&app, &m, None, form).await
}

/// `POST /o/{slug}/channels/{id}`.
pub async fn update_channel(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    save_channel_from_form(&app, &m, Some(id), form).await
}

/// `POST /o/{slug}/channels/{id}/delete`.
pub async fn delete_channel(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormAction::accept(&m, form, Permission::ManageOrg)?;
    alerting::delete_channel(&app, m.org.id, id, &m.actor())
        .await
        .map_err(|e| not_found(e, "channel"))?;
    form.done("channels")
}

/// `POST /o/{slug}/channels/{id}/test`: sends a test message now and shows the outcome.
pub async fn test_channel(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    FormAction::accept(&m, form, Permission::WriteData)?;
    let org_id = m.org.id;
    let row = app
        .meta
        .call(move |c| channels::get(c, org_id, id))
        .await
        .map_err(|e| not_found(e, "channel"))?;
    let notice = match crate::services::notify::send_test(&app, &m.org, &row).await {
        Ok(()) => "Test message delivered.".to_string(),
        Err(StoreError::Conflict(reason)) => format!("Test message NOT delivered: {reason}"),
        Err(e) => return Err(e.into()),
    };
    render_status(
        StatusCode::OK,
        &channels_page(&app, &m, Some(id), None, HashMap::new(), notice).await?,
    )
}
