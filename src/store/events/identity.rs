//! Persons, their aliases and groups in DuckDB (the analyses join them to events). The event
//! writer applies the identity operations of the events it stores in the same transaction:
//! it loads the rows the operations touch, runs `domain::identity`, and writes back what
//! changed. The tables are small (a row per merged id, per person with properties, per group).

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use duckdb::Connection;
use serde::Serialize;
use serde_json::{Map, Value};

use super::columns;
use crate::domain::identity::{IdentityOp, IdentityState, Person, ids_of};
use crate::store::StoreError;

/// Migration 3 of the DuckDB file.
pub(in crate::store) const MIGRATION: &str = "
CREATE TABLE person_aliases (
    org_id BIGINT NOT NULL,
    distinct_id VARCHAR NOT NULL,
    person_key VARCHAR NOT NULL
);
CREATE TABLE persons (
    org_id BIGINT NOT NULL,
    person_key VARCHAR NOT NULL,
    props VARIANT,
    props_json VARCHAR NOT NULL,
    identified BOOLEAN NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
CREATE TABLE event_groups (
    org_id BIGINT NOT NULL,
    group_type VARCHAR NOT NULL,
    group_key VARCHAR NOT NULL,
    props VARIANT,
    props_json VARCHAR NOT NULL,
    updated_at TIMESTAMP NOT NULL
);";

/// A group: (type, key), such as ("company", "acme").
type GroupId = (String, String);

/// The writer's scratch table for the ids one apply touches.
pub(super) const SCRATCH: &str = "CREATE TEMP TABLE identity_ids (id VARCHAR);";

fn stage_ids(conn: &Connection, ids: &[String]) -> Result<(), StoreError> {
    conn.execute_batch("DELETE FROM identity_ids;")?;
    let mut app = conn.appender_to_catalog_and_db("identity_ids", "temp", "main")?;
    for id in ids {
        app.append_row([id.as_str()])?;
    }
    app.flush()?;
    Ok(())
}

fn json_object(text: &str) -> Map<String, Value> {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default()
}

/// Loads what `ops` touch for one org.
fn load(conn: &Connection, org_id: i64, ops: &[&IdentityOp]) -> Result<IdentityState, StoreError> {
    let owned: Vec<IdentityOp> = ops.iter().map(|o| (*o).clone()).collect();
    let ids = ids_of(&owned);
    let mut state = IdentityState::default();
    stage_ids(conn, &ids)?;
    let mut stmt = conn.prepare(
        "SELECT distinct_id, person_key FROM person_aliases
          WHERE org_id = ? AND distinct_id IN (SELECT id FROM identity_ids)",
    )?;
    let rows = stmt.query_map([org_id], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    for row in rows {
        let (id, key) = row?;
        state.aliases.insert(id, key);
    }
    let mut keys: Vec<String> = ids.iter().map(|id| state.person_key(id)).collect();
    keys.extend(ids.iter().cloned());
    keys.sort();
    keys.dedup();
    stage_ids(conn, &keys)?;
    let mut stmt = conn.prepare(
        "SELECT person_key, props_json, identified FROM persons
          WHERE org_id = ? AND person_key IN (SELECT id FROM identity_ids)",
    )?;
    let rows = stmt.query_map([org_id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, bool>(2)?,
        ))
    })?;
    for row in rows {
        let (key, props, identified) = row?;
        state.persons.insert(
            key,
            Person {
                props: json_object(&props),
                identified,
            },
        );
    }
    let groups: Vec<(String, String)> = owned
        .iter()
        .filter_map(|o| match o {
            IdentityOp::Group {
                group_type,
                group_key,
                ..
            } => Some((group_type.clone(), group_key.clone())),
            _ => None,
        })
        .collect();
    if !groups.is_empty() {
        let mut stmt = conn.prepare(
            "SELECT props_json FROM event_groups WHERE org_id = ? AND group_type = ? AND group_key = ?",
        )?;
        for (t, k) in groups {
            let found: Option<String> = stmt
                .query_map(duckdb::params![org_id, t, k], |r| r.get(0))?
                .next()
                .transpose()?;
            if let Some(props) = found {
                state.groups.insert((t, k), json_object(&props));
            }
        }
    }
    Ok(state)
}

