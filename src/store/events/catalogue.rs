//! The event catalogue: which properties each event name carries, with their types, and which
//! person properties exist, discovered from the data as it is stored. Event names, their
//! volume and first / last time come from the events themselves (an aggregate over the org's
//! rows); property definitions are kept in a small table the event writer updates in the
//! same transaction as the events. The writer remembers what it wrote, so a steady stream of
//! known properties costs no writes (last seen is kept to the hour).

use std::collections::{HashMap, HashSet};

use duckdb::Connection;
use duckdb::types::{TimeUnit, Value};
use serde::Serialize;
use serde_json::Value as Json;

use crate::domain::events::Event;
use crate::domain::identity::IdentityOp;
use crate::store::StoreError;

/// Migration 4 of the DuckDB file. A small table (one row per org, event, key and type), so a
/// key is affordable here, unlike on `events`.
pub(in crate::store) const MIGRATION: &str = "
CREATE TABLE property_definitions (
    org_id BIGINT NOT NULL,
    source VARCHAR NOT NULL,
    event VARCHAR NOT NULL,
    key VARCHAR NOT NULL,
    type VARCHAR NOT NULL,
    first_seen TIMESTAMP NOT NULL,
    last_seen TIMESTAMP NOT NULL,
    PRIMARY KEY (org_id, source, event, key, type)
);";

/// The most property definitions an org keeps (a sender inventing keys cannot grow it without
/// bound); past it, new ones are not recorded.
pub const MAX_DEFINITIONS_PER_ORG: i64 = 10_000;
/// How far a known property's stored last-seen time may lag.
const LAST_SEEN_STEP_MICROS: i64 = 3_600_000_000;
/// The most event names the catalogue lists.
pub const MAX_NAMES: usize = 2_000;

/// Person properties are listed under this source, with an empty event name.
pub const PERSON: &str = "person";
pub const EVENT: &str = "event";

fn ts_value(micros: i64) -> Value {
    Value::Timestamp(TimeUnit::Microsecond, micros)
}

/// A property seen in a batch: where, its type, and the batch's first and last time of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sighting {
    pub source: &'static str,
    pub event: String,
    pub key: String,
    pub kind: &'static str,
    pub first_micros: i64,
    pub last_micros: i64,
}

fn looks_like_time(s: &str) -> bool {
    let b = s.as_bytes();
    (10..=35).contains(&b.len())
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && (chrono::DateTime::parse_from_rfc3339(s).is_ok()
            || chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
            || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok())
}

/// The catalogue type of a JSON value (`None` for null, which says nothing).
pub fn type_of(v: &Json) -> Option<&'static str> {
    Some(match v {
        Json::Null => return None,
        Json::Bool(_) => "boolean",
        Json::Number(_) => "number",
        Json::String(s) if looks_like_time(s) => "datetime",
        Json::String(_) => "string",
        Json::Array(_) => "array",
        Json::Object(_) => "object",
    })
}

/// The properties the events and their identity operations carry, one sighting per (source,
/// event, key, type).
pub fn sightings(events: &[Event], ops: &[([u8; 16], IdentityOp)]) -> Vec<Sighting> {
    let mut seen: HashMap<(&'static str, &str, &str, &'static str), (i64, i64)> = HashMap::new();
    let add = |seen: &mut HashMap<_, (i64, i64)>, k, ts: i64| {
        let e: &mut (i64, i64) = seen.entry(k).or_insert((ts, ts));
        e.0 = e.0.min(ts);
        e.1 = e.1.max(ts);
    };
    for e in events {
        for (key, value) in &e.props {
            if let Some(kind) = type_of(value) {
                add(
                    &mut seen,
                    (EVENT, e.name.as_str(), key.as_str(), kind),
                    e.ts_micros,
                );
            }
        }
    }
    let ts_of: HashMap<[u8; 16], i64> = events.iter().map(|e| (e.uuid, e.ts_micros)).collect();
    for (uuid, op) in ops {
        if let IdentityOp::Set { set, set_once, .. } = op {
            let ts = ts_of.get(uuid).copied().unwrap_or(0);
            for (key, value) in set.iter().chain(set_once.iter()) {
                if let Some(kind) = type_of(value) {
                    add(&mut seen, (PERSON, "", key.as_str(), kind), ts);
                }
            }
        }
    }
    seen.into_iter()
        .map(|((source, event, key, kind), (first, last))| Sighting {
            source,
            event: event.to_string(),
            key: key.to_string(),
            kind,
            first_micros: first,
            last_micros: last,
        })
        .collect()
}

