//! DuckDB metric store: one `points` table of (org, metric, timestamp, value, dimensions).
//!
//! Writes go through one writer thread that owns its connection and commits groups of batches
//! together (group commit) before acknowledging any of them. A re-sent point (same org, metric,
//! timestamp and dimensions) replaces the stored one inside the same transaction, so nothing is
//! ever counted twice. Reads use their own connections, cloned from the one database instance,
//! on the blocking pool.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use duckdb::types::{TimeUnit, Value};
use duckdb::{Connection, params};
use tokio::sync::oneshot;

use super::StoreError;
use crate::domain::catalog::Aggregation;
use crate::domain::ingest::{Point, encode_dim_value};
use crate::domain::ingest_arrow::ColumnarPoints;
use crate::domain::timebucket::{Bucket, OffsetSegment};
use crate::org_cache::Cells;

mod compaction;
mod fold;
mod writer;

pub use crate::store::compaction::{CompactionReport, SETTLE_MICROS};

/// A shared, type-erased memoised read result.
type MemoValue = Arc<dyn std::any::Any + Send + Sync>;

/// Most memoised read results kept.
const MAX_MEMO_ENTRIES: usize = 512;

const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

const MIGRATIONS: &[&str] = &[
    // 1: the points table. No index or key on purpose: ART indexes cost unevictable memory and
    // complicate WAL replay; time-ordered inserts let zone maps skip row groups instead.
    "CREATE TABLE points (
        org_id BIGINT NOT NULL,
        metric VARCHAR NOT NULL,
        ts TIMESTAMP NOT NULL,
        value DOUBLE NOT NULL,
        dims VARCHAR NOT NULL
    );",
    // 2: product events (store::events), beside the points in the same file.
    super::events::MIGRATION,
    // 3: persons, their aliases and groups (identity resolution).
    super::events::identity::MIGRATION,
    // 4: the event catalogue's property definitions.
    super::events::catalogue::MIGRATION,
    // 5: the compaction log: which settled months are rewritten in storage order.
    compaction::MIGRATION,
    // 6: event properties stored once, in the VARIANT (parsed from the text copy).
    super::events::PROPS_ONCE_MIGRATION,
    // 7: the event compaction log: which settled weeks are rewritten in storage order.
    super::events::COMPACTION_MIGRATION,
];

/// Where the writer reports a write's outcome.
type Ack = oneshot::Sender<Result<usize, StoreError>>;

enum WriterMsg {
    Write {
        org_id: i64,
        points: Vec<Point>,
        ack: Ack,
    },
    /// Points that arrived as columns (Arrow), validated and in store order.
    WriteColumns {
        org_id: i64,
        points: ColumnarPoints,
        ack: Ack,
    },
    /// Rewrite the month starting at `month` (µs) in storage order; `now` is logged.
    Compact {
        month: i64,
        now: i64,
        ack: oneshot::Sender<Result<u64, StoreError>>,
    },
}

#[derive(Clone)]
pub struct MetricStore {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<Option<mpsc::Sender<WriterMsg>>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    base: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    /// Reads on the blocking pool at once. Sixty-four pages asked together queue here instead
    /// of opening sixty-four connections, each with its own buffers, on two cores.
    read_permits: tokio::sync::Semaphore,
    /// Each org's write generation: bumped by the writer after a commit and before the
    /// acknowledgement, so a reader that saw the same generation before and after saw no write.
    generations: Arc<Mutex<HashMap<i64, u64>>>,
    /// Read results by org and key, tagged with the org's generation when read.
    memo: Mutex<Cells<u64, MemoValue>>,
}

pub struct StoreOptions {
    pub threads: u64,
    pub memory_limit: String,
    /// DuckDB's `checkpoint_threshold`.
    pub checkpoint_wal: String,
}

fn ts_value(micros: i64) -> Value {
    Value::Timestamp(TimeUnit::Microsecond, micros)
}

