//! Identity resolution, with PostHog's merge semantics: an anonymous id becomes a known user on
//! `$identify` (or `$create_alias`), person properties follow `$set` / `$set_once`, and groups
//! (companies, accounts) follow `$groupidentify`. Pure: the writer loads the affected rows,
//! applies the events' operations here in time order, and writes back what changed.
//!
//! Every distinct id belongs to one person, named by its *person key*: the distinct id itself
//! until a merge maps it to another's key (an alias). Only merged ids need an alias row, so a
//! site with 200 k users that never identify stores none. Two persons that are both identified
//! are never merged into one (PostHog refuses it too: it would join two real users).

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use crate::domain::events::Event;

/// What one event asks of identity.
#[derive(Debug, Clone, PartialEq)]
pub enum IdentityOp {
    /// `other`'s person joins `target`'s (`$identify` from an anonymous id, `$create_alias`).
    Merge {
        target: String,
        other: String,
        identify: bool,
    },
    /// Marks `distinct_id`'s person as a known user (`$identify` without an anonymous id).
    Identify { distinct_id: String },
    /// Person properties: `set` overwrites, `set_once` only fills what is missing.
    Set {
        distinct_id: String,
        set: Map<String, Value>,
        set_once: Map<String, Value>,
    },
    /// A group's properties (`$groupidentify`).
    Group {
        group_type: String,
        group_key: String,
        set: Map<String, Value>,
    },
}

fn object(props: &Map<String, Value>, key: &str) -> Map<String, Value> {
    props
        .get(key)
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default()
}