/// What the writer knows is stored: per org (loaded in full the first time the org is
/// written), each definition's last-seen time.
#[derive(Default)]
pub struct Recorded {
    orgs: HashMap<i64, HashMap<DefinitionKey, i64>>,
}

/// (source, event, key, type).
type DefinitionKey = (&'static str, String, String, &'static str);

/// Sightings the writer stored in the open transaction, to remember once it commits.
pub struct Pending(Vec<(i64, Sighting)>);

/// The writer's scratch table for one transaction's definitions.
pub(super) const SCRATCH: &str = "CREATE TEMP TABLE definitions_stage (
    org_id BIGINT, source VARCHAR, event VARCHAR, key VARCHAR, type VARCHAR,
    first_seen TIMESTAMP, last_seen TIMESTAMP);";

fn source_of(text: &str) -> &'static str {
    if text == PERSON { PERSON } else { EVENT }
}

fn kind_of(text: &str) -> &'static str {
    ["boolean", "number", "datetime", "string", "array", "object"]
        .into_iter()
        .find(|k| *k == text)
        .unwrap_or("string")
}

fn key_of(s: &Sighting) -> DefinitionKey {
    (s.source, s.event.clone(), s.key.clone(), s.kind)
}

impl Recorded {
    fn load(
        &mut self,
        conn: &Connection,
        org_id: i64,
    ) -> Result<&mut HashMap<DefinitionKey, i64>, StoreError> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.orgs.entry(org_id) {
            let mut stmt = conn.prepare(
                "SELECT source, event, key, type, epoch_us(last_seen)
                   FROM property_definitions WHERE org_id = ?",
            )?;
            let rows = stmt.query_map([org_id], |r| {
                Ok((
                    (
                        source_of(&r.get::<_, String>(0)?),
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        kind_of(&r.get::<_, String>(3)?),
                    ),
                    r.get::<_, i64>(4)?,
                ))
            })?;
            slot.insert(rows.collect::<Result<HashMap<_, _>, _>>()?);
        }
        self.orgs
            .get_mut(&org_id)
            .ok_or_else(|| StoreError::internal("catalogue cache"))
    }

    /// Stores, inside the caller's transaction, the sightings that are new or move a
    /// last-seen time on by an hour or more: staged, then one UPDATE for the known and one
    /// INSERT for the new (row-at-a-time upserts cost a batch of old events more than its
    /// append). [`Recorded::remember`] them once the transaction commits.
    pub fn write(
        &mut self,
        conn: &Connection,
        batches: &[(i64, &[Sighting])],
    ) -> Result<Pending, StoreError> {
        let mut pending: Vec<(i64, Sighting)> = Vec::new();
        for (org_id, sightings) in batches {
            let known = self.load(conn, *org_id)?;
            let mut held = known.len() as i64;
            let mut fresh: HashSet<DefinitionKey> = HashSet::new();
            for s in *sightings {
                let key = key_of(s);
                match known.get(&key) {
                    Some(last) if s.last_micros < last + LAST_SEEN_STEP_MICROS => continue,
                    Some(_) => {}
                    None if fresh.contains(&key) => {}
                    None if held >= MAX_DEFINITIONS_PER_ORG => continue,
                    None => {
                        held += 1;
                        fresh.insert(key);
                    }
                }
                pending.push((*org_id, s.clone()));
            }
        }
        if pending.is_empty() {
            return Ok(Pending(pending));
        }
        {
            let mut app = conn.appender_to_catalog_and_db("definitions_stage", "temp", "main")?;
            for (org_id, s) in &pending {
                app.append_row(duckdb::params![
                    org_id,
                    s.source,
                    s.event,
                    s.key,
                    s.kind,
                    ts_value(s.first_micros),
                    ts_value(s.last_micros),
                ])?;
            }
            app.flush()?;
        }
        // One row per definition (two batches of a group may both carry one).
        conn.execute_batch(
            "CREATE OR REPLACE TEMP TABLE definitions_merged AS
               SELECT org_id, source, event, key, type, min(first_seen) AS first_seen,
                      max(last_seen) AS last_seen
                 FROM definitions_stage GROUP BY ALL;
             UPDATE property_definitions p
                SET first_seen = least(p.first_seen, s.first_seen),
                    last_seen = greatest(p.last_seen, s.last_seen)
               FROM definitions_merged s
              WHERE p.org_id = s.org_id AND p.source = s.source AND p.event = s.event
                AND p.key = s.key AND p.type = s.type;
             INSERT INTO property_definitions
               SELECT s.* FROM definitions_merged s ANTI JOIN property_definitions p
                   ON p.org_id = s.org_id AND p.source = s.source AND p.event = s.event
                  AND p.key = s.key AND p.type = s.type;
             DELETE FROM definitions_stage;",
        )?;
        Ok(Pending(pending))
    }

    /// Notes what a committed transaction stored.
    pub fn remember(&mut self, pending: Pending) {
        for (org_id, s) in pending.0 {
            if let Some(known) = self.orgs.get_mut(&org_id) {
                let last = known.entry(key_of(&s)).or_insert(s.last_micros);
                *last = (*last).max(s.last_micros);
            }
        }
    }

    /// Forgets everything (after a failed transaction the cache may be ahead of the table).
    pub fn forget(&mut self) {
        self.orgs.clear();
    }
}

