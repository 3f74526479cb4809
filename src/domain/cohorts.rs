//! Cohorts (saved user segments): who did an event at least N times in the last D days, or
//! whose person properties match, combined with "all" or "any". A cohort is a filter in every
//! analysis (people outside it are left out) and has a person list. Pure: parsing and bounds;
//! the store turns a definition into SQL, evaluated at the time the question is asked.

use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::domain::analytics::{EventMatcher, FieldError, field_error, matcher, refuse_unknown};
use crate::domain::events::{self, FilterOp, FilterValue, PropertyFilter};

pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_DESCRIPTION_CHARS: usize = 1_000;
pub const MAX_CONDITIONS: usize = 10;
/// The longest look-back of a behaviour condition.
pub const MAX_DAYS: u32 = 1_830;
pub const MAX_COUNT: u32 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Match {
    /// In the cohort when every condition holds.
    All,
    /// When at least one does.
    Any,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Condition {
    /// Did `event` (with its filters) between `min_count` and `max_count` times in the `days`
    /// days before the question is asked.
    Behaviour {
        event: EventMatcher,
        min_count: u32,
        max_count: Option<u32>,
        days: u32,
    },
    /// The person's properties (as `$set`) match every filter.
    Person { filters: Vec<PropertyFilter> },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CohortDef {
    pub matching: Match,
    pub conditions: Vec<Condition>,
}

/// A cohort as stored: its name, description and definition.
#[derive(Debug, Clone, PartialEq)]
pub struct CohortInput {
    pub name: String,
    pub description: String,
    pub def: CohortDef,
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
        Some(Value::String(s)) => {
            let s = s.trim();
            if required && s.is_empty() {
                Err(field_error(key, "must not be empty"))
            } else if s.chars().count() > max {
                Err(field_error(key, format!("at most {max} characters")))
            } else {
                Ok(s.to_string())
            }
        }
        Some(_) => Err(field_error(key, "must be a string")),
    }
}

fn count(
    map: &Map<String, Value>,
    key: &str,
    field: &str,
    min: u32,
    max: u32,
) -> Result<Option<u32>, FieldError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|n| (min as u64..=max as u64).contains(n))
            .map(|n| Some(n as u32))
            .ok_or_else(|| {
                field_error(
                    &format!("{field}.{key}"),
                    format!("must be a whole number from {min} to {max}"),
                )
            }),
    }
}

fn condition(value: &Value, field: &str) -> Result<Condition, FieldError> {
    let Value::Object(map) = value else {
        return Err(field_error(
            field,
            "must be an object with a type: behaviour or person",
        ));
    };
    match map.get("type").and_then(Value::as_str) {
        Some("behaviour") | Some("behavior") => {
            refuse_unknown(
                map,
                &["type", "event", "filters", "min_count", "max_count", "days"],
            )
            .map_err(|(f, r)| field_error(&format!("{field}.{f}"), r))?;
            let Some(name) = map.get("event") else {
                return Err(field_error(&format!("{field}.event"), "is required"));
            };
            let mut event_value = json!({"event": name});
            if let Some(f) = map.get("filters") {
                event_value["filters"] = f.clone();
            }
            // Errors name `{field}.event` and `{field}.filters[i]`.
            let event = matcher(&event_value, field)?;
            let min_count = count(map, "min_count", field, 1, MAX_COUNT)?.unwrap_or(1);
            let max_count = count(map, "max_count", field, 1, MAX_COUNT)?;
            if let Some(max) = max_count
                && max < min_count
            {
                return Err(field_error(
                    &format!("{field}.max_count"),
                    "must not be below min_count",
                ));
            }
            let days = count(map, "days", field, 1, MAX_DAYS)?.ok_or_else(|| {
                field_error(
                    &format!("{field}.days"),
                    format!("is required: the look-back in days, 1 to {MAX_DAYS}"),
                )
            })?;
            Ok(Condition::Behaviour {
                event,
                min_count,
                max_count,
                days,
            })
        }
        Some("person") => {
            refuse_unknown(map, &["type", "filters"])
                .map_err(|(f, r)| field_error(&format!("{field}.{f}"), r))?;
            let filters = events::parse_filters(
                map.get("filters").unwrap_or(&Value::Null),
                &format!("{field}.filters"),
            )?;
            if filters.is_empty() {
                return Err(field_error(
                    &format!("{field}.filters"),
                    "must hold at least one filter",
                ));
            }
            Ok(Condition::Person { filters })
        }
        _ => Err(field_error(
            &format!("{field}.type"),
            "must be behaviour or person",
        )),
    }
}

