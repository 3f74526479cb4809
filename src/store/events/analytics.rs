//! The SQL of the event analyses: one statement per question. Trends aggregate in DuckDB;
//! funnels and retention fetch the few columns they need per unit (person or session) and
//! leave the walk to `domain::analytics`. Every call takes the org.

use duckdb::Connection;
use duckdb::types::{TimeUnit, Value};

use super::queries::{filters_sql, sql_literal};
use crate::domain::analytics::{
    Breakdown, EventMatcher, FunnelEvent, FunnelOrder, FunnelRequest, FunnelUnit, PropertySource,
    TrendMath,
};
use crate::store::StoreError;
use crate::store::metrics::Bucketing;

fn ts_value(micros: i64) -> Value {
    Value::Timestamp(TimeUnit::Microsecond, micros)
}

/// The label of events without the breakdown property.
pub const NONE_LABEL: &str = "(none)";
/// The label of the values past the breakdown's limit.
pub const OTHER_LABEL: &str = "(other)";

/// `name = ? AND <filters>` for one matcher, over the events' own columns.
fn matcher_sql(m: &EventMatcher, params: &mut Vec<Value>) -> String {
    params.push(Value::Text(m.event.clone()));
    format!("(name = ?{})", filters_sql(&m.filters, params))
}

/// The person key of an event (its alias after identity merges, else its distinct id).
const PERSON_SQL: &str = "coalesce(pa.person_key, e.distinct_id)";
const PERSON_JOIN: &str =
    "LEFT JOIN person_aliases pa ON pa.org_id = e.org_id AND pa.distinct_id = e.distinct_id";

fn breakdown_sql(b: Option<&Breakdown>) -> (String, &'static str) {
    match b {
        None => ("NULL::VARCHAR".into(), ""),
        Some(b) => {
            let key = sql_literal(&b.property);
            match b.source {
                PropertySource::Event => (format!("variant_extract(e.props, {key})::VARCHAR"), ""),
                PropertySource::Person => (
                    format!("variant_extract(p.props, {key})::VARCHAR"),
                    "LEFT JOIN persons p ON p.org_id = e.org_id AND p.person_key = coalesce(pa.person_key, e.distinct_id)",
                ),
            }
        }
    }
}

/// One bucket of one breakdown group of a trend.
#[derive(Debug, Clone, PartialEq)]
pub struct TrendRow {
    pub bucket: i64,
    pub group: Option<String>,
    pub value: Option<f64>,
}

pub struct TrendQuery<'a> {
    pub org_id: i64,
    pub from_micros: i64,
    pub to_micros: i64,
    pub bucketing: Bucketing,
    pub series: &'a EventMatcher,
    pub math: TrendMath,
    pub property: Option<&'a str>,
    pub breakdown: Option<&'a Breakdown>,
}