/// An event name with its volume and what it carries.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventDefinition {
    pub name: String,
    pub count: i64,
    pub count_30d: i64,
    pub first_seen_micros: i64,
    pub last_seen_micros: i64,
    pub properties: Vec<PropertyDefinition>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PropertyDefinition {
    pub key: String,
    /// Every type seen (a key sent as a number and as text has both).
    pub types: Vec<String>,
    pub first_seen_micros: i64,
    pub last_seen_micros: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Catalogue {
    pub events: Vec<EventDefinition>,
    pub person_properties: Vec<PropertyDefinition>,
    /// Whether more event names exist than are listed.
    pub truncated: bool,
}

/// The org's catalogue; `now_micros` sets the 30-day window of `count_30d`.
pub fn catalogue(conn: &Connection, org_id: i64, now_micros: i64) -> Result<Catalogue, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT name, count(*), count(*) FILTER (WHERE ts >= ?), epoch_us(min(ts)), epoch_us(max(ts))
           FROM events WHERE org_id = ? GROUP BY name ORDER BY 2 DESC, 1 LIMIT {}",
        MAX_NAMES + 1
    ))?;
    let rows = stmt.query_map(
        duckdb::params![ts_value(now_micros - 30 * 86_400_000_000), org_id],
        |r| {
            Ok(EventDefinition {
                name: r.get(0)?,
                count: r.get(1)?,
                count_30d: r.get(2)?,
                first_seen_micros: r.get(3)?,
                last_seen_micros: r.get(4)?,
                properties: Vec::new(),
            })
        },
    )?;
    let mut events: Vec<EventDefinition> = rows.collect::<Result<_, _>>()?;
    let truncated = events.len() > MAX_NAMES;
    events.truncate(MAX_NAMES);
    let mut stmt = conn.prepare(
        "SELECT source, event, key, string_agg(type, ',' ORDER BY type),
                epoch_us(min(first_seen)), epoch_us(max(last_seen))
           FROM property_definitions WHERE org_id = ?
          GROUP BY source, event, key ORDER BY source, event, key",
    )?;
    let rows = stmt.query_map([org_id], |r| {
        let types: String = r.get(3)?;
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            PropertyDefinition {
                key: r.get(2)?,
                types: types.split(',').map(str::to_string).collect(),
                first_seen_micros: r.get(4)?,
                last_seen_micros: r.get(5)?,
            },
        ))
    })?;
    let index: HashMap<String, usize> = events
        .iter()
        .enumerate()
        .map(|(i, e)| (e.name.clone(), i))
        .collect();
    let mut person_properties = Vec::new();
    for row in rows {
        let (source, event, def) = row?;
        if source == PERSON {
            person_properties.push(def);
        } else if let Some(i) = index.get(&event) {
            events[*i].properties.push(def);
        }
    }
    Ok(Catalogue {
        events,
        person_properties,
        truncated,
    })
}

