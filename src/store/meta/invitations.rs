//! Invitations to join an org. An Admin invites an email address with a role; the person with
//! that address accepts through a single-use link that expires, signing in (or creating the
//! account) first. Nobody is added to an org without their consent.

use rusqlite::{Connection, Row, params};

use super::OptionalRow;
use crate::domain::roles::Role;
use crate::store::{StoreError, now_secs};

#[derive(Debug, Clone)]
pub struct Invitation {
    pub id: i64,
    pub org_id: i64,
    pub email: String,
    pub role: Role,
    pub invited_by: String,
    pub created_at: i64,
    pub expires_at: i64,
}

const COLUMNS: &str = "id, org_id, email, role, invited_by, created_at, expires_at";

fn row(r: &Row) -> rusqlite::Result<Invitation> {
    let role: String = r.get(3)?;
    Ok(Invitation {
        id: r.get(0)?,
        org_id: r.get(1)?,
        email: r.get(2)?,
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        invited_by: r.get(4)?,
        created_at: r.get(5)?,
        expires_at: r.get(6)?,
    })
}

/// Records an invitation, replacing any pending one for the same address in the org (the
/// older link stops working).
pub fn create(
    conn: &Connection,
    org_id: i64,
    email: &str,
    role: Role,
    token_hash: &str,
    invited_by: &str,
    ttl_secs: i64,
) -> Result<i64, StoreError> {
    let now = now_secs();
    conn.execute(
        "UPDATE invitations SET revoked_at = ?3
         WHERE org_id = ?1 AND email = ?2 AND accepted_at IS NULL AND revoked_at IS NULL",
        params![org_id, email, now],
    )?;
    conn.execute(
        "INSERT INTO invitations (org_id, email, role, token_hash, invited_by, created_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            org_id,
            email,
            role.as_str(),
            token_hash,
            invited_by,
            now,
            now + ttl_secs
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

/// The org's invitations still waiting to be accepted (not revoked, not expired).
pub fn pending(conn: &Connection, org_id: i64) -> Result<Vec<Invitation>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM invitations
         WHERE org_id = ?1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > ?2
         ORDER BY created_at DESC"
    ))?;
    let rows = stmt.query_map(params![org_id, now_secs()], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The pending invitation behind a link's token hash; used, revoked or expired ones are
/// NotFound.
pub fn by_token(conn: &Connection, token_hash: &str) -> Result<Invitation, StoreError> {
    conn.query_row(
        &format!(
            "SELECT {COLUMNS} FROM invitations
             WHERE token_hash = ?1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > ?2"
        ),
        params![token_hash, now_secs()],
        row,
    )
    .found()
}

/// Marks the invitation used. Only one caller can win: a second acceptance (a replayed or
/// parallel request) finds nothing pending and gets NotFound.
pub fn mark_accepted(conn: &Connection, id: i64) -> Result<(), StoreError> {
    let now = now_secs();
    let n = conn.execute(
        "UPDATE invitations SET accepted_at = ?2
         WHERE id = ?1 AND accepted_at IS NULL AND revoked_at IS NULL AND expires_at > ?2",
        params![id, now],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Revokes a pending invitation of the org.
pub fn revoke(conn: &Connection, org_id: i64, id: i64) -> Result<Invitation, StoreError> {
    let found = conn
        .query_row(
            &format!(
                "SELECT {COLUMNS} FROM invitations
                 WHERE id = ?1 AND org_id = ?2 AND accepted_at IS NULL AND revoked_at IS NULL"
            ),
            params![id, org_id],
            row,
        )
        .found()?;
    conn.execute(
        "UPDATE invitations SET revoked_at = ?2 WHERE id = ?1",
        params![id, now_secs()],
    )?;
    Ok(found)
}