/// Parses `{"name", "description", "match": "all" | "any", "conditions": [{"type":
/// "behaviour", "event", "filters", "min_count", "max_count", "days"} | {"type": "person",
/// "filters": [{key, op, value}]}]}`.
pub fn parse_cohort(body: &Value) -> Result<CohortInput, FieldError> {
    let Value::Object(map) = body else {
        return Err(field_error("", "the body must be a JSON object"));
    };
    refuse_unknown(map, &["name", "description", "match", "conditions"])?;
    let name = text(map, "name", MAX_NAME_CHARS, true)?;
    let description = text(map, "description", MAX_DESCRIPTION_CHARS, false)?;
    let def = definition(map)?;
    Ok(CohortInput {
        name,
        description,
        def,
    })
}

/// Parses a stored definition, `{"match", "conditions"}` (as [`CohortDef::to_json`] gives).
pub fn parse_definition(value: &Value) -> Result<CohortDef, FieldError> {
    let Value::Object(map) = value else {
        return Err(field_error("", "the definition must be a JSON object"));
    };
    refuse_unknown(map, &["match", "conditions"])?;
    definition(map)
}

fn definition(map: &Map<String, Value>) -> Result<CohortDef, FieldError> {
    let matching = match map.get("match") {
        None | Some(Value::Null) => Match::All,
        Some(Value::String(s)) if s == "all" => Match::All,
        Some(Value::String(s)) if s == "any" => Match::Any,
        Some(_) => return Err(field_error("match", "must be all or any")),
    };
    let Some(Value::Array(items)) = map.get("conditions") else {
        return Err(field_error(
            "conditions",
            "is required: a list of conditions",
        ));
    };
    if items.is_empty() || items.len() > MAX_CONDITIONS {
        return Err(field_error(
            "conditions",
            format!("must hold 1 to {MAX_CONDITIONS} conditions"),
        ));
    }
    let conditions = items
        .iter()
        .enumerate()
        .map(|(i, c)| condition(c, &format!("conditions[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CohortDef {
        matching,
        conditions,
    })
}

fn filter_json(f: &PropertyFilter) -> Value {
    let op = match f.op {
        FilterOp::Eq => "eq",
        FilterOp::Neq => "neq",
        FilterOp::Contains => "contains",
        FilterOp::NotContains => "not_contains",
        FilterOp::Gt => "gt",
        FilterOp::Gte => "gte",
        FilterOp::Lt => "lt",
        FilterOp::Lte => "lte",
        FilterOp::IsSet => "is_set",
        FilterOp::IsNotSet => "is_not_set",
    };
    let mut v = json!({"key": f.key, "op": op});
    if f.person {
        v["type"] = json!("person");
    }
    match &f.value {
        Some(FilterValue::Text(t)) => v["value"] = json!(t),
        Some(FilterValue::Number(n)) => v["value"] = json!(n),
        None => {}
    }
    v
}

impl CohortDef {
    /// The definition in the API's shape (what [`parse_cohort`] reads back, without the name).
    pub fn to_json(&self) -> Value {
        let conditions: Vec<Value> = self
            .conditions
            .iter()
            .map(|c| match c {
                Condition::Behaviour {
                    event,
                    min_count,
                    max_count,
                    days,
                } => json!({
                    "type": "behaviour",
                    "event": event.event,
                    "filters": event.filters.iter().map(filter_json).collect::<Vec<_>>(),
                    "min_count": min_count,
                    "max_count": max_count,
                    "days": days,
                }),
                Condition::Person { filters } => json!({
                    "type": "person",
                    "filters": filters.iter().map(filter_json).collect::<Vec<_>>(),
                }),
            })
            .collect();
        json!({
            "match": match self.matching { Match::All => "all", Match::Any => "any" },
            "conditions": conditions,
        })
    }
}

/// The cohort named by an analysis's `"cohort"` field: a positive id, or none.
pub fn cohort_id(body: &Value) -> Result<Option<i64>, FieldError> {
    match body.get("cohort") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().filter(|id| *id > 0).map(Some).ok_or_else(|| {
            field_error("cohort", "must be the id of a cohort of this organisation")
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_behaviour_and_a_person_condition_parse_and_round_trip() {
        let body = json!({
            "name": " Power users ",
            "match": "any",
            "conditions": [
                {"type": "behaviour", "event": "report_viewed", "min_count": 3, "days": 30,
                 "filters": [{"key": "plan", "value": "pro"}]},
                {"type": "person", "filters": [{"key": "country", "op": "eq", "value": "NO"}]}
            ]
        });
        let c = parse_cohort(&body).unwrap();
        assert_eq!(c.name, "Power users");
        assert_eq!(c.def.matching, Match::Any);
        let Condition::Behaviour {
            event,
            min_count,
            max_count,
            days,
        } = &c.def.conditions[0]
        else {
            panic!("a behaviour condition")
        };
        assert_eq!(
            (event.event.as_str(), *min_count, *max_count, *days),
            ("report_viewed", 3, None, 30)
        );
        assert_eq!(event.filters.len(), 1);
        // What the API shows reads back to the same definition.
        assert_eq!(parse_definition(&c.def.to_json()).unwrap(), c.def);
    }

    #[test]
    fn bad_definitions_name_the_field() {
        let cases = [
            (json!({"conditions": []}), "name"),
            (json!({"name": "a", "conditions": []}), "conditions"),
            (
                json!({"name": "a", "conditions": [{"type": "x"}]}),
                "conditions[0].type",
            ),
            (
                json!({"name": "a", "conditions": [{"type": "behaviour", "event": "e"}]}),
                "conditions[0].days",
            ),
            (
                json!({"name": "a", "conditions": [{"type": "behaviour", "days": 3}]}),
                "conditions[0].event",
            ),
            (
                json!({"name": "a", "conditions": [{"type": "behaviour", "event": "e", "days": 3, "min_count": 0}]}),
                "conditions[0].min_count",
            ),
            (
                json!({"name": "a", "conditions": [{"type": "behaviour", "event": "e", "days": 3, "min_count": 5, "max_count": 2}]}),
                "conditions[0].max_count",
            ),
            (
                json!({"name": "a", "conditions": [{"type": "behaviour", "event": "e", "days": 99999}]}),
                "conditions[0].days",
            ),
            (
                json!({"name": "a", "conditions": [{"type": "person", "filters": []}]}),
                "conditions[0].filters",
            ),
            (
                json!({"name": "a", "conditions": [{"type": "person", "filters": [{"op": "eq"}]}]}),
                "conditions[0].filters[0]",
            ),
            (
                json!({"name": "a", "match": "some", "conditions": []}),
                "match",
            ),
            (json!({"name": "a", "extra": 1, "conditions": []}), "extra"),
        ];
        for (body, field) in cases {
            let (f, _) = parse_cohort(&body).unwrap_err();
            assert_eq!(f, field, "{body}");
        }
    }

    #[test]
    fn the_cohort_field_of_an_analysis_must_be_a_positive_id() {
        assert_eq!(cohort_id(&json!({})).unwrap(), None);
        assert_eq!(cohort_id(&json!({"cohort": 7})).unwrap(), Some(7));
        assert!(cohort_id(&json!({"cohort": 0})).is_err());
        assert!(cohort_id(&json!({"cohort": "7"})).is_err());
    }
}
