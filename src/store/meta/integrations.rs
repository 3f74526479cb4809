//! Integration instances per org (credentials sealed, never returned) and their sync history.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::store::{StoreError, now_secs};

#[derive(Debug, Clone, Serialize)]
pub struct Integration {
    pub id: i64,
    pub org_id: i64,
    pub provider: String,
    pub name: String,
    /// Sealed credentials (see `crate::secrets`); skipped in every serialisation.
    #[serde(skip)]
    pub credentials: String,
    pub cursor: String,
    /// `new`, `ok`, `syncing`, `error` or `reconnect` (credentials refused or unreadable).
    pub status: String,
    pub last_error: String,
    pub created_at: i64,
    pub last_sync_at: Option<i64>,
    /// Cron expression of its scheduled pulls (empty: only "Sync now" and webhooks).
    pub schedule: String,
}

const COLUMNS: &str = "id, org_id, provider, name, credentials, cursor, status, last_error, created_at, last_sync_at, schedule";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Integration> {
    Ok(Integration {
        id: r.get(0)?,
        org_id: r.get(1)?,
        provider: r.get(2)?,
        name: r.get(3)?,
        credentials: r.get(4)?,
        cursor: r.get(5)?,
        status: r.get(6)?,
        last_error: r.get(7)?,
        created_at: r.get(8)?,
        last_sync_at: r.get(9)?,
        schedule: r.get(10)?,
    })
}

pub fn count_all(conn: &Connection) -> Result<usize, StoreError> {
    Ok(
        conn.query_row("SELECT count(*) FROM integrations", [], |r| {
            r.get::<_, i64>(0)
        })? as usize,
    )
}

pub fn create(
    conn: &Connection,
    org_id: i64,
    provider: &str,
    name: &str,
    sealed: &str,
) -> Result<Integration, StoreError> {
    conn.execute(
        "INSERT INTO integrations (org_id, provider, name, credentials, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![org_id, provider, name, sealed, now_secs()],
    )?;
    get(conn, org_id, conn.last_insert_rowid())
}

/// One of the org's integrations (another org's id is "not found").
pub fn get(conn: &Connection, org_id: i64, id: i64) -> Result<Integration, StoreError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM integrations WHERE id = ?1 AND org_id = ?2"),
        params![id, org_id],
        row,
    )
    .optional()?
    .ok_or(StoreError::NotFound)
}

pub fn list(conn: &Connection, org_id: i64) -> Result<Vec<Integration>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM integrations WHERE org_id = ?1 ORDER BY id"
    ))?;
    let rows = stmt.query_map([org_id], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn all(conn: &Connection) -> Result<Vec<Integration>, StoreError> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM integrations ORDER BY id"))?;
    let rows = stmt.query_map([], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn delete(conn: &Connection, org_id: i64, id: i64) -> Result<(), StoreError> {
    let n = conn.execute(
        "DELETE FROM integrations WHERE id = ?1 AND org_id = ?2",
        params![id, org_id],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub fn set_state(
    conn: &Connection,
    id: i64,
    status: &str,
    last_error: &str,
    cursor: Option<&str>,
    synced_at: Option<i64>,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE integrations SET status = ?2, last_error = ?3, cursor = COALESCE(?4, cursor),
            last_sync_at = COALESCE(?5, last_sync_at) WHERE id = ?1",
        params![id, status, last_error, cursor, synced_at],
    )?;
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct SyncRun {
    pub id: i64,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub rows: i64,
    /// `running`, `ok` or `error`.
    pub outcome: String,
    pub message: String,
}

pub fn start_run(conn: &Connection, integration_id: i64, at: i64) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO sync_runs (integration_id, started_at, outcome) VALUES (?1, ?2, 'running')",
        params![integration_id, at],
    )?;
    Ok(conn.last_insert_rowid())
}

pub fn finish_run(
    conn: &Connection,
    run_id: i64,
    rows: i64,
    outcome: &str,
    message: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE sync_runs SET finished_at = ?2, rows = ?3, outcome = ?4, message = ?5 WHERE id = ?1",
        params![run_id, now_secs(), rows, outcome, message],
    )?;
    Ok(())
}

pub fn runs(
    conn: &Connection,
    integration_id: i64,
    limit: i64,
) -> Result<Vec<SyncRun>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, started_at, finished_at, rows, outcome, message FROM sync_runs
         WHERE integration_id = ?1 ORDER BY id DESC LIMIT ?2",
    )?;
    let rows = stmt.query_map(params![integration_id, limit], |r| {
        Ok(SyncRun {
            id: r.get(0)?,
            started_at: r.get(1)?,
            finished_at: r.get(2)?,
            rows: r.get(3)?,
            outcome: r.get(4)?,
            message: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Any org's integration by id (for provider webhooks, which carry no org).
pub fn by_id(conn: &Connection, id: i64) -> Result<Integration, StoreError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM integrations WHERE id = ?1"),
        [id],
        row,
    )
    .optional()?
    .ok_or(StoreError::NotFound)
}

/// Records a webhook event; false when it was seen before (a replay or a retry).
pub fn record_event(
    conn: &Connection,
    integration_id: i64,
    event_id: &str,
) -> Result<bool, StoreError> {
    let n = conn.execute(
        "INSERT OR IGNORE INTO integration_events (integration_id, event_id, received_at) VALUES (?1, ?2, ?3)",
        params![integration_id, event_id, now_secs()],
    )?;
    Ok(n == 1)
}

/// Stores an authorisation in flight.
pub fn save_oauth_state(
    conn: &Connection,
    state_hash: &str,
    org_id: i64,
    user_id: i64,
    provider: &str,
    verifier: &str,
) -> Result<(), StoreError> {
    let now = now_secs();
    conn.execute(
        "DELETE FROM oauth_states WHERE created_at < ?1",
        [now - 600],
    )?;
    conn.execute(
        "INSERT INTO oauth_states (state_hash, org_id, user_id, provider, verifier, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![state_hash, org_id, user_id, provider, verifier, now],
    )?;
    Ok(())
}

/// Takes (and deletes) an authorisation in flight: (org, user, provider, verifier), if it exists
/// and is under ten minutes old.
pub fn take_oauth_state(
    conn: &Connection,
    state_hash: &str,
) -> Result<Option<(i64, i64, String, String)>, StoreError> {
    let found = conn
        .query_row(
            "SELECT org_id, user_id, provider, verifier, created_at FROM oauth_states WHERE state_hash = ?1",
            [state_hash],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get::<_, i64>(4)?)),
        )
        .optional()?;
    conn.execute(
        "DELETE FROM oauth_states WHERE state_hash = ?1",
        [state_hash],
    )?;
    Ok(found
        .filter(|f| now_secs() - f.4 <= 600)
        .map(|(o, u, p, v, _)| (o, u, p, v)))
}

/// Replaces an integration's sealed credentials (after a token refresh).
pub fn set_credentials(conn: &Connection, id: i64, sealed: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE integrations SET credentials = ?2 WHERE id = ?1",
        params![id, sealed],
    )?;
    Ok(())
}

pub fn set_schedule(
    conn: &Connection,
    org_id: i64,
    id: i64,
    schedule: &str,
) -> Result<(), StoreError> {
    let n = conn.execute(
        "UPDATE integrations SET schedule = ?3 WHERE id = ?1 AND org_id = ?2",
        params![id, org_id, schedule],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}
