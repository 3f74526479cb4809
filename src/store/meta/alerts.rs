//! Alert rules, alerts with their history, silences and mute windows. Every function takes the
//! org (or works on rows already scoped by it), so one org never reads another's.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

use super::OptionalRow;
use crate::domain::alert_rules::RuleSpec;
use crate::domain::alerts::{MuteWindow, Tracker};
use crate::store::StoreError;

fn to_json<T: Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(StoreError::internal)
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> rusqlite::Result<T> {
    serde_json::from_str(s).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct RuleRow {
    pub id: i64,
    pub org_id: i64,
    pub spec: RuleSpec,
    pub created_at: i64,
    pub updated_at: i64,
    pub last_evaluated_at: Option<i64>,
    pub last_error: String,
}

const RULE_COLUMNS: &str =
    "id, org_id, spec, created_at, updated_at, last_evaluated_at, last_error";

fn rule_row(r: &Row) -> rusqlite::Result<RuleRow> {
    Ok(RuleRow {
        id: r.get(0)?,
        org_id: r.get(1)?,
        spec: from_json(&r.get::<_, String>(2)?)?,
        created_at: r.get(3)?,
        updated_at: r.get(4)?,
        last_evaluated_at: r.get(5)?,
        last_error: r.get(6)?,
    })
}

pub fn insert_rule(
    conn: &Connection,
    org_id: i64,
    spec: &RuleSpec,
    now: i64,
) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO alert_rules (org_id, spec, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)",
        params![org_id, to_json(spec)?, now],
    )?;
    Ok(conn.last_insert_rowid())
}

pub fn update_rule(
    conn: &Connection,
    org_id: i64,
    id: i64,
    spec: &RuleSpec,
    now: i64,
) -> Result<(), StoreError> {
    let n = conn.execute(
        "UPDATE alert_rules SET spec = ?1, updated_at = ?2 WHERE id = ?3 AND org_id = ?4",
        params![to_json(spec)?, now, id, org_id],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

/// Deletes the rule and (by cascade) its alerts and their history.
pub fn delete_rule(conn: &Connection, org_id: i64, id: i64) -> Result<(), StoreError> {
    let n = conn.execute(
        "DELETE FROM alert_rules WHERE id = ?1 AND org_id = ?2",
        params![id, org_id],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

pub fn get_rule(conn: &Connection, org_id: i64, id: i64) -> Result<RuleRow, StoreError> {
    conn.query_row(
        &format!("SELECT {RULE_COLUMNS} FROM alert_rules WHERE id = ?1 AND org_id = ?2"),
        params![id, org_id],
        rule_row,
    )
    .found()
}

pub fn list_rules(conn: &Connection, org_id: i64) -> Result<Vec<RuleRow>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {RULE_COLUMNS} FROM alert_rules WHERE org_id = ?1 ORDER BY id"
    ))?;
    let rows = stmt.query_map([org_id], rule_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Every enabled rule of every org whose evaluation interval has passed at `now`.
pub fn due_rules(conn: &Connection, now: i64) -> Result<Vec<RuleRow>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {RULE_COLUMNS} FROM alert_rules ORDER BY id"
    ))?;
    let rows = stmt.query_map([], rule_row)?;
    let mut out = Vec::new();
    for row in rows {
        let row = row?;
        let due = row
            .last_evaluated_at
            .is_none_or(|at| now - at >= row.spec.interval_secs);
        if row.spec.enabled && due {
            out.push(row);
        }
    }
    Ok(out)
}

pub fn mark_evaluated(conn: &Connection, id: i64, at: i64, error: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE alert_rules SET last_evaluated_at = ?1, last_error = ?2 WHERE id = ?3",
        params![at, error, id],
    )?;
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertRow {
    pub id: i64,
    pub org_id: i64,
    pub rule_id: i64,
    pub rule_name: String,
    pub series: String,
    pub state: String,
    pub severity: String,
    pub category: String,
    #[serde(skip)]
    pub tracker: Tracker,
    pub value: Option<f64>,
    pub started_at: i64,
    pub fired_at: Option<i64>,
    pub updated_at: i64,
    pub resolved_at: Option<i64>,
    pub ack_by: String,
    pub ack_note: String,
    pub ack_until: Option<i64>,
}

const ALERT_COLUMNS: &str = "a.id, a.org_id, a.rule_id, json_extract(r.spec, '$.name'), a.series, a.state, a.severity, a.category, a.tracker, a.value, a.started_at, a.fired_at, a.updated_at, a.resolved_at, a.ack_by, a.ack_note, a.ack_until";

