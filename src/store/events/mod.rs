//! DuckDB event store: one `events` table beside the points, in the same database file.
//!
//! SDKs send batches and retry them with the same event uuids, so the write path appends:
//! one writer thread takes every queued batch (group commit), drops the events whose uuid is
//! already stored, and appends the rest through the Arrow appender in one transaction before
//! acknowledging any of them. The dedup check never scans the whole table: it looks only at
//! the group's time range (an hour either side), so zone maps skip every other row group. A
//! re-sent event keeps its timestamp (every SDK re-sends the same payload), so it is found.
//! There is no key or index on the table (ART indexes cost unevictable memory).
//!
//! Properties are stored once, in a VARIANT that DuckDB shreds into typed columns at
//! checkpoint (filters and breakdowns read them at typed-column speed). They arrive as JSON
//! text in a staging table and DuckDB's JSON extension parses them into the VARIANT, so
//! arrays, nulls and a key whose type differs between events are kept exactly; reads turn the
//! VARIANT back into JSON text. (A second copy of the text beside the VARIANT halved DuckDB's
//! append rate: `bench/probes/event-properties.md`.)

pub mod analytics;
pub mod catalogue;
pub mod cohorts;
mod columns;
mod compaction;
pub mod identity;
pub mod queries;

use std::collections::{BTreeSet, HashSet};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use arrow::array::{BooleanArray, FixedSizeBinaryArray, TimestampMicrosecondArray};
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
use duckdb::Connection;
use duckdb::types::{TimeUnit, Value};
use tokio::sync::oneshot;

use super::StoreError;
use super::compaction::{CompactionLog, CompactionReport, Period};
use super::metrics::MetricStore;
use crate::domain::events::Event;
use crate::domain::identity::{self as identity_ops, IdentityOp};

/// Migration 2 of the DuckDB file: the events table.
pub(super) const MIGRATION: &str = "CREATE TABLE events (
    org_id BIGINT NOT NULL,
    uuid UUID NOT NULL,
    name VARCHAR NOT NULL,
    distinct_id VARCHAR NOT NULL,
    ts TIMESTAMP NOT NULL,
    session_id VARCHAR,
    props VARIANT,
    props_json VARCHAR,
    ip VARCHAR,
    user_agent VARCHAR,
    received_at TIMESTAMP NOT NULL
);";

/// Migration 6: the text copy of the properties (`props_json`, kept beside a VARIANT that
/// was built from per-batch structs, which held arrays and disagreeing types as text) becomes
/// the VARIANT itself, and goes.
pub(super) const PROPS_ONCE_MIGRATION: &str =
    "UPDATE events SET props = props_json::JSON::VARIANT WHERE props_json IS NOT NULL;
     ALTER TABLE events DROP COLUMN props_json;";

pub(super) use compaction::MIGRATION as COMPACTION_MIGRATION;

/// The staging table the appender fills (properties as JSON text) and its move into `events`.
pub(super) const STAGING: &str = "CREATE TEMP TABLE event_rows (
    org_id BIGINT, uuid UUID, name VARCHAR, distinct_id VARCHAR, ts TIMESTAMP,
    session_id VARCHAR, props VARCHAR, ip VARCHAR, user_agent VARCHAR, received_at TIMESTAMP
);";
pub(super) const MOVE_STAGED: &str = "INSERT INTO events
        (org_id, uuid, name, distinct_id, ts, session_id, props, ip, user_agent, received_at)
    SELECT org_id, uuid, name, distinct_id, ts, session_id, props::JSON::VARIANT, ip,
           user_agent, received_at
      FROM event_rows;
    DELETE FROM event_rows;";

/// Largest group of events committed in one transaction.
const MAX_GROUP_EVENTS: usize = 200_000;
/// How far either side of a group's time range a stored copy of a re-sent event is looked for.
const DEDUP_MARGIN_MICROS: i64 = 3_600_000_000;