impl MetricStore {
    /// Opens (creating and migrating if needed) the database file. If another process still holds
    /// the file (a fast restart), retries for a few seconds before giving up with a clear error.
    pub fn open(path: &Path, options: &StoreOptions) -> Result<MetricStore, StoreError> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let conn = loop {
            let config = duckdb::Config::default()
                .enable_autoload_extension(false)?
                .with("autoinstall_known_extensions", "false")?
                .threads(options.threads as i64)?
                .max_memory(&options.memory_limit)?
                .with("checkpoint_threshold", &options.checkpoint_wal)?;
            match Connection::open_with_flags(path, config) {
                Ok(c) => break c,
                Err(e) if e.to_string().contains("lock") && Instant::now() < deadline => {
                    tracing::warn!("metrics.duckdb is locked by another process; retrying");
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) if e.to_string().contains("lock") => {
                    return Err(StoreError::Internal(format!(
                        "{} is in use by another Vitals process (only one process may open it): {e}",
                        path.display()
                    )));
                }
                Err(e) => {
                    return Err(StoreError::Internal(format!(
                        "cannot open {}: {e}. The file is kept as it is; if its write-ahead log \
                         cannot be replayed, restore a backup or report the error",
                        path.display()
                    )));
                }
            }
        };
        migrate(&conn)?;
        let writer_conn = conn.try_clone()?;
        writer_conn.execute_batch(
            "CREATE TEMP TABLE staging (org_id BIGINT, metric VARCHAR, ts TIMESTAMP, value DOUBLE, dims VARCHAR, seq BIGINT);",
        )?;
        let (tx, rx) = mpsc::channel();
        let generations = Arc::new(Mutex::new(HashMap::new()));
        let writer_generations = generations.clone();
        let handle = std::thread::Builder::new()
            .name("duckdb-writer".into())
            .spawn(move || writer::writer_loop(writer_conn, rx, &writer_generations))
            .map_err(StoreError::internal)?;
        Ok(MetricStore {
            inner: Arc::new(Inner {
                writer: Mutex::new(Some(tx)),
                writer_thread: Mutex::new(Some(handle)),
                base: Mutex::new(conn),
                readers: Mutex::new(Vec::new()),
                read_permits: tokio::sync::Semaphore::new(
                    (2 * options.threads).clamp(2, 64) as usize
                ),
                generations,
                memo: Mutex::new(Cells::new(MAX_MEMO_ENTRIES)),
            }),
        })
    }

    /// Queues points for the writer; the receiver yields the outcome once they are committed.
    fn enqueue(
        &self,
        org_id: i64,
        points: Vec<Point>,
    ) -> Result<oneshot::Receiver<Result<usize, StoreError>>, StoreError> {
        let (ack, done) = oneshot::channel();
        self.send(WriterMsg::Write {
            org_id,
            points,
            ack,
        })?;
        Ok(done)
    }

    fn send(&self, msg: WriterMsg) -> Result<(), StoreError> {
        super::send_to_writer(&self.inner.writer, msg, "metric")
    }

    /// Stores points durably; returns once they are committed. Points of one call are written
    /// all together or not at all.
    pub async fn write(&self, org_id: i64, points: Vec<Point>) -> Result<usize, StoreError> {
        let done = self.enqueue(org_id, points)?;
        done.await
            .map_err(|_| StoreError::internal("the metric writer has stopped"))?
    }

    /// Stores points that arrived as columns ([`ColumnarPoints`]) durably, all or none;
    /// returns once they are committed.
    pub async fn write_columns(
        &self,
        org_id: i64,
        points: ColumnarPoints,
    ) -> Result<usize, StoreError> {
        let (ack, done) = oneshot::channel();
        self.send(WriterMsg::WriteColumns {
            org_id,
            points,
            ack,
        })?;
        done.await
            .map_err(|_| StoreError::internal("the metric writer has stopped"))?
    }

    /// Blocking form of [`write`](Self::write), for startup and CLI code outside the runtime.
    pub fn write_blocking(&self, org_id: i64, points: Vec<Point>) -> Result<usize, StoreError> {
        let done = self.enqueue(org_id, points)?;
        done.blocking_recv()
            .map_err(|_| StoreError::internal("the metric writer has stopped"))?
    }

    /// Compacts every settled month not yet (or no longer) in storage order, oldest first, one
    /// month per turn of the writer so that ingest goes on between months. A month whose rows
    /// already lie clustered by org is only logged.
    pub async fn compact_settled(&self, now_micros: i64) -> Result<CompactionReport, StoreError> {
        let due = self
            .read(move |c| compaction::due_months(c, now_micros))
            .await?;
        crate::store::compaction::compact_each(due, |month| {
            let (ack, done) = oneshot::channel();
            let sent = self.send(WriterMsg::Compact {
                month,
                now: now_micros,
                ack,
            });
            async move {
                sent?;
                done.await
                    .map_err(|_| StoreError::internal("the metric writer has stopped"))?
            }
        })
        .await
    }

    /// Runs a read on a pooled connection on the blocking thread pool.
    pub async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let _permit = self
            .inner
            .read_permits
            .acquire()
            .await
            .map_err(StoreError::internal)?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.with_reader(f))
            .await
            .map_err(StoreError::internal)?
    }

    /// The org's write generation: it changes whenever a write for the org commits.
    pub fn generation(&self, org_id: i64) -> u64 {
        self.inner
            .generations
            .lock()
            .map(|g| g.get(&org_id).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// [`read`](Self::read), memoised: the result for `key` is reused until the org's next
    /// committed write or until it is `max_age` old, whichever comes first. `key` must name
    /// everything `f` reads besides the org's points (the question and its time range). The
    /// generation is taken before the read, so a write landing during it only makes the
    /// result stale sooner; a write acknowledged before the call is always seen.
    pub async fn read_memo<R, F>(
        &self,
        org_id: i64,
        key: String,
        max_age: Duration,
        f: F,
    ) -> Result<Arc<R>, StoreError>
    where
        R: Send + Sync + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let generation = self.generation(org_id);
        let cell = self
            .inner
            .memo
            .lock()
            .map_err(|_| StoreError::internal("memo lock poisoned"))?
            .cell(org_id, &key, generation, max_age);
        let value = cell
            .get_or_try_init(|| async {
                let value: MemoValue = Arc::new(self.read(f).await?);
                Ok::<_, StoreError>(value)
            })
            .await?;
        value
            .clone()
            .downcast::<R>()
            .map_err(|_| StoreError::internal("a memo key was reused for another type"))
    }

    /// A new connection to the same database instance (for another writer thread).
    pub fn connection(&self) -> Result<Connection, StoreError> {
        Ok(self
            .inner
            .base
            .lock()
            .map_err(|_| StoreError::internal("pool poisoned"))?
            .try_clone()?)
    }

    /// Blocking form of [`read`](Self::read).
    pub fn read_blocking<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.inner.with_reader(f)
    }

    /// Stops the writer after it has committed everything queued, then checkpoints the WAL into
    /// the database file. Safe to call more than once.
    pub fn shutdown(&self) {
        super::stop_writer(&self.inner.writer, &self.inner.writer_thread, "metric");
    }
}