/// Applies `ops` (in time order) for one org and writes back what changed. Returns the number
/// of merges refused (both persons identified).
pub(super) fn apply(
    conn: &Connection,
    org_id: i64,
    ops: &[&IdentityOp],
    now_micros: i64,
) -> Result<usize, StoreError> {
    if ops.is_empty() {
        return Ok(0);
    }
    let mut state = load(conn, org_id, ops)?;
    for op in ops {
        state.apply(op);
    }
    for (old, new) in &state.repointed {
        conn.execute(
            "UPDATE person_aliases SET person_key = ? WHERE org_id = ? AND person_key = ?",
            duckdb::params![new, org_id, old],
        )?;
    }
    if !state.changed_aliases.is_empty() {
        let ids: Vec<String> = state.changed_aliases.keys().cloned().collect();
        stage_ids(conn, &ids)?;
        conn.execute(
            "DELETE FROM person_aliases WHERE org_id = ? AND distinct_id IN (SELECT id FROM identity_ids)",
            [org_id],
        )?;
        let mut app = conn.appender("person_aliases")?;
        for (id, key) in &state.changed_aliases {
            // An id never aliases itself (it is its own person key already).
            if id != key {
                app.append_row(duckdb::params![org_id, id, key])?;
            }
        }
        app.flush()?;
    }
    if !state.changed_persons.is_empty() {
        let keys: Vec<String> = state.changed_persons.keys().cloned().collect();
        stage_ids(conn, &keys)?;
        conn.execute(
            "DELETE FROM persons WHERE org_id = ? AND person_key IN (SELECT id FROM identity_ids)",
            [org_id],
        )?;
        let kept: Vec<(&String, &Person)> = state
            .changed_persons
            .iter()
            .filter_map(|(k, p)| p.as_ref().map(|p| (k, p)))
            .collect();
        let objects: Vec<&Map<String, Value>> = kept.iter().map(|(_, p)| &p.props).collect();
        let mut app = conn.appender("persons")?;
        for (range, props, json) in columns::props_columns(&objects)? {
            let rows = &kept[range];
            let n = rows.len();
            let schema = Arc::new(Schema::new(vec![
                Field::new("org_id", DataType::Int64, false),
                Field::new("person_key", DataType::Utf8, false),
                Field::new("props", props.data_type().clone(), true),
                Field::new("props_json", DataType::Utf8, true),
                Field::new("identified", DataType::Boolean, false),
                Field::new(
                    "updated_at",
                    DataType::Timestamp(TimeUnit::Microsecond, None),
                    false,
                ),
            ]));
            let cols: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from(vec![org_id; n])),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|(k, _)| k.as_str()),
                )),
                props,
                json,
                Arc::new(BooleanArray::from(
                    rows.iter().map(|(_, p)| p.identified).collect::<Vec<_>>(),
                )),
                Arc::new(TimestampMicrosecondArray::from(vec![now_micros; n])),
            ];
            app.append_record_batch(
                RecordBatch::try_new(schema, cols).map_err(StoreError::internal)?,
            )?;
        }
        app.flush()?;
    }
    if !state.changed_groups.is_empty() {
        let mut delete = conn.prepare(
            "DELETE FROM event_groups WHERE org_id = ? AND group_type = ? AND group_key = ?",
        )?;
        for (t, k) in &state.changed_groups {
            delete.execute(duckdb::params![org_id, t, k])?;
        }
        let rows: Vec<(&GroupId, &Map<String, Value>)> = state
            .changed_groups
            .iter()
            .filter_map(|id| state.groups.get(id).map(|p| (id, p)))
            .collect();
        let objects: Vec<&Map<String, Value>> = rows.iter().map(|(_, p)| *p).collect();
        let mut app = conn.appender("event_groups")?;
        for (range, props, json) in columns::props_columns(&objects)? {
            let part = &rows[range];
            let n = part.len();
            let schema = Arc::new(Schema::new(vec![
                Field::new("org_id", DataType::Int64, false),
                Field::new("group_type", DataType::Utf8, false),
                Field::new("group_key", DataType::Utf8, false),
                Field::new("props", props.data_type().clone(), true),
                Field::new("props_json", DataType::Utf8, true),
                Field::new(
                    "updated_at",
                    DataType::Timestamp(TimeUnit::Microsecond, None),
                    false,
                ),
            ]));
            let cols: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from(vec![org_id; n])),
                Arc::new(StringArray::from_iter_values(
                    part.iter().map(|((t, _), _)| t.as_str()),
                )),
                Arc::new(StringArray::from_iter_values(
                    part.iter().map(|((_, k), _)| k.as_str()),
                )),
                props,
                json,
                Arc::new(TimestampMicrosecondArray::from(vec![now_micros; n])),
            ];
            app.append_record_batch(
                RecordBatch::try_new(schema, cols).map_err(StoreError::internal)?,
            )?;
        }
        app.flush()?;
    }
    Ok(state.refused_merges)
}

/// A person as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PersonRow {
    pub person_key: String,
    pub distinct_ids: Vec<String>,
    pub props_json: String,
    pub identified: bool,
}

/// The person `distinct_id` belongs to, with every id that maps to it. `None` when the org
/// has neither an event nor a person row for it.
pub fn person(
    conn: &Connection,
    org_id: i64,
    distinct_id: &str,
) -> Result<Option<PersonRow>, StoreError> {
    let key: String = conn
        .query_row(
            "SELECT person_key FROM person_aliases WHERE org_id = ? AND distinct_id = ?",
            duckdb::params![org_id, distinct_id],
            |r| r.get(0),
        )
        .or_else(|e| match e {
            duckdb::Error::QueryReturnedNoRows => Ok(distinct_id.to_string()),
            other => Err(other),
        })?;
    let mut stmt = conn.prepare(
        "SELECT distinct_id FROM person_aliases WHERE org_id = ? AND person_key = ? ORDER BY 1",
    )?;
    let mut ids: Vec<String> = stmt
        .query_map(duckdb::params![org_id, key], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    ids.push(key.clone());
    ids.sort();
    ids.dedup();
    let row: Option<(String, bool)> = conn
        .query_row(
            "SELECT props_json, identified FROM persons WHERE org_id = ? AND person_key = ?",
            duckdb::params![org_id, key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map(Some)
        .or_else(|e| match e {
            duckdb::Error::QueryReturnedNoRows => Ok(None),
            other => Err(other),
        })?;
    let has_events: bool = conn.query_row(
        "SELECT count(*) > 0 FROM events WHERE org_id = ? AND distinct_id = ?",
        duckdb::params![org_id, distinct_id],
        |r| r.get(0),
    )?;
    if row.is_none() && !has_events && ids.len() == 1 {
        return Ok(None);
    }
    let (props_json, identified) = row.unwrap_or_else(|| ("{}".into(), false));
    Ok(Some(PersonRow {
        person_key: key,
        distinct_ids: ids,
        props_json,
        identified,
    }))
}

/// The SQL for a subquery of `(distinct_id, person)` over an org's events: every event's
/// person key (its alias, else its own id). Joined by the analyses.
pub fn person_of_event_sql() -> &'static str {
    "LEFT JOIN person_aliases pa ON pa.org_id = e.org_id AND pa.distinct_id = e.distinct_id"
}
