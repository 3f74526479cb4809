//! Metrics computed from events: the definition (event, math, property, filters) of a custom
//! metric whose daily points the event-metrics service writes.

use rusqlite::{Connection, params};

use crate::store::{StoreError, now_secs};

/// Stores the definition (JSON, as `domain::event_metrics` reads it) of the org's metric `key`.
pub fn create(
    conn: &Connection,
    org_id: i64,
    key: &str,
    definition: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO event_metrics (org_id, key, definition, created_at) VALUES (?, ?, ?, ?)",
        params![org_id, key, definition, now_secs()],
    )
    .map_err(|e| super::unique_conflict(e, "this metric is already computed from events"))?;
    Ok(())
}

/// Every (key, definition JSON) of the org.
pub fn list(conn: &Connection, org_id: i64) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt =
        conn.prepare("SELECT key, definition FROM event_metrics WHERE org_id = ? ORDER BY key")?;
    let rows = stmt.query_map([org_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}
