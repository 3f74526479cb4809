//! The one writer thread: group commit, and the append or replace path per group.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::mpsc;

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use duckdb::Connection;

use super::compaction;
use super::{Ack, StoreError, WriterMsg};
use crate::domain::ingest::{Point, encode_dims};
use crate::domain::ingest_arrow::ColumnarPoints;
use crate::store::compaction::{CompactionLog, Period};

/// Largest group of points committed in one transaction.
const MAX_GROUP_POINTS: usize = 250_000;

pub(super) fn writer_loop(
    conn: Connection,
    rx: mpsc::Receiver<WriterMsg>,
    generations: &Mutex<HashMap<i64, u64>>,
) {
    let mut ends = match SeriesEnds::load(&conn) {
        Ok(ends) => ends,
        Err(e) => {
            // Without the index every group takes the replace path: slower, never wrong.
            tracing::error!(error = %e, "cannot read the series' ends; appends go the replace path");
            SeriesEnds::unknown()
        }
    };
    let mut months = match CompactionLog::load(&conn, Period::Month) {
        Ok(months) => months,
        Err(e) => {
            // Unknown compactions: nothing is marked dirty, so no month is compacted twice,
            // and none needs to be for reads to stay right.
            tracing::error!(error = %e, "cannot read the compaction log");
            CompactionLog::empty(Period::Month)
        }
    };
    let mut held: Option<WriterMsg> = None;
    let mut written_since_checkpoint = false;
    loop {
        let first = match held.take() {
            Some(m) => m,
            None => {
                match crate::store::next_or_checkpoint(&conn, &rx, &mut written_since_checkpoint) {
                    Some(m) => m,
                    None => break,
                }
            }
        };
        match first {
            WriterMsg::Compact { month, now, ack } => {
                let result = compaction::compact_month(
                    &conn,
                    &mut months,
                    month,
                    now,
                    compaction::CLUSTERED_RUNS_PER_ORG,
                );
                if let Err(e) = &result {
                    tracing::error!(error = %e, month, "compaction failed; the month is as it was");
                }
                let _ = ack.send(result);
            }
            WriterMsg::WriteColumns {
                org_id,
                points,
                ack,
            } => {
                // Columnar jobs go together: their rows are checked and appended as columns.
                let first = (org_id, points, ack);
                let jobs = gather(&rx, first, ColumnarPoints::len, as_columns, &mut held);
                commit_jobs(
                    jobs,
                    ColumnarPoints::len,
                    |group| write_column_group(&conn, group, &mut ends, &mut months),
                    generations,
                );
            }
            WriterMsg::Write {
                org_id,
                points,
                ack,
            } => {
                let jobs = gather(&rx, (org_id, points, ack), Vec::len, as_points, &mut held);
                write_jobs(&conn, jobs, &mut ends, &mut months, generations);
            }
        }
    }
    if let Err(e) = conn.execute_batch("CHECKPOINT;") {
        tracing::error!(error = %e, "checkpoint on shutdown failed; the WAL will be replayed at next start");
    }
}

/// A job of points and where its outcome goes.
type Job<P> = (i64, P, Ack);

/// `first` and the jobs of its kind queued behind it, up to [`MAX_GROUP_POINTS`]: one group
/// commit. A message of another kind ends the group and is held for the next turn.
fn gather<P>(
    rx: &mpsc::Receiver<WriterMsg>,
    first: Job<P>,
    len: impl Fn(&P) -> usize,
    same_kind: impl Fn(WriterMsg) -> Result<Job<P>, WriterMsg>,
    held: &mut Option<WriterMsg>,
) -> Vec<Job<P>> {
    let mut queued = len(&first.1);
    let mut jobs = vec![first];
    while queued < MAX_GROUP_POINTS {
        let Ok(msg) = rx.try_recv() else { break };
        match same_kind(msg) {
            Ok(job) => {
                queued += len(&job.1);
                jobs.push(job);
            }
            Err(other) => {
                *held = Some(other);
                break;
            }
        }
    }
    jobs
}