impl Inner {
    fn with_reader<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let pooled = self
            .readers
            .lock()
            .map_err(|_| StoreError::internal("pool poisoned"))?
            .pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = self
                    .base
                    .lock()
                    .map_err(|_| StoreError::internal("pool poisoned"))?
                    .try_clone()?;
                // Planning a statement costs DuckDB 0.3–1.3 ms (bench Q2, Q4), often more than
                // running it; reads reuse prepared statements keyed by their SQL text.
                c.set_prepared_statement_cache_capacity(64);
                c
            }
        };
        let result = f(&conn);
        if let Ok(mut pool) = self.readers.lock()
            && pool.len() < 16
        {
            pool.push(conn);
        }
        result
    }
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL);")?;
    let current: Option<i64> =
        conn.query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))?;
    let current = current.unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(StoreError::Internal(format!(
            "metrics.duckdb has schema version {current}, newer than this binary's {SCHEMA_VERSION}"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        conn.execute_batch(&format!(
            "BEGIN TRANSACTION; {sql} INSERT INTO schema_version VALUES ({}); COMMIT;",
            i + 1
        ))?;
    }
    if current < SCHEMA_VERSION {
        conn.execute_batch("CHECKPOINT;")?;
    }
    Ok(())
}
/// How rows are put into buckets.
#[derive(Debug, Clone)]
pub enum Bucketing {
    /// Calendar buckets in local time; the key is the bucket's local wall-clock start (µs).
    Calendar {
        bucket: Bucket,
        segments: Vec<OffsetSegment>,
    },
    /// Two buckets: 0 before `at`, 1 from `at` on (for "this period vs the previous one").
    Split { at_micros: i64 },
}

impl Bucketing {
    /// The bucket key of each row's `ts`.
    pub fn sql(&self) -> String {
        match self {
            Bucketing::Calendar { bucket, segments } => {
                let offset = local_offset_sql(segments);
                format!(
                    "epoch_us(date_trunc('{}', ts + to_seconds({offset})))",
                    bucket.as_str()
                )
            }
            Bucketing::Split { at_micros } => {
                format!("CASE WHEN epoch_us(ts) < {at_micros} THEN 0 ELSE 1 END")
            }
        }
    }
}

/// `CASE` expression giving each row's UTC offset in seconds from the offset segments.
fn local_offset_sql(segments: &[OffsetSegment]) -> String {
    match segments {
        [] => "0".into(),
        [only] => format!("{}::BIGINT", only.offset_secs),
        _ => {
            let mut sql = String::from("CASE");
            for pair in segments.windows(2) {
                sql.push_str(&format!(
                    " WHEN epoch_us(ts) < {} THEN {}",
                    pair[1].start_micros, pair[0].offset_secs
                ));
            }
            let last = segments.last().map(|s| s.offset_secs).unwrap_or(0);
            sql.push_str(&format!(" ELSE {last} END::BIGINT"));
            sql
        }
    }
}

#[derive(Debug, Clone)]
pub struct AggregateQuery {
    pub org_id: i64,
    /// One metric, or every metric of the org.
    pub metric: Option<String>,
    pub from_micros: i64,
    pub to_micros: i64,
    pub bucketing: Bucketing,
    /// Dimension filters (key, value): all must match.
    pub filters: Vec<(String, String)>,
    /// Dimension key to group by (validated by the caller).
    pub group_by: Option<String>,
}

/// Aggregates of one bucket (of one metric, of one group).
#[derive(Debug, Clone, PartialEq)]
pub struct AggRow {
    pub metric: String,
    pub bucket: i64,
    /// The group-by dimension's value (`None` when not grouping; `Some("")` for points without it).
    pub group: Option<String>,
    pub sum: f64,
    pub count: i64,
    pub min: f64,
    pub max: f64,
    /// Each dimension series' latest value in the bucket, summed over series.
    pub last: f64,
}

impl AggRow {
    pub fn value(&self, agg: Aggregation) -> f64 {
        match agg {
            Aggregation::Sum => self.sum,
            Aggregation::Avg => self.sum / self.count.max(1) as f64,
            Aggregation::Last => self.last,
            Aggregation::Min => self.min,
            Aggregation::Max => self.max,
        }
    }
}

/// SQL giving the (still escaped) value of dimension `key` in `dims`, `''` when absent. Values
/// never hold a raw `&` or `=` (they are escaped), so the text between `&key=` and the next `&`
/// is the value; two `split_part`s cost half of a regular expression (bench Q2). `key` has been
/// validated as a dimension key (lowercase letters, digits, `_`), so it is safe inside SQL.
fn dim_value_sql(key: &str) -> String {
    format!("split_part(split_part('&' || dims, '&{key}=', 2), '&', 1)")
}

/// Buckets and aggregates points: one SQL statement per bucket and dimension series (so `last`
/// is each series' latest value), summed over series as the rows stream in ([`fold`]).
pub fn aggregate(conn: &Connection, q: &AggregateQuery) -> Result<Vec<AggRow>, StoreError> {
    let bucket_sql = q.bucketing.sql();
    let mut filter_sql = String::new();
    let mut params: Vec<Value> = vec![
        Value::BigInt(q.org_id),
        ts_value(q.from_micros),
        ts_value(q.to_micros),
    ];
    if let Some(m) = &q.metric {
        filter_sql.push_str(" AND metric = ?");
        params.push(Value::Text(m.clone()));
    }
    for (k, v) in &q.filters {
        filter_sql.push_str(" AND contains('&' || dims || '&', ?)");
        params.push(Value::Text(format!("&{k}={}&", encode_dim_value(v))));
    }
    let sql = format!(
        "SELECT metric, ({bucket_sql})::BIGINT AS bucket, dims,
                sum(value), count(*), min(value), max(value), arg_max(value, ts)
         FROM points
         WHERE org_id = ? AND ts >= ? AND ts < ?{filter_sql}
         GROUP BY ALL"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut groups = fold::GroupFold::default();
    // Arrow batches: reading a few thousand per-series rows column by column costs a fraction
    // of the row API's per-value conversions (bench Q1: 10,800 per-series rows).
    for batch in stmt.query_arrow(duckdb::params_from_iter(params))? {
        let metric = super::text_column(&batch, 0)?;
        let bucket = super::result_column::<arrow::array::Int64Array>(&batch, 1)?;
        let dims = super::text_column(&batch, 2)?;
        let sum = super::result_column::<arrow::array::Float64Array>(&batch, 3)?;
        let count = super::result_column::<arrow::array::Int64Array>(&batch, 4)?;
        let min = super::result_column::<arrow::array::Float64Array>(&batch, 5)?;
        let max = super::result_column::<arrow::array::Float64Array>(&batch, 6)?;
        let last = super::result_column::<arrow::array::Float64Array>(&batch, 7)?;
        for i in 0..batch.num_rows() {
            let group = q
                .group_by
                .as_deref()
                .map(|key| fold::dim_value(dims.value(i), key));
            groups.add(
                metric.value(i),
                bucket.value(i),
                group,
                fold::SeriesBucket {
                    sum: sum.value(i),
                    count: count.value(i),
                    min: min.value(i),
                    max: max.value(i),
                    last: last.value(i),
                },
            );
        }
    }
    Ok(groups.finish())
}

/// One stored point as read back: time (µs), value, canonical dimensions.
#[derive(Debug, Clone, PartialEq)]
pub struct RawPoint {
    pub ts_micros: i64,
    pub value: f64,
    pub dims: String,
}

/// Raw points of one metric in `[from, to)` matching `filters`, in time then dimension order,
/// at most `limit` of them.
pub fn raw_points(
    conn: &Connection,
    org_id: i64,
    metric: &str,
    from_micros: i64,
    to_micros: i64,
    filters: &[(String, String)],
    limit: usize,
) -> Result<Vec<RawPoint>, StoreError> {
    let mut sql = String::from(
        "SELECT epoch_us(ts), value, dims FROM points WHERE org_id = ? AND metric = ? AND ts >= ? AND ts < ?",
    );
    let mut params: Vec<Value> = vec![
        Value::BigInt(org_id),
        Value::Text(metric.to_string()),
        ts_value(from_micros),
        ts_value(to_micros),
    ];
    for (k, v) in filters {
        sql.push_str(" AND contains('&' || dims || '&', ?)");
        params.push(Value::Text(format!("&{k}={}&", encode_dim_value(v))));
    }
    sql.push_str(&format!(" ORDER BY ts, dims LIMIT {limit}"));
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(duckdb::params_from_iter(params), |r| {
        Ok(RawPoint {
            ts_micros: r.get(0)?,
            value: r.get(1)?,
            dims: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The newest point's time (µs) of a metric, per value of `group_by` (or one row), counting
/// only points matching `filters`. Metrics without points give no rows.
pub fn last_seen(
    conn: &Connection,
    org_id: i64,
    metric: &str,
    filters: &[(String, String)],
    group_by: Option<&str>,
) -> Result<Vec<(Option<String>, i64)>, StoreError> {
    let group_sql = match group_by {
        Some(key) => dim_value_sql(key),
        None => "NULL::VARCHAR".into(),
    };
    let mut sql = format!(
        "SELECT {group_sql} AS grp, epoch_us(max(ts)) FROM points WHERE org_id = ? AND metric = ?"
    );
    let mut params: Vec<Value> = vec![Value::BigInt(org_id), Value::Text(metric.to_string())];
    for (k, v) in filters {
        sql.push_str(" AND contains('&' || dims || '&', ?)");
        params.push(Value::Text(format!("&{k}={}&", encode_dim_value(v))));
    }
    sql.push_str(" GROUP BY grp");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(duckdb::params_from_iter(params), |r| {
        Ok((r.get::<_, Option<String>>(0)?, r.get::<_, i64>(1)?))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    pub ts_micros: i64,
    /// Sum over dimension series of the values at the latest timestamp.
    pub value: f64,
}

/// The latest timestamp of each metric of an org and the value(s) recorded at it.
pub fn latest(conn: &Connection, org_id: i64) -> Result<HashMap<String, Latest>, StoreError> {
    latest_since(conn, org_id, i64::MIN)
}

/// Like [`latest`], looking only at points from `since_micros` on (cheaper: zone maps skip
/// older row groups). Metrics without points in the window are absent.
pub fn latest_since(
    conn: &Connection,
    org_id: i64,
    since_micros: i64,
) -> Result<HashMap<String, Latest>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT metric, epoch_us(max(ts)), arg_max(value, ts) FROM points WHERE org_id = ? AND ts >= ? GROUP BY metric, dims",
    )?;
    // Per series (metric, dims): latest ts and value; then keep the series at the metric's
    // latest timestamp and add them up.
    let since = ts_value(since_micros.max(0));
    let rows = stmt.query_map(params![org_id, since], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, f64>(2)?,
        ))
    })?;
    let mut out: HashMap<String, Latest> = HashMap::new();
    for row in rows {
        let (metric, ts, value) = row?;
        let entry = out.entry(metric).or_insert(Latest {
            ts_micros: ts,
            value: 0.0,
        });
        if ts > entry.ts_micros {
            *entry = Latest {
                ts_micros: ts,
                value,
            };
        } else if ts == entry.ts_micros {
            entry.value += value;
        }
    }
    Ok(out)
}

/// Distinct dimension keys used by a metric (from up to 10,000 distinct dimension sets).
pub fn dimension_keys(
    conn: &Connection,
    org_id: i64,
    metric: &str,
) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT DISTINCT dims FROM points WHERE org_id = ? AND metric = ? AND dims <> '' LIMIT 10000",
    )?;
    let rows = stmt.query_map(params![org_id, metric], |r| r.get::<_, String>(0))?;
    let mut keys = std::collections::BTreeSet::new();
    for row in rows {
        for (k, _) in crate::domain::ingest::decode_dims(&row?) {
            keys.insert(k);
        }
    }
    Ok(keys.into_iter().collect())
}

pub fn count_points(conn: &Connection, org_id: i64) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM points WHERE org_id = ?",
        params![org_id],
        |r| r.get(0),
    )?)
}

