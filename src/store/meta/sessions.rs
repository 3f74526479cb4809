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
        "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![token_hash, user_id, csrf_token, now, now + ttl_secs],
    )?;
    Ok(())
}

/// The live session for a token hash; expired sessions are NotFound.
pub fn get(conn: &Connection, token_hash: &str) -> Result<Session, StoreError> {
    conn.query_row(
        "SELECT u.id, u.email, u.name, u.is_server_admin, u.created_at, s.csrf_token, s.expires_at
         FROM sessions s JOIN users u ON u.id = s.user_id
         WHERE s.token_hash = ?1 AND s.expires_at > ?2",
        params![token_hash, now_secs()],
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
            })
        },
    )
    .found()
}

pub fn delete(conn: &Connection, token_hash: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash])?;
    Ok(())
}

pub fn delete_expired(conn: &Connection) -> Result<usize, StoreError> {
    Ok(conn.execute("DELETE FROM sessions WHERE expires_at <= ?1", [now_secs()])?)
}
