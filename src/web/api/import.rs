//! CSV import over HTTP: `POST /api/v1/imports/csv` (the body is the file, the mapping is in the
//! query string) and the import page (upload, mapping preview, import). Both use the same parser
//! ([`crate::domain::csv_import`]) and the same rule: a file with problems imports nothing unless
//! the user asks for the valid rows only.

use std::collections::HashSet;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use crate::app::App;
use crate::domain::csv_import::{self, Mapping, Parsed};
use crate::domain::roles::Scope;
use crate::store::StoreError;
use crate::store::meta::orgs::Org;
use crate::store::meta::{audit, custom_metrics};
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
    pub parsed: Parsed,
    /// Points stored (0 when the file was refused).
    pub stored: usize,
    pub refused: bool,
}

/// Parses (off the async runtime) and, when allowed, stores. Re-importing a file replaces the
/// same points (metric, time, dimensions) instead of adding to them.
pub async fn run_import(
    app: &App,
    org: &Org,
    text: String,
    mapping: Mapping,
    valid_only: bool,
    actor: &str,
    store: bool,
) -> Result<Result<Outcome, String>, StoreError> {
    let org_id = org.id;
    let known: HashSet<String> = app
        .meta
        .call(move |c| custom_metrics::catalog(c, org_id))
        .await?
        .into_iter()
        .map(|d| d.key)
        .collect();
    let now = chrono::Utc::now().timestamp_micros();
    let future = app.config.ingest.max_future_secs as i64 * 1_000_000;
    let parsed = tokio::task::spawn_blocking(move || {
        csv_import::parse(&text, &mapping, |k| known.contains(k), now, future)
    })
    .await
    .map_err(StoreError::internal)?;
    let mut parsed = match parsed {
        Ok(p) => p,
        Err(file_problem) => return Ok(Err(file_problem)),
    };
    let refused = !parsed.problems.is_empty() && !valid_only;
    if !store || refused || parsed.points.is_empty() {
        return Ok(Ok(Outcome {
            parsed,
            stored: 0,
            refused,
        }));
    }
    let (stored, _) = app
        .store_points(org_id, std::mem::take(&mut parsed.points))
        .await?;
    let (actor, detail) = (
        actor.to_string(),
        format!("{stored} points, {} rows skipped", parsed.problems.len()),
    );
    app.meta
        .call(move |c| audit::record(c, Some(org_id), &actor, "import.csv", &detail, ""))
        .await?;
    Ok(Ok(Outcome {
        parsed,
        stored,
        refused: false,
    }))
}

/// At most this many problems are listed in a response (the count is always exact).
pub const MAX_LISTED_PROBLEMS: usize = 1000;

/// `POST /api/v1/imports/csv?…mapping…`: the body is the CSV file.
pub async fn import_csv(
    State(app): State<App>,
    auth: ApiKeyAuth,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    auth.require(Scope::Write)?;
    let pairs = parse_query(raw.as_deref().unwrap_or(""))?;
    let (mapping, valid_only) =
        mapping_from_pairs(&pairs).map_err(|(f, m)| ApiError::bad_request(&f, m))?;
    let bytes = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "file_too_large",
                "the file is larger than ingest.max_import_bytes; split it",
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "the file could not be read",
            )
        }
    })?;
    let text = String::from_utf8(bytes.to_vec()).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "not_utf8",
            format!(
                "the file is not UTF-8 text (byte {}); save it as CSV UTF-8",
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    let outcome = run_import(
        &app,
        &auth.org,
        text,
        mapping,
        valid_only,
        &format!("api_key:{}", auth.key.prefix),
        true,
    )
    .await?;
    let o = match outcome {
        Ok(o) => o,
        Err(file_problem) => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_file",
                file_problem,
            ));
        }
    };
    let listed: Vec<_> = o.parsed.problems.iter().take(MAX_LISTED_PROBLEMS).collect();
    let body = json!({
        "rows": o.parsed.rows,
        "imported_points": o.stored,
        "skipped_rows": if o.refused { o.parsed.rows } else { o.parsed.problems.len() },
        "problem_count": o.parsed.problems.len(),
        "problems": listed,
        "columns": o.parsed.columns,
        "delimiter": o.parsed.delimiter.to_string(),
    });
    if o.refused {
        let first = &o.parsed.problems[0];
        let mut wrapped = json!({"error": {
            "code": "invalid_rows",
            "field": format!("line {}", first.line),
            "message": format!(
                "{} of {} rows have problems; nothing was imported. First: line {}: {}. Fix them, or send valid_only=true to import the other rows.",
                o.parsed.problems.len(), o.parsed.rows, first.line, first.reason
            ),
        }});
        if let (Some(w), Some(b)) = (wrapped.as_object_mut(), body.as_object()) {
            w.extend(b.clone());
        }
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(wrapped)));
    }
    Ok((StatusCode::OK, Json(body)))
}