/// Events ready for the writer: converted to record batches by the caller (on the blocking
/// pool, in parallel), so the single writer only checks and appends.
pub struct PreparedEvents {
    org_id: i64,
    /// The events in time order, in the staging table's columns.
    batch: RecordBatch,
    count: usize,
    /// The identity operations of the events, in time order, each with its event's uuid (a
    /// re-sent event's operations are not applied again).
    ops: Vec<([u8; 16], IdentityOp)>,
    /// The properties the events carry, for the catalogue.
    sightings: Vec<catalogue::Sighting>,
    range: (i64, i64),
}

impl PreparedEvents {
    pub fn new(org_id: i64, events: &[Event], received_micros: i64) -> Result<Self, StoreError> {
        // In the order the writer stores them (time, then arrival); of a uuid sent twice in
        // one batch only the first copy is stored, so only its operations count.
        let mut timed: Vec<&Event> = events.iter().collect();
        timed.sort_by_key(|e| e.ts_micros);
        let mut once = HashSet::new();
        let ops: Vec<([u8; 16], IdentityOp)> = timed
            .iter()
            .filter(|e| once.insert(e.uuid))
            .flat_map(|e| identity_ops::ops_of(e).into_iter().map(|op| (e.uuid, op)))
            .collect();
        Ok(PreparedEvents {
            org_id,
            batch: columns::record_batch(org_id, events, received_micros)?,
            count: events.len(),
            sightings: catalogue::sightings(events, &ops),
            ops,
            range: (
                timed.first().map_or(0, |e| e.ts_micros),
                timed.last().map_or(0, |e| e.ts_micros),
            ),
        })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn org_id(&self) -> i64 {
        self.org_id
    }

    /// The earliest and latest event time (µs).
    pub fn time_range(&self) -> (i64, i64) {
        self.range
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// What a write did: events stored, and events already stored (re-sent) that were skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WriteOutcome {
    pub stored: usize,
    pub duplicates: usize,
}

type Ack = oneshot::Sender<Result<WriteOutcome, StoreError>>;

struct Job {
    events: PreparedEvents,
    ack: Ack,
}

enum WriterMsg {
    Write(Job),
    /// Rewrite the week starting at `week` (µs) in storage order; `now` is logged.
    Compact {
        week: i64,
        now: i64,
        ack: oneshot::Sender<Result<u64, StoreError>>,
    },
}

#[derive(Clone)]
pub struct EventStore {
    inner: Arc<Inner>,
}

struct Inner {
    writer: Mutex<Option<mpsc::Sender<WriterMsg>>>,
    writer_thread: Mutex<Option<JoinHandle<()>>>,
    db: MetricStore,
}

impl EventStore {
    /// Starts the event writer on the database `db` already opened (and migrated).
    pub fn open(db: &MetricStore) -> Result<EventStore, StoreError> {
        let conn = db.connection()?;
        conn.execute_batch(
            "CREATE TEMP TABLE event_keys (org_id BIGINT, uuid UUID, ts TIMESTAMP);",
        )?;
        conn.execute_batch(STAGING)?;
        conn.execute_batch(identity::SCRATCH)?;
        conn.execute_batch(catalogue::SCRATCH)?;
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("event-writer".into())
            .spawn(move || writer_loop(conn, rx))
            .map_err(StoreError::internal)?;
        Ok(EventStore {
            inner: Arc::new(Inner {
                writer: Mutex::new(Some(tx)),
                writer_thread: Mutex::new(Some(handle)),
                db: db.clone(),
            }),
        })
    }

    fn enqueue(
        &self,
        events: PreparedEvents,
    ) -> Result<oneshot::Receiver<Result<WriteOutcome, StoreError>>, StoreError> {
        let (ack, done) = oneshot::channel();
        super::send_to_writer(
            &self.inner.writer,
            WriterMsg::Write(Job { events, ack }),
            "event",
        )?;
        Ok(done)
    }

    /// Compacts every settled week not yet (or no longer) in storage order, oldest first, one
    /// week per turn of the writer so that ingest goes on between weeks. A week whose rows
    /// already lie clustered by (org, name) is only logged.
    pub async fn compact_settled(&self, now_micros: i64) -> Result<CompactionReport, StoreError> {
        let due = self
            .read(move |c| compaction::due_weeks(c, now_micros))
            .await?;
        super::compaction::compact_each(due, |week| {
            let (ack, done) = oneshot::channel();
            let sent = super::send_to_writer(
                &self.inner.writer,
                WriterMsg::Compact {
                    week,
                    now: now_micros,
                    ack,
                },
                "event",
            );
            async move {
                sent?;
                done.await
                    .map_err(|_| StoreError::internal("the event writer has stopped"))?
            }
        })
        .await
    }

    /// Stores events durably (all of one call or none); returns once they are committed.
    pub async fn write(&self, events: PreparedEvents) -> Result<WriteOutcome, StoreError> {
        let done = self.enqueue(events)?;
        done.await
            .map_err(|_| StoreError::internal("the event writer has stopped"))?
    }

    /// Blocking form of [`write`](Self::write), for the demo and CLI outside the runtime.
    pub fn write_blocking(&self, events: PreparedEvents) -> Result<WriteOutcome, StoreError> {
        let done = self.enqueue(events)?;
        done.blocking_recv()
            .map_err(|_| StoreError::internal("the event writer has stopped"))?
    }

    /// Runs a read on a pooled connection of the shared database, on the blocking pool.
    pub async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        self.inner.db.read(f).await
    }

    pub fn read_blocking<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        self.inner.db.read_blocking(f)
    }

