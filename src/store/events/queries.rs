//! Reads of the events table: the raw list (cursor-paged), statistics, and the property filter
//! SQL the analyses share. Every call takes the org.

use duckdb::Connection;
use duckdb::types::{TimeUnit, Value};
use serde::Serialize;

use crate::domain::events::{FilterOp, FilterValue, PropertyFilter};
use crate::store::StoreError;

fn ts_value(micros: i64) -> Value {
    Value::Timestamp(TimeUnit::Microsecond, micros)
}

/// A SQL string literal (keys of properties are user text; they go into `variant_extract`,
/// whose path argument must be a constant).
pub fn sql_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The property `key` of the row `alias` (`events e`, `persons p`), as a VARIANT (NULL when
/// absent).
pub fn property_sql(alias: &str, key: &str) -> String {
    format!("variant_extract({alias}.props, {})", sql_literal(key))
}

/// ` AND …` conditions for `filters` on the event row `e`, their values pushed onto `params`.
pub fn filters_sql(filters: &[PropertyFilter], params: &mut Vec<Value>) -> String {
    filters_sql_on("e", filters, params)
}

/// ` AND …` conditions for `filters` on the event row `alias`. An event property is read from
/// the row; a person property (`"type": "person"`) from the person of the row's distinct id
/// (the id itself, or every id merged into it).
pub fn filters_sql_on(alias: &str, filters: &[PropertyFilter], params: &mut Vec<Value>) -> String {
    let mut sql = String::new();
    for f in filters {
        sql.push_str(" AND ");
        if f.person {
            let first = condition(
                &format!("{}::VARCHAR", property_sql("fp", &f.key)),
                f,
                params,
            );
            let second = condition(
                &format!("{}::VARCHAR", property_sql("fp", &f.key)),
                f,
                params,
            );
            sql.push_str(&format!(
                "{alias}.distinct_id IN (
                    SELECT fp.person_key FROM persons fp WHERE fp.org_id = {alias}.org_id AND {first}
                    UNION ALL
                    SELECT fa.distinct_id FROM person_aliases fa
                      JOIN persons fp ON fp.org_id = fa.org_id AND fp.person_key = fa.person_key
                     WHERE fa.org_id = {alias}.org_id AND {second})"
            ));
        } else {
            sql.push_str(&condition(
                &format!("{}::VARCHAR", property_sql(alias, &f.key)),
                f,
                params,
            ));
        }
    }
    sql
}

/// ` AND …` conditions for `filters` on the properties of the person row `alias` (every
/// filter is a person property there).
pub fn person_filters_sql(
    alias: &str,
    filters: &[PropertyFilter],
    params: &mut Vec<Value>,
) -> String {
    let mut sql = String::new();
    for f in filters {
        sql.push_str(" AND ");
        sql.push_str(&condition(
            &format!("{}::VARCHAR", property_sql(alias, &f.key)),
            f,
            params,
        ));
    }
    sql
}

/// One filter on `text` (the property as text: `'pro'`, `'12'`, `'true'`, NULL when absent).
/// Absent properties satisfy `neq` and `not_contains` (PostHog's semantics) and nothing else
/// but `is_not_set`.
fn condition(text: &str, f: &PropertyFilter, params: &mut Vec<Value>) -> String {
    let value_text = match &f.value {
        Some(FilterValue::Text(t)) => t.clone(),
        Some(FilterValue::Number(n)) => n.to_string(),
        None => String::new(),
    };
    let number = match &f.value {
        Some(FilterValue::Number(n)) => *n,
        _ => 0.0,
    };
    match f.op {
        FilterOp::Eq => {
            params.push(Value::Text(value_text));
            format!("{text} = ?")
        }
        FilterOp::Neq => {
            params.push(Value::Text(value_text));
            format!("coalesce({text} <> ?, true)")
        }
        FilterOp::Contains => {
            params.push(Value::Text(value_text.to_lowercase()));
            format!("contains(lower({text}), ?)")
        }
        FilterOp::NotContains => {
            params.push(Value::Text(value_text.to_lowercase()));
            format!("coalesce(NOT contains(lower({text}), ?), true)")
        }
        FilterOp::Gt | FilterOp::Gte | FilterOp::Lt | FilterOp::Lte => {
            params.push(Value::Double(number));
            let op = match f.op {
                FilterOp::Gt => ">",
                FilterOp::Gte => ">=",
                FilterOp::Lt => "<",
                _ => "<=",
            };
            format!("try_cast({text} AS DOUBLE) {op} ?")
        }
        FilterOp::IsSet => format!("{text} IS NOT NULL"),
        FilterOp::IsNotSet => format!("{text} IS NULL"),
    }
}

/// Which events a list or count looks at.
#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub org_id: i64,
    pub from_micros: i64,
    pub to_micros: i64,
    pub names: Vec<String>,
    pub distinct_id: Option<String>,
    /// Every distinct id of this id's person (after identity merges).
    pub person: Option<String>,
    pub filters: Vec<PropertyFilter>,
}

