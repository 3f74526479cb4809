//! Audit log of security-relevant actions.

use rusqlite::{Connection, params};
use serde::Serialize;

use crate::store::{StoreError, now_secs};

#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub at: i64,
    pub actor: String,
    pub action: String,
    pub detail: String,
    pub ip: String,
}

/// Records an action. `actor` is `user:EMAIL`, `apikey:PREFIX`, or `cli`.
pub fn record(
    conn: &Connection,
    org_id: Option<i64>,
    actor: &str,
    action: &str,
    detail: &str,
    ip: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO audit_log (org_id, actor, action, detail, ip, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![org_id, actor, action, detail, ip, now_secs()],
    )?;
    Ok(())
}

pub fn recent(conn: &Connection, org_id: i64, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT at, actor, action, detail, ip FROM audit_log WHERE org_id = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![org_id, limit], |r| {
        Ok(AuditEntry {
            at: r.get(0)?,
            actor: r.get(1)?,
            action: r.get(2)?,
            detail: r.get(3)?,
            ip: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
