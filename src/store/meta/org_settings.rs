//! Per-org scoring settings, stored as JSON of `domain::health::HealthSettings`.

use rusqlite::{Connection, OptionalExtension, params};

use crate::domain::health::HealthSettings;
use crate::store::StoreError;

/// The org's settings, or the defaults when none were saved.
pub fn health(conn: &Connection, org_id: i64) -> Result<HealthSettings, StoreError> {
    let json: Option<String> = conn
        .prepare_cached("SELECT health FROM org_settings WHERE org_id = ?1")?
        .query_row([org_id], |r| r.get(0))
        .optional()?;
    match json {
        Some(j) => serde_json::from_str(&j).map_err(StoreError::internal),
        None => Ok(HealthSettings::default()),
    }
}

pub fn set_health(
    conn: &Connection,
    org_id: i64,
    settings: &HealthSettings,
) -> Result<(), StoreError> {
    let json = serde_json::to_string(settings).map_err(StoreError::internal)?;
    conn.execute(
        "INSERT INTO org_settings (org_id, health) VALUES (?1, ?2)
         ON CONFLICT(org_id) DO UPDATE SET health = excluded.health",
        params![org_id, json],
    )?;
    Ok(())
}
