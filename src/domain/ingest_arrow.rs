//! Metric points as an Arrow IPC stream (`Content-Type: application/vnd.apache.arrow.stream`),
//! the columnar second content type of `POST /api/v1/metrics`, for heavy writers: pyarrow,
//! polars, DuckDB and every Arrow library write it, and it arrives as the columns the store
//! appends, so no point is parsed or allocated one by one. Pure: bytes in, validated columns
//! out, with the same rules (and the same per-point errors) as the JSON body.
//!
//! The stream's schema:
//! - `metric`: text (Utf8, LargeUtf8, Utf8View or a dictionary of Utf8), a key of the catalog;
//! - `timestamp`: an Arrow timestamp of any unit and time zone, or Unix seconds as Int64 or
//!   Float64 (as the JSON body's numbers);
//! - `value`: any integer or float type, finite;
//! - every other column: a dimension named by the column, as text; a null leaves the
//!   dimension off that point. At most [`MAX_DIMENSIONS`] of them.
//!
//! No column may hold nulls but the dimensions. Points repeated in the stream (same metric,
//! time and dimensions) keep the last value, as in JSON.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, StringArray, StringBuilder, TimestampMicrosecondArray,
    UInt32Array,
};
use arrow::compute::{cast, take};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::ipc::reader::StreamReader;
use arrow::record_batch::RecordBatch;

use super::ingest::{
    BatchError, ItemError, Limits, MAX_DIMENSIONS, check_dimension, check_time_bounds,
    check_unix_seconds, encode_dim_value_into, validate_dimension_key,
};

/// The media type of an Arrow IPC stream (IANA-registered).
pub const CONTENT_TYPE: &str = "application/vnd.apache.arrow.stream";

/// Validated points, in the store's order (time, metric, dimensions: the order a group is
/// stored in), one per key: `metric` (Utf8), `ts` (timestamp µs), `value` (Float64) and
/// `dims` (Utf8, in [`encode_dims`](super::ingest::encode_dims)'s form).
#[derive(Debug, Clone)]
pub struct ColumnarPoints {
    pub batch: RecordBatch,
    /// The metrics the points are of, sorted, once each.
    pub metrics: Vec<String>,
    /// Each series (metric and dimensions) of the points once, with its time span: the store
    /// checks a series, not each point, against what it holds.
    pub series: Vec<SeriesSpan>,
}

/// One series of a [`ColumnarPoints`]: a row of it (to read its metric and dimensions), and
/// its first and last time (µs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesSpan {
    pub row: usize,
    pub first_ts: i64,
    pub last_ts: i64,
}

impl ColumnarPoints {
    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    pub fn is_empty(&self) -> bool {
        self.batch.num_rows() == 0
    }

    /// The store's schema of [`batch`](Self::batch).
    pub fn schema() -> Arc<Schema> {
        Arc::new(Schema::new(vec![
            Field::new("metric", DataType::Utf8, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Microsecond, None),
                false,
            ),
            Field::new("value", DataType::Float64, false),
            Field::new("dims", DataType::Utf8, false),
        ]))
    }
}

/// A schema problem: the column it is about, and what is wrong.
fn column_error(column: &str, reason: impl Into<String>) -> BatchError {
    BatchError::Column {
        column: column.to_string(),
        reason: reason.into(),
    }
}

