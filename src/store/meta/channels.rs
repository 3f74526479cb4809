//! Notification channels and the outbox: every notification is a row per channel, written in
//! the same transaction as the alert change that caused it, and delivered (at least once) by
//! the delivery worker, which leases due rows so a crash mid-send retries after the lease.

use rusqlite::{Connection, Row, params};
use serde::Serialize;
use serde_json::Value;

use super::OptionalRow;
use crate::store::StoreError;

#[derive(Debug, Clone, Serialize)]
pub struct ChannelRow {
    pub id: i64,
    pub org_id: i64,
    pub name: String,
    pub kind: String,
    /// Non-secret settings (JSON object).
    pub settings: Value,
    /// The secret (SMTP password, Slack URL, webhook signing secret), sealed with the data
    /// directory's key (`App::secrets`). Never serialised.
    #[serde(skip)]
    pub sealed_secret: String,
    /// The secret masked to its last four characters, for display.
    pub secret_hint: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_success_at: Option<i64>,
    pub last_failure_at: Option<i64>,
    pub last_error: String,
}

const CHANNEL_COLUMNS: &str = "id, org_id, name, kind, settings, secret, created_at, updated_at, last_success_at, last_failure_at, last_error, secret_hint";

fn channel_row(r: &Row) -> rusqlite::Result<ChannelRow> {
    let settings: String = r.get(4)?;
    Ok(ChannelRow {
        id: r.get(0)?,
        org_id: r.get(1)?,
        name: r.get(2)?,
        kind: r.get(3)?,
        settings: serde_json::from_str(&settings).unwrap_or(Value::Null),
        sealed_secret: r.get(5)?,
        created_at: r.get(6)?,
        updated_at: r.get(7)?,
        last_success_at: r.get(8)?,
        last_failure_at: r.get(9)?,
        last_error: r.get(10)?,
        secret_hint: r.get(11)?,
    })
}

/// A secret as stored: sealed, with its display hint.
pub struct StoredSecret<'a> {
    pub sealed: &'a str,
    pub hint: &'a str,
}

/// Channels whose secret predates sealing (schema 12): `(id, plaintext)`.
pub fn unsealed(conn: &Connection) -> Result<Vec<(i64, String)>, StoreError> {
    let mut stmt = conn.prepare("SELECT id, secret FROM notification_channels WHERE sealed = 0")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Replaces a pre-sealing plaintext secret with its sealed form.
pub fn store_sealed(conn: &Connection, id: i64, secret: &StoredSecret) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE notification_channels SET secret = ?1, secret_hint = ?2, sealed = 1 WHERE id = ?3",
        params![secret.sealed, secret.hint, id],
    )?;
    Ok(())
}

/// Channels with a sealed secret, which a lost key file would make unreadable.
pub fn count_sealed(conn: &Connection) -> Result<usize, StoreError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM notification_channels WHERE sealed = 1",
        [],
        |r| r.get::<_, i64>(0),
    )? as usize)
}

pub fn insert(
    conn: &Connection,
    org_id: i64,
    name: &str,
    kind: &str,
    settings: &Value,
    secret: &StoredSecret,
    now: i64,
) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO notification_channels (org_id, name, kind, settings, secret, secret_hint, sealed, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?7)",
        params![org_id, name, kind, settings.to_string(), secret.sealed, secret.hint, now],
    )?;
    Ok(conn.last_insert_rowid())
}

