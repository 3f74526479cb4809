//! Events as Arrow record batches in the `events` table's column order, for the appender.
//!
//! Properties become one struct column (cast by DuckDB to `VARIANT`, which it shreds into typed
//! columns at checkpoint: filters and breakdowns then read as fast as typed columns, see
//! `bench/probes/event-properties.md`). A struct needs one type per key, so the schema is the
//! union of the batch's keys: a key that is a number in one event and text in another is kept
//! as text (numbers as their JSON), arrays as their JSON text, nested objects as nested structs.
//! Row-by-row appends of nested values are 20× slower than this.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, FixedSizeBinaryArray, Float64Array, Int64Array, StringArray,
    StructArray, TimestampMicrosecondArray,
};
use arrow::buffer::{Buffer, NullBuffer};
use arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use serde_json::{Map, Value};

use crate::domain::events::Event;
use crate::store::StoreError;

/// Most struct fields (nested ones included) in one record batch; a batch whose events use
/// more distinct keys is split, so a flood of unique keys cannot build a huge schema.
const MAX_FIELDS_PER_BATCH: usize = 2_000;

/// The column that carries the key, where the appender's own UUID support expects it.
const ARROW_EXTENSION_NAME_KEY: &str = "ARROW:extension:name";

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Bool,
    Int,
    Float,
    Text,
    /// Types disagree across events, or an array: kept as JSON text.
    Mixed,
    Object(BTreeMap<String, Kind>),
}

impl Kind {
    fn of(value: &Value) -> Option<Kind> {
        Some(match value {
            Value::Null => return None,
            Value::Bool(_) => Kind::Bool,
            Value::Number(n) if n.is_i64() => Kind::Int,
            Value::Number(_) => Kind::Float,
            Value::String(_) => Kind::Text,
            Value::Array(_) => Kind::Mixed,
            Value::Object(m) => {
                let mut fields = BTreeMap::new();
                for (k, v) in m {
                    if let Some(kind) = Kind::of(v) {
                        fields.insert(k.clone(), kind);
                    }
                }
                Kind::Object(fields)
            }
        })
    }

    fn fields(&self) -> usize {
        match self {
            Kind::Object(f) => f.values().map(|k| 1 + k.fields()).sum(),
            _ => 0,
        }
    }

    /// Widens `self` to hold `value` too.
    fn merge(&mut self, value: &Value) {
        let Some(other) = Kind::of(value) else {
            return;
        };
        match (&mut *self, other) {
            (a, b) if *a == b && !matches!(b, Kind::Object(_)) => {}
            (Kind::Int, Kind::Float) | (Kind::Float, Kind::Int) => *self = Kind::Float,
            (Kind::Object(fields), Kind::Object(_)) => {
                if let Value::Object(m) = value {
                    merge_fields(fields, m);
                }
            }
            _ => *self = Kind::Mixed,
        }
    }
}

fn merge_fields(fields: &mut BTreeMap<String, Kind>, map: &Map<String, Value>) {
    for (k, v) in map {
        match fields.get_mut(k) {
            Some(kind) => kind.merge(v),
            None => {
                if let Some(kind) = Kind::of(v) {
                    fields.insert(k.clone(), kind);
                }
            }
        }
    }
}

fn data_type(kind: &Kind) -> DataType {
    match kind {
        Kind::Bool => DataType::Boolean,
        Kind::Int => DataType::Int64,
        Kind::Float => DataType::Float64,
        Kind::Text | Kind::Mixed => DataType::Utf8,
        Kind::Object(fields) if fields.is_empty() => DataType::Utf8,
        Kind::Object(fields) => DataType::Struct(struct_fields(fields)),
    }
}

fn struct_fields(fields: &BTreeMap<String, Kind>) -> Fields {
    fields
        .iter()
        .map(|(k, kind)| Field::new(k, data_type(kind), true))
        .collect()
}

fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The array for `values` (one per row; `None` when absent or null) of kind `kind`.
fn build(kind: &Kind, values: &[Option<&Value>]) -> Result<ArrayRef, StoreError> {
    Ok(match kind {
        Kind::Bool => Arc::new(BooleanArray::from(
            values
                .iter()
                .map(|v| v.and_then(Value::as_bool))
                .collect::<Vec<_>>(),
        )),
        Kind::Int => Arc::new(Int64Array::from(
            values
                .iter()
                .map(|v| v.and_then(Value::as_i64))
                .collect::<Vec<_>>(),
        )),
        Kind::Float => Arc::new(Float64Array::from(
            values
                .iter()
                .map(|v| v.and_then(Value::as_f64))
                .collect::<Vec<_>>(),
        )),
        Kind::Text => Arc::new(StringArray::from(
            values
                .iter()
                .map(|v| v.and_then(Value::as_str))
                .collect::<Vec<_>>(),
        )),
        Kind::Mixed => Arc::new(StringArray::from(
            values.iter().map(|v| v.map(text_of)).collect::<Vec<_>>(),
        )),
        Kind::Object(fields) if fields.is_empty() => Arc::new(StringArray::from(
            values.iter().map(|v| v.map(text_of)).collect::<Vec<_>>(),
        )),
        Kind::Object(fields) => {
            let objects: Vec<Option<&Map<String, Value>>> = values
                .iter()
                .map(|v| v.and_then(Value::as_object))
                .collect();
            build_struct(fields, &objects)?
        }
    })
}