fn text(props: &Map<String, Value>, key: &str) -> Option<String> {
    match props.get(key)? {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The identity operations an event carries, in the order they apply.
pub fn ops_of(event: &Event) -> Vec<IdentityOp> {
    let props = &event.props;
    let mut ops = Vec::new();
    match event.name.as_str() {
        "$identify" => match text(props, "$anon_distinct_id") {
            Some(anon) if anon != event.distinct_id => ops.push(IdentityOp::Merge {
                target: event.distinct_id.clone(),
                other: anon,
                identify: true,
            }),
            _ => ops.push(IdentityOp::Identify {
                distinct_id: event.distinct_id.clone(),
            }),
        },
        "$create_alias" => {
            if let Some(alias) = text(props, "alias").filter(|a| *a != event.distinct_id) {
                ops.push(IdentityOp::Merge {
                    target: event.distinct_id.clone(),
                    other: alias,
                    identify: false,
                });
            }
        }
        "$groupidentify" => {
            if let (Some(group_type), Some(group_key)) =
                (text(props, "$group_type"), text(props, "$group_key"))
            {
                ops.push(IdentityOp::Group {
                    group_type,
                    group_key,
                    set: object(props, "$group_set"),
                });
            }
        }
        _ => {}
    }
    let (set, set_once) = (object(props, "$set"), object(props, "$set_once"));
    if !set.is_empty() || !set_once.is_empty() {
        ops.push(IdentityOp::Set {
            distinct_id: event.distinct_id.clone(),
            set,
            set_once,
        });
    }
    ops
}

/// The distinct ids `ops` touch (what the writer loads before applying them).
pub fn ids_of(ops: &[IdentityOp]) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for op in ops {
        match op {
            IdentityOp::Merge { target, other, .. } => {
                ids.push(target.clone());
                ids.push(other.clone());
            }
            IdentityOp::Identify { distinct_id } | IdentityOp::Set { distinct_id, .. } => {
                ids.push(distinct_id.clone())
            }
            IdentityOp::Group { .. } => {}
        }
    }
    ids.sort();
    ids.dedup();
    ids
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Person {
    pub props: Map<String, Value>,
    pub identified: bool,
}

/// The loaded slice of identity state, changed by [`IdentityState::apply`]; the `changed_*` and
/// `repointed` fields say what the writer must write back.
#[derive(Debug, Clone, Default)]
pub struct IdentityState {
    /// distinct id → person key, for the ids that have been merged into another's person.
    pub aliases: HashMap<String, String>,
    /// person key → person (only persons with properties or identified have a row).
    pub persons: HashMap<String, Person>,
    pub groups: BTreeMap<(String, String), Map<String, Value>>,
    /// Aliases added or changed.
    pub changed_aliases: BTreeMap<String, String>,
    /// (old key, new key): every alias that pointed at the old person now points at the new.
    pub repointed: Vec<(String, String)>,
    /// Persons to write back (`None`: removed, merged into another).
    pub changed_persons: BTreeMap<String, Option<Person>>,
    pub changed_groups: Vec<(String, String)>,
    /// Merges refused because both persons were already identified.
    pub refused_merges: usize,
}

impl IdentityState {
    pub fn person_key(&self, distinct_id: &str) -> String {
        self.aliases
            .get(distinct_id)
            .cloned()
            .unwrap_or_else(|| distinct_id.to_string())
    }

    fn person(&self, key: &str) -> Person {
        self.persons.get(key).cloned().unwrap_or_default()
    }

    fn put_person(&mut self, key: &str, person: Person) {
        self.persons.insert(key.to_string(), person.clone());
        self.changed_persons.insert(key.to_string(), Some(person));
    }

    pub fn apply(&mut self, op: &IdentityOp) {
        match op {
            IdentityOp::Merge {
                target,
                other,
                identify,
            } => self.merge(target, other, *identify),
            IdentityOp::Identify { distinct_id } => {
                let key = self.person_key(distinct_id);
                let mut person = self.person(&key);
                if !person.identified {
                    person.identified = true;
                    self.put_person(&key, person);
                }
            }
            IdentityOp::Set {
                distinct_id,
                set,
                set_once,
            } => {
                let key = self.person_key(distinct_id);
                let mut person = self.person(&key);
                for (k, v) in set_once {
                    person.props.entry(k.clone()).or_insert_with(|| v.clone());
                }
                for (k, v) in set {
                    person.props.insert(k.clone(), v.clone());
                }
                self.put_person(&key, person);
            }
            IdentityOp::Group {
                group_type,
                group_key,
                set,
            } => {
                let id = (group_type.clone(), group_key.clone());
                let props = self.groups.entry(id.clone()).or_default();
                for (k, v) in set {
                    props.insert(k.clone(), v.clone());
                }
                if !self.changed_groups.contains(&id) {
                    self.changed_groups.push(id);
                }
            }
        }
    }

    fn merge(&mut self, target: &str, other: &str, identify: bool) {
        let target_key = self.person_key(target);
        let other_key = self.person_key(other);
        let mut kept = self.person(&target_key);
        if target_key == other_key {
            if identify && !kept.identified {
                kept.identified = true;
                self.put_person(&target_key, kept);
            }
            return;
        }
        let absorbed = self.person(&other_key);
        if absorbed.identified && (kept.identified || identify) {
            self.refused_merges += 1;
            return;
        }
        // The known user's own properties win over what the anonymous person had.
        let mut props = absorbed.props;
        props.extend(kept.props);
        kept.props = props;
        kept.identified |= identify;
        for key in self.aliases.values_mut() {
            if *key == other_key {
                *key = target_key.clone();
            }
        }
        for key in self.changed_aliases.values_mut() {
            if *key == other_key {
                *key = target_key.clone();
            }
        }
        self.repointed.push((other_key.clone(), target_key.clone()));
        for id in [other_key.as_str(), other] {
            self.aliases.insert(id.to_string(), target_key.clone());
            self.changed_aliases
                .insert(id.to_string(), target_key.clone());
        }
        self.persons.remove(&other_key);
        self.changed_persons.insert(other_key, None);
        self.put_person(&target_key, kept);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(name: &str, id: &str, props: Value) -> Event {
        Event {
            uuid: [0; 16],
            name: name.into(),
            distinct_id: id.into(),
            ts_micros: 0,
            session_id: None,
            props: props.as_object().cloned().unwrap(),
            ip: None,
            user_agent: None,
        }
    }

    fn run(state: &mut IdentityState, events: &[Event]) {
        for e in events {
            for op in ops_of(e) {
                state.apply(&op);
            }
        }
    }

    /// anon-1 browses with `$set_once` {"ref": "ad"}, identifies as ada with {"email"}; a
    /// second device anon-2 identifies as ada too. All three ids are one person keyed "ada",
    /// with both properties.
    #[test]
    fn anonymous_ids_merge_into_the_identified_user_with_their_properties() {
        let mut s = IdentityState::default();
        run(
            &mut s,
            &[
                event("$pageview", "anon-1", json!({"$set_once": {"ref": "ad"}})),
                event(
                    "$identify",
                    "ada",
                    json!({"$anon_distinct_id": "anon-1", "$set": {"email": "a@x"}}),
                ),
                event("$identify", "ada", json!({"$anon_distinct_id": "anon-2"})),
            ],
        );
        for id in ["anon-1", "anon-2", "ada"] {
            assert_eq!(s.person_key(id), "ada", "{id}");
        }
        let ada = &s.persons["ada"];
        assert!(ada.identified);
        assert_eq!(
            ada.props,
            json!({"ref": "ad", "email": "a@x"})
                .as_object()
                .cloned()
                .unwrap()
        );
        assert_eq!(
            s.changed_persons.get("anon-1"),
            Some(&None),
            "the anonymous person is gone"
        );
        assert_eq!(
            s.changed_aliases.get("anon-2").map(String::as_str),
            Some("ada")
        );
    }

    /// bob is identified; anon-3 was merged into ada. A later "$identify bob from anon-3" would
    /// join two real users: refused, and nothing changes.
    #[test]
    fn two_identified_persons_are_never_merged() {
        let mut s = IdentityState::default();
        run(
            &mut s,
            &[
                event("$identify", "ada", json!({"$anon_distinct_id": "anon-3"})),
                event("$identify", "bob", json!({})),
                event("$identify", "bob", json!({"$anon_distinct_id": "anon-3"})),
            ],
        );
        assert_eq!(s.refused_merges, 1);
        assert_eq!(s.person_key("anon-3"), "ada");
        assert_eq!(s.person_key("bob"), "bob");
    }

    /// An alias chain: x aliased to y, then y's person identified into z: every alias that
    /// pointed at y's person points at z, and the writer is told to repoint stored ones too.
    #[test]
    fn merging_a_person_that_has_aliases_moves_them_all() {
        let mut s = IdentityState::default();
        s.aliases.insert("old".into(), "y".into());
        run(
            &mut s,
            &[
                event("$create_alias", "y", json!({"alias": "x"})),
                event(
                    "$identify",
                    "z",
                    json!({"$anon_distinct_id": "y", "$set": {"n": 1}}),
                ),
            ],
        );
        for id in ["old", "x", "y", "z"] {
            assert_eq!(s.person_key(id), "z", "{id}");
        }
        assert!(s.repointed.contains(&("y".to_string(), "z".to_string())));
        assert_eq!(s.persons["z"].props["n"], 1);
    }

    #[test]
    fn set_once_keeps_the_first_value_and_groups_collect_their_properties() {
        let mut s = IdentityState::default();
        run(
            &mut s,
            &[
                event(
                    "a",
                    "u",
                    json!({"$set_once": {"first": 1}, "$set": {"last": 1}}),
                ),
                event(
                    "a",
                    "u",
                    json!({"$set_once": {"first": 2}, "$set": {"last": 2}}),
                ),
                event(
                    "$groupidentify",
                    "u",
                    json!({"$group_type": "company", "$group_key": "acme", "$group_set": {"plan": "pro"}}),
                ),
            ],
        );
        assert_eq!(
            s.persons["u"].props,
            json!({"first": 1, "last": 2}).as_object().cloned().unwrap()
        );
        assert_eq!(
            s.groups[&("company".to_string(), "acme".to_string())]["plan"],
            "pro"
        );
        assert_eq!(
            ids_of(&ops_of(&event(
                "$identify",
                "b",
                json!({"$anon_distinct_id": "a"})
            ))),
            vec!["a", "b"]
        );
    }
}