fn as_points(msg: WriterMsg) -> Result<Job<Vec<Point>>, WriterMsg> {
    match msg {
        WriterMsg::Write {
            org_id,
            points,
            ack,
        } => Ok((org_id, points, ack)),
        other => Err(other),
    }
}

fn as_columns(msg: WriterMsg) -> Result<Job<ColumnarPoints>, WriterMsg> {
    match msg {
        WriterMsg::WriteColumns {
            org_id,
            points,
            ack,
        } => Ok((org_id, points, ack)),
        other => Err(other),
    }
}

/// Commits a group of jobs together and acknowledges each; if the group fails, each job is
/// retried on its own so one bad job does not fail the others.
fn write_jobs(
    conn: &Connection,
    jobs: Vec<Job<Vec<Point>>>,
    ends: &mut SeriesEnds,
    months: &mut CompactionLog,
    generations: &Mutex<HashMap<i64, u64>>,
) {
    commit_jobs(
        jobs,
        Vec::len,
        |group| {
            let group: Vec<(i64, &[Point])> =
                group.iter().map(|(o, p)| (*o, p.as_slice())).collect();
            write_group(conn, &group, ends, months).map(|_| ())
        },
        generations,
    );
}

/// Writes a group of jobs of either kind with `write` (one transaction) and acknowledges each;
/// if the group fails, each job is retried on its own so one bad job does not fail the others.
fn commit_jobs<P>(
    jobs: Vec<Job<P>>,
    len: impl Fn(&P) -> usize,
    mut write: impl FnMut(&[(i64, &P)]) -> Result<(), StoreError>,
    generations: &Mutex<HashMap<i64, u64>>,
) {
    let all: Vec<(i64, &P)> = jobs.iter().map(|(o, p, _)| (*o, p)).collect();
    let outcome = write(&all);
    // Before any acknowledgement: a reader told "stored" must not be served an older memo.
    // Every org of the group moves on, committed or not (a failed write only costs a
    // recomputation).
    if let Ok(mut g) = generations.lock() {
        for (org_id, _, _) in &jobs {
            *g.entry(*org_id).or_default() += 1;
        }
    }
    match outcome {
        Ok(()) => {
            for (_, points, ack) in jobs {
                let _ = ack.send(Ok(len(&points)));
            }
        }
        Err(e) if jobs.len() == 1 => {
            tracing::error!(error = %e, "metric write failed");
            for (_, _, ack) in jobs {
                let _ = ack.send(Err(StoreError::Internal(e.to_string())));
            }
        }
        Err(_) => {
            for (org_id, points, ack) in jobs {
                let result = write(&[(org_id, &points)]).map(|()| len(&points));
                if let Err(e) = &result {
                    tracing::error!(error = %e, "metric write failed");
                }
                if let Ok(mut g) = generations.lock() {
                    *g.entry(org_id).or_default() += 1;
                }
                let _ = ack.send(result);
            }
        }
    }
}

/// Each stored series' latest timestamp: org → metric → encoded dimensions → µs. A group whose
/// every point lies past its series' end cannot replace a stored point, so it is appended as it
/// is; only a group that overlaps stored data takes the replace path. Only the writer thread
/// writes points, so the index never lags the table (an end too late would only send a group
/// down the slower, still correct, path).
struct SeriesEnds {
    ends: HashMap<i64, HashMap<String, HashMap<String, i64>>>,
    /// False when the ends could not be read: then nothing is known to be new and every group
    /// takes the replace path.
    complete: bool,
}

