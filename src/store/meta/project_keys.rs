//! Project write keys: one per org, embedded in web pages and apps by the analytics SDKs. A
//! write key can only send events (nothing is readable with it), so it is stored as it is and
//! shown on the keys page; rotating it gives a new one and the old one stops working.

use rusqlite::{Connection, OptionalExtension, params};

use crate::store::{StoreError, now_secs};

/// The org's write key, created on first use.
pub fn get_or_create(conn: &Connection, org_id: i64) -> Result<String, StoreError> {
    let existing: Option<String> = conn
        .query_row(
            "SELECT key FROM project_keys WHERE org_id = ?",
            params![org_id],
            |r| r.get(0),
        )
        .optional()?;
    match existing {
        Some(k) => Ok(k),
        None => rotate(conn, org_id),
    }
}

/// Replaces the org's write key with a new one and returns it.
pub fn rotate(conn: &Connection, org_id: i64) -> Result<String, StoreError> {
    let key = crate::security::write_key();
    conn.execute(
        "INSERT INTO project_keys (org_id, key, created_at) VALUES (?, ?, ?)
         ON CONFLICT (org_id) DO UPDATE SET key = excluded.key, created_at = excluded.created_at",
        params![org_id, key, now_secs()],
    )?;
    Ok(key)
}

/// The org a write key belongs to.
pub fn org_of(conn: &Connection, key: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT org_id FROM project_keys WHERE key = ?",
            params![key],
            |r| r.get(0),
        )
        .optional()?)
}
