//! Custom metrics an org defines beside the built-in catalog.

use rusqlite::{Connection, params};

use super::unique_conflict;
use crate::domain::catalog::{self, Aggregation, Category, MetricDef, Unit};
use crate::store::{StoreError, now_secs};

/// Custom metrics one org may define: each is read by every overview, score and detection run.
pub const MAX_PER_ORG: i64 = 500;

pub fn create(conn: &Connection, org_id: i64, def: &MetricDef) -> Result<(), StoreError> {
    if catalog::is_builtin(&def.key) {
        return Err(StoreError::Conflict(format!(
            "`{}` is a built-in metric",
            def.key
        )));
    }
    let defined: i64 = conn.query_row(
        "SELECT count(*) FROM custom_metrics WHERE org_id = ?1",
        [org_id],
        |r| r.get(0),
    )?;
    if defined >= MAX_PER_ORG {
        return Err(StoreError::Conflict(format!(
            "the organisation already has {MAX_PER_ORG} custom metrics, the most allowed; \
             remove unused ones first"
        )));
    }
    conn.execute(
        "INSERT INTO custom_metrics (org_id, key, name, description, category, unit, higher_is_better, aggregation, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            org_id,
            def.key,
            def.name,
            def.description,
            def.category.as_str(),
            def.unit.as_str(),
            def.higher_is_better,
            def.aggregation.as_str(),
            now_secs()
        ],
    )
    .map_err(|e| unique_conflict(e, "a custom metric with this key already exists"))?;
    Ok(())
}

pub fn list(conn: &Connection, org_id: i64) -> Result<Vec<MetricDef>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT key, name, description, category, unit, higher_is_better, aggregation
         FROM custom_metrics WHERE org_id = ?1 ORDER BY key",
    )?;
    let rows = stmt.query_map([org_id], |r| {
        let category: String = r.get(3)?;
        let unit: String = r.get(4)?;
        let agg: String = r.get(6)?;
        Ok(MetricDef {
            key: r.get(0)?,
            name: r.get(1)?,
            description: r.get(2)?,
            category: Category::parse(&category).unwrap_or(Category::Operational),
            unit: Unit::parse(&unit).unwrap_or(Unit::Count),
            higher_is_better: r.get(5)?,
            aggregation: Aggregation::parse(&agg).unwrap_or(Aggregation::Sum),
            custom: true,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The org's whole catalog: built-ins first, then its custom metrics.
pub fn catalog(conn: &Connection, org_id: i64) -> Result<Vec<MetricDef>, StoreError> {
    let mut all = catalog::builtins();
    all.extend(list(conn, org_id)?);
    Ok(all)
}
