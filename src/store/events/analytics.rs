//! The SQL of the event analyses: one statement per question. Trends aggregate in DuckDB;
//! funnels and retention fetch the few columns they need per unit (person or session) and
//! leave the walk to `domain::analytics`. Every call takes the org.

use arrow::array::{Array, Int32Array, Int64Array};
use duckdb::Connection;
use duckdb::types::{TimeUnit, Value};

use super::cohorts::{CohortFilter, in_cohort_sql};
use super::queries::{filters_sql, sql_literal};
use crate::domain::analytics::{
    Breakdown, EventMatcher, FunnelEvent, FunnelOrder, FunnelRequest, FunnelUnit, PropertySource,
    TrendMath,
};
use crate::store::metrics::Bucketing;
use crate::store::{StoreError, result_column, text_column};

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

/// Whose events an analysis reads: the org's, or only its cohort's people.
#[derive(Debug, Clone, Copy)]
pub struct Audience<'a> {
    pub org_id: i64,
    pub cohort: Option<&'a CohortFilter>,
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
    pub cohort: Option<&'a CohortFilter>,
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
    let needs_person =
        q.math == TrendMath::UniqueUsers || !person_join.is_empty() || q.cohort.is_some();
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
    let in_cohort = in_cohort_sql(PERSON_SQL, q.org_id, q.cohort, &mut params);
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
             WHERE e.org_id = ? AND e.ts >= ? AND e.ts < ? AND {cond}{in_cohort}
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
    cohort: Option<&CohortFilter>,
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
    let in_cohort = in_cohort_sql(PERSON_SQL, org_id, cohort, &mut where_params);
    params.extend(where_params);
    let sql = format!(
        "SELECT {unit_sql} AS unit, epoch_us(e.ts), ({mask_sql})::INTEGER AS steps, {bd_sql}
           FROM events e {PERSON_JOIN} {person_join}
          WHERE e.org_id = ? AND e.ts >= ? AND e.ts < ?{step_filter}{session_filter}{in_cohort}
          ORDER BY unit, e.ts, steps DESC"
    );
    let mut stmt = conn.prepare(&sql)?;
    // Read as Arrow batches: a row-by-row read converts every value and allocates every
    // unit's text again (most of a large funnel's time); here a unit's text is copied once.
    let mut out: Vec<(String, Vec<FunnelEvent>)> = Vec::new();
    for batch in stmt.query_arrow(duckdb::params_from_iter(params))? {
        let units = text_column(&batch, 0)?;
        let ts = result_column::<Int64Array>(&batch, 1)?;
        let steps = result_column::<Int32Array>(&batch, 2)?;
        let breakdowns = text_column(&batch, 3)?;
        for i in 0..batch.num_rows() {
            let unit = units.value(i);
            let event = FunnelEvent {
                ts_micros: ts.value(i),
                steps: steps.value(i) as u16,
                breakdown: (!breakdowns.is_null(i)).then(|| breakdowns.value(i).to_string()),
            };
            match out.last_mut() {
                Some((u, list)) if u == unit => list.push(event),
                _ => out.push((unit.to_string(), vec![event])),
            }
        }
    }
    Ok(out)
}

/// (person, bucket key) pairs: the cohorts of a retention (a person's first-ever target event
/// in `[from, to)` with `first_time`, else every bucket with a target event), or its returns.
pub fn retention_pairs(
    conn: &Connection,
    audience: Audience,
    from_micros: i64,
    to_micros: i64,
    bucketing: &Bucketing,
    matcher: &EventMatcher,
    first_time: bool,
) -> Result<Vec<(String, i64)>, StoreError> {
    let Audience { org_id, cohort } = audience;
    let mut params = vec![Value::BigInt(org_id)];
    let cond = matcher_sql(matcher, &mut params);
    let bucket = bucketing.sql();
    let sql = if first_time {
        params.push(ts_value(to_micros));
        let in_cohort = in_cohort_sql(PERSON_SQL, org_id, cohort, &mut params);
        params.push(ts_value(from_micros));
        format!(
            "SELECT person, {bucket} FROM (
                SELECT {PERSON_SQL} AS person, min(e.ts) AS ts FROM events e {PERSON_JOIN}
                 WHERE e.org_id = ? AND {cond} AND e.ts < ?{in_cohort} GROUP BY 1
             ) WHERE ts >= ?"
        )
    } else {
        params.push(ts_value(from_micros));
        params.push(ts_value(to_micros));
        let in_cohort = in_cohort_sql(PERSON_SQL, org_id, cohort, &mut params);
        format!(
            "SELECT DISTINCT person, {bucket} FROM (
                SELECT {PERSON_SQL} AS person, e.ts FROM events e {PERSON_JOIN}
                 WHERE e.org_id = ? AND {cond} AND e.ts >= ? AND e.ts < ?{in_cohort}
             )"
        )
    };
    let mut stmt = conn.prepare(&sql)?;
    let mut out = Vec::new();
    for batch in stmt.query_arrow(duckdb::params_from_iter(params))? {
        let persons = text_column(&batch, 0)?;
        let buckets = result_column::<Int64Array>(&batch, 1)?;
        out.extend((0..batch.num_rows()).map(|i| (persons.value(i).to_string(), buckets.value(i))));
    }
    Ok(out)
}

