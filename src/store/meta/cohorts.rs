//! Cohorts of an org: name, description and the definition (JSON, as `domain::cohorts` reads
//! it). Every call takes the org; another org's id is not found.

use rusqlite::{Connection, params};

use super::OptionalRow;
use crate::store::{StoreError, now_secs};

#[derive(Debug, Clone, PartialEq)]
pub struct CohortRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub definition: String,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The most cohorts an org keeps.
pub const MAX_PER_ORG: i64 = 500;

const CONFLICT: &str = "a cohort of this name exists";

fn row(r: &rusqlite::Row) -> rusqlite::Result<CohortRow> {
    Ok(CohortRow {
        id: r.get(0)?,
        name: r.get(1)?,
        description: r.get(2)?,
        definition: r.get(3)?,
        created_by: r.get(4)?,
        created_at: r.get(5)?,
        updated_at: r.get(6)?,
    })
}

const COLUMNS: &str = "id, name, description, definition, created_by, created_at, updated_at";

pub fn create(
    conn: &Connection,
    org_id: i64,
    name: &str,
    description: &str,
    definition: &str,
    created_by: &str,
) -> Result<i64, StoreError> {
    super::ensure_room(conn, "cohorts", org_id, MAX_PER_ORG, "cohorts")?;
    let now = now_secs();
    conn.execute(
        "INSERT INTO cohorts (org_id, name, description, definition, created_by, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
        params![org_id, name, description, definition, created_by, now, now],
    )
    .map_err(|e| super::unique_conflict(e, CONFLICT))?;
    Ok(conn.last_insert_rowid())
}

pub fn get(conn: &Connection, org_id: i64, id: i64) -> Result<CohortRow, StoreError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM cohorts WHERE org_id = ? AND id = ?"),
        [org_id, id],
        row,
    )
    .found()
}

pub fn list(conn: &Connection, org_id: i64) -> Result<Vec<CohortRow>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {COLUMNS} FROM cohorts WHERE org_id = ? ORDER BY name"
    ))?;
    let rows = stmt.query_map([org_id], row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn update(
    conn: &Connection,
    org_id: i64,
    id: i64,
    name: &str,
    description: &str,
    definition: &str,
) -> Result<(), StoreError> {
    let n = conn
        .execute(
            "UPDATE cohorts SET name = ?, description = ?, definition = ?, updated_at = ?
              WHERE org_id = ? AND id = ?",
            params![name, description, definition, now_secs(), org_id, id],
        )
        .map_err(|e| super::unique_conflict(e, CONFLICT))?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub fn delete(conn: &Connection, org_id: i64, id: i64) -> Result<(), StoreError> {
    let n = conn.execute(
        "DELETE FROM cohorts WHERE org_id = ? AND id = ?",
        [org_id, id],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}