fn alert_row(r: &Row) -> rusqlite::Result<AlertRow> {
    Ok(AlertRow {
        id: r.get(0)?,
        org_id: r.get(1)?,
        rule_id: r.get(2)?,
        rule_name: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
        series: r.get(4)?,
        state: r.get(5)?,
        severity: r.get(6)?,
        category: r.get(7)?,
        tracker: from_json(&r.get::<_, String>(8)?)?,
        value: r.get(9)?,
        started_at: r.get(10)?,
        fired_at: r.get(11)?,
        updated_at: r.get(12)?,
        resolved_at: r.get(13)?,
        ack_by: r.get(14)?,
        ack_note: r.get(15)?,
        ack_until: r.get(16)?,
    })
}

/// The open (pending, firing or acknowledged) alert of a rule's series, if any.
pub fn open_alert(
    conn: &Connection,
    rule_id: i64,
    series: &str,
) -> Result<Option<AlertRow>, StoreError> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {ALERT_COLUMNS} FROM alerts a JOIN alert_rules r ON r.id = a.rule_id
                 WHERE a.rule_id = ?1 AND a.series = ?2 AND a.state IN ('pending', 'firing', 'acknowledged')"
            ),
            params![rule_id, series],
            alert_row,
        )
        .optional()?)
}

/// Every open alert of a rule (all series).
pub fn open_alerts_of_rule(conn: &Connection, rule_id: i64) -> Result<Vec<AlertRow>, StoreError> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {ALERT_COLUMNS} FROM alerts a JOIN alert_rules r ON r.id = a.rule_id
         WHERE a.rule_id = ?1 AND a.state IN ('pending', 'firing', 'acknowledged') ORDER BY a.id"
    ))?;
    let rows = stmt.query_map([rule_id], alert_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Inserts a new alert (id 0) or updates an existing one; returns its id.
pub fn save_alert(conn: &Connection, a: &AlertRow) -> Result<i64, StoreError> {
    let tracker = to_json(&a.tracker)?;
    if a.id == 0 {
        conn.execute(
            "INSERT INTO alerts (org_id, rule_id, series, state, severity, category, tracker, value,
                                 started_at, fired_at, updated_at, resolved_at, ack_by, ack_note, ack_until)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            params![
                a.org_id, a.rule_id, a.series, a.state, a.severity, a.category, tracker, a.value,
                a.started_at, a.fired_at, a.updated_at, a.resolved_at, a.ack_by, a.ack_note,
                a.ack_until
            ],
        )?;
        Ok(conn.last_insert_rowid())
    } else {
        conn.execute(
            "UPDATE alerts SET state = ?1, severity = ?2, tracker = ?3, value = ?4, fired_at = ?5,
                    updated_at = ?6, resolved_at = ?7, ack_by = ?8, ack_note = ?9, ack_until = ?10
             WHERE id = ?11 AND org_id = ?12",
            params![
                a.state,
                a.severity,
                tracker,
                a.value,
                a.fired_at,
                a.updated_at,
                a.resolved_at,
                a.ack_by,
                a.ack_note,
                a.ack_until,
                a.id,
                a.org_id
            ],
        )?;
        Ok(a.id)
    }
}

pub fn get_alert(conn: &Connection, org_id: i64, id: i64) -> Result<AlertRow, StoreError> {
    conn.query_row(
        &format!(
            "SELECT {ALERT_COLUMNS} FROM alerts a JOIN alert_rules r ON r.id = a.rule_id
             WHERE a.id = ?1 AND a.org_id = ?2"
        ),
        params![id, org_id],
        alert_row,
    )
    .found()
}

#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    /// `open` (pending, firing, acknowledged), a single state, or `None` for all but cleared.
    pub state: Option<String>,
    pub severity: Option<String>,
    pub category: Option<String>,
    pub rule_id: Option<i64>,
    pub limit: i64,
}

pub fn list_alerts(
    conn: &Connection,
    org_id: i64,
    f: &AlertFilter,
) -> Result<Vec<AlertRow>, StoreError> {
    let mut sql = format!(
        "SELECT {ALERT_COLUMNS} FROM alerts a JOIN alert_rules r ON r.id = a.rule_id WHERE a.org_id = ?1"
    );
    let mut args: Vec<rusqlite::types::Value> = vec![org_id.into()];
    match f.state.as_deref() {
        None => sql.push_str(" AND a.state <> 'cleared'"),
        Some("open") => sql.push_str(" AND a.state IN ('pending', 'firing', 'acknowledged')"),
        Some(s) => {
            args.push(s.to_string().into());
            sql.push_str(&format!(" AND a.state = ?{}", args.len()));
        }
    }
    if let Some(s) = &f.severity {
        args.push(s.clone().into());
        sql.push_str(&format!(" AND a.severity = ?{}", args.len()));
    }
    if let Some(c) = &f.category {
        args.push(c.clone().into());
        sql.push_str(&format!(" AND a.category = ?{}", args.len()));
    }
    if let Some(r) = f.rule_id {
        args.push(r.into());
        sql.push_str(&format!(" AND a.rule_id = ?{}", args.len()));
    }
    // Open alerts first (firing before acknowledged before pending), then the newest.
    sql.push_str(&format!(
        " ORDER BY CASE a.state WHEN 'firing' THEN 0 WHEN 'acknowledged' THEN 1 WHEN 'pending' THEN 2 ELSE 3 END,
                   a.updated_at DESC, a.id DESC LIMIT {}",
        f.limit.clamp(1, 1000)
    ));
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), alert_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[derive(Debug, Clone, Serialize)]
pub struct AlertEventRow {
    pub at: i64,
    pub kind: String,
    pub actor: String,
    pub note: String,
    pub value: Option<f64>,
}