/// API analytics' figures for one route (or all of them): requests, 4xx and 5xx answers, and
/// latency quantiles in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestStats {
    /// `METHOD route` (the method left out when the events carry none); None for the total.
    pub route: Option<String>,
    /// The bucket key (series rows only).
    pub bucket: Option<i64>,
    pub requests: i64,
    pub client_errors: i64,
    pub server_errors: i64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

pub struct ApiUsageQuery<'a> {
    pub org_id: i64,
    pub cohort: Option<&'a CohortFilter>,
    pub from_micros: i64,
    pub to_micros: i64,
    pub bucketing: &'a Bucketing,
    pub request: &'a crate::domain::analytics::ApiUsageRequest,
}

/// The most routes API analytics lists (the busiest).
pub const MAX_ROUTES: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestGrouping {
    Total,
    PerRoute,
    PerBucket,
}

/// Request figures over the range: in total, per route (the busiest [`MAX_ROUTES`]) or per
/// bucket.
pub fn api_usage(
    conn: &Connection,
    q: &ApiUsageQuery,
    grouping: RequestGrouping,
) -> Result<Vec<RequestStats>, StoreError> {
    let r = q.request;
    let mut params = vec![
        Value::BigInt(q.org_id),
        ts_value(q.from_micros),
        ts_value(q.to_micros),
    ];
    let cond = matcher_sql(&r.event, &mut params);
    let in_cohort = in_cohort_sql(PERSON_SQL, q.org_id, q.cohort, &mut params);
    let joins = if q.cohort.is_some() { PERSON_JOIN } else { "" };
    let prop = |key: &str| format!("variant_extract(e.props, {})", sql_literal(key));
    let (group_sql, order_sql) = match grouping {
        RequestGrouping::Total => (
            "NULL::VARCHAR AS route, NULL::BIGINT AS bucket",
            String::new(),
        ),
        RequestGrouping::PerRoute => (
            "route, NULL::BIGINT AS bucket",
            format!(" GROUP BY route ORDER BY 3 DESC, route LIMIT {MAX_ROUTES}"),
        ),
        RequestGrouping::PerBucket => (
            "NULL::VARCHAR AS route, bucket",
            " GROUP BY bucket ORDER BY bucket".to_string(),
        ),
    };
    let sql = format!(
        "WITH req AS (
            SELECT e.ts,
                   concat_ws(' ', NULLIF({method}::VARCHAR, ''), coalesce({route}::VARCHAR, {none})) AS route,
                   try_cast({status}::VARCHAR AS INTEGER) AS status,
                   try_cast({duration}::VARCHAR AS DOUBLE) AS ms
              FROM events e {joins}
             WHERE e.org_id = ? AND e.ts >= ? AND e.ts < ? AND {cond}{in_cohort}
         ),
         bucketed AS (SELECT *, {bucket} AS bucket FROM req)
         SELECT {group_sql}, count(*),
                count(*) FILTER (WHERE status >= 400 AND status < 500),
                count(*) FILTER (WHERE status >= 500),
                quantile_cont(ms, 0.5), quantile_cont(ms, 0.95), quantile_cont(ms, 0.99)
           FROM bucketed{order_sql}",
        method = prop(&r.method_property),
        route = prop(&r.route_property),
        status = prop(&r.status_property),
        duration = prop(&r.duration_property),
        none = sql_literal(NONE_LABEL),
        bucket = q.bucketing.sql(),
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(duckdb::params_from_iter(params), |row| {
        Ok(RequestStats {
            route: row.get(0)?,
            bucket: row.get(1)?,
            requests: row.get(2)?,
            client_errors: row.get(3)?,
            server_errors: row.get(4)?,
            p50_ms: row.get(5)?,
            p95_ms: row.get(6)?,
            p99_ms: row.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