    /// Stops the writer after it has committed everything queued. Safe to call more than once;
    /// call before the metric store's shutdown, which checkpoints the file.
    pub fn shutdown(&self) {
        super::stop_writer(&self.inner.writer, &self.inner.writer_thread, "event");
    }
}

fn writer_loop(conn: Connection, rx: mpsc::Receiver<WriterMsg>) {
    // Events stored before the catalogue existed are catalogued once, before new writes.
    match catalogue::backfill(&conn) {
        Ok(0) => {}
        Ok(n) => tracing::info!(definitions = n, "event catalogue filled from stored events"),
        Err(e) => tracing::error!(error = %e, "the event catalogue could not be filled"),
    }
    let mut weeks = match CompactionLog::load(&conn, Period::Week) {
        Ok(weeks) => weeks,
        Err(e) => {
            // Unknown compactions: nothing is marked dirty, so no week is compacted twice,
            // and none needs to be for reads to stay right.
            tracing::error!(error = %e, "cannot read the event compaction log");
            CompactionLog::empty(Period::Week)
        }
    };
    let mut recorded = catalogue::Recorded::default();
    let mut written_since_checkpoint = false;
    let mut held: Option<WriterMsg> = None;
    loop {
        let next = match held.take() {
            Some(msg) => Some(msg),
            None => super::next_or_checkpoint(&conn, &rx, &mut written_since_checkpoint),
        };
        let first = match next {
            None => break,
            Some(WriterMsg::Compact { week, now, ack }) => {
                let result = compaction::compact_week(
                    &conn,
                    &mut weeks,
                    week,
                    now,
                    compaction::CLUSTERED_RUNS_PER_NAME,
                );
                if let Err(e) = &result {
                    tracing::error!(error = %e, week, "event compaction failed; the week is as it was");
                }
                let _ = ack.send(result);
                continue;
            }
            Some(WriterMsg::Write(job)) => job,
        };
        let mut queued = first.events.len();
        let mut group = vec![first];
        while queued < MAX_GROUP_EVENTS {
            match rx.try_recv() {
                Ok(WriterMsg::Write(job)) => {
                    queued += job.events.len();
                    group.push(job);
                }
                Ok(other) => {
                    // A compaction waits for the group before it.
                    held = Some(other);
                    break;
                }
                Err(_) => break,
            }
        }
        let jobs: Vec<&PreparedEvents> = group.iter().map(|j| &j.events).collect();
        match write_group(&conn, &mut recorded, &mut weeks, &jobs) {
            Ok(outcomes) => {
                for (job, outcome) in group.into_iter().zip(outcomes) {
                    let _ = job.ack.send(Ok(outcome));
                }
            }
            Err(e) if group.len() == 1 => {
                tracing::error!(error = %e, "event write failed");
                for job in group {
                    let _ = job.ack.send(Err(StoreError::Internal(e.to_string())));
                }
            }
            Err(_) => {
                // One bad job must not fail the others: retry each on its own.
                for job in group {
                    let result =
                        write_group(&conn, &mut recorded, &mut weeks, &[&job.events]).map(|o| o[0]);
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "event write failed");
                    }
                    let _ = job.ack.send(result);
                }
            }
        }
    }
}