/// Fills the catalogue from events stored before it existed (once, when it is empty and
/// events are not): reads each event's properties as sent, in slices of time.
pub fn backfill(conn: &Connection) -> Result<usize, StoreError> {
    let empty: bool = conn.query_row(
        "SELECT NOT EXISTS (SELECT 1 FROM property_definitions)
            AND EXISTS (SELECT 1 FROM events)",
        [],
        |r| r.get(0),
    )?;
    if !empty {
        return Ok(0);
    }
    // (org, source, event, key, type) → first and last time seen.
    type Key = (i64, &'static str, String, String, &'static str);
    let mut seen: HashMap<Key, (i64, i64)> = HashMap::new();
    let mut stmt = conn.prepare(
        "SELECT org_id, 'event', name, epoch_us(ts), props::JSON::VARCHAR FROM events
         UNION ALL
         SELECT org_id, 'person', '', epoch_us(updated_at), props_json FROM persons",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let source = if r.get::<_, String>(1)? == PERSON {
            PERSON
        } else {
            EVENT
        };
        let (org_id, name, ts): (i64, String, i64) = (r.get(0)?, r.get(2)?, r.get(3)?);
        let Some(text) = r.get::<_, Option<String>>(4)? else {
            continue;
        };
        let Ok(Json::Object(props)) = serde_json::from_str::<Json>(&text) else {
            continue;
        };
        for (key, value) in props {
            if let Some(kind) = type_of(&value) {
                let e = seen
                    .entry((org_id, source, name.clone(), key, kind))
                    .or_insert((ts, ts));
                e.0 = e.0.min(ts);
                e.1 = e.1.max(ts);
            }
        }
    }
    let mut per_org: HashMap<i64, i64> = HashMap::new();
    let mut app = conn.appender("property_definitions")?;
    let mut written = 0;
    for ((org_id, source, event, key, kind), (first, last)) in seen {
        let n = per_org.entry(org_id).or_default();
        if *n >= MAX_DEFINITIONS_PER_ORG {
            continue;
        }
        *n += 1;
        app.append_row(duckdb::params![
            org_id,
            source,
            event,
            key,
            kind,
            ts_value(first),
            ts_value(last)
        ])?;
        written += 1;
    }
    app.flush()?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn types_come_from_the_values_sent() {
        assert_eq!(type_of(&json!(1.5)), Some("number"));
        assert_eq!(type_of(&json!("pro")), Some("string"));
        assert_eq!(type_of(&json!("2026-03-01")), Some("datetime"));
        assert_eq!(type_of(&json!("2026-03-01T10:00:00Z")), Some("datetime"));
        assert_eq!(type_of(&json!("2026-13-01")), Some("string"));
        assert_eq!(type_of(&json!(true)), Some("boolean"));
        assert_eq!(type_of(&json!([1])), Some("array"));
        assert_eq!(type_of(&json!({"a": 1})), Some("object"));
        assert_eq!(type_of(&json!(null)), None);
    }
}
