//! Arrow record batches for the appenders: events in the staging table's column order, and
//! the properties columns of the persons and groups tables.
//!
//! An event's properties go as their JSON text; DuckDB parses it into the VARIANT (see the
//! store's module). A person's or group's properties go as one struct column (cast by DuckDB
//! to `VARIANT`), beside their JSON text. A struct needs one type per key, so its schema is the
//! union of the rows' keys: a key that is a number in one row and text in another is kept as
//! text (numbers as their JSON), arrays as their JSON text, nested objects as nested structs.
//! Row-by-row appends of nested values are 20× slower than Arrow.

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

/// The staging table's schema: the `events` columns, with the properties as JSON text.
fn schema() -> Arc<Schema> {
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
        Field::new("props", DataType::Utf8, true),
        Field::new("ip", DataType::Utf8, true),
        Field::new("user_agent", DataType::Utf8, true),
        Field::new("received_at", ts, false),
    ]))
}

/// Positions in the record batch of the columns the dedup check reads.
pub const KEY_COLUMNS: [usize; 3] = [0, 1, 4];

/// The events as one record batch for the staging table, in time order.
pub fn record_batch(
    org_id: i64,
    events: &[Event],
    received_micros: i64,
) -> Result<RecordBatch, StoreError> {
    let mut order: Vec<&Event> = events.iter().collect();
    order.sort_by_key(|e| e.ts_micros);
    let n = order.len();
    // No properties is NULL (read back as `{}`), which stores nothing.
    let props: Vec<Option<String>> = order
        .iter()
        .map(|e| {
            if e.props.is_empty() {
                Ok(None)
            } else {
                serde_json::to_string(&e.props)
                    .map(Some)
                    .map_err(StoreError::internal)
            }
        })
        .collect::<Result<_, _>>()?;
    let uuid_bytes: Vec<u8> = order.iter().flat_map(|e| e.uuid).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from(vec![org_id; n])),
        Arc::new(FixedSizeBinaryArray::new(
            16,
            Buffer::from_vec(uuid_bytes),
            None,
        )),
        Arc::new(StringArray::from_iter_values(
            order.iter().map(|e| e.name.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            order.iter().map(|e| e.distinct_id.as_str()),
        )),
        Arc::new(TimestampMicrosecondArray::from(
            order.iter().map(|e| e.ts_micros).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            order
                .iter()
                .map(|e| e.session_id.as_deref())
                .collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(props)),
        Arc::new(StringArray::from(
            order.iter().map(|e| e.ip.as_deref()).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            order
                .iter()
                .map(|e| e.user_agent.as_deref())
                .collect::<Vec<_>>(),
        )),
        Arc::new(TimestampMicrosecondArray::from(vec![received_micros; n])),
    ];
    RecordBatch::try_new(schema(), columns).map_err(StoreError::internal)
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
/// the persons and groups tables: one per range of rows whose union of keys stays within
/// [`MAX_FIELDS_PER_BATCH`].
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
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

    fn person_props(values: &[Value]) -> Vec<Map<String, Value>> {
        values
            .iter()
            .map(|v| v.as_object().cloned().unwrap())
            .collect()
    }

    #[test]
    fn the_schema_is_the_union_and_disagreeing_types_become_text() {
        let maps = person_props(&[
            json!({"plan": "pro", "n": 1, "deep": {"a": true}}),
            json!({"plan": 7, "n": 1.5, "deep": {"b": "x"}, "tags": [1, "a"]}),
            json!({}),
        ]);
        let refs: Vec<&Map<String, Value>> = maps.iter().collect();
        let columns = props_columns(&refs).unwrap();
        assert_eq!(columns.len(), 1);
        let (range, props, json) = &columns[0];
        assert_eq!(range.clone(), 0..3);
        let DataType::Struct(fields) = props.data_type() else {
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
        // The one with no properties is a null struct.
        assert!(props.is_null(2));
        let plan = props
            .as_any()
            .downcast_ref::<StructArray>()
            .unwrap()
            .column(2)
            .clone();
        let plan = plan.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(plan.value(0), "pro");
        assert_eq!(plan.value(1), "7");
        let json = json.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(json.value(2), "{}");
    }

    #[test]
    fn a_batch_with_too_many_distinct_keys_is_split() {
        let maps: Vec<Map<String, Value>> = (0..5)
            .map(|i| (0..900).map(|k| (format!("k{i}_{k}"), json!(k))).collect())
            .collect();
        let refs: Vec<&Map<String, Value>> = maps.iter().collect();
        let ranges: Vec<std::ops::Range<usize>> = props_columns(&refs)
            .unwrap()
            .into_iter()
            .map(|(r, _, _)| r)
            .collect();
        // 900 fields each, at most 2,000 per batch: 2 + 2 + 1.
        assert_eq!(ranges, vec![0..2, 2..4, 4..5]);
    }

    #[test]
    fn events_go_in_time_order_with_their_properties_as_text() {
        let events = vec![
            event(json!({"plan": "pro"}), 2),
            event(json!({"tags": [1, "a"], "n": 1.5}), 1),
            event(json!({}), 3),
        ];
        let b = record_batch(9, &events, 0).unwrap();
        assert_eq!(b.num_rows(), 3);
        let ts = b
            .column(4)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(ts.values().to_vec(), vec![1, 2, 3]);
        let props = b.column(6).as_any().downcast_ref::<StringArray>().unwrap();
        // serde_json keeps keys sorted.
        assert_eq!(props.value(0), r#"{"n":1.5,"tags":[1,"a"]}"#);
        assert_eq!(props.value(1), r#"{"plan":"pro"}"#);
        assert!(b.column(6).is_null(2), "no properties stores nothing");
    }

    /// A random property value: every JSON kind, nested objects (some empty), arrays, nulls,
    /// extreme integers, floats, text with quotes and non-ASCII letters.
    fn random_value(rng: &mut StdRng, depth: usize) -> Value {
        match rng.gen_range(0..if depth < 2 { 9 } else { 7 }) {
            0 => Value::Null,
            1 => json!(rng.gen_bool(0.5)),
            2 => json!([i64::MIN, -1, 0, 7, i64::MAX][rng.gen_range(0..5)]),
            3 => json!(rng.gen_range(-1e6..1e6_f64)),
            4 => json!(["pro", "a \"quoted\" é", "", "日本"][rng.gen_range(0..4)]),
            5 => json!(u64::MAX),
            6 => json!([1, "a", null]),
            _ => Value::Object(random_object(rng, depth + 1)),
        }
    }

    fn random_object(rng: &mut StdRng, depth: usize) -> Map<String, Value> {
        (0..rng.gen_range(0..5))
            .map(|_| {
                let key = ["plan", "n", "deep", "tags", "x"][rng.gen_range(0..5)].to_string();
                (key, random_value(rng, depth))
            })
            .collect()
    }

    /// Property: whatever the properties (every JSON kind, keys whose type differs between
    /// events of one batch, arrays, explicit nulls, empty objects, i64 and u64 extremes), they
    /// read back from the table exactly as sent, before and after a checkpoint has shredded
    /// the VARIANT; an event without any reads back as `{}`.
    #[test]
    fn properties_read_back_as_sent() {
        let dir = tempfile::tempdir().unwrap();
        let conn = duckdb::Connection::open(dir.path().join("t.duckdb")).unwrap();
        conn.execute_batch(super::super::MIGRATION).unwrap();
        conn.execute_batch(super::super::PROPS_ONCE_MIGRATION)
            .unwrap();
        conn.execute_batch(super::super::STAGING).unwrap();
        let mut rng = StdRng::seed_from_u64(14);
        let mut sent = Vec::new();
        for batch in 0..30 {
            let events: Vec<Event> = (0..40)
                .map(|i| {
                    let ts = batch * 100 + i;
                    let mut e = event(Value::Object(random_object(&mut rng, 1)), ts);
                    e.uuid = [0; 16];
                    e.uuid[..8].copy_from_slice(&ts.to_be_bytes());
                    e
                })
                .collect();
            sent.extend(events.iter().map(|e| e.props.clone()));
            let mut app = conn
                .appender_to_catalog_and_db("event_rows", "temp", "main")
                .unwrap();
            app.append_record_batch(record_batch(1, &events, 0).unwrap())
                .unwrap();
            app.flush().unwrap();
            drop(app);
            conn.execute_batch(super::super::MOVE_STAGED).unwrap();
        }
        for checkpointed in [false, true] {
            if checkpointed {
                conn.execute_batch("CHECKPOINT;").unwrap();
            }
            let mut stmt = conn
                .prepare("SELECT props::JSON::VARCHAR FROM events ORDER BY ts")
                .unwrap();
            let read: Vec<Map<String, Value>> = stmt
                .query_map([], |r| r.get::<_, Option<String>>(0))
                .unwrap()
                .map(|text| match text.unwrap() {
                    Some(text) => serde_json::from_str(&text).unwrap(),
                    None => Map::new(),
                })
                .collect();
            assert_eq!(read.len(), sent.len());
            for (i, (got, want)) in read.iter().zip(&sent).enumerate() {
                assert_eq!(got, want, "event {i}, checkpointed: {checkpointed}");
            }
        }
        let staged: i64 = conn
            .query_row("SELECT count(*) FROM event_rows", [], |r| r.get(0))
            .unwrap();
        assert_eq!(staged, 0, "the staging table is emptied by each move");
    }
}
