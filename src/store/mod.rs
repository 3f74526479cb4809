//! The two embedded stores: SQLite for accounts and settings ([`meta`]), DuckDB for time series
//! ([`metrics`]) and product events ([`events`]), in one file. Both are blocking libraries; every call runs off the async runtime.

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

pub fn now_secs() -> i64 {
    chrono::Utc::now().timestamp()
}