fn ts_value(micros: i64) -> Value {
    Value::Timestamp(TimeUnit::Microsecond, micros)
}

/// Every job in one transaction: stage the keys, find the ones already stored, append the rest
/// (the first copy of a uuid within the group wins).
fn write_group(
    conn: &Connection,
    recorded: &mut catalogue::Recorded,
    weeks: &mut CompactionLog,
    jobs: &[&PreparedEvents],
) -> Result<Vec<WriteOutcome>, StoreError> {
    // Where the writer's time goes, logged per group at debug level
    // (VITALS_LOG=vitals::store::events=debug): the writer is the ingest's bottleneck.
    // marks[0] is the start; marks[i] the end of phase i.
    let mut marks = [std::time::Instant::now(); 6];
    conn.execute_batch("BEGIN TRANSACTION;")?;
    let horizon = weeks.horizon();
    type Written = (Vec<WriteOutcome>, catalogue::Pending, BTreeSet<i64>);
    let result = (|| -> Result<Written, StoreError> {
        let stored = stored_duplicates(conn, jobs)?;
        let mut late_times: Vec<i64> = Vec::new();
        marks[1] = std::time::Instant::now();
        let mut seen: HashSet<(i64, [u8; 16])> = HashSet::new();
        let mut outcomes = Vec::with_capacity(jobs.len());
        let mut app = conn.appender_to_catalog_and_db("event_rows", "temp", "main")?;
        let mut identity_work: Vec<(i64, Vec<&IdentityOp>)> = Vec::new();
        for job in jobs {
            let mut outcome = WriteOutcome::default();
            let mut fresh_keys: HashSet<[u8; 16]> = HashSet::new();
            let batch = &job.batch;
            let uuids = uuid_column(batch)?;
            let keep: BooleanArray = (0..batch.num_rows())
                .map(|i| {
                    let mut key = [0u8; 16];
                    key.copy_from_slice(uuids.value(i));
                    let fresh =
                        !stored.contains(&(job.org_id, key)) && seen.insert((job.org_id, key));
                    if fresh {
                        fresh_keys.insert(key);
                    }
                    Some(fresh)
                })
                .collect();
            if job.range.0 < horizon {
                // Stored into a compacted week: that week is dirty now.
                let ts = ts_column(batch)?;
                late_times.extend(
                    (0..batch.num_rows())
                        .filter(|i| keep.value(*i))
                        .map(|i| ts.value(i)),
                );
            }
            let kept = keep.true_count();
            outcome.stored += kept;
            outcome.duplicates += batch.num_rows() - kept;
            if kept == batch.num_rows() {
                app.append_record_batch(batch.clone())?;
            } else if kept > 0 {
                let filtered = filter_record_batch(batch, &keep).map_err(StoreError::internal)?;
                app.append_record_batch(filtered)?;
            }
            outcomes.push(outcome);
            // Only the events stored now change identity (a re-sent one did already).
            let ops: Vec<&IdentityOp> = job
                .ops
                .iter()
                .filter(|(uuid, _)| fresh_keys.contains(uuid))
                .map(|(_, op)| op)
                .collect();
            if !ops.is_empty() {
                identity_work.push((job.org_id, ops));
            }
        }
        app.flush()?;
        drop(app);
        marks[2] = std::time::Instant::now();
        conn.execute_batch(MOVE_STAGED)?;
        marks[3] = std::time::Instant::now();
        let now = chrono::Utc::now().timestamp_micros();
        for (org_id, ops) in identity_work {
            let refused = identity::apply(conn, org_id, &ops, now)?;
            if refused > 0 {
                tracing::info!(
                    org_id,
                    refused,
                    "identity merges of two identified persons refused"
                );
            }
        }
        let sightings: Vec<(i64, &[catalogue::Sighting])> = jobs
            .iter()
            .map(|j| (j.org_id, j.sightings.as_slice()))
            .collect();
        let pending = recorded.write(conn, &sightings)?;
        let dirtied = weeks.dirtied_by(late_times.into_iter());
        weeks.mark_dirty(conn, &dirtied)?;
        marks[4] = std::time::Instant::now();
        Ok((outcomes, pending, dirtied))
    })();
    match result {
        Ok((outcomes, pending, dirtied)) => {
            conn.execute_batch("COMMIT;")?;
            marks[5] = std::time::Instant::now();
            let ms = |phase: usize| (marks[phase] - marks[phase - 1]).as_secs_f64() * 1e3;
            tracing::debug!(
                events = jobs.iter().map(|j| j.len()).sum::<usize>(),
                total_ms = (marks[5] - marks[0]).as_secs_f64() * 1e3,
                dedup_ms = ms(1),
                stage_ms = ms(2),
                move_ms = ms(3),
                identity_catalogue_ms = ms(4),
                commit_ms = ms(5),
                "event group committed"
            );
            recorded.remember(pending);
            weeks.set_dirty(&dirtied);
            Ok(outcomes)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK;");
            recorded.forget();
            Err(e)
        }
    }
}

