//! Saved insights of an org: a named analysis (its kind and question as JSON). Every call
//! takes the org; another org's id is not found.

use rusqlite::{Connection, params};

use super::OptionalRow;
use crate::store::{StoreError, now_secs};

#[derive(Debug, Clone, PartialEq)]
pub struct SavedInsightRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub kind: String,
    pub query: String,
    pub last_days: Option<u32>,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The most saved insights an org keeps.
pub const MAX_PER_ORG: i64 = 2_000;

/// What is saved (the row without its id and times).
pub struct SavedInsightFields<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub kind: &'a str,
    pub query: &'a str,
    pub last_days: Option<u32>,
}

const COLUMNS: &str =
    "id, name, description, kind, query, last_days, created_by, created_at, updated_at";

fn row(r: &rusqlite::Row) -> rusqlite::Result<SavedInsightRow> {
    Ok(SavedInsightRow {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        kind: r.get(3)?,
        query: r.get(4)?,
        last_days: r.get(5)?,
        created_by: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

pub fn create(
    conn: &Connection,
    org_id: i64,
    fields: &SavedInsightFields,
    created_by: &str,
) -> Result<i64, StoreError> {
    super::ensure_room(
        conn,
        "saved_insights",
        org_id,
        MAX_PER_ORG,
        "saved insights",
    )?;
    let now = now_secs();
    conn.execute(
        "INSERT INTO saved_insights
           (org_id, name, description, kind, query, last_days, created_by, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        params![
            org_id,
            fields.name,
            fields.description,
            fields.kind,
            fields.query,
            fields.last_days,
            created_by,
            now,
            now
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

pub fn get(conn: &Connection, org_id: i64, id: i64) -> Result<SavedInsightRow, StoreError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM saved_insights WHERE org_id = ? AND id = ?"),
        [org_id, id],
        row,
    )
    .found()
}

/// The org's saved insights, newest change first.
pub fn list(conn: &Connection, org_id: i64) -> Result<Vec<SavedInsightRow>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM saved_insights WHERE org_id = ? ORDER BY updated_at DESC, id DESC"
    ))?;
    let rows = stmt.query_map([org_id], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn update(
    conn: &Connection,
    org_id: i64,
    id: i64,
    fields: &SavedInsightFields,
) -> Result<(), StoreError> {
    let n = conn.execute(
        "UPDATE saved_insights SET name = ?, description = ?, kind = ?, query = ?, last_days = ?,
                updated_at = ?
          WHERE org_id = ? AND id = ?",
        params![
            fields.name,
            fields.description,
            fields.kind,
            fields.query,
            fields.last_days,
            now_secs(),
            org_id,
            id
        ],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub fn delete(conn: &Connection, org_id: i64, id: i64) -> Result<(), StoreError> {
    let n = conn.execute(
        "DELETE FROM saved_insights WHERE org_id = ? AND id = ?",
        [org_id, id],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}
