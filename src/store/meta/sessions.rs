//! Login sessions. Only a SHA-256 of the cookie token is stored.

use rusqlite::{Connection, params};

use super::OptionalRow;
use super::users::User;
use crate::store::{StoreError, now_secs};

#[derive(Debug, Clone)]
pub struct Session {
    pub user: User,
    pub csrf_token: String,
    pub expires_at: i64,
    pub last_seen_at: i64,
}

pub fn create(
    conn: &Connection,
    token_hash: &str,
    user_id: i64,
    csrf_token: &str,
    ttl_secs: i64,
) -> Result<(), StoreError> {
    let now = now_secs();
    conn.execute(
        "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at, last_seen_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?4)",
        params![token_hash, user_id, csrf_token, now, now + ttl_secs],
    )?;
    Ok(())
}

/// Seen-times are written at most this often, so a busy session is not a write per request.
const TOUCH_EVERY_SECS: i64 = 60;

/// The live session for a token hash, marked as seen now. A session past its absolute expiry
/// or unused for `idle_secs` is NotFound.
pub fn find_session(
    conn: &Connection,
    token_hash: &str,
    idle_secs: i64,
) -> Result<Session, StoreError> {
    let now = now_secs();
    conn.prepare_cached("SELECT u.id, u.email, u.name, u.is_server_admin, u.created_at, s.csrf_token, s.expires_at, s.last_seen_at
         FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.token_hash = ?1 AND s.expires_at > ?2 AND s.last_seen_at > ?2 - ?3")?
        .query_row(params![token_hash, now, idle_secs],
        |r| {
            Ok(Session {
                user: User {
                    id: r.get(0)?,
                    email: r.get(1)?,
                    name: r.get(2)?,
                    is_server_admin: r.get(3)?,
                    created_at: r.get(4)?,
                },
                csrf_token: r.get(5)?,
                expires_at: r.get(6)?,
                last_seen_at: r.get(7)?,
            })
        },
    )
    .found()
}

impl Session {
    /// Whether `last_seen_at` is old enough to be stamped again (once a minute, so that page
    /// views are reads, not writes).
    pub fn needs_touch(&self, now: i64) -> bool {
        self.last_seen_at <= now - TOUCH_EVERY_SECS
    }
}

/// Stamps the session seen now (the idle timeout counts from here).
pub fn touch(conn: &Connection, token_hash: &str) -> Result<(), StoreError> {
    let now = now_secs();
    conn.execute(
        "UPDATE sessions SET last_seen_at = ?2 WHERE token_hash = ?1 AND last_seen_at <= ?2 - ?3",
        params![token_hash, now, TOUCH_EVERY_SECS],
    )?;
    Ok(())
}

/// Ends every session of `user_id` except `keep` (the one that asked).
pub fn delete_others(conn: &Connection, user_id: i64, keep: &str) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "DELETE FROM sessions WHERE user_id = ?1 AND token_hash <> ?2",
        params![user_id, keep],
    )?)
}

pub fn delete(conn: &Connection, token_hash: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash])?;
    Ok(())
}

/// Removes sessions past their expiry or idle for `idle_secs`.
pub fn delete_expired(conn: &Connection, idle_secs: i64) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "DELETE FROM sessions WHERE expires_at <= ?1 OR last_seen_at <= ?1 - ?2",
        params![now_secs(), idle_secs],
    )?)
}