fn uuid_column(batch: &RecordBatch) -> Result<&FixedSizeBinaryArray, StoreError> {
    batch
        .column(columns::KEY_COLUMNS[1])
        .as_any()
        .downcast_ref::<FixedSizeBinaryArray>()
        .ok_or_else(|| StoreError::internal("uuid column has the wrong type"))
}

fn ts_column(batch: &RecordBatch) -> Result<&TimestampMicrosecondArray, StoreError> {
    batch
        .column(columns::KEY_COLUMNS[2])
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .ok_or_else(|| StoreError::internal("ts column has the wrong type"))
}

/// The (org, uuid) pairs of the group already stored, looking only at the group's time range.
fn stored_duplicates(
    conn: &Connection,
    jobs: &[&PreparedEvents],
) -> Result<HashSet<(i64, [u8; 16])>, StoreError> {
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    {
        let mut keys = conn.appender_to_catalog_and_db("event_keys", "temp", "main")?;
        for job in jobs {
            let ts = ts_column(&job.batch)?;
            if let (Some(min), Some(max)) = (arrow::compute::min(ts), arrow::compute::max(ts)) {
                lo = lo.min(min);
                hi = hi.max(max);
            }
            let projected = job
                .batch
                .project(&columns::KEY_COLUMNS)
                .map_err(StoreError::internal)?;
            keys.append_record_batch(projected)?;
        }
        keys.flush()?;
    }
    if lo > hi {
        return Ok(HashSet::new());
    }
    let mut stmt = conn.prepare(
        "SELECT e.org_id, e.uuid::VARCHAR FROM events e
           SEMI JOIN event_keys k ON e.org_id = k.org_id AND e.uuid = k.uuid
          WHERE e.ts >= ? AND e.ts <= ?",
    )?;
    let rows = stmt.query_map(
        [
            ts_value(lo.saturating_sub(DEDUP_MARGIN_MICROS)),
            ts_value(hi.saturating_add(DEDUP_MARGIN_MICROS)),
        ],
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
    )?;
    let mut found = HashSet::new();
    for row in rows {
        let (org, text) = row?;
        let parsed = uuid::Uuid::parse_str(&text).map_err(StoreError::internal)?;
        found.insert((org, *parsed.as_bytes()));
    }
    conn.execute_batch("DELETE FROM event_keys;")?;
    Ok(found)
}

/// Events of an org (all time); for tests and the demo.
pub fn count_events(conn: &Connection, org_id: i64) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT count(*) FROM events WHERE org_id = ?",
        [org_id],
        |r| r.get(0),
    )?)
}