#[allow(clippy::too_many_arguments)]
pub fn add_event(
    conn: &Connection,
    org_id: i64,
    alert_id: i64,
    at: i64,
    kind: &str,
    actor: &str,
    note: &str,
    value: Option<f64>,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO alert_events (org_id, alert_id, at, kind, actor, note, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![org_id, alert_id, at, kind, actor, note, value],
    )?;
    Ok(())
}

pub fn events(
    conn: &Connection,
    org_id: i64,
    alert_id: i64,
) -> Result<Vec<AlertEventRow>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT at, kind, actor, note, value FROM alert_events WHERE org_id = ?1 AND alert_id = ?2 ORDER BY at, id",
    )?;
    let rows = stmt.query_map(params![org_id, alert_id], |r| {
        Ok(AlertEventRow {
            at: r.get(0)?,
            kind: r.get(1)?,
            actor: r.get(2)?,
            note: r.get(3)?,
            value: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Deletes alerts closed before `before` with their history (retention); returns how many.
pub fn purge_closed(conn: &Connection, before: i64) -> Result<usize, StoreError> {
    Ok(conn.execute(
        "DELETE FROM alerts WHERE state IN ('resolved', 'cleared') AND resolved_at < ?1",
        [before],
    )?)
}

#[derive(Debug, Clone, Serialize)]
pub struct SilenceRow {
    pub id: i64,
    pub matchers: Vec<(String, String)>,
    pub ends_at: i64,
    pub comment: String,
    pub created_by: String,
    pub created_at: i64,
}

pub fn insert_silence(
    conn: &Connection,
    org_id: i64,
    matchers: &[(String, String)],
    ends_at: i64,
    comment: &str,
    created_by: &str,
    now: i64,
) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO silences (org_id, matchers, ends_at, comment, created_by, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![org_id, to_json(&matchers)?, ends_at, comment, created_by, now],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Silences still in force at `now` (ended ones are kept for a day so the page can show them).
pub fn list_silences(
    conn: &Connection,
    org_id: i64,
    now: i64,
) -> Result<Vec<SilenceRow>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, matchers, ends_at, comment, created_by, created_at FROM silences
         WHERE org_id = ?1 AND ends_at > ?2 ORDER BY ends_at",
    )?;
    let rows = stmt.query_map(params![org_id, now - 86_400], |r| {
        Ok(SilenceRow {
            id: r.get(0)?,
            matchers: from_json(&r.get::<_, String>(1)?)?,
            ends_at: r.get(2)?,
            comment: r.get(3)?,
            created_by: r.get(4)?,
            created_at: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Ends a silence now.
pub fn expire_silence(conn: &Connection, org_id: i64, id: i64, now: i64) -> Result<(), StoreError> {
    let n = conn.execute(
        "UPDATE silences SET ends_at = min(ends_at, ?1) WHERE id = ?2 AND org_id = ?3",
        params![now, id, org_id],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct MuteWindowRow {
    pub id: i64,
    pub name: String,
    pub window: MuteWindow,
    pub matchers: Vec<(String, String)>,
}

pub fn insert_mute_window(
    conn: &Connection,
    org_id: i64,
    name: &str,
    window: &MuteWindow,
    matchers: &[(String, String)],
    now: i64,
) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO mute_windows (org_id, name, schedule, matchers, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![org_id, name, to_json(window)?, to_json(&matchers)?, now],
    )?;
    Ok(conn.last_insert_rowid())
}

pub fn list_mute_windows(conn: &Connection, org_id: i64) -> Result<Vec<MuteWindowRow>, StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, name, schedule, matchers FROM mute_windows WHERE org_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([org_id], |r| {
        Ok(MuteWindowRow {
            id: r.get(0)?,
            name: r.get(1)?,
            window: from_json(&r.get::<_, String>(2)?)?,
            matchers: from_json(&r.get::<_, String>(3)?)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub fn delete_mute_window(conn: &Connection, org_id: i64, id: i64) -> Result<(), StoreError> {
    let n = conn.execute(
        "DELETE FROM mute_windows WHERE id = ?1 AND org_id = ?2",
        params![id, org_id],
    )?;
    if n == 0 {
        return Err(StoreError::NotFound);
    }
    Ok(())
}