impl SeriesEnds {
    fn load(conn: &Connection) -> Result<SeriesEnds, StoreError> {
        let mut ends = SeriesEnds::unknown();
        ends.complete = true;
        let mut stmt = conn
            .prepare("SELECT org_id, metric, dims, epoch_us(max(ts)) FROM points GROUP BY ALL")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let (org_id, metric, dims, ts): (i64, String, String, i64) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            ends.ends
                .entry(org_id)
                .or_default()
                .entry(metric)
                .or_default()
                .insert(dims, ts);
        }
        Ok(ends)
    }

    fn unknown() -> SeriesEnds {
        SeriesEnds {
            ends: HashMap::new(),
            complete: false,
        }
    }

    /// Whether a point at `ts` would lie past everything stored of its series.
    fn is_past_end(&self, org_id: i64, metric: &str, dims: &str, ts: i64) -> bool {
        self.complete && self.end(org_id, metric, dims).is_none_or(|end| ts > end)
    }

    /// The series' latest stored timestamp, if any.
    fn end(&self, org_id: i64, metric: &str, dims: &str) -> Option<i64> {
        self.ends.get(&org_id)?.get(metric)?.get(dims).copied()
    }

    fn raise(&mut self, org_id: i64, metric: &str, dims: &str, ts: i64) {
        let by_metric = self.ends.entry(org_id).or_default();
        // A known series is raised in place: Strings are made only for one seen the first time.
        if let Some(end) = by_metric.get_mut(metric).and_then(|d| d.get_mut(dims)) {
            *end = (*end).max(ts);
            return;
        }
        by_metric
            .entry(metric.to_string())
            .or_default()
            .insert(dims.to_string(), ts);
    }
}

/// One point of a group as the writer stores it.
struct Row<'a> {
    org_id: i64,
    metric: &'a str,
    dims: String,
    ts: i64,
    value: f64,
}

impl Row<'_> {
    /// The order rows are stored in: org, then time, then series. A group of one org holds
    /// every series over a stretch of time, so this order turns `ts` into runs (RLE) and keeps
    /// `metric` and `dims` in small dictionaries; series-first order made `ts` a bit-packed
    /// column that restarts at every series and took twice the space on disk (34.8 vs 15.7 MB
    /// for 3.5 M bench points, DuckDB 1.2).
    fn storage_key(&self) -> (i64, i64, &str, &str) {
        (self.org_id, self.ts, self.metric, self.dims.as_str())
    }
}

/// Which way a group went in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WritePath {
    /// Past every series' end: appended straight to the table.
    Append,
    /// Overlapping stored data or itself: staged, replacing what it re-sends.
    Replace,
}

/// Writes every job in one transaction. Rows are sorted in storage order ([`Row::storage_key`],
/// which also lays them out for the zone maps); a group that is new on every series (every
/// row past its series' end, no key twice) is appended directly, any other is staged, the rows
/// it replaces deleted and the staged rows inserted (the latest staged copy of each key wins).
/// `ends` moves on only after the commit.
fn write_group(
    conn: &Connection,
    jobs: &[(i64, &[Point])],
    ends: &mut SeriesEnds,
    months: &mut CompactionLog,
) -> Result<WritePath, StoreError> {
    let mut rows: Vec<Row> = jobs
        .iter()
        .flat_map(|(org_id, points)| {
            points.iter().map(|p| Row {
                org_id: *org_id,
                metric: p.metric.as_str(),
                dims: encode_dims(&p.dims),
                ts: p.ts_micros,
                value: p.value,
            })
        })
        .collect();
    // Stable: copies of one key keep their arrival order, so the last sent stays last. Copies
    // of one key are neighbours in this order.
    rows.sort_by(|a, b| a.storage_key().cmp(&b.storage_key()));
    let appendable = rows.iter().enumerate().all(|(i, r)| {
        let repeats_previous = i
            .checked_sub(1)
            .is_some_and(|prev| rows[prev].storage_key() == r.storage_key());
        !repeats_previous && ends.is_past_end(r.org_id, r.metric, &r.dims, r.ts)
    });
    let path = if appendable {
        WritePath::Append
    } else {
        WritePath::Replace
    };
    let dirtied = months.dirtied_by(rows.iter().map(|r| r.ts));
    conn.execute_batch("BEGIN TRANSACTION;")?;
    let result = match path {
        WritePath::Append => append_rows(conn, &rows),
        WritePath::Replace => replace_rows(conn, &rows),
    }
    .and_then(|()| months.mark_dirty(conn, &dirtied));
    match result {
        Ok(()) => {
            conn.execute_batch("COMMIT;")?;
            months.set_dirty(&dirtied);
            for r in &rows {
                ends.raise(r.org_id, r.metric, &r.dims, r.ts);
            }
            Ok(path)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK;");
            let _ = conn.execute_batch("DELETE FROM staging;");
            Err(e)
        }
    }
}

