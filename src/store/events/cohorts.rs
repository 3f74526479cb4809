//! Cohorts in SQL: the person keys a cohort holds, evaluated when the question is asked (a
//! behaviour condition looks back from then), as a subquery the analyses filter on; and the
//! person list. Every call takes the org.

use duckdb::Connection;
use duckdb::types::{TimeUnit, Value};
use serde::Serialize;

use super::queries::{filters_sql_on, person_filters_sql};
use crate::domain::cohorts::{CohortDef, Condition, Match};
use crate::store::StoreError;

fn ts_value(micros: i64) -> Value {
    Value::Timestamp(TimeUnit::Microsecond, micros)
}

/// A cohort as a filter: its definition and the instant its look-backs end.
#[derive(Debug, Clone, PartialEq)]
pub struct CohortFilter {
    pub def: CohortDef,
    pub now_micros: i64,
}

/// `SELECT person …`: the person keys in the cohort, its values pushed onto `params` (the
/// subquery's own aliases, `ce` and `cpa`, keep it apart from the query around it).
pub fn members_sql(org_id: i64, cohort: &CohortFilter, params: &mut Vec<Value>) -> String {
    let parts: Vec<String> = cohort
        .def
        .conditions
        .iter()
        .map(|c| match c {
            Condition::Behaviour {
                event,
                min_count,
                max_count,
                days,
            } => {
                params.push(Value::BigInt(org_id));
                params.push(ts_value(
                    cohort.now_micros - i64::from(*days) * 86_400_000_000,
                ));
                params.push(ts_value(cohort.now_micros));
                params.push(Value::Text(event.event.clone()));
                let filters = filters_sql_on("ce", &event.filters, params);
                let at_most = max_count
                    .map(|m| format!(" AND count(*) <= {m}"))
                    .unwrap_or_default();
                format!(
                    "(SELECT coalesce(cpa.person_key, ce.distinct_id) AS person
                        FROM events ce LEFT JOIN person_aliases cpa
                          ON cpa.org_id = ce.org_id AND cpa.distinct_id = ce.distinct_id
                       WHERE ce.org_id = ? AND ce.ts >= ? AND ce.ts <= ? AND ce.name = ?{filters}
                       GROUP BY 1 HAVING count(*) >= {min_count}{at_most})"
                )
            }
            Condition::Person { filters } => {
                params.push(Value::BigInt(org_id));
                let filters = person_filters_sql("cp", filters, params);
                format!(
                    "(SELECT cp.person_key AS person FROM persons cp WHERE cp.org_id = ?{filters})"
                )
            }
        })
        .collect();
    let op = match cohort.def.matching {
        Match::All => " INTERSECT ",
        Match::Any => " UNION ",
    };
    parts.join(op)
}

/// ` AND <person> IN (<members>)` for an optional cohort, where `person_sql` is the person
/// key of the row filtered.
pub fn in_cohort_sql(
    person_sql: &str,
    org_id: i64,
    cohort: Option<&CohortFilter>,
    params: &mut Vec<Value>,
) -> String {
    match cohort {
        None => String::new(),
        Some(c) => format!(" AND {person_sql} IN ({})", members_sql(org_id, c, params)),
    }
}

/// How many people the cohort holds now.
pub fn count_members(
    conn: &Connection,
    org_id: i64,
    cohort: &CohortFilter,
) -> Result<i64, StoreError> {
    let mut params = Vec::new();
    let sql = format!(
        "SELECT count(*) FROM ({})",
        members_sql(org_id, cohort, &mut params)
    );
    Ok(conn.query_row(&sql, duckdb::params_from_iter(params), |r| r.get(0))?)
}

/// One person of the list: their key, activity and properties.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PersonRow {
    pub person_key: String,
    pub events: i64,
    pub first_seen_micros: i64,
    pub last_seen_micros: i64,
    pub props_json: Option<String>,
    pub identified: bool,
}

/// Where a page of the person list ends (most recently active first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonCursor {
    pub last_seen_micros: i64,
    pub person_key: String,
}

pub struct PersonQuery<'a> {
    pub org_id: i64,
    pub cohort: Option<&'a CohortFilter>,
    /// Text in the person key or properties (case-insensitive).
    pub search: Option<&'a str>,
    pub cursor: Option<&'a PersonCursor>,
    pub limit: usize,
}

/// The people who sent events, most recently active first.
pub fn persons(conn: &Connection, q: &PersonQuery) -> Result<Vec<PersonRow>, StoreError> {
    let mut params = vec![Value::BigInt(q.org_id), Value::BigInt(q.org_id)];
    let mut conditions = in_cohort_sql("act.person", q.org_id, q.cohort, &mut params);
    if let Some(c) = q.cursor {
        conditions.push_str(" AND (act.last_ts < ? OR (act.last_ts = ? AND act.person > ?))");
        params.push(ts_value(c.last_seen_micros));
        params.push(ts_value(c.last_seen_micros));
        params.push(Value::Text(c.person_key.clone()));
    }
    if let Some(s) = q.search {
        conditions.push_str(
            " AND (contains(lower(act.person), ?) OR contains(lower(coalesce(p.props_json, '')), ?))",
        );
        params.push(Value::Text(s.to_lowercase()));
        params.push(Value::Text(s.to_lowercase()));
    }
    let sql = format!(
        "WITH act AS (
            SELECT coalesce(pa.person_key, e.distinct_id) AS person, count(*) AS n,
                   min(e.ts) AS first_ts, max(e.ts) AS last_ts
              FROM events e LEFT JOIN person_aliases pa
                ON pa.org_id = e.org_id AND pa.distinct_id = e.distinct_id
             WHERE e.org_id = ? GROUP BY 1
         )
         SELECT act.person, act.n, epoch_us(act.first_ts), epoch_us(act.last_ts), p.props_json,
                coalesce(p.identified, false)
           FROM act LEFT JOIN persons p ON p.org_id = ? AND p.person_key = act.person
          WHERE true{conditions}
          ORDER BY act.last_ts DESC, act.person LIMIT {limit}",
        limit = q.limit
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(duckdb::params_from_iter(params), |r| {
        Ok(PersonRow {
            person_key: r.get(0)?,
            events: r.get(1)?,
            first_seen_micros: r.get(2)?,
            last_seen_micros: r.get(3)?,
            props_json: r.get(4)?,
            identified: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
