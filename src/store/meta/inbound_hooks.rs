//! Inbound webhooks: per-org secret URLs (`/hooks/{token}`) that accept the metric JSON of
//! `POST /api/v1/metrics`. Only a SHA-256 of the token is stored; the URL is shown once.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::store::{StoreError, now_secs};

#[derive(Debug, Clone, Serialize)]
pub struct InboundHook {
    pub id: i64,
    pub org_id: i64,
    pub name: String,
    /// The first characters of the token, to tell hooks apart.
    pub prefix: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<InboundHook> {
    Ok(InboundHook {
        id: r.get(0)?,
        org_id: r.get(1)?,
        name: r.get(2)?,
        prefix: r.get(3)?,
        created_at: r.get(4)?,
        last_used_at: r.get(5)?,
        revoked_at: r.get(6)?,
    })
}

const COLUMNS: &str = "id, org_id, name, prefix, created_at, last_used_at, revoked_at";

pub fn create(
    conn: &Connection,
    org_id: i64,
    name: &str,
    prefix: &str,
    token_hash: &str,
) -> Result<InboundHook, StoreError> {
    conn.execute(
        "INSERT INTO inbound_hooks (org_id, name, prefix, token_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![org_id, name, prefix, token_hash, now_secs()],
    )?;
    let id = conn.last_insert_rowid();
    Ok(conn.query_row(
        &format!("SELECT {COLUMNS} FROM inbound_hooks WHERE id = ?1"),
        [id],
        row,
    )?)
}

pub fn list(conn: &Connection, org_id: i64) -> Result<Vec<InboundHook>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM inbound_hooks WHERE org_id = ?1 ORDER BY revoked_at IS NOT NULL, created_at DESC"
    ))?;
    let rows = stmt.query_map([org_id], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The active hook with this token hash (and marks it used).
pub fn find_active(conn: &Connection, token_hash: &str) -> Result<InboundHook, StoreError> {
    let hook = conn
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM inbound_hooks WHERE token_hash = ?1 AND revoked_at IS NULL"
            ),
            [token_hash],
            row,
        )
        .optional()?
        .ok_or(StoreError::NotFound)?;
    conn.execute(
        "UPDATE inbound_hooks SET last_used_at = ?2 WHERE id = ?1",
        params![hook.id, now_secs()],
    )?;
    Ok(hook)
}

/// Revokes one of the org's hooks (another org's id is "not found").
pub fn revoke(conn: &Connection, org_id: i64, id: i64) -> Result<(), StoreError> {
    let n = conn.execute(
        "UPDATE inbound_hooks SET revoked_at = ?3 WHERE id = ?1 AND org_id = ?2 AND revoked_at IS NULL",
        params![id, org_id, now_secs()],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}