/// Rows per Arrow record batch handed to the appender (a group holds up to
/// [`MAX_GROUP_POINTS`]; smaller batches keep the column buffers small).
const ARROW_BATCH_ROWS: usize = 16_384;

/// A stretch of rows as an Arrow record batch in `points`' column order, with the rows'
/// positions in the group as a last `seq` column when `with_seq` is set (the staging table's).
/// One batch per 16 k rows instead of a bound parameter row per point: the per-value binding
/// was the writer's largest cost after sorting in a profile of HTTP ingest.
fn arrow_batch(rows: &[Row], first_seq: usize, with_seq: bool) -> Result<RecordBatch, StoreError> {
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.org_id))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.metric))),
        Arc::new(TimestampMicrosecondArray::from_iter_values(
            rows.iter().map(|r| r.ts),
        )),
        Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.value))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.dims.as_str()),
        )),
    ];
    if with_seq {
        columns.push(Arc::new(Int64Array::from_iter_values(
            (first_seq..first_seq + rows.len()).map(|i| i as i64),
        )));
    }
    RecordBatch::try_new(points_schema(with_seq), columns).map_err(StoreError::internal)
}

/// `points`' columns as Arrow fields (the org, then [`ColumnarPoints::schema`]), with the
/// staging table's `seq` last when `with_seq` is set.
fn points_schema(with_seq: bool) -> Arc<Schema> {
    let mut fields = vec![Field::new("org_id", DataType::Int64, false)];
    fields.extend(
        ColumnarPoints::schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone()),
    );
    if with_seq {
        fields.push(Field::new("seq", DataType::Int64, false));
    }
    Arc::new(Schema::new(fields))
}

fn append_arrow(
    app: &mut duckdb::Appender,
    rows: &[Row],
    with_seq: bool,
) -> Result<(), StoreError> {
    for (i, chunk) in rows.chunks(ARROW_BATCH_ROWS).enumerate() {
        app.append_record_batch(arrow_batch(chunk, i * ARROW_BATCH_ROWS, with_seq)?)?;
    }
    app.flush()?;
    Ok(())
}

fn append_rows(conn: &Connection, rows: &[Row]) -> Result<(), StoreError> {
    let mut app = conn.appender("points")?;
    append_arrow(&mut app, rows, false)
}

fn replace_rows(conn: &Connection, rows: &[Row]) -> Result<(), StoreError> {
    {
        let mut app = conn.appender_to_catalog_and_db("staging", "temp", "main")?;
        append_arrow(&mut app, rows, true)?;
    }
    conn.execute_batch(REPLACE_STAGED)?;
    Ok(())
}

/// The staged rows replace the stored ones of the same keys (the latest staged copy wins).
const REPLACE_STAGED: &str =
    "DELETE FROM points USING (SELECT DISTINCT org_id, metric, ts, dims FROM staging) s
       WHERE points.org_id = s.org_id AND points.metric = s.metric
         AND points.ts = s.ts AND points.dims = s.dims;
     INSERT INTO points
       SELECT org_id, metric, ts, value, dims FROM staging
       QUALIFY row_number() OVER (PARTITION BY org_id, metric, ts, dims ORDER BY seq DESC) = 1
       ORDER BY org_id, ts, metric, dims;
     DELETE FROM staging;";

