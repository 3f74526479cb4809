//! The CSV import page: upload a file, set the column mapping, preview what it becomes (the first
//! points and every problem with its line), then import it whole, or its valid rows only.
//! The uploaded file is kept under `data_dir/uploads` between preview and import (so it is sent
//! once) and removed after the import or after a day.

use std::collections::HashMap;
use std::path::PathBuf;

use askama::Template;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::Response;

use crate::app::App;
use crate::domain::roles::Permission;
use crate::domain::timebucket;
use crate::services::query;
use crate::web::api::import::{mapping_from_pairs, run_import};
use crate::web::auth::OrgMember;
use crate::web::error::PageError;
use crate::web::pages::{Nav, nav, render_status};

#[derive(Template)]
#[template(path = "import.html")]
pub struct ImportPage {
    pub nav: Nav,
    pub values: HashMap<String, String>,
    pub upload: String,
    pub file_name: String,
    pub error: String,
    pub notice: String,
    pub columns: Vec<String>,
    pub delimiter: String,
    pub rows: usize,
    pub preview: Vec<(String, String, String, String)>,
    pub point_count: usize,
    pub problems: Vec<(usize, String)>,
    pub problem_count: usize,
    pub show_report: bool,
}

impl ImportPage {
    pub fn v(&self, field: &str) -> &str {
        self.values.get(field).map(String::as_str).unwrap_or("")
    }
}

const FIELDS: [&str; 9] = [
    "timestamp_column",
    "timestamp_format",
    "time_zone",
    "metric_column",
    "value_column",
    "columns",
    "dimensions",
    "delimiter",
    "decimal",
];

fn uploads_dir(app: &App) -> PathBuf {
    app.data_dir().join("uploads")
}

fn empty_page(nav: Nav, values: HashMap<String, String>) -> ImportPage {
    ImportPage {
        nav,
        values,
        upload: String::new(),
        file_name: String::new(),
        error: String::new(),
        notice: String::new(),
        columns: Vec::new(),
        delimiter: String::new(),
        rows: 0,
        preview: Vec::new(),
        point_count: 0,
        problems: Vec::new(),
        problem_count: 0,
        show_report: false,
    }
}

/// `GET /o/{slug}/import`.
pub async fn import_form(State(app): State<App>, m: OrgMember) -> Result<Response, PageError> {
    m.require(Permission::WriteData)?;
    let mut values = HashMap::new();
    values.insert("time_zone".to_string(), m.org.time_zone.clone());
    render_status(
        StatusCode::OK,
        &empty_page(nav(&app, &m, "import").await?, values),
    )
}

