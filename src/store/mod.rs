//! The two embedded stores: SQLite for accounts and settings ([`meta`]), DuckDB for time series
//! ([`metrics`]) and product events ([`events`]), in one file. Both are blocking libraries; every call runs off the async runtime.

pub mod compaction;
pub mod events;
pub mod meta;
pub mod metrics;

/// Errors from either store, converted from the drivers in one place.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// A uniqueness or state conflict, with a message fit for a user.
    #[error("{0}")]
    Conflict(String),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("duckdb: {0}")]
    DuckDb(#[from] duckdb::Error),
    #[error("{0}")]
    Internal(String),
}

impl StoreError {
    pub fn internal(e: impl std::fmt::Display) -> StoreError {
        StoreError::Internal(e.to_string())
    }
}

/// Hands `msg` to a writer thread's queue; `name` says which store in the errors.
pub(crate) fn send_to_writer<T>(
    sender: &std::sync::Mutex<Option<std::sync::mpsc::Sender<T>>>,
    msg: T,
    name: &str,
) -> Result<(), StoreError> {
    let guard = sender
        .lock()
        .map_err(|_| StoreError::Internal(format!("{name} writer lock poisoned")))?;
    let sender = guard
        .as_ref()
        .ok_or_else(|| StoreError::Internal(format!("the {name} store is shut down")))?;
    sender
        .send(msg)
        .map_err(|_| StoreError::Internal(format!("the {name} writer has stopped")))
}

/// Stops a writer thread: drops its queue's sender (the thread finishes what is queued and
/// leaves its loop), then waits for it. Safe to call more than once.
pub(crate) fn stop_writer<T>(
    sender: &std::sync::Mutex<Option<T>>,
    thread: &std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    name: &str,
) {
    if let Ok(mut s) = sender.lock() {
        s.take();
    }
    let handle = thread.lock().ok().and_then(|mut h| h.take());
    if let Some(handle) = handle
        && handle.join().is_err()
    {
        tracing::error!("the {name} writer thread panicked");
    }
}

/// How long a DuckDB writer waits with nothing queued before it checkpoints what it committed.
const IDLE_CHECKPOINT_AFTER: std::time::Duration = std::time::Duration::from_secs(1);

/// A writer's next message. When none comes within [`IDLE_CHECKPOINT_AFTER`] and the writer
/// has written since its last checkpoint (`dirty`: every message is a write), it checkpoints
/// first: rows still in the write-ahead log are read unshredded (event properties 2× slower)
/// and replayed at start, and during steady ingest DuckDB checkpoints only at
/// `storage.duckdb_checkpoint_wal`. `None` once the queue is closed and empty.
pub(crate) fn next_or_checkpoint<T>(
    conn: &duckdb::Connection,
    rx: &std::sync::mpsc::Receiver<T>,
    dirty: &mut bool,
) -> Option<T> {
    use std::sync::mpsc::RecvTimeoutError;
    if *dirty {
        match rx.recv_timeout(IDLE_CHECKPOINT_AFTER) {
            // Still dirty: the message is another write.
            Ok(msg) => return Some(msg),
            Err(RecvTimeoutError::Disconnected) => return None,
            Err(RecvTimeoutError::Timeout) => {
                *dirty = false;
                if let Err(e) = conn.execute_batch("CHECKPOINT;") {
                    // DuckDB checkpoints at the log's threshold anyway; nothing is lost.
                    tracing::warn!(error = %e, "idle checkpoint failed");
                }
            }
        }
    }
    let next = rx.recv().ok();
    *dirty = next.is_some();
    next
}

pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Column `i` of a query's Arrow result batch as the array type the query gives it.
pub(crate) fn result_column<A: 'static>(
    batch: &arrow::record_batch::RecordBatch,
    i: usize,
) -> Result<&A, StoreError> {
    batch
        .column(i)
        .as_any()
        .downcast_ref::<A>()
        .ok_or_else(|| StoreError::internal(format!("result column {i} has an unexpected type")))
}

/// Column `i` of a result batch as text (DuckDB hands VARCHAR over as Utf8; the cast keeps
/// this right should it hand over another string layout).
pub(crate) fn text_column(
    batch: &arrow::record_batch::RecordBatch,
    i: usize,
) -> Result<arrow::array::StringArray, StoreError> {
    let column = arrow::compute::cast(batch.column(i), &arrow::datatypes::DataType::Utf8)
        .map_err(StoreError::internal)?;
    column
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .cloned()
        .ok_or_else(|| StoreError::internal(format!("result column {i} is not text")))
}