pub fn ping(conn: &Connection) -> Result<(), StoreError> {
    conn.query_row("SELECT count(*) FROM schema_version", [], |r| {
        r.get::<_, i64>(0)
    })?;
    Ok(())
}

fn id_list(org_ids: &[i64]) -> String {
    if org_ids.is_empty() {
        return "NULL".into();
    }
    org_ids
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// For many orgs at once: each metric's aggregates over `[prev_start, start)` (bucket 0) and
/// `[start, end)` (bucket 1), keyed by (org, metric, bucket). One scan for the whole fleet.
pub fn period_fleet(
    conn: &Connection,
    org_ids: &[i64],
    prev_start: i64,
    start: i64,
    end: i64,
) -> Result<HashMap<(i64, String, i64), AggRow>, StoreError> {
    let sql = format!(
        "WITH per_series AS (
            SELECT org_id, metric, CASE WHEN epoch_us(ts) < {start} THEN 0 ELSE 1 END AS bucket, dims,
                   sum(value) AS s, count(*) AS c, min(value) AS mn, max(value) AS mx, arg_max(value, ts) AS l
            FROM points
            WHERE org_id IN ({ids}) AND ts >= ? AND ts < ?
            GROUP BY ALL
         )
         SELECT org_id, metric, bucket, sum(s), sum(c)::BIGINT, min(mn), max(mx), sum(l)
         FROM per_series GROUP BY org_id, metric, bucket",
        ids = id_list(org_ids)
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![ts_value(prev_start), ts_value(end)], |r| {
        let org_id: i64 = r.get(0)?;
        let row = AggRow {
            metric: r.get(1)?,
            bucket: r.get(2)?,
            group: None,
            sum: r.get(3)?,
            count: r.get(4)?,
            min: r.get(5)?,
            max: r.get(6)?,
            last: r.get(7)?,
        };
        Ok(((org_id, row.metric.clone(), row.bucket), row))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// For many orgs at once: each metric's latest timestamp from `since_micros` on.
pub fn latest_ts_fleet(
    conn: &Connection,
    org_ids: &[i64],
    since_micros: i64,
) -> Result<HashMap<(i64, String), i64>, StoreError> {
    let sql = format!(
        "SELECT org_id, metric, epoch_us(max(ts)) FROM points WHERE org_id IN ({}) AND ts >= ? GROUP BY org_id, metric",
        id_list(org_ids)
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![ts_value(since_micros.max(0))], |r| {
        Ok((
            (r.get::<_, i64>(0)?, r.get::<_, String>(1)?),
            r.get::<_, i64>(2)?,
        ))
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