/// A name for a stored upload: random, so one org cannot guess another's.
fn valid_token(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 64
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `POST /o/{slug}/import` (multipart): `action` = preview, import or import_valid.
pub async fn import_submit(
    State(app): State<App>,
    m: OrgMember,
    mut multipart: Multipart,
) -> Result<Response, PageError> {
    m.require(Permission::WriteData)?;
    let mut fields: Vec<(String, String)> = Vec::new();
    let mut file: Option<(String, Vec<u8>)> = None;
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| PageError::BadRequest(format!("the upload could not be read: {e}")))?
    {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            let file_name = field.file_name().unwrap_or("upload.csv").to_string();
            let bytes = field
                .bytes()
                .await
                .map_err(|e| PageError::BadRequest(format!("the file could not be read: {e}")))?;
            if !bytes.is_empty() {
                file = Some((file_name, bytes.to_vec()));
            }
        } else {
            let text = field.text().await.map_err(|e| {
                PageError::BadRequest(format!("field {name} could not be read: {e}"))
            })?;
            fields.push((name, text));
        }
    }
    let get = |k: &str| {
        fields
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    m.check_csrf(&get("csrf"))?;
    let action = get("action");
    let values: HashMap<String, String> = FIELDS.iter().map(|f| (f.to_string(), get(f))).collect();
    let mut page = empty_page(nav(&app, &m, "import").await?, values.clone());

    // The file: a new upload is stored (per org) for the import step; else the stored one.
    let dir = uploads_dir(&app).join(m.org.id.to_string());
    let (token, file_name) = match file {
        Some((name, bytes)) => {
            let token = crate::security::random_token();
            let (dir2, token2) = (dir.clone(), token.clone());
            tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                std::fs::create_dir_all(&dir2)?;
                // Uploads older than a day are left-overs of previews never imported.
                if let Ok(entries) = std::fs::read_dir(&dir2) {
                    for e in entries.flatten() {
                        let old = e
                            .metadata()
                            .and_then(|md| md.modified())
                            .ok()
                            .and_then(|t| t.elapsed().ok())
                            .is_some_and(|age| age.as_secs() > 86_400);
                        if old {
                            let _ = std::fs::remove_file(e.path());
                        }
                    }
                }
                std::fs::write(dir2.join(format!("{token2}.csv")), bytes)
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "upload task failed");
                PageError::Internal
            })?
            .map_err(|e| {
                tracing::error!(error = %e, "while storing an upload");
                PageError::Internal
            })?;
            (token, name)
        }
        None => (get("upload"), get("file_name")),
    };
    if !valid_token(&token) {
        page.error = "Choose a CSV file to upload.".into();
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    let path = dir.join(format!("{token}.csv"));
    let bytes = match tokio::fs::read(&path).await {
        Ok(b) => b,
        Err(_) => {
            page.error = "The uploaded file is no longer here (uploads are kept for a day); upload it again.".into();
            return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    page.upload = token;
    page.file_name = file_name;
    let text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            page.error = format!(
                "The file is not UTF-8 text (byte {}); save it as “CSV UTF-8” and upload it again.",
                e.utf8_error().valid_up_to()
            );
            return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    let mut pairs: Vec<(String, String)> = values.into_iter().collect();
    pairs.push(("valid_only".into(), (action == "import_valid").to_string()));
    let (mapping, valid_only) = match mapping_from_pairs(&pairs) {
        Ok(x) => x,
        Err((field, message)) => {
            page.error = format!("{}: {message}", field.replace('_', " "));
            return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    let store = action == "import" || action == "import_valid";
    let outcome = run_import(&app, &m.org, text, mapping, valid_only, &m.actor(), store).await?;
    let o = match outcome {
        Ok(o) => o,
        Err(file_problem) => {
            page.error = file_problem;
            return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    page.show_report = true;
    page.columns = o.parsed.columns.clone();
    page.delimiter = match o.parsed.delimiter {
        '\t' => "tab".into(),
        ';' => "semicolon".into(),
        _ => "comma".into(),
    };
    page.rows = o.parsed.rows;
    page.point_count = if store {
        o.stored
    } else {
        o.parsed.points.len()
    };
    page.problem_count = o.parsed.problems.len();
    page.problems = o
        .parsed
        .problems
        .iter()
        .take(200)
        .map(|p| (p.line, p.reason.clone()))
        .collect();
    let org_tz = query::org_tz(&m.org);
    page.preview = o
        .parsed
        .points
        .iter()
        .take(20)
        .map(|p| {
            let local = timebucket::local_naive(org_tz, p.ts_micros);
            let dims = p
                .dims
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ");
            (
                local.format("%Y-%m-%d %H:%M").to_string(),
                p.metric.clone(),
                format!("{}", p.value),
                dims,
            )
        })
        .collect();
    if store && !o.refused {
        let _ = tokio::fs::remove_file(&path).await;
        page.upload.clear();
        page.notice = format!(
            "Imported {} points from {} rows{}.",
            o.stored,
            o.parsed.rows,
            if o.parsed.problems.is_empty() {
                String::new()
            } else {
                format!(
                    "; {} rows with problems were skipped",
                    o.parsed.problems.len()
                )
            }
        );
        return render_status(StatusCode::OK, &page);
    }
    if store && o.refused {
        page.error = format!(
            "Nothing was imported: {} of {} rows have problems. Fix the file, or import the valid rows only.",
            o.parsed.problems.len(),
            o.parsed.rows
        );
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    render_status(StatusCode::OK, &page)
}
