//! User accounts. Password hashes are produced and checked by `crate::security`, off the runtime.

use rusqlite::{Connection, Row, params};
use serde::Serialize;

use super::{OptionalRow, unique_conflict};
use crate::store::{StoreError, now_secs};

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub is_server_admin: bool,
    pub created_at: i64,
}

const COLUMNS: &str = "id, email, name, is_server_admin, created_at";

fn from_row(r: &Row) -> rusqlite::Result<User> {
    Ok(User {
        id: r.get(0)?,
        email: r.get(1)?,
        name: r.get(2)?,
        is_server_admin: r.get(3)?,
        created_at: r.get(4)?,
    })
}

pub fn create(
    conn: &Connection,
    email: &str,
    name: &str,
    password_hash: &str,
    is_server_admin: bool,
) -> Result<User, StoreError> {
    conn.execute(
        "INSERT INTO users (email, name, password_hash, is_server_admin, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![email, name, password_hash, is_server_admin, now_secs()],
    )
    .map_err(|e| unique_conflict(e, "a user with this email already exists"))?;
    by_id(conn, conn.last_insert_rowid())
}

pub fn by_id(conn: &Connection, id: i64) -> Result<User, StoreError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM users WHERE id = ?1"),
        [id],
        from_row,
    )
    .found()
}

pub fn by_email(conn: &Connection, email: &str) -> Result<User, StoreError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM users WHERE email = ?1"),
        [email],
        from_row,
    )
    .found()
}

/// The user and their password hash, for login.
pub fn credentials(conn: &Connection, email: &str) -> Result<(User, String), StoreError> {
    conn.query_row(
        &format!("SELECT {COLUMNS}, password_hash FROM users WHERE email = ?1"),
        [email],
        |r| Ok((from_row(r)?, r.get(5)?)),
    )
    .found()
}

pub fn count(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.query_row("SELECT count(*) FROM users", [], |r| r.get(0))?)
}

/// Sets a new password hash and ends every session of the user but `keep` (the session that
/// changed it, if any). Returns how many sessions were ended.
pub fn set_password(
    conn: &Connection,
    user_id: i64,
    password_hash: &str,
    keep: Option<&str>,
) -> Result<usize, StoreError> {
    let n = conn.execute(
        "UPDATE users SET password_hash = ?2 WHERE id = ?1",
        params![user_id, password_hash],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    super::sessions::delete_others(conn, user_id, keep.unwrap_or(""))
}
