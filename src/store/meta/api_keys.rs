//! API keys. The key itself is shown once at creation; only its prefix (to find it) and a
//! SHA-256 of the whole key are stored.

use rusqlite::{Connection, Row, params};
use serde::Serialize;

use super::OptionalRow;
use crate::domain::roles::Scope;
use crate::store::{StoreError, now_secs};

#[derive(Debug, Clone, Serialize)]
pub struct ApiKey {
    pub id: i64,
    pub org_id: i64,
    pub name: String,
    pub prefix: String,
    pub scopes: Vec<Scope>,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl ApiKey {
    pub fn is_active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }
}

const COLUMNS: &str = "k.id, k.org_id, k.name, k.prefix, k.scopes, u.email, k.created_at, k.expires_at, k.last_used_at, k.revoked_at";

fn from_row(r: &Row) -> rusqlite::Result<ApiKey> {
    let scopes: String = r.get(4)?;
    Ok(ApiKey {
        id: r.get(0)?,
        org_id: r.get(1)?,
        name: r.get(2)?,
        prefix: r.get(3)?,
        scopes: Scope::parse_list(&scopes).unwrap_or_default(),
        created_by: r.get(5)?,
        created_at: r.get(6)?,
        expires_at: r.get(7)?,
        last_used_at: r.get(8)?,
        revoked_at: r.get(9)?,
    })
}

pub struct NewKey<'a> {
    pub org_id: i64,
    pub name: &'a str,
    pub prefix: &'a str,
    pub key_hash: &'a str,
    pub scopes: &'a [Scope],
    pub created_by: Option<i64>,
    pub expires_at: Option<i64>,
}

pub fn create(conn: &Connection, k: &NewKey) -> Result<ApiKey, StoreError> {
    conn.execute(
        "INSERT INTO api_keys (org_id, name, prefix, key_hash, scopes, created_by, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![k.org_id, k.name, k.prefix, k.key_hash, Scope::join(k.scopes), k.created_by, now_secs(), k.expires_at],
    )?;
    get(conn, k.org_id, conn.last_insert_rowid())
}

pub fn get(conn: &Connection, org_id: i64, id: i64) -> Result<ApiKey, StoreError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM api_keys k LEFT JOIN users u ON u.id = k.created_by WHERE k.org_id = ?1 AND k.id = ?2"),
        params![org_id, id],
        from_row,
    )
    .found()
}

pub fn list(conn: &Connection, org_id: i64) -> Result<Vec<ApiKey>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM api_keys k LEFT JOIN users u ON u.id = k.created_by WHERE k.org_id = ?1 ORDER BY k.id DESC"
    ))?;
    let rows = stmt.query_map([org_id], from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The key with this prefix and its stored hash, whatever its org (the caller verifies the hash).
pub fn by_prefix(conn: &Connection, prefix: &str) -> Result<(ApiKey, String), StoreError> {
    conn.prepare_cached(&format!("SELECT {COLUMNS}, k.key_hash FROM api_keys k LEFT JOIN users u ON u.id = k.created_by WHERE k.prefix = ?1"))?
        .query_row([prefix],
        |r| Ok((from_row(r)?, r.get(10)?)),
    )
    .found()
}

pub fn revoke(conn: &Connection, org_id: i64, id: i64) -> Result<ApiKey, StoreError> {
    let n = conn.execute(
        "UPDATE api_keys SET revoked_at = ?3 WHERE org_id = ?1 AND id = ?2 AND revoked_at IS NULL",
        params![org_id, id, now_secs()],
    )?;
    let key = get(conn, org_id, id)?;
    if n == 0 {
        return Err(StoreError::Conflict("this key is already revoked".into()));
    }
    Ok(key)
}

impl ApiKey {
    /// Whether `last_used_at` is old enough to be stamped again (once a minute, so that API
    /// calls are reads, not writes).
    pub fn needs_touch(&self, now: i64) -> bool {
        self.last_used_at.is_none_or(|t| t < now - 60)
    }
}

/// Stamps `last_used_at`, at most once a minute per key so reads stay cheap.
pub fn touch(conn: &Connection, id: i64) -> Result<(), StoreError> {
    let now = now_secs();
    conn.execute(
        "UPDATE api_keys SET last_used_at = ?2 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at < ?2 - 60)",
        params![id, now],
    )?;
    Ok(())
}
