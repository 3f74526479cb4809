//! Saved insights: a named event analysis (trend, funnel, retention, stickiness or lifecycle)
//! kept with its question, to open again and later to place on a dashboard. The question is
//! checked by the analysis's own parser when saved, so a saved insight always runs. Pure.

use serde_json::{Map, Value};

use crate::domain::analytics::{self, FieldError, field_error, refuse_unknown};
use crate::domain::cohorts;

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_DESCRIPTION_CHARS: usize = 1_000;
/// The longest rolling range of a saved insight (as the analyses' own range bound).
pub const MAX_LAST_DAYS: u32 = 1_830;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsightKind {
    Trends,
    Funnels,
    Retention,
    Stickiness,
    Lifecycle,
    /// API analytics over request events.
    Api,
}

impl InsightKind {
    pub const ALL: [InsightKind; 6] = [
        InsightKind::Trends,
        InsightKind::Funnels,
        InsightKind::Retention,
        InsightKind::Stickiness,
        InsightKind::Lifecycle,
        InsightKind::Api,
    ];

    /// The name in the API (and in `/api/v1/analytics/{name}`).
    pub fn as_str(self) -> &'static str {
        match self {
            InsightKind::Trends => "trends",
            InsightKind::Funnels => "funnels",
            InsightKind::Retention => "retention",
            InsightKind::Stickiness => "stickiness",
            InsightKind::Lifecycle => "lifecycle",
            InsightKind::Api => "api",
        }
    }

    pub fn parse(s: &str) -> Option<InsightKind> {
        InsightKind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Checks a question of this kind (field names as the analysis gives them).
    pub fn check(self, query: &Value) -> Result<(), FieldError> {
        match self {
            InsightKind::Trends => analytics::parse_trend(query).map(drop),
            InsightKind::Funnels => analytics::parse_funnel(query).map(drop),
            InsightKind::Retention => analytics::parse_retention(query).map(drop),
            InsightKind::Stickiness | InsightKind::Lifecycle => {
                analytics::parse_activity(query).map(drop)
            }
            InsightKind::Api => analytics::parse_api_usage(query).map(drop),
        }?;
        cohorts::cohort_id(query).map(drop)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct SavedInsightInput {
    pub name: String,
    pub description: String,
    pub kind: InsightKind,
    /// The analysis's question, as `POST /api/v1/analytics/{kind}` takes it.
    pub query: Value,
    /// A rolling range (the last N days up to when it runs), replacing the query's from / to.
    pub last_days: Option<u32>,
}

fn text(
    map: &Map<String, Value>,
    key: &str,
    max: usize,
    required: bool,
) -> Result<String, FieldError> {
    match map.get(key) {
        None | Some(Value::Null) if !required => Ok(String::new()),
        None | Some(Value::Null) => Err(field_error(key, "is required")),
        Some(Value::String(s)) if required && s.trim().is_empty() => {
            Err(field_error(key, "must not be empty"))
        }
        Some(Value::String(s)) if s.trim().chars().count() > max => {
            Err(field_error(key, format!("at most {max} characters")))
        }
        Some(Value::String(s)) => Ok(s.trim().to_string()),
        Some(_) => Err(field_error(key, "must be a string")),
    }
}

/// Parses `{"name", "description", "kind": "trends" | …, "query": {…}, "last_days": 30}`; a
/// problem in the question is named `query.<field>`.
pub fn parse_saved_insight(body: &Value) -> Result<SavedInsightInput, FieldError> {
    let Value::Object(map) = body else {
        return Err(field_error("", "the body must be a JSON object"));
    };
    refuse_unknown(map, &["name", "description", "kind", "query", "last_days"])?;
    let name = text(map, "name", MAX_NAME_CHARS, true)?;
    let description = text(map, "description", MAX_DESCRIPTION_CHARS, false)?;
    let kind = match map.get("kind") {
        Some(Value::String(s)) => InsightKind::parse(s).ok_or_else(|| {
            field_error(
                "kind",
                "must be trends, funnels, retention, stickiness, lifecycle or api",
            )
        })?,
        _ => {
            return Err(field_error(
                "kind",
                "is required: trends, funnels, retention, stickiness, lifecycle or api",
            ));
        }
    };
    let query = match map.get("query") {
        Some(q @ Value::Object(_)) => q.clone(),
        _ => {
            return Err(field_error(
                "query",
                "is required: the analysis's question as an object",
            ));
        }
    };
    kind.check(&query).map_err(|(f, r)| {
        let field = if f.is_empty() {
            "query".to_string()
        } else {
            format!("query.{f}")
        };
        (field, r)
    })?;
    let last_days = match map.get("last_days") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .filter(|n| (1..=MAX_LAST_DAYS as u64).contains(n))
                .ok_or_else(|| {
                    field_error(
                        "last_days",
                        format!("must be a whole number from 1 to {MAX_LAST_DAYS}"),
                    )
                })? as u32,
        ),
    };
    if last_days.is_some() && (query.get("from").is_some() || query.get("to").is_some()) {
        return Err(field_error(
            "last_days",
            "give either last_days or the query's from / to, not both",
        ));
    }
    Ok(SavedInsightInput {
        name,
        description,
        kind,
        query,
        last_days,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_saved_funnel_keeps_its_question() {
        let body = json!({"name": "Signup to purchase", "kind": "funnels", "last_days": 30,
                          "query": {"steps": ["signup", "purchase"], "window": {"value": 7, "unit": "day"}}});
        let s = parse_saved_insight(&body).unwrap();
        assert_eq!(s.kind, InsightKind::Funnels);
        assert_eq!(s.last_days, Some(30));
        assert_eq!(s.query["steps"][1], "purchase");
    }

    #[test]
    fn a_bad_question_is_named_inside_query() {
        let cases = [
            (json!({"kind": "trends", "query": {"event": "x"}}), "name"),
            (json!({"name": "a", "kind": "pie", "query": {}}), "kind"),
            (json!({"name": "a", "kind": "trends"}), "query"),
            (
                json!({"name": "a", "kind": "trends", "query": {}}),
                "query.event",
            ),
            (
                json!({"name": "a", "kind": "funnels", "query": {"steps": ["a"]}}),
                "query.steps",
            ),
            (
                json!({"name": "a", "kind": "trends", "query": {"event": "x", "cohort": "c"}}),
                "query.cohort",
            ),
            (
                json!({"name": "a", "kind": "trends", "query": {"event": "x"}, "last_days": 0}),
                "last_days",
            ),
            (
                json!({"name": "a", "kind": "trends", "query": {"event": "x", "from": "2026-01-01"}, "last_days": 3}),
                "last_days",
            ),
            (
                json!({"name": "a", "kind": "lifecycle", "query": {"event": "x", "interval": "hour"}}),
                "query.interval",
            ),
        ];
        for (body, field) in cases {
            assert_eq!(parse_saved_insight(&body).unwrap_err().0, field, "{body}");
        }
    }
}
