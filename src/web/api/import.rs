//! CSV import over HTTP: `POST /api/v1/imports/csv` (the body is the file, the mapping is in the
//! query string) and the import page (upload, mapping preview, import). Both use the same parser
//! ([`crate::domain::csv_import`]) and the same rule: a file with problems imports nothing unless
//! the user asks for the valid rows only.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::app::App;
use crate::domain::csv_import::{self, Mapping, Summary};
use crate::domain::ingest::Point;
use crate::domain::roles::Scope;
use crate::services::uploads::uploads_dir;
use crate::store::StoreError;
use crate::store::meta::audit;
use crate::store::meta::orgs::Org;
use crate::web::api::parse_query;
use crate::web::auth::ApiKeyAuth;
use crate::web::error::ApiError;

/// The mapping from `key=value` pairs (query string or form fields). Unknown keys are errors.
pub fn mapping_from_pairs(pairs: &[(String, String)]) -> Result<(Mapping, bool), (String, String)> {
    let mut m = Mapping::default();
    let mut valid_only = false;
    let list = |v: &str| -> Vec<String> {
        v.split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    };
    for (k, v) in pairs {
        let v = v.trim();
        match k.as_str() {
            "delimiter" => {
                m.delimiter = match v {
                    "" | "auto" => None,
                    "," | "comma" => Some(','),
                    ";" | "semicolon" => Some(';'),
                    "\t" | "tab" => Some('\t'),
                    _ => return Err((k.clone(), "must be comma, semicolon, tab or auto".into())),
                }
            }
            "decimal" => {
                m.decimal_comma = match v {
                    "" | "point" | "." => false,
                    "comma" | "," => true,
                    _ => return Err((k.clone(), "must be point or comma".into())),
                }
            }
            "timestamp_column" => {
                m.timestamp_column = Some(v.to_string()).filter(|s| !s.is_empty())
            }
            "timestamp_format" => {
                m.timestamp_format = Some(v.to_string()).filter(|s| !s.is_empty())
            }
            "time_zone" => {
                if !v.is_empty() {
                    m.time_zone = v.parse().map_err(|_| {
                        (
                            k.clone(),
                            format!("{v:?} is not an IANA time zone such as Europe/Berlin"),
                        )
                    })?;
                }
            }
            "metric_column" => m.metric_column = Some(v.to_string()).filter(|s| !s.is_empty()),
            "value_column" => m.value_column = Some(v.to_string()).filter(|s| !s.is_empty()),
            "columns" => {
                for pair in list(v) {
                    let (col, metric) = pair
                        .split_once(':')
                        .unwrap_or((pair.as_str(), pair.as_str()));
                    m.metric_columns
                        .push((col.trim().to_string(), metric.trim().to_string()));
                }
            }
            "dimensions" => {
                for pair in list(v) {
                    let (col, key) = match pair.split_once(':') {
                        Some((c, k)) => (c.trim().to_string(), k.trim().to_string()),
                        None => (pair.clone(), csv_import::dimension_key_of(&pair)),
                    };
                    m.dimension_columns.push((col, key));
                }
            }
            "valid_only" => {
                valid_only = match v {
                    "" | "false" | "0" | "off" => false,
                    "true" | "1" | "on" => true,
                    _ => return Err((k.clone(), "must be true or false".into())),
                }
            }
            "csrf" | "action" | "upload" => {}
            other => {
                return Err((
                    other.to_string(),
                    format!(
                        "unknown parameter `{other}`; use delimiter, decimal, timestamp_column, timestamp_format, time_zone, metric_column, value_column, columns, dimensions or valid_only"
                    ),
                ));
            }
        }
    }
    Ok((m, valid_only))
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub summary: Summary,
    /// Points stored (0 when the file was refused or only previewed).
    pub stored: usize,
    pub refused: bool,
}

/// Points handed to the store at a time: memory stays at about two such chunks, whatever the
/// file's size.
const STORE_CHUNK_POINTS: usize = 50_000;