/// A text column of any of Arrow's string layouts, read in place (a dictionary is not
/// expanded: its values are looked up per row).
enum Text<'a> {
    Utf8(&'a arrow::array::StringArray),
    Large(&'a arrow::array::LargeStringArray),
    View(&'a arrow::array::StringViewArray),
    Dict {
        dict: &'a dyn arrow::array::AnyDictionaryArray,
        keys: Vec<usize>,
        values: Box<Text<'a>>,
    },
}

impl<'a> Text<'a> {
    fn of(array: &'a dyn Array, column: &str) -> Result<Text<'a>, BatchError> {
        match array.data_type() {
            DataType::Utf8 => Ok(Text::Utf8(array.as_string::<i32>())),
            DataType::LargeUtf8 => Ok(Text::Large(array.as_string::<i64>())),
            DataType::Utf8View => Ok(Text::View(array.as_string_view())),
            DataType::Dictionary(_, value_type)
                if matches!(
                    value_type.as_ref(),
                    DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
                ) =>
            {
                let dict = array
                    .as_any_dictionary_opt()
                    .ok_or_else(|| column_error(column, "is not a readable dictionary"))?;
                let values = Box::new(Text::of(dict.values().as_ref(), column)?);
                let keys = if dict.values().is_empty() {
                    Vec::new()
                } else {
                    dict.normalized_keys()
                };
                Ok(Text::Dict { dict, keys, values })
            }
            other => Err(column_error(
                column,
                format!(
                    "must be text (Utf8, LargeUtf8, Utf8View or a dictionary of them), not {other}"
                ),
            )),
        }
    }

    fn get(&self, i: usize) -> Option<&'a str> {
        match self {
            Text::Utf8(a) => (!a.is_null(i)).then(|| a.value(i)),
            Text::Large(a) => (!a.is_null(i)).then(|| a.value(i)),
            Text::View(a) => (!a.is_null(i)).then(|| a.value(i)),
            Text::Dict { dict, keys, values } => {
                if dict.is_null(i) || keys.is_empty() {
                    None
                } else {
                    values.get(keys[i])
                }
            }
        }
    }
}

/// How a timestamp column is read.
enum Times {
    /// An Arrow timestamp, cast to µs (a value out of µs range is null after the cast).
    Micros(TimestampMicrosecondArray),
    /// Unix seconds, as the JSON body's numbers.
    Seconds(Float64Array),
}

fn times(array: &ArrayRef) -> Result<Times, BatchError> {
    match array.data_type() {
        DataType::Timestamp(_, _) => {
            let cast = cast(array, &DataType::Timestamp(TimeUnit::Microsecond, None))
                .map_err(|e| column_error("timestamp", format!("cannot be read: {e}")))?;
            Ok(Times::Micros(cast.as_primitive().clone()))
        }
        DataType::Int64 | DataType::Float64 => {
            let cast = cast(array, &DataType::Float64)
                .map_err(|e| column_error("timestamp", format!("cannot be read: {e}")))?;
            Ok(Times::Seconds(cast.as_primitive().clone()))
        }
        other => Err(column_error(
            "timestamp",
            format!("must be an Arrow timestamp or Unix seconds (Int64, Float64), not {other}"),
        )),
    }
}

fn values(array: &ArrayRef) -> Result<Float64Array, BatchError> {
    if !array.data_type().is_numeric() {
        return Err(column_error(
            "value",
            format!("must be a number column, not {}", array.data_type()),
        ));
    }
    let cast = cast(array, &DataType::Float64)
        .map_err(|e| column_error("value", format!("cannot be read: {e}")))?;
    Ok(cast.as_primitive().clone())
}

/// Reads and validates an Arrow IPC stream of points. `is_known_metric` answers whether a
/// key is in the org's catalog. `max_text_bytes` bounds the metric and dimension text the
/// points may hold once written out per point (a dictionary column can name one long value
/// for every row; the JSON body's size limit bounds the same text there).
pub fn parse_arrow_stream(
    body: &[u8],
    is_known_metric: impl Fn(&str) -> bool,
    limits: &Limits,
    max_text_bytes: usize,
) -> Result<ColumnarPoints, BatchError> {
    let reader = StreamReader::try_new(std::io::Cursor::new(body), None)
        .map_err(|e| BatchError::Shape(format!("the body is not an Arrow IPC stream: {e}")))?;
    let schema = reader.schema();
    let mut batches = Vec::new();
    let mut rows = 0usize;
    for batch in reader {
        let batch = batch
            .map_err(|e| BatchError::Shape(format!("the Arrow IPC stream is malformed: {e}")))?;
        rows += batch.num_rows();
        if rows > limits.max_points {
            return Err(BatchError::TooMany {
                count: rows,
                max: limits.max_points,
            });
        }
        batches.push(batch);
    }
    if rows == 0 {
        return Err(BatchError::Empty);
    }
    let batch = arrow::compute::concat_batches(&schema, &batches)
        .map_err(|e| BatchError::Shape(format!("the Arrow IPC stream is malformed: {e}")))?;
    drop(batches);
    let column = |name: &str| -> Result<&ArrayRef, BatchError> {
        batch.column_by_name(name).ok_or_else(|| {
            column_error(
                name,
                "is missing: the stream needs metric, timestamp and value columns",
            )
        })
    };
    let metric = Text::of(column("metric")?.as_ref(), "metric")?;
    let ts = times(column("timestamp")?)?;
    let value = values(column("value")?)?;
    // Dimension columns in key order: each point's dimensions are then written out sorted.
    let mut dims: Vec<(&str, Text)> = Vec::new();
    for (field, array) in schema.fields().iter().zip(batch.columns()) {
        let name = field.name().as_str();
        if matches!(name, "metric" | "timestamp" | "value") {
            continue;
        }
        validate_dimension_key(name)
            .map_err(|r| column_error(name, format!("is taken as a dimension, whose key {r}")))?;
        dims.push((name, Text::of(array.as_ref(), name)?));
    }
    if dims.len() > MAX_DIMENSIONS {
        return Err(column_error(
            dims[MAX_DIMENSIONS].0,
            format!("at most {MAX_DIMENSIONS} dimension columns are accepted"),
        ));
    }
    dims.sort_by(|a, b| a.0.cmp(b.0));

    let mut errors: Vec<ItemError> = Vec::new();
    let mut fail = |index: usize, field: &str, reason: String| {
        // Every bad point is named, but a stream of millions of bad rows is not echoed whole.
        if errors.len() < 1_000 {
            errors.push(ItemError {
                index,
                field: field.to_string(),
                reason,
            });
        }
    };
    let mut metric_ok: std::collections::HashMap<&str, bool> = Default::default();
    let mut ts_micros: Vec<i64> = Vec::with_capacity(rows);
    let mut encoded = StringBuilder::with_capacity(rows, rows * 16);
    let mut line = String::new();
    let mut text_bytes = 0usize;
    let mut bad_rows = 0usize;
    for i in 0..rows {
        let mut row_ok = true;
        match metric.get(i) {
            None => {
                fail(i, "metric", "is missing (null)".into());
                row_ok = false;
            }
            Some(m) => {
                text_bytes += m.len();
                if !*metric_ok.entry(m).or_insert_with(|| is_known_metric(m)) {
                    fail(
                        i,
                        "metric",
                        format!("unknown metric `{m}`; add it as a custom metric first"),
                    );
                    row_ok = false;
                }
            }
        }
        let t = match &ts {
            Times::Micros(a) if a.is_null(i) => {
                Err(("timestamp", "is missing (null) or out of range".to_string()))
            }
            Times::Micros(a) => check_time_bounds(a.value(i), limits),
            Times::Seconds(a) if a.is_null(i) => {
                Err(("timestamp", "is missing (null)".to_string()))
            }
            Times::Seconds(a) => {
                check_unix_seconds(a.value(i)).and_then(|t| check_time_bounds(t, limits))
            }
        };
        match t {
            Ok(t) => ts_micros.push(t),
            Err((field, reason)) => {
                ts_micros.push(0);
                fail(i, field, reason);
                row_ok = false;
            }
        }
        if value.is_null(i) {
            fail(i, "value", "is missing (null)".into());
            row_ok = false;
        } else if !value.value(i).is_finite() {
            fail(i, "value", "must be a finite number".into());
            row_ok = false;
        }
        line.clear();
        for (key, column) in &dims {
            let Some(v) = column.get(i) else { continue };
            if let Err((field, reason)) = check_dimension(key, v) {
                fail(i, field, reason);
                row_ok = false;
                break;
            }
            if !line.is_empty() {
                line.push('&');
            }
            line.push_str(key);
            line.push('=');
            encode_dim_value_into(v, &mut line);
        }
        text_bytes += line.len();
        if text_bytes > max_text_bytes {
            return Err(BatchError::Shape(format!(
                "the points' metric and dimension text comes to more than {max_text_bytes} bytes \
                 (ingest.max_body_bytes); split the stream into smaller batches"
            )));
        }
        encoded.append_value(&line);
        if !row_ok {
            bad_rows += 1;
        }
    }
    if bad_rows > 0 {
        return Err(BatchError::Items(errors));
    }
    let metric_col: ArrayRef = Arc::new(StringArray::from_iter_values(
        (0..rows).map(|i| metric.get(i).unwrap_or_default()),
    ));
    let ts_col = TimestampMicrosecondArray::from(ts_micros);
    let dims_col = encoded.finish();
    let metric_text = metric_col.as_string::<i32>();

    // Store order; of points repeated in the stream the last sent wins (a stable sort keeps
    // them in arrival order, so the last of each run of equal keys is kept).
    let mut order: Vec<u32> = (0..rows as u32).collect();
    let key = |i: u32| {
        let i = i as usize;
        (ts_col.value(i), metric_text.value(i), dims_col.value(i))
    };
    order.sort_by(|a, b| key(*a).cmp(&key(*b)));
    let mut kept: Vec<u32> = Vec::with_capacity(rows);
    for (n, i) in order.iter().enumerate() {
        let last_of_key = order.get(n + 1).is_none_or(|next| key(*next) != key(*i));
        if last_of_key {
            kept.push(*i);
        }
    }
    let indices = UInt32Array::from(kept);
    let pick =
        |a: &dyn Array| take(a, &indices, None).map_err(|e| BatchError::Shape(e.to_string()));
    let value_col: ArrayRef = Arc::new(value);
    let batch = RecordBatch::try_new(
        ColumnarPoints::schema(),
        vec![
            pick(metric_col.as_ref())?,
            pick(&ts_col)?,
            pick(value_col.as_ref())?,
            pick(&dims_col)?,
        ],
    )
    .map_err(|e| BatchError::Shape(e.to_string()))?;
    let mut metrics: Vec<String> = metric_ok.into_keys().map(str::to_string).collect();
    metrics.sort();
    let series = series_spans(&batch);
    Ok(ColumnarPoints {
        batch,
        metrics,
        series,
    })
}

/// The series of a batch in the store's schema, in order of first appearance.
fn series_spans(batch: &RecordBatch) -> Vec<SeriesSpan> {
    let (metric, ts, dims) = (
        batch.column(0).as_string::<i32>(),
        batch
            .column(1)
            .as_primitive::<arrow::datatypes::TimestampMicrosecondType>(),
        batch.column(3).as_string::<i32>(),
    );
    let mut index: std::collections::HashMap<(&str, &str), usize> = Default::default();
    let mut spans: Vec<SeriesSpan> = Vec::new();
    for row in 0..batch.num_rows() {
        let t = ts.value(row);
        match index.entry((metric.value(row), dims.value(row))) {
            std::collections::hash_map::Entry::Occupied(e) => {
                let span = &mut spans[*e.get()];
                span.first_ts = span.first_ts.min(t);
                span.last_ts = span.last_ts.max(t);
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(spans.len());
                spans.push(SeriesSpan {
                    row,
                    first_ts: t,
                    last_ts: t,
                });
            }
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{DictionaryArray, Int64Array, TimestampMillisecondArray};
    use arrow::datatypes::Int32Type;
    use arrow::ipc::writer::StreamWriter;

    const NOW: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z

    fn limits(max_points: usize) -> Limits {
        Limits {
            now_micros: NOW,
            max_future_micros: 86_400_000_000,
            max_points,
        }
    }

    fn known(k: &str) -> bool {
        matches!(k, "revenue" | "signups")
    }

    fn stream(batches: &[RecordBatch]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = StreamWriter::try_new(&mut out, &batches[0].schema()).unwrap();
        for b in batches {
            w.write(b).unwrap();
        }
        w.finish().unwrap();
        drop(w);
        out
    }

    /// metric (Utf8), timestamp (ms, UTC), value (Int64), region (a dictionary, with a null).
    fn batch(
        metrics: &[&str],
        ms: &[i64],
        values: &[i64],
        regions: &[Option<&str>],
    ) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("metric", DataType::Utf8, false),
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                false,
            ),
            Field::new("value", DataType::Int64, false),
            Field::new(
                "region",
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
                true,
            ),
        ]));
        let regions: DictionaryArray<Int32Type> = regions.iter().copied().collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(metrics.to_vec())),
                Arc::new(TimestampMillisecondArray::from(ms.to_vec()).with_timezone("UTC")),
                Arc::new(Int64Array::from(values.to_vec())),
                Arc::new(regions),
            ],
        )
        .unwrap()
    }

    fn rows(p: &ColumnarPoints) -> Vec<(String, i64, f64, String)> {
        let b = &p.batch;
        let (m, t, v, d) = (
            b.column(0).as_string::<i32>(),
            b.column(1)
                .as_primitive::<arrow::datatypes::TimestampMicrosecondType>(),
            b.column(2).as_primitive::<arrow::datatypes::Float64Type>(),
            b.column(3).as_string::<i32>(),
        );
        (0..b.num_rows())
            .map(|i| {
                (
                    m.value(i).to_string(),
                    t.value(i),
                    v.value(i),
                    d.value(i).to_string(),
                )
            })
            .collect()
    }

    /// Two batches, in arrival order:
    /// 1. revenue t=2000 ms eu 5; signups t=1000 ms (no region) 3; revenue t=1000 ms us 7
    /// 2. revenue t=2000 ms eu 9 (a re-send of the first point); revenue t=1000 ms eu 1
    ///
    /// (t in ms after 2025-12-31T00:00Z.) Store order is (time, metric, dimensions), and the
    /// re-sent point keeps its last value, 9: at 1000: revenue eu 1, revenue us 7, signups 3;
    /// at 2000: revenue eu 9. Four points of two metrics.
    #[test]
    fn a_stream_arrives_validated_deduplicated_and_in_store_order() {
        let base = (NOW - 86_400_000_000) / 1000;
        let body = stream(&[
            batch(
                &["revenue", "signups", "revenue"],
                &[base + 2000, base + 1000, base + 1000],
                &[5, 3, 7],
                &[Some("eu"), None, Some("us")],
            ),
            batch(
                &["revenue", "revenue"],
                &[base + 2000, base + 1000],
                &[9, 1],
                &[Some("eu"), Some("eu")],
            ),
        ]);
        let points = parse_arrow_stream(&body, known, &limits(10), 1 << 20).unwrap();
        let t = |ms: i64| (base + ms) * 1000;
        assert_eq!(
            rows(&points),
            vec![
                ("revenue".into(), t(1000), 1.0, "region=eu".into()),
                ("revenue".into(), t(1000), 7.0, "region=us".into()),
                ("signups".into(), t(1000), 3.0, String::new()),
                ("revenue".into(), t(2000), 9.0, "region=eu".into()),
            ]
        );
        assert_eq!(points.metrics, vec!["revenue", "signups"]);
        // Series by first appearance: revenue eu (rows 0 and 3), revenue us, signups.
        let spans: Vec<(usize, i64, i64)> = points
            .series
            .iter()
            .map(|s| (s.row, s.first_ts, s.last_ts))
            .collect();
        assert_eq!(
            spans,
            vec![
                (0, t(1000), t(2000)),
                (1, t(1000), t(1000)),
                (2, t(1000), t(1000))
            ]
        );
    }

    /// Row 0 is fine; row 1 names an unknown metric; row 2 lies two days in the future and
    /// its region is empty. Every bad row is named by index and field, nothing is returned.
    #[test]
    fn every_bad_row_is_named_by_index_and_field() {
        let now_ms = NOW / 1000;
        let body = stream(&[batch(
            &["revenue", "visits", "revenue"],
            &[now_ms - 1000, now_ms - 1000, now_ms + 2 * 86_400_000],
            &[1, 2, 3],
            &[Some("eu"), Some("eu"), Some("")],
        )]);
        let Err(BatchError::Items(items)) = parse_arrow_stream(&body, known, &limits(10), 1 << 20)
        else {
            panic!("expected item errors");
        };
        let named: Vec<(usize, &str)> = items.iter().map(|e| (e.index, e.field.as_str())).collect();
        assert_eq!(
            named,
            vec![(1, "metric"), (2, "timestamp"), (2, "dimensions")]
        );
    }

    /// A stream without `value`, one whose `timestamp` is text, one with a dimension column
    /// `Region` (keys are lowercase), more rows than allowed, no rows, and bytes that are not
    /// an Arrow stream: each refused with what is wrong.
    #[test]
    fn schema_problems_name_the_column() {
        let now_ms = NOW / 1000;
        let ok = batch(&["revenue"], &[now_ms], &[1], &[Some("eu")]);
        let without = |name: &str| {
            let keep: Vec<usize> = (0..ok.num_columns())
                .filter(|i| ok.schema().field(*i).name() != name)
                .collect();
            ok.project(&keep).unwrap()
        };
        let column_of = |body: Vec<u8>| match parse_arrow_stream(&body, known, &limits(2), 1 << 20)
        {
            Err(BatchError::Column { column, .. }) => column,
            other => panic!("expected a column error, got {other:?}"),
        };
        assert_eq!(column_of(stream(&[without("value")])), "value");
        let text_times = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new("metric", DataType::Utf8, false),
                Field::new("timestamp", DataType::Utf8, false),
                Field::new("value", DataType::Float64, false),
            ])),
            vec![
                Arc::new(StringArray::from(vec!["revenue"])),
                Arc::new(StringArray::from(vec!["2026-01-01T00:00:00Z"])),
                Arc::new(Float64Array::from(vec![1.0])),
            ],
        )
        .unwrap();
        assert_eq!(column_of(stream(&[text_times])), "timestamp");
        let renamed = RecordBatch::try_new(
            Arc::new(Schema::new(
                ok.schema()
                    .fields()
                    .iter()
                    .map(|f| {
                        let name = if f.name() == "region" {
                            "Region"
                        } else {
                            f.name()
                        };
                        f.as_ref().clone().with_name(name)
                    })
                    .collect::<Vec<_>>(),
            )),
            ok.columns().to_vec(),
        )
        .unwrap();
        assert_eq!(column_of(stream(&[renamed])), "Region");
        assert!(matches!(
            parse_arrow_stream(
                &stream(&[ok.clone(), ok.clone(), ok.clone()]),
                known,
                &limits(2),
                1 << 20
            ),
            Err(BatchError::TooMany { count: 3, max: 2 })
        ));
        assert!(matches!(
            parse_arrow_stream(&stream(&[ok.slice(0, 0)]), known, &limits(2), 1 << 20),
            Err(BatchError::Empty)
        ));
        assert!(matches!(
            parse_arrow_stream(b"{\"points\": []}", known, &limits(2), 1 << 20),
            Err(BatchError::Shape(_))
        ));
    }

    /// One dictionary value of 150 characters named by 100 rows comes to 100 × (7 + 150)
    /// bytes of text written out: past a 10,000-byte budget, so refused before it is built.
    #[test]
    fn a_dictionary_cannot_expand_past_the_budget() {
        let now_ms = NOW / 1000;
        let long = "x".repeat(150);
        let n = 100;
        let body = stream(&[batch(
            &vec!["revenue"; n],
            &(0..n as i64).map(|i| now_ms - 1000 - i).collect::<Vec<_>>(),
            &vec![1; n],
            &vec![Some(long.as_str()); n],
        )]);
        assert!(matches!(
            parse_arrow_stream(&body, known, &limits(1000), 10_000),
            Err(BatchError::Shape(m)) if m.contains("split the stream")
        ));
        assert_eq!(
            parse_arrow_stream(&body, known, &limits(1000), 1 << 20)
                .unwrap()
                .len(),
            n
        );
    }
}