impl EventQuery {
    /// `WHERE …` for this query, its values pushed onto `params`.
    pub fn where_sql(&self, params: &mut Vec<Value>) -> String {
        let mut sql = String::from("org_id = ? AND ts >= ? AND ts < ?");
        params.push(Value::BigInt(self.org_id));
        params.push(ts_value(self.from_micros));
        params.push(ts_value(self.to_micros));
        if !self.names.is_empty() {
            sql.push_str(" AND name IN (");
            for (i, n) in self.names.iter().enumerate() {
                sql.push_str(if i == 0 { "?" } else { ", ?" });
                params.push(Value::Text(n.clone()));
            }
            sql.push(')');
        }
        if let Some(d) = &self.distinct_id {
            sql.push_str(" AND distinct_id = ?");
            params.push(Value::Text(d.clone()));
        }
        if let Some(p) = &self.person {
            // The person key: the id's alias, else the id itself.
            let key = "coalesce((SELECT person_key FROM person_aliases WHERE org_id = ? AND distinct_id = ?), ?)";
            sql.push_str(&format!(
                " AND (distinct_id = {key} OR distinct_id IN \
                   (SELECT distinct_id FROM person_aliases WHERE org_id = ? AND person_key = {key}))"
            ));
            let key_params = [
                Value::BigInt(self.org_id),
                Value::Text(p.clone()),
                Value::Text(p.clone()),
            ];
            params.extend(key_params.iter().cloned());
            params.push(Value::BigInt(self.org_id));
            params.extend(key_params);
        }
        sql.push_str(&filters_sql(&self.filters, params));
        sql
    }
}

/// One stored event as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoredEvent {
    pub uuid: String,
    pub name: String,
    pub distinct_id: String,
    pub ts_micros: i64,
    pub session_id: Option<String>,
    /// The properties' JSON text, as sent (`{}` when none: those are stored as NULL).
    pub props_json: String,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

/// Where a page of the list ends: the last row's time and uuid (newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pub ts_micros: i64,
    pub uuid: String,
}

/// Events matching `q`, newest first, after `cursor`, at most `limit`.
pub fn list(
    conn: &Connection,
    q: &EventQuery,
    cursor: Option<&Cursor>,
    limit: usize,
) -> Result<Vec<StoredEvent>, StoreError> {
    let mut params = Vec::new();
    let mut sql = format!(
        "SELECT uuid::VARCHAR, name, distinct_id, epoch_us(ts), session_id,
                coalesce(props::JSON::VARCHAR, '{{}}'), ip, user_agent
           FROM events e WHERE {}",
        q.where_sql(&mut params)
    );
    if let Some(c) = cursor {
        sql.push_str(" AND (ts < ? OR (ts = ? AND uuid < ?::UUID))");
        params.push(ts_value(c.ts_micros));
        params.push(ts_value(c.ts_micros));
        params.push(Value::Text(c.uuid.clone()));
    }
    sql.push_str(&format!(" ORDER BY ts DESC, uuid DESC LIMIT {limit}"));
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(duckdb::params_from_iter(params), |r| {
        Ok(StoredEvent {
            uuid: r.get(0)?,
            name: r.get(1)?,
            distinct_id: r.get(2)?,
            ts_micros: r.get(3)?,
            session_id: r.get(4)?,
            props_json: r.get(5)?,
            ip: r.get(6)?,
            user_agent: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NameStats {
    pub name: String,
    pub count: i64,
    pub unique_users: i64,
    pub first_micros: i64,
    pub last_micros: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventStats {
    pub total: i64,
    pub unique_users: i64,
    /// Busiest names first, at most 1,000.
    pub by_name: Vec<NameStats>,
}

/// Counts of the events matching `q`: in all and per name.
pub fn stats(conn: &Connection, q: &EventQuery) -> Result<EventStats, StoreError> {
    let mut params = Vec::new();
    let where_sql = q.where_sql(&mut params);
    let (total, unique_users): (i64, i64) = conn.query_row(
        &format!("SELECT count(*), count(DISTINCT distinct_id) FROM events e WHERE {where_sql}"),
        duckdb::params_from_iter(params.clone()),
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut stmt = conn.prepare(&format!(
        "SELECT name, count(*), count(DISTINCT distinct_id), epoch_us(min(ts)), epoch_us(max(ts))
           FROM events e WHERE {where_sql} GROUP BY name ORDER BY 2 DESC, 1 LIMIT 1000"
    ))?;
    let rows = stmt.query_map(duckdb::params_from_iter(params), |r| {
        Ok(NameStats {
            name: r.get(0)?,
            count: r.get(1)?,
            unique_users: r.get(2)?,
            first_micros: r.get(3)?,
            last_micros: r.get(4)?,
        })
    })?;
    Ok(EventStats {
        total,
        unique_users,
        by_name: rows.collect::<Result<_, _>>()?,
    })
}
