//! The CSV import page: upload a file, set the column mapping, preview what it becomes (the first
//! points and every problem with its line), then import it whole, or its valid rows only.
//! The uploaded file is written to `data_dir/uploads/<org>` as it arrives (never held in memory)
//! and kept there between preview and import, so it is sent once; it is removed after the
//! import, after a day, or when the org has more than `MAX_UPLOADS_PER_ORG` waiting.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::Response;

use crate::app::App;
use crate::domain::roles::Permission;
use crate::domain::timebucket;
use crate::services::query;
use crate::services::uploads::{MAX_UPLOADS_PER_ORG, prune_uploads, uploads_dir};
use crate::web::api::import::{SpoolError, mapping_from_pairs, run_import, spool};
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
    let dir = uploads_dir(&app, m.org.id);
    tokio::fs::create_dir_all(&dir).await.map_err(|e| {
        tracing::error!(error = %e, "while creating the uploads directory");
        PageError::Internal
    })?;
    let limit = app.config.ingest.max_import_bytes;
    let mut fields: Vec<(String, String)> = Vec::new();
    // A new upload: (token, file name), already on disk.
    let mut uploaded: Option<(String, String)> = None;
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| PageError::BadRequest(format!("the upload could not be read: {e}")))?
    {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            let file_name = field.file_name().unwrap_or("upload.csv").to_string();
            let token = crate::security::random_token();
            let path = dir.join(format!("{token}.csv"));
            let size = spool(field, &path, limit).await.map_err(|e| match e {
                SpoolError::TooLarge => PageError::BadRequest(
                    "The file is larger than ingest.max_import_bytes; split it.".into(),
                ),
                SpoolError::Read(m) => {
                    PageError::BadRequest(format!("the file could not be read: {m}"))
                }
                SpoolError::Io(e) => {
                    tracing::error!(error = %e, "while storing an upload");
                    PageError::Internal
                }
            })?;
            if size == 0 {
                let _ = tokio::fs::remove_file(&path).await;
            } else {
                uploaded = Some((token, file_name));
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
    if let Err(e) = m.check_csrf(&get("csrf")) {
        if let Some((token, _)) = &uploaded {
            let _ = tokio::fs::remove_file(dir.join(format!("{token}.csv"))).await;
        }
        return Err(e);
    }
    let action = get("action");
    let values: HashMap<String, String> = FIELDS.iter().map(|f| (f.to_string(), get(f))).collect();
    let mut page = empty_page(nav(&app, &m, "import").await?, values.clone());

    // A new upload is kept (per org, bounded) for the import step; else the stored one is used.
    let (token, file_name) = match uploaded {
        Some(new) => {
            let dir2 = dir.clone();
            let _ = tokio::task::spawn_blocking(move || prune_uploads(&dir2, MAX_UPLOADS_PER_ORG))
                .await;
            new
        }
        None => (get("upload"), get("file_name")),
    };
    if !valid_token(&token) {
        page.error = "Choose a CSV file to upload.".into();
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    let path = dir.join(format!("{token}.csv"));
    if tokio::fs::metadata(&path).await.is_err() {
        page.error =
            "The uploaded file is no longer here (uploads are kept for a day); upload it again."
                .into();
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    page.upload = token;
    page.file_name = file_name;
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
    let outcome = run_import(
        &app,
        &m.org,
        path.clone(),
        mapping,
        valid_only,
        &m.actor(),
        store,
    )
    .await?;
    let o = match outcome {
        Ok(o) => o,
        Err(file_problem) => {
            page.error = file_problem;
            return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    page.show_report = true;
    let summary = &o.summary;
    page.columns = summary.columns.clone();
    page.delimiter = match summary.delimiter {
        '\t' => "tab".into(),
        ';' => "semicolon".into(),
        _ => "comma".into(),
    };
    page.rows = summary.rows;
    page.point_count = if store { o.stored } else { summary.point_count };
    page.problem_count = summary.problem_count;
    page.problems = summary
        .problems
        .iter()
        .take(200)
        .map(|p| (p.line, p.reason.clone()))
        .collect();
    let org_tz = query::org_tz(&m.org);
    page.preview = summary
        .preview
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
            summary.rows,
            if summary.problem_count == 0 {
                String::new()
            } else {
                format!(
                    "; {} rows with problems were skipped",
                    summary.problem_count
                )
            }
        );
        return render_status(StatusCode::OK, &page);
    }
    if store && o.refused {
        page.error = format!(
            "Nothing was imported: {} of {} rows have problems. Fix the file, or import the valid rows only.",
            summary.problem_count, summary.rows
        );
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    render_status(StatusCode::OK, &page)
}
