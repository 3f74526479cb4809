//! Stored health scores: one row per org per recomputation, with the full report as JSON.

use rusqlite::{Connection, params};

use super::OptionalRow;
use crate::store::StoreError;

#[derive(Debug, Clone)]
pub struct StoredScore {
    pub computed_at: i64,
    pub overall: Option<f64>,
    /// The report as JSON (score, breakdown, coverage, recommendations).
    pub report: String,
}

pub fn insert(
    conn: &Connection,
    org_id: i64,
    computed_at: i64,
    overall: Option<f64>,
    report: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO health_scores (org_id, computed_at, overall, report) VALUES (?1, ?2, ?3, ?4)",
        params![org_id, computed_at, overall, report],
    )?;
    Ok(())
}

pub fn latest(conn: &Connection, org_id: i64) -> Result<StoredScore, StoreError> {
    conn.prepare_cached("SELECT computed_at, overall, report FROM health_scores WHERE org_id = ?1 ORDER BY computed_at DESC, id DESC LIMIT 1")?
        .query_row([org_id],
        |r| Ok(StoredScore { computed_at: r.get(0)?, overall: r.get(1)?, report: r.get(2)? }),
    )
    .found()
}

/// (computed_at, overall) of every recomputation in `[from, to)`, oldest first.
pub fn history(
    conn: &Connection,
    org_id: i64,
    from: i64,
    to: i64,
) -> Result<Vec<(i64, Option<f64>)>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT computed_at, overall FROM health_scores WHERE org_id = ?1 AND computed_at >= ?2 AND computed_at < ?3 ORDER BY computed_at, id",
    )?;
    let rows = stmt.query_map(params![org_id, from, to], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The last score computed before `at` (for "vs yesterday" and "vs last week").
pub fn before(conn: &Connection, org_id: i64, at: i64) -> Result<Option<f64>, StoreError> {
    Ok(conn.prepare_cached("SELECT overall FROM health_scores WHERE org_id = ?1 AND computed_at < ?2 ORDER BY computed_at DESC, id DESC LIMIT 1")?
        .query_row(params![org_id, at],
            |r| r.get::<_, Option<f64>>(0),
        )
        .found()
        .ok()
        .flatten())
}

/// The full report of the last score computed before `at` (score alert rules read categories).
pub fn report_before(
    conn: &Connection,
    org_id: i64,
    at: i64,
) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT report FROM health_scores WHERE org_id = ?1 AND computed_at < ?2 ORDER BY computed_at DESC, id DESC LIMIT 1",
            params![org_id, at],
            |r| r.get::<_, String>(0),
        )
        .found()
        .ok())
}

pub fn org_ids(conn: &Connection) -> Result<Vec<i64>, StoreError> {
    let mut stmt = conn.prepare("SELECT id FROM orgs ORDER BY id")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Keeps only each local day's closing score (the last one) for scores computed before
/// `before`; `utc_offset_secs` is the org's offset, so days follow its calendar.
pub fn compact(
    conn: &Connection,
    org_id: i64,
    before: i64,
    utc_offset_secs: i64,
) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "DELETE FROM health_scores WHERE org_id = ?1 AND computed_at < ?2 AND id NOT IN (
             SELECT max(id) FROM health_scores WHERE org_id = ?1 AND computed_at < ?2
             GROUP BY (computed_at + ?3) / 86400)",
        params![org_id, before, utc_offset_secs],
    )?)
}

/// Deletes an org's scores computed in `[from, to)` (before recomputing history).
pub fn delete_range(
    conn: &Connection,
    org_id: i64,
    from: i64,
    to: i64,
) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "DELETE FROM health_scores WHERE org_id = ?1 AND computed_at >= ?2 AND computed_at < ?3",
        params![org_id, from, to],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::meta::{MetaStore, orgs};

    #[test]
    fn compaction_keeps_each_days_closing_score() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(&dir.path().join("m.sqlite")).unwrap();
        store
            .call_blocking(|c| {
                let org = orgs::create(c, "a", "A", "UTC", "EUR")?;
                let other = orgs::create(c, "b", "B", "UTC", "EUR")?;
                let day = 20_000 * 86_400;
                // Day 1: three scores; day 2: two; day 3 (recent): two, untouched.
                for (t, v) in [
                    (day + 10, 1.0),
                    (day + 500, 2.0),
                    (day + 80_000, 3.0),
                    (day + 86_400 + 5, 4.0),
                    (day + 86_400 + 9, 5.0),
                    (day + 2 * 86_400, 6.0),
                    (day + 2 * 86_400 + 1, 7.0),
                ] {
                    insert(c, org.id, t, Some(v), "{}")?;
                    insert(c, other.id, t, Some(v), "{}")?;
                }
                let removed = compact(c, org.id, day + 2 * 86_400, 0)?;
                assert_eq!(removed, 3);
                let left: Vec<f64> = history(c, org.id, 0, i64::MAX)?
                    .into_iter()
                    .filter_map(|(_, v)| v)
                    .collect();
                assert_eq!(left, vec![3.0, 5.0, 6.0, 7.0]);
                assert_eq!(
                    history(c, other.id, 0, i64::MAX)?.len(),
                    7,
                    "other orgs untouched"
                );
                Ok(())
            })
            .unwrap();
    }
}