fn build_struct(
    fields: &BTreeMap<String, Kind>,
    objects: &[Option<&Map<String, Value>>],
) -> Result<ArrayRef, StoreError> {
    let mut children = Vec::with_capacity(fields.len());
    for (key, child_kind) in fields {
        let child_values: Vec<Option<&Value>> = objects
            .iter()
            .map(|o| o.and_then(|m| m.get(key)).filter(|v| !v.is_null()))
            .collect();
        children.push(build(child_kind, &child_values)?);
    }
    let nulls = NullBuffer::from(objects.iter().map(Option::is_some).collect::<Vec<_>>());
    Ok(Arc::new(
        StructArray::try_new(struct_fields(fields), children, Some(nulls))
            .map_err(StoreError::internal)?,
    ))
}

/// The `events` table's schema for a batch whose properties have kind `props`.
fn schema(props: &DataType) -> Arc<Schema> {
    let uuid = Field::new("uuid", DataType::FixedSizeBinary(16), false).with_metadata(
        [(
            ARROW_EXTENSION_NAME_KEY.to_string(),
            "arrow.uuid".to_string(),
        )]
        .into_iter()
        .collect::<std::collections::HashMap<String, String>>(),
    );
    let ts = DataType::Timestamp(TimeUnit::Microsecond, None);
    Arc::new(Schema::new(vec![
        Field::new("org_id", DataType::Int64, false),
        uuid,
        Field::new("name", DataType::Utf8, false),
        Field::new("distinct_id", DataType::Utf8, false),
        Field::new("ts", ts.clone(), false),
        Field::new("session_id", DataType::Utf8, true),
        Field::new("props", props.clone(), true),
        Field::new("props_json", DataType::Utf8, true),
        Field::new("ip", DataType::Utf8, true),
        Field::new("user_agent", DataType::Utf8, true),
        Field::new("received_at", ts, false),
    ]))
}

/// Positions in the record batch of the columns the dedup check reads.
pub const KEY_COLUMNS: [usize; 3] = [0, 1, 4];

/// Record batches for `events`, in time order, split so no batch has more than
/// [`MAX_FIELDS_PER_BATCH`] property fields.
pub fn record_batches(
    org_id: i64,
    events: &[Event],
    received_micros: i64,
) -> Result<Vec<RecordBatch>, StoreError> {
    let mut order: Vec<&Event> = events.iter().collect();
    order.sort_by_key(|e| e.ts_micros);
    let objects: Vec<&Map<String, Value>> = order.iter().map(|e| &e.props).collect();
    chunks_by_fields(&objects)
        .into_iter()
        .map(|(range, union)| one_batch(org_id, &order[range], &union, received_micros))
        .collect()
}

/// Consecutive ranges of `objects` whose union of keys stays within [`MAX_FIELDS_PER_BATCH`]
/// fields (a single object over it gets a range of its own), each with that union.
fn chunks_by_fields(
    objects: &[&Map<String, Value>],
) -> Vec<(std::ops::Range<usize>, BTreeMap<String, Kind>)> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < objects.len() {
        let mut union: BTreeMap<String, Kind> = BTreeMap::new();
        let mut end = start;
        while end < objects.len() {
            let mut widened = union.clone();
            merge_fields(&mut widened, objects[end]);
            let fields = Kind::Object(widened.clone()).fields();
            if fields > MAX_FIELDS_PER_BATCH && end > start {
                break;
            }
            union = widened;
            end += 1;
            if fields > MAX_FIELDS_PER_BATCH {
                break;
            }
        }
        out.push((start..end, union));
        start = end;
    }
    out
}

/// A properties column (struct, or all-null text when nobody has any) and its JSON text, for
/// rows whose union of keys fits one batch: the persons and groups tables.
pub fn props_columns(
    objects: &[&Map<String, Value>],
) -> Result<Vec<(std::ops::Range<usize>, ArrayRef, ArrayRef)>, StoreError> {
    chunks_by_fields(objects)
        .into_iter()
        .map(|(range, union)| {
            let rows: Vec<Option<&Map<String, Value>>> = objects[range.clone()]
                .iter()
                .map(|m| (!m.is_empty()).then_some(*m))
                .collect();
            let props: ArrayRef = if union.is_empty() {
                Arc::new(StringArray::from(vec![None::<&str>; rows.len()]))
            } else {
                build_struct(&union, &rows)?
            };
            let json: ArrayRef = Arc::new(StringArray::from(
                objects[range.clone()]
                    .iter()
                    .map(|m| serde_json::to_string(m).ok())
                    .collect::<Vec<_>>(),
            ));
            Ok((range, props, json))
        })
        .collect()
}