#[allow(clippy::too_many_arguments)]
pub fn update(
    conn: &Connection,
    org_id: i64,
    id: i64,
    name: &str,
    kind: &str,
    settings: &Value,
    secret: &StoredSecret,
    now: i64,
) -> Result<(), StoreError> {
    let n = conn.execute(
        "UPDATE notification_channels SET name = ?1, kind = ?2, settings = ?3, secret = ?4,
                secret_hint = ?5, sealed = 1, updated_at = ?6
         WHERE id = ?7 AND org_id = ?8",
        params![
            name,
            kind,
            settings.to_string(),
            secret.sealed,
            secret.hint,
            now,
            id,
            org_id
        ],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub fn delete(conn: &Connection, org_id: i64, id: i64) -> Result<(), StoreError> {
    let n = conn.execute(
        "DELETE FROM notification_channels WHERE id = ?1 AND org_id = ?2",
        params![id, org_id],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub fn get(conn: &Connection, org_id: i64, id: i64) -> Result<ChannelRow, StoreError> {
    conn.query_row(
        &format!(
            "SELECT {CHANNEL_COLUMNS} FROM notification_channels WHERE id = ?1 AND org_id = ?2"
        ),
        params![id, org_id],
        channel_row,
    )
    .found()
}

pub fn list(conn: &Connection, org_id: i64) -> Result<Vec<ChannelRow>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {CHANNEL_COLUMNS} FROM notification_channels WHERE org_id = ?1 ORDER BY id"
    ))?;
    let rows = stmt.query_map([org_id], channel_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Records a delivery outcome on the channel (shown on its page).
pub fn record_outcome(
    conn: &Connection,
    channel_id: i64,
    at: i64,
    error: Option<&str>,
) -> Result<(), StoreError> {
    match error {
        None => conn.execute(
            "UPDATE notification_channels SET last_success_at = ?1 WHERE id = ?2",
            params![at, channel_id],
        )?,
        Some(e) => conn.execute(
            "UPDATE notification_channels SET last_failure_at = ?1, last_error = ?2 WHERE id = ?3",
            params![at, e, channel_id],
        )?,
    };
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct OutboxRow {
    pub id: i64,
    pub org_id: i64,
    pub channel_id: i64,
    pub alert_id: Option<i64>,
    pub idempotency_key: String,
    /// JSON of `domain::notify::Notice`.
    #[serde(skip)]
    pub notice: String,
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: String,
    pub created_at: i64,
    pub sent_at: Option<i64>,
}

const OUTBOX_COLUMNS: &str = "id, org_id, channel_id, alert_id, idempotency_key, notice, state, attempts, next_attempt_at, last_error, created_at, sent_at";

fn outbox_row(r: &Row) -> rusqlite::Result<OutboxRow> {
    Ok(OutboxRow {
        id: r.get(0)?,
        org_id: r.get(1)?,
        channel_id: r.get(2)?,
        alert_id: r.get(3)?,
        idempotency_key: r.get(4)?,
        notice: r.get(5)?,
        state: r.get(6)?,
        attempts: r.get(7)?,
        next_attempt_at: r.get(8)?,
        last_error: r.get(9)?,
        created_at: r.get(10)?,
        sent_at: r.get(11)?,
    })
}

/// Queues a notification for a channel; the same key for the same channel is queued once.
pub fn enqueue(
    conn: &Connection,
    org_id: i64,
    channel_id: i64,
    alert_id: Option<i64>,
    key: &str,
    notice_json: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let n = conn.execute(
        "INSERT OR IGNORE INTO outbox (org_id, channel_id, alert_id, idempotency_key, notice, state, next_attempt_at, created_at)
         SELECT ?1, id, ?3, ?4, ?5, 'queued', ?6, ?6 FROM notification_channels WHERE id = ?2 AND org_id = ?1",
        params![org_id, channel_id, alert_id, key, notice_json, now],
    )?;
    Ok(n > 0)
}

/// Takes up to `limit` due rows and leases them for `lease_secs` (pushes their next attempt out),
/// in one transaction, so two workers never send the same row at once.
pub fn claim_due(
    conn: &mut Connection,
    now: i64,
    lease_secs: i64,
    limit: i64,
) -> Result<Vec<OutboxRow>, StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let rows: Vec<OutboxRow> = {
        let mut stmt = tx.prepare(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE state = 'queued' AND next_attempt_at <= ?1
             ORDER BY next_attempt_at, id LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![now, limit], outbox_row)?;
        rows.collect::<Result<_, _>>()?
    };
    for row in &rows {
        tx.execute(
            "UPDATE outbox SET next_attempt_at = ?1 WHERE id = ?2",
            params![now + lease_secs, row.id],
        )?;
    }
    tx.commit()?;
    Ok(rows)
}

/// The earliest next attempt of any queued row (for the worker's sleep).
pub fn next_due(conn: &Connection) -> Result<Option<i64>, StoreError> {
    Ok(conn.query_row(
        "SELECT min(next_attempt_at) FROM outbox WHERE state = 'queued'",
        [],
        |r| r.get(0),
    )?)
}

pub fn mark_sent(conn: &Connection, id: i64, attempts: i64, now: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE outbox SET state = 'sent', attempts = ?1, sent_at = ?2, last_error = '' WHERE id = ?3",
        params![attempts, now, id],
    )?;
    Ok(())
}

/// Records a failed attempt: retried at `next_at`, or given up (`failed`) when `next_at` is `None`.
pub fn mark_attempt_failed(
    conn: &Connection,
    id: i64,
    attempts: i64,
    next_at: Option<i64>,
    error: &str,
) -> Result<(), StoreError> {
    match next_at {
        Some(at) => conn.execute(
            "UPDATE outbox SET attempts = ?1, next_attempt_at = ?2, last_error = ?3 WHERE id = ?4",
            params![attempts, at, error, id],
        )?,
        None => conn.execute(
            "UPDATE outbox SET attempts = ?1, state = 'failed', last_error = ?2 WHERE id = ?3",
            params![attempts, error, id],
        )?,
    };
    Ok(())
}

/// The channel's latest deliveries, newest first.
pub fn recent(
    conn: &Connection,
    org_id: i64,
    channel_id: i64,
    limit: i64,
) -> Result<Vec<OutboxRow>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE org_id = ?1 AND channel_id = ?2 ORDER BY id DESC LIMIT ?3"
    ))?;
    let rows = stmt.query_map(params![org_id, channel_id, limit], outbox_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes delivered or abandoned rows created before `before`.
pub fn purge(conn: &Connection, before: i64) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "DELETE FROM outbox WHERE state IN ('sent', 'failed') AND created_at < ?1",
        [before],
    )?)
}