/// Reads the file at `path` (off the async runtime, one record at a time) and, when `store`
/// and allowed, stores its points: a first pass checks every row, so a file with problems
/// stores nothing unless `valid_only`; a second pass streams the points to the store in
/// chunks. Re-importing a file replaces the same points (metric, time, dimensions) instead of
/// adding to them, so an import cut short by a failure can simply be run again.
pub async fn run_import(
    app: &App,
    org: &Org,
    path: PathBuf,
    mapping: Mapping,
    valid_only: bool,
    actor: &str,
    store: bool,
) -> Result<Result<Outcome, String>, StoreError> {
    let org_id = org.id;
    let known: Arc<HashSet<String>> = Arc::new(
        app.meta
            .catalog(org_id)
            .await?
            .to_vec()
            .into_iter()
            .map(|d| d.key)
            .collect(),
    );
    let now = chrono::Utc::now().timestamp_micros();
    let future = app.config.ingest.max_future_secs as i64 * 1_000_000;
    let mapping = Arc::new(mapping);
    let open = |path: &PathBuf| {
        std::fs::File::open(path)
            .map(|f| std::io::BufReader::with_capacity(64 * 1024, f))
            .map_err(|e| format!("the uploaded file could not be read: {e}"))
    };
    let (p, m, k) = (path.clone(), mapping.clone(), known.clone());
    let checked = tokio::task::spawn_blocking(move || {
        csv_import::read(open(&p)?, &m, |key| k.contains(key), now, future, |_| {})
    })
    .await
    .map_err(StoreError::internal)?;
    let summary = match checked {
        Ok(s) => s,
        Err(file_problem) => return Ok(Err(file_problem)),
    };
    let refused = summary.problem_count > 0 && !valid_only;
    if !store || refused || summary.point_count == 0 {
        return Ok(Ok(Outcome {
            summary,
            stored: 0,
            refused,
        }));
    }
    let (chunks, mut arriving) = tokio::sync::mpsc::channel::<Vec<Point>>(1);
    let reader = tokio::task::spawn_blocking(move || {
        let mut chunk = Vec::with_capacity(STORE_CHUNK_POINTS);
        let read = csv_import::read(
            open(&path)?,
            &mapping,
            |key| known.contains(key),
            now,
            future,
            |points| {
                chunk.extend(points);
                if chunk.len() >= STORE_CHUNK_POINTS {
                    // A closed channel means the store failed; the rest is read for nothing.
                    let _ = chunks.blocking_send(std::mem::take(&mut chunk));
                }
            },
        );
        if !chunk.is_empty() {
            let _ = chunks.blocking_send(chunk);
        }
        read.map(|_| ())
    });
    let mut stored = 0;
    while let Some(chunk) = arriving.recv().await {
        stored += app.store_points(org_id, chunk).await?.0;
    }
    if let Err(file_problem) = reader.await.map_err(StoreError::internal)? {
        return Ok(Err(file_problem));
    }
    let (actor, detail) = (
        actor.to_string(),
        format!("{stored} points, {} rows skipped", summary.problem_count),
    );
    app.meta
        .call(move |c| audit::record(c, Some(org_id), &actor, "import.csv", &detail, ""))
        .await?;
    Ok(Ok(Outcome {
        summary,
        stored,
        refused: false,
    }))
}

/// Why a file could not be received.
#[derive(Debug)]
pub enum SpoolError {
    TooLarge,
    Read(String),
    Io(std::io::Error),
}

/// Writes an upload to `path` as it arrives, refusing (and removing) it past `limit` bytes:
/// a file is never held in memory.
pub async fn spool<S, E>(mut stream: S, path: &Path, limit: u64) -> Result<u64, SpoolError>
where
    S: futures::Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(SpoolError::Io)?;
    let mut written = 0u64;
    let outcome = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| SpoolError::Read(e.to_string()))?;
            written += chunk.len() as u64;
            if written > limit {
                return Err(SpoolError::TooLarge);
            }
            file.write_all(&chunk).await.map_err(SpoolError::Io)?;
        }
        file.flush().await.map_err(SpoolError::Io)?;
        Ok(written)
    }
    .await;
    if outcome.is_err() {
        drop(file);
        let _ = tokio::fs::remove_file(path).await;
    }
    outcome
}

/// At most this many problems are listed in a response (the count is always exact).
pub const MAX_LISTED_PROBLEMS: usize = 1000;

/// `POST /api/v1/imports/csv?…mapping…`: the body is the CSV file, spooled to disk as it
/// arrives and read from there.
pub async fn import_csv(
    State(app): State<App>,
    auth: ApiKeyAuth,
    RawQuery(raw): RawQuery,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    auth.require(Scope::Write)?;
    let pairs = parse_query(raw.as_deref().unwrap_or(""))?;
    let (mapping, valid_only) =
        mapping_from_pairs(&pairs).map_err(|(f, m)| ApiError::bad_request(&f, m))?;
    let dir = uploads_dir(&app, auth.org.id);
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(StoreError::internal)?;
    // Removed when this request ends, however it ends.
    let spooled = tempfile::Builder::new()
        .prefix("api-")
        .suffix(".csv")
        .tempfile_in(&dir)
        .map_err(StoreError::internal)?
        .into_temp_path();
    let limit = app.config.ingest.max_import_bytes;
    spool(body.into_data_stream(), &spooled, limit)
        .await
        .map_err(|e| match e {
            SpoolError::TooLarge => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "file_too_large",
                "the file is larger than ingest.max_import_bytes; split it",
            ),
            SpoolError::Read(_) => ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "the file could not be read",
            ),
            SpoolError::Io(e) => StoreError::internal(e).into(),
        })?;
    let outcome = run_import(
        &app,
        &auth.org,
        spooled.to_path_buf(),
        mapping,
        valid_only,
        &format!("api_key:{}", auth.key.prefix),
        true,
    )
    .await?;
    let o = match outcome {
        Ok(o) => o,
        Err(file_problem) if file_problem.starts_with(csv_import::NOT_UTF8) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "not_utf8",
                file_problem,
            ));
        }
        Err(file_problem) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_file",
                file_problem,
            ));
        }
    };
    let s = &o.summary;
    let listed: Vec<_> = s.problems.iter().take(MAX_LISTED_PROBLEMS).collect();
    let body = json!({
        "rows": s.rows,
        "imported_points": o.stored,
        "skipped_rows": if o.refused { s.rows } else { s.problem_count },
        "problem_count": s.problem_count,
        "problems": listed,
        "columns": s.columns,
        "delimiter": s.delimiter.to_string(),
    });
    if o.refused {
        let first = &s.problems[0];
        let mut wrapped = json!({"error": {
            "code": "invalid_rows",
            "field": format!("line {}", first.line),
            "message": format!(
                "{} of {} rows have problems; nothing was imported. First: line {}: {}. Fix them, or send valid_only=true to import the other rows.",
                s.problem_count, s.rows, first.line, first.reason
            ),
        }});
        if let (Some(w), Some(b)) = (wrapped.as_object_mut(), body.as_object()) {
            w.extend(b.clone());
        }
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(wrapped)));
    }
    Ok((StatusCode::OK, Json(body)))
}