fn one_batch(
    org_id: i64,
    events: &[&Event],
    union: &BTreeMap<String, Kind>,
    received_micros: i64,
) -> Result<RecordBatch, StoreError> {
    let n = events.len();
    let objects: Vec<Option<&Map<String, Value>>> = events
        .iter()
        .map(|e| (!e.props.is_empty()).then_some(&e.props))
        .collect();
    let props: ArrayRef = if union.is_empty() {
        Arc::new(StringArray::from(vec![None::<&str>; n]))
    } else {
        build_struct(union, &objects)?
    };
    let props_json: Vec<Option<String>> = objects
        .iter()
        .map(|m| m.and_then(|m| serde_json::to_string(m).ok()))
        .collect();
    let uuid_bytes: Vec<u8> = events.iter().flat_map(|e| e.uuid).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![org_id; n])),
        Arc::new(FixedSizeBinaryArray::new(
            16,
            Buffer::from_vec(uuid_bytes),
            None,
        )),
        Arc::new(StringArray::from_iter_values(
            events.iter().map(|e| e.name.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            events.iter().map(|e| e.distinct_id.as_str()),
        )),
        Arc::new(TimestampMicrosecondArray::from(
            events.iter().map(|e| e.ts_micros).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            events
                .iter()
                .map(|e| e.session_id.as_deref())
                .collect::<Vec<_>>(),
        )),
        props.clone(),
        Arc::new(StringArray::from(props_json)),
        Arc::new(StringArray::from(
            events.iter().map(|e| e.ip.as_deref()).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            events
                .iter()
                .map(|e| e.user_agent.as_deref())
                .collect::<Vec<_>>(),
        )),
        Arc::new(TimestampMicrosecondArray::from(vec![received_micros; n])),
    ];
    RecordBatch::try_new(schema(props.data_type()), columns).map_err(StoreError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(props: Value, ts: i64) -> Event {
        Event {
            uuid: [ts as u8; 16],
            name: "e".into(),
            distinct_id: "u".into(),
            ts_micros: ts,
            session_id: None,
            props: props.as_object().cloned().unwrap_or_default(),
            ip: None,
            user_agent: None,
        }
    }

    #[test]
    fn the_schema_is_the_union_and_disagreeing_types_become_text() {
        let events = vec![
            event(json!({"plan": "pro", "n": 1, "deep": {"a": true}}), 2),
            event(
                json!({"plan": 7, "n": 1.5, "deep": {"b": "x"}, "tags": [1, "a"]}),
                1,
            ),
            event(json!({}), 3),
        ];
        let batches = record_batches(9, &events, 0).unwrap();
        assert_eq!(batches.len(), 1);
        let b = &batches[0];
        assert_eq!(b.num_rows(), 3);
        let DataType::Struct(fields) = b.column(6).data_type() else {
            panic!("props is a struct");
        };
        let kinds: Vec<(String, DataType)> = fields
            .iter()
            .map(|f| (f.name().clone(), f.data_type().clone()))
            .collect();
        assert_eq!(kinds[0].0, "deep");
        assert!(matches!(kinds[0].1, DataType::Struct(_)));
        assert_eq!(kinds[1], ("n".into(), DataType::Float64));
        assert_eq!(kinds[2], ("plan".into(), DataType::Utf8));
        assert_eq!(kinds[3], ("tags".into(), DataType::Utf8));
        // Sorted by time: the event at ts 1 comes first; the empty one is a null struct.
        let ts = b
            .column(4)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(ts.values().to_vec(), vec![1, 2, 3]);
        assert!(b.column(6).is_null(2));
        let plan = b
            .column(6)
            .as_any()
            .downcast_ref::<StructArray>()
            .unwrap()
            .column(2)
            .clone();
        let plan = plan.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(plan.value(0), "7");
        assert_eq!(plan.value(1), "pro");
    }

    #[test]
    fn a_batch_with_too_many_distinct_keys_is_split() {
        let events: Vec<Event> = (0..5)
            .map(|i| {
                let map: Map<String, Value> =
                    (0..900).map(|k| (format!("k{i}_{k}"), json!(k))).collect();
                event(Value::Object(map), i)
            })
            .collect();
        let batches = record_batches(1, &events, 0).unwrap();
        // 900 fields each, at most 2,000 per batch: 2 + 2 + 1.
        let rows: Vec<usize> = batches.iter().map(RecordBatch::num_rows).collect();
        assert_eq!(rows, vec![2, 2, 1]);
    }

    #[test]
    fn no_properties_at_all_is_a_text_column_of_nulls() {
        let batches = record_batches(1, &[event(json!({}), 1)], 0).unwrap();
        assert_eq!(batches[0].column(6).data_type(), &DataType::Utf8);
        assert!(batches[0].column(6).is_null(0));
    }
}