/// A trend's values per bucket (and breakdown group: the `limit` busiest values by event
/// count, the rest as [`OTHER_LABEL`], events without the property as [`NONE_LABEL`]).
pub fn trend(conn: &Connection, q: &TrendQuery) -> Result<Vec<TrendRow>, StoreError> {
    let mut params = vec![
        Value::BigInt(q.org_id),
        ts_value(q.from_micros),
        ts_value(q.to_micros),
    ];
    let cond = matcher_sql(q.series, &mut params);
    let (bd_sql, person_join) = breakdown_sql(q.breakdown);
    let needs_person = q.math == TrendMath::UniqueUsers || !person_join.is_empty();
    let value_sql = match q.property {
        Some(p) => format!(
            "try_cast(variant_extract(e.props, {}) AS DOUBLE)",
            sql_literal(p)
        ),
        None => "NULL::DOUBLE".into(),
    };
    let math_sql = match q.math {
        TrendMath::Count => "count(*)::DOUBLE",
        TrendMath::UniqueUsers => "count(DISTINCT person)::DOUBLE",
        TrendMath::Sum => "sum(v)",
        TrendMath::Avg => "avg(v)",
        TrendMath::Min => "min(v)",
        TrendMath::Max => "max(v)",
        TrendMath::P50 => "quantile_cont(v, 0.5)",
        TrendMath::P90 => "quantile_cont(v, 0.9)",
    };
    let (person_sql, joins) = if needs_person {
        (PERSON_SQL, format!("{PERSON_JOIN} {person_join}"))
    } else {
        ("e.distinct_id", String::new())
    };
    let limit = q.breakdown.map_or(0, |b| b.limit);
    let group_sql = if q.breakdown.is_some() {
        format!(
            "CASE WHEN bd IS NULL THEN {none} WHEN bd IN (SELECT bd FROM top) THEN bd ELSE {other} END",
            none = sql_literal(NONE_LABEL),
            other = sql_literal(OTHER_LABEL)
        )
    } else {
        "NULL::VARCHAR".into()
    };
    let sql = format!(
        "WITH ev AS (
            SELECT e.ts, {person_sql} AS person, {value_sql} AS v, {bd_sql} AS bd
              FROM events e {joins}
             WHERE e.org_id = ? AND e.ts >= ? AND e.ts < ? AND {cond}
         ),
         top AS (
            SELECT bd FROM ev WHERE bd IS NOT NULL GROUP BY bd ORDER BY count(*) DESC, bd LIMIT {limit}
         )
         SELECT {bucket} AS bucket, {group_sql} AS grp, {math_sql}
           FROM ev GROUP BY ALL ORDER BY 1, 2",
        bucket = q.bucketing.sql(),
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(duckdb::params_from_iter(params), |r| {
        Ok(TrendRow {
            bucket: r.get(0)?,
            group: r.get(1)?,
            value: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The events of every unit that a funnel walks: per unit (person or session), in time
/// order, with the steps each event matches (bit i = step i; step 1 only before `to`, as a
/// unit enters in the range and converts within the window after it). Strict order needs the
/// unit's other events too (they break an attempt).
pub fn funnel_events(
    conn: &Connection,
    org_id: i64,
    from_micros: i64,
    to_micros: i64,
    funnel: &FunnelRequest,
) -> Result<Vec<(String, Vec<FunnelEvent>)>, StoreError> {
    let (steps, order, unit) = (&funnel.steps, funnel.order, funnel.unit);
    let (window_micros, breakdown) = (funnel.window_micros, funnel.breakdown.as_ref());
    let mut params = Vec::new();
    let mut mask = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let cond = matcher_sql(step, &mut params);
        if i == 0 {
            params.push(ts_value(to_micros));
            mask.push(format!("(CASE WHEN {cond} AND e.ts < ? THEN 1 ELSE 0 END)"));
        } else {
            mask.push(format!("(CASE WHEN {cond} THEN {} ELSE 0 END)", 1u32 << i));
        }
    }
    let mask_sql = mask.join(" + ");
    let (bd_sql, person_join) = breakdown_sql(breakdown);
    let unit_sql = match unit {
        FunnelUnit::Person => PERSON_SQL,
        FunnelUnit::Session => "e.session_id",
    };
    let mut where_params = vec![
        Value::BigInt(org_id),
        ts_value(from_micros),
        ts_value(to_micros.saturating_add(window_micros)),
    ];
    let step_filter = if order == FunnelOrder::Strict {
        String::new()
    } else {
        let mut any = Vec::new();
        for step in steps {
            any.push(matcher_sql(step, &mut where_params));
        }
        format!(" AND ({})", any.join(" OR "))
    };
    let session_filter = if unit == FunnelUnit::Session {
        " AND e.session_id IS NOT NULL"
    } else {
        ""
    };
    params.extend(where_params);
    let sql = format!(
        "SELECT {unit_sql} AS unit, epoch_us(e.ts), ({mask_sql})::INTEGER AS steps, {bd_sql}
           FROM events e {PERSON_JOIN} {person_join}
          WHERE e.org_id = ? AND e.ts >= ? AND e.ts < ?{step_filter}{session_filter}
          ORDER BY unit, e.ts, steps DESC"
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut rows = stmt.query(duckdb::params_from_iter(params))?;
    let mut out: Vec<(String, Vec<FunnelEvent>)> = Vec::new();
    while let Some(r) = rows.next()? {
        let unit: String = r.get(0)?;
        let event = FunnelEvent {
            ts_micros: r.get(1)?,
            steps: r.get::<_, i32>(2)? as u16,
            breakdown: r.get(3)?,
        };
        match out.last_mut() {
            Some((u, list)) if *u == unit => list.push(event),
            _ => out.push((unit, vec![event])),
        }
    }
    Ok(out)
}

/// (person, bucket key) pairs: the cohorts of a retention (a person's first-ever target event
/// in `[from, to)` with `first_time`, else every bucket with a target event), or its returns.
pub fn retention_pairs(
    conn: &Connection,
    org_id: i64,
    from_micros: i64,
    to_micros: i64,
    bucketing: &Bucketing,
    matcher: &EventMatcher,
    first_time: bool,
) -> Result<Vec<(String, i64)>, StoreError> {
    let mut params = vec![Value::BigInt(org_id)];
    let cond = matcher_sql(matcher, &mut params);
    let bucket = bucketing.sql();
    let sql = if first_time {
        params.push(ts_value(to_micros));
        params.push(ts_value(from_micros));
        format!(
            "SELECT person, {bucket} FROM (
                SELECT {PERSON_SQL} AS person, min(e.ts) AS ts FROM events e {PERSON_JOIN}
                 WHERE e.org_id = ? AND {cond} AND e.ts < ? GROUP BY 1
             ) WHERE ts >= ?"
        )
    } else {
        params.push(ts_value(from_micros));
        params.push(ts_value(to_micros));
        format!(
            "SELECT DISTINCT person, {bucket} FROM (
                SELECT {PERSON_SQL} AS person, e.ts FROM events e {PERSON_JOIN}
                 WHERE e.org_id = ? AND {cond} AND e.ts >= ? AND e.ts < ?
             )"
        )
    };
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(duckdb::params_from_iter(params), |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