/// A columnar job's batch in `points`' columns (its org first), with a `seq` column for the
/// staging table when `with_seq` is set.
fn with_org(
    org_id: i64,
    points: &ColumnarPoints,
    with_seq: bool,
) -> Result<RecordBatch, StoreError> {
    let b = &points.batch;
    let n = b.num_rows();
    let mut columns: Vec<ArrayRef> = vec![Arc::new(Int64Array::from_value(org_id, n))];
    columns.extend(b.columns().iter().cloned());
    if with_seq {
        columns.push(Arc::new(Int64Array::from_iter_values(0..n as i64)));
    }
    RecordBatch::try_new(points_schema(with_seq), columns).map_err(StoreError::internal)
}

/// The columns of a columnar job: metric, ts, dims.
fn column_parts(
    points: &ColumnarPoints,
) -> Result<(&StringArray, &TimestampMicrosecondArray, &StringArray), StoreError> {
    let b = &points.batch;
    let text = |i: usize| {
        b.column(i)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| {
                StoreError::internal("columnar points: a text column has the wrong type")
            })
    };
    let ts = b
        .column(1)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| StoreError::internal("columnar points: ts has the wrong type"))?;
    Ok((text(0)?, ts, text(3)?))
}

/// Writes columnar jobs in one transaction. A job whose every row lies past its series' end
/// (counting the group's earlier jobs) is appended as its columns; any other is staged and
/// replaces what it re-sends. The rows come validated, deduplicated and in store order from
/// [`parse_arrow_stream`](crate::domain::ingest_arrow::parse_arrow_stream).
fn write_column_group(
    conn: &Connection,
    jobs: &[(i64, &ColumnarPoints)],
    ends: &mut SeriesEnds,
    months: &mut CompactionLog,
) -> Result<(), StoreError> {
    let mut group_ends: HashMap<(i64, &str, &str), i64> = HashMap::new();
    let mut appendable = Vec::with_capacity(jobs.len());
    let mut dirtied = std::collections::BTreeSet::new();
    for (org_id, points) in jobs {
        let (metric, ts, dims) = column_parts(points)?;
        let mut past_end = ends.complete;
        // Per series, not per point: its rows lie past the end if its first one does.
        for span in &points.series {
            let (m, d) = (metric.value(span.row), dims.value(span.row));
            let end = match group_ends.get_mut(&(*org_id, m, d)) {
                Some(end) => {
                    let before = *end;
                    *end = before.max(span.last_ts);
                    Some(before)
                }
                None => {
                    let stored = ends.end(*org_id, m, d);
                    let last = stored.map_or(span.last_ts, |e| e.max(span.last_ts));
                    group_ends.insert((*org_id, m, d), last);
                    stored
                }
            };
            past_end &= end.is_none_or(|end| span.first_ts > end);
        }
        appendable.push(past_end);
        // Only a job reaching back before the newest compacted month can dirty one.
        if points.series.iter().any(|s| s.first_ts < months.horizon()) {
            dirtied.extend(months.dirtied_by(ts.values().iter().copied()));
        }
    }
    conn.execute_batch("BEGIN TRANSACTION;")?;
    let result = (|| -> Result<(), StoreError> {
        for ((org_id, points), append) in jobs.iter().zip(&appendable) {
            if *append {
                let mut app = conn.appender("points")?;
                app.append_record_batch(with_org(*org_id, points, false)?)?;
                app.flush()?;
            } else {
                {
                    let mut app = conn.appender_to_catalog_and_db("staging", "temp", "main")?;
                    app.append_record_batch(with_org(*org_id, points, true)?)?;
                    app.flush()?;
                }
                conn.execute_batch(REPLACE_STAGED)?;
            }
        }
        months.mark_dirty(conn, &dirtied)
    })();
    match result {
        Ok(()) => {
            conn.execute_batch("COMMIT;")?;
            // Re-sends and out-of-order batches take the slower path; how often, at debug level.
            tracing::debug!(
                jobs = jobs.len(),
                appended = appendable.iter().filter(|a| **a).count(),
                rows = jobs.iter().map(|(_, p)| p.len()).sum::<usize>(),
                "columnar point group committed"
            );
            months.set_dirty(&dirtied);
            for ((org_id, metric, dims), ts) in group_ends {
                ends.raise(org_id, metric, dims, ts);
            }
            Ok(())
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK;");
            let _ = conn.execute_batch("DELETE FROM staging;");
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::migrate;
    use super::*;
    use crate::domain::ingest::Dimensions;

    fn point(ts: i64, value: f64) -> Point {
        let mut dims = Dimensions::new();
        dims.insert("region".into(), "eu".into());
        Point {
            metric: "revenue".into(),
            ts_micros: ts,
            value,
            dims,
        }
    }

    fn open_writer(dir: &tempfile::TempDir) -> Connection {
        let conn = Connection::open(dir.path().join("m.duckdb")).unwrap();
        migrate(&conn).unwrap();
        conn.execute_batch(
            "CREATE TEMP TABLE staging (org_id BIGINT, metric VARCHAR, ts TIMESTAMP, value DOUBLE, dims VARCHAR, seq BIGINT);",
        )
        .unwrap();
        conn
    }

    fn org_rows(conn: &Connection, org_id: i64) -> Vec<(i64, f64)> {
        let mut stmt = conn
            .prepare("SELECT epoch_us(ts), value FROM points WHERE org_id = ? ORDER BY ts")
            .unwrap();
        stmt.query_map([org_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// One series (revenue, region=eu) of org 1, group by group:
    /// 1. ts 1, 2, 3 (10, 20, 30) into an empty table: appended; the series ends at 3.
    /// 2. ts 4, 5 (40, 50): past the end, appended.
    /// 3. ts 5 again (55) and 6 (60): 5 is stored, so the replace path: 55 replaces 50.
    /// 4. ts 7 twice in one group (70, then 77): not past itself, so replaced; the last wins.
    /// 5. Org 2 at ts 1 (5) beside org 1 at ts 8 (80), in one group: new for both, appended.
    ///
    /// Org 1 ends with (1,10) (2,20) (3,30) (4,40) (5,55) (6,60) (7,77) (8,80); org 2 (1,5).
    /// Reloading the ends from the table: org 1 ends at 8, org 2 at 1.
    #[test]
    fn new_points_are_appended_and_overlapping_ones_replace() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_writer(&dir);
        let mut ends = SeriesEnds::load(&conn).unwrap();
        let mut months = CompactionLog::empty(Period::Month);
        let mut write =
            |jobs: &[(i64, &[Point])]| write_group(&conn, jobs, &mut ends, &mut months).unwrap();
        let g1 = [point(1, 10.0), point(2, 20.0), point(3, 30.0)];
        assert_eq!(write(&[(1, &g1)]), WritePath::Append);
        assert_eq!(
            write(&[(1, &[point(4, 40.0), point(5, 50.0)])]),
            WritePath::Append
        );
        assert_eq!(
            write(&[(1, &[point(5, 55.0), point(6, 60.0)])]),
            WritePath::Replace
        );
        assert_eq!(
            write(&[(1, &[point(7, 70.0)]), (1, &[point(7, 77.0)])]),
            WritePath::Replace
        );
        assert_eq!(
            write(&[(2, &[point(1, 5.0)]), (1, &[point(8, 80.0)])]),
            WritePath::Append
        );
        assert_eq!(
            org_rows(&conn, 1),
            vec![
                (1, 10.0),
                (2, 20.0),
                (3, 30.0),
                (4, 40.0),
                (5, 55.0),
                (6, 60.0),
                (7, 77.0),
                (8, 80.0)
            ]
        );
        assert_eq!(org_rows(&conn, 2), vec![(1, 5.0)]);
        let reloaded = SeriesEnds::load(&conn).unwrap();
        assert!(!reloaded.is_past_end(1, "revenue", "region=eu", 8));
        assert!(reloaded.is_past_end(1, "revenue", "region=eu", 9));
        assert!(!reloaded.is_past_end(2, "revenue", "region=eu", 1));
        assert!(reloaded.is_past_end(2, "revenue", "region=us", 1));
        assert!(!SeriesEnds::unknown().is_past_end(3, "revenue", "", 1));
    }

    fn at(date: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(date)
            .unwrap()
            .timestamp_micros()
    }

    fn point_at(metric: &str, date: &str, value: f64) -> Point {
        Point {
            metric: metric.into(),
            ts_micros: at(date),
            value,
            dims: Dimensions::new(),
        }
    }

    /// Every stored row of a month in physical order (rowid): (org, ts, metric, value).
    fn physical(conn: &Connection, from: &str, to: &str) -> Vec<(i64, i64, String, f64)> {
        let mut stmt = conn
            .prepare(
                "SELECT org_id, epoch_us(ts), metric, value FROM points
                 WHERE ts >= ?::TIMESTAMP AND ts < ?::TIMESTAMP ORDER BY rowid",
            )
            .unwrap();
        stmt.query_map([from, to], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    /// Four groups interleave two orgs over January and February 2026 (as live feeds do):
    /// org 2 Jan 20 "b"=1, org 1 Jan 10 "a"=2, then org 1 Jan 5 "b"=3 (before its end: the
    /// replace path), org 2 Feb 2 "a"=4 and org 1 Feb 3 "a"=5.
    ///
    /// On 2026-04-01 (settled: before 2026-03-01, two days before now) January and February
    /// are due. Compacting January rewrites its three rows in (org, ts, metric) order: org 1
    /// Jan 5 b=3, org 1 Jan 10 a=2, org 2 Jan 20 b=1; February's rows are untouched. Then
    /// February; nothing is due. A late point (org 1 Jan 7 "a"=6) and a re-sent one (org 2
    /// Jan 20 "b"=10) dirty January only: it is due again, holds four rows with b=10 once,
    /// and a second compaction leaves them in order: Jan 5 b=3, Jan 7 a=6, Jan 10 a=2, then
    /// org 2 Jan 20 b=10. Reopened, the log knows both months compacted and clean.
    #[test]
    fn compaction_rewrites_a_month_in_storage_order_and_late_writes_dirty_it() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_writer(&dir);
        let mut ends = SeriesEnds::load(&conn).unwrap();
        let mut months = CompactionLog::load(&conn, Period::Month).unwrap();
        let groups: [(i64, Point); 5] = [
            (2, point_at("b", "2026-01-20T00:00:00Z", 1.0)),
            (1, point_at("a", "2026-01-10T00:00:00Z", 2.0)),
            (1, point_at("b", "2026-01-05T00:00:00Z", 3.0)),
            (2, point_at("a", "2026-02-02T00:00:00Z", 4.0)),
            (1, point_at("a", "2026-02-03T00:00:00Z", 5.0)),
        ];
        for (org, p) in groups {
            write_group(&conn, &[(org, &[p])], &mut ends, &mut months).unwrap();
        }
        let now = at("2026-04-01T00:00:00Z");
        let (jan, feb) = (at("2026-01-01T00:00:00Z"), at("2026-02-01T00:00:00Z"));
        assert_eq!(compaction::due_months(&conn, now).unwrap(), vec![jan, feb]);
        let feb_before = physical(&conn, "2026-02-01", "2026-03-01");
        assert_eq!(
            compaction::compact_month(&conn, &mut months, jan, now, 0).unwrap(),
            3
        );
        let row = |org: i64, date: &str, metric: &str, value: f64| {
            (org, at(date), metric.to_string(), value)
        };
        assert_eq!(
            physical(&conn, "2026-01-01", "2026-02-01"),
            vec![
                row(1, "2026-01-05T00:00:00Z", "b", 3.0),
                row(1, "2026-01-10T00:00:00Z", "a", 2.0),
                row(2, "2026-01-20T00:00:00Z", "b", 1.0),
            ]
        );
        assert_eq!(physical(&conn, "2026-02-01", "2026-03-01"), feb_before);
        compaction::compact_month(&conn, &mut months, feb, now, 0).unwrap();
        assert_eq!(
            compaction::due_months(&conn, now).unwrap(),
            Vec::<i64>::new()
        );

        write_group(
            &conn,
            &[
                (1, &[point_at("a", "2026-01-07T00:00:00Z", 6.0)]),
                (2, &[point_at("b", "2026-01-20T00:00:00Z", 10.0)]),
            ],
            &mut ends,
            &mut months,
        )
        .unwrap();
        assert_eq!(compaction::due_months(&conn, now).unwrap(), vec![jan]);
        assert_eq!(
            compaction::compact_month(&conn, &mut months, jan, now, 0).unwrap(),
            4
        );
        assert_eq!(
            physical(&conn, "2026-01-01", "2026-02-01"),
            vec![
                row(1, "2026-01-05T00:00:00Z", "b", 3.0),
                row(1, "2026-01-07T00:00:00Z", "a", 6.0),
                row(1, "2026-01-10T00:00:00Z", "a", 2.0),
                row(2, "2026-01-20T00:00:00Z", "b", 10.0),
            ]
        );
        let reloaded = CompactionLog::load(&conn, Period::Month).unwrap();
        assert!(
            reloaded
                .dirtied_by([jan + 1, feb + 1].into_iter())
                .into_iter()
                .eq([jan, feb])
        );
        assert_eq!(
            compaction::due_months(&conn, now).unwrap(),
            Vec::<i64>::new()
        );
    }

    /// February 2026: org 1 sends ten days (Feb 1–10, one point each) in one batch, then org 2
    /// the same: two runs for two orgs, clustered (≤ 4 per org), so compaction only logs it
    /// (0 points rewritten, rows where they were). March 2026: the two orgs alternate day by
    /// day in twenty batches: 20 runs for 2 orgs (10 per org), so March is rewritten, all 20
    /// points, and then lies in 2 runs. Neither month is due afterwards.
    #[test]
    fn only_months_interleaved_across_orgs_are_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_writer(&dir);
        let mut ends = SeriesEnds::load(&conn).unwrap();
        let mut months = CompactionLog::load(&conn, Period::Month).unwrap();
        let day = |month: u32, d: u32| format!("2026-{month:02}-{d:02}T00:00:00Z");
        for org in [1, 2] {
            let points: Vec<Point> = (1..=10).map(|d| point_at("a", &day(2, d), 1.0)).collect();
            write_group(&conn, &[(org, &points)], &mut ends, &mut months).unwrap();
        }
        for d in 1..=10 {
            for org in [1, 2] {
                let p = [point_at("a", &day(3, d), 1.0)];
                write_group(&conn, &[(org, &p)], &mut ends, &mut months).unwrap();
            }
        }
        let (feb, mar) = (at("2026-02-01T00:00:00Z"), at("2026-03-01T00:00:00Z"));
        let now = at("2026-05-01T00:00:00Z");
        let runs = compaction::CLUSTERED_RUNS_PER_ORG;
        let feb_before = physical(&conn, "2026-02-01", "2026-03-01");
        let layout = compaction::month_layout(&conn, mar).unwrap();
        assert_eq!((layout.points, layout.orgs, layout.runs), (20, 2, 20));
        assert_eq!(
            compaction::compact_month(&conn, &mut months, feb, now, runs).unwrap(),
            0
        );
        assert_eq!(physical(&conn, "2026-02-01", "2026-03-01"), feb_before);
        assert_eq!(
            compaction::compact_month(&conn, &mut months, mar, now, runs).unwrap(),
            20
        );
        let layout = compaction::month_layout(&conn, mar).unwrap();
        assert_eq!((layout.points, layout.orgs, layout.runs), (20, 2, 2));
        assert_eq!(
            compaction::due_months(&conn, now).unwrap(),
            Vec::<i64>::new()
        );
    }
}
