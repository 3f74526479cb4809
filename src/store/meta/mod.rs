//! SQLite meta store: organisations, users, memberships, sessions, API keys, custom metrics and
//! the audit log. One connection behind a mutex serves as the single writer (no "database is
//! locked" under load); every call runs on the blocking pool through [`MetaStore::call`].

pub mod alerts;
pub mod anomalies;
pub mod api_keys;
pub mod audit;
pub mod catalog_cache;
pub mod channels;
pub mod cohorts;
pub mod custom_metrics;
pub mod event_metrics;
pub mod health_scores;
pub mod inbound_hooks;
pub mod integrations;
pub mod invitations;
pub mod job_runs;
pub mod org_settings;
pub mod orgs;
pub mod project_keys;
pub mod saved_insights;
pub mod sessions;
pub mod users;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};

use super::StoreError;

/// Forward-only migrations; the schema version is `PRAGMA user_version` = number applied.
const MIGRATIONS: &[&str] = &[
    // 1: accounts, keys, audit.
    r#"
    CREATE TABLE orgs (
        id INTEGER PRIMARY KEY,
        slug TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        time_zone TEXT NOT NULL,
        currency TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        email TEXT NOT NULL UNIQUE COLLATE NOCASE,
        name TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        is_server_admin INTEGER NOT NULL DEFAULT 0,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE memberships (
        org_id INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'manager', 'analyst', 'viewer')),
        created_at INTEGER NOT NULL,
        PRIMARY KEY (org_id, user_id)
    );
    CREATE INDEX memberships_user ON memberships(user_id);
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        csrf_token TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX sessions_user ON sessions(user_id);
    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        prefix TEXT NOT NULL UNIQUE,
        key_hash TEXT NOT NULL,
        scopes TEXT NOT NULL,
        created_by INTEGER REFERENCES users(id) ON DELETE SET NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER,
        last_used_at INTEGER,
        revoked_at INTEGER
    );
    CREATE INDEX api_keys_org ON api_keys(org_id);
    CREATE TABLE custom_metrics (
        org_id INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        name TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        category TEXT NOT NULL,
        unit TEXT NOT NULL,
        higher_is_better INTEGER NOT NULL,
        aggregation TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (org_id, key)
    );
    CREATE TABLE audit_log (
        id INTEGER PRIMARY KEY,
        org_id INTEGER REFERENCES orgs(id) ON DELETE CASCADE,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        ip TEXT NOT NULL DEFAULT '',
        at INTEGER NOT NULL
    );
    CREATE INDEX audit_log_org_at ON audit_log(org_id, at);
    "#,
    // 2: health score history, one row per org per recomputation.
    r#"
    CREATE TABLE health_scores (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
        computed_at INTEGER NOT NULL,
        overall REAL,
        report TEXT NOT NULL
    );
    CREATE INDEX health_scores_org_at ON health_scores(org_id, computed_at);
    "#,
    // 3: scheduler job runs.
    r#"
    CREATE TABLE job_runs (
        id INTEGER PRIMARY KEY,
        job TEXT NOT NULL,
        started_at INTEGER NOT NULL,
        duration_ms INTEGER,
        outcome TEXT NOT NULL,
        message TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX job_runs_job_started ON job_runs(job, started_at);
    "#,
    // 4: per-org scoring settings (JSON of domain::health::HealthSettings).
    r#"
    CREATE TABLE org_settings (
        org_id INTEGER PRIMARY KEY REFERENCES orgs(id) ON DELETE CASCADE,
        health TEXT NOT NULL
    );
    "#,
    // 5: alerting: channels, rules, alerts with their history, silences, mute windows and the
    // notification outbox (durable delivery, one row per channel per notification).
    r#"
    CREATE TABLE notification_channels (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('email', 'slack', 'webhook')),
        settings TEXT NOT NULL,
        secret TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        last_success_at INTEGER,
        last_failure_at INTEGER,
        last_error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX notification_channels_org ON notification_channels(org_id);
    CREATE TABLE alert_rules (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
        spec TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        last_evaluated_at INTEGER,
        last_error TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX alert_rules_org ON alert_rules(org_id);
    CREATE TABLE alerts (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
        rule_id INTEGER NOT NULL REFERENCES alert_rules(id) ON DELETE CASCADE,
        series TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'firing', 'acknowledged', 'resolved', 'cleared')),
        severity TEXT NOT NULL,
        category TEXT NOT NULL DEFAULT '',
        tracker TEXT NOT NULL,
        value REAL,
        started_at INTEGER NOT NULL,
        fired_at INTEGER,
        updated_at INTEGER NOT NULL,
        resolved_at INTEGER,
        ack_by TEXT NOT NULL DEFAULT '',
        ack_note TEXT NOT NULL DEFAULT '',
        ack_until INTEGER
    );
    CREATE UNIQUE INDEX alerts_one_open ON alerts(rule_id, series)
        WHERE state IN ('pending', 'firing', 'acknowledged');
    CREATE INDEX alerts_org_updated ON alerts(org_id, updated_at);
    CREATE TABLE alert_events (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
        alert_id INTEGER NOT NULL REFERENCES alerts(id) ON DELETE CASCADE,
        at INTEGER NOT NULL,
        kind TEXT NOT NULL,
        actor TEXT NOT NULL DEFAULT '',
        note TEXT NOT NULL DEFAULT '',
        value REAL
    );
    CREATE INDEX alert_events_alert ON alert_events(alert_id, at);
    CREATE TABLE silences (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
        matchers TEXT NOT NULL,
        ends_at INTEGER NOT NULL,
        comment TEXT NOT NULL DEFAULT '',
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE mute_windows (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        schedule TEXT NOT NULL,
        matchers TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
        channel_id INTEGER NOT NULL REFERENCES notification_channels(id) ON DELETE CASCADE,
        alert_id INTEGER REFERENCES alerts(id) ON DELETE SET NULL,
        idempotency_key TEXT NOT NULL,
        notice TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER NOT NULL,
        last_error TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        sent_at INTEGER,
        UNIQUE (channel_id, idempotency_key)
    );
    CREATE INDEX outbox_due ON outbox(state, next_attempt_at);
    "#,
    // 6: anomalies found by the insights job, one row per anomalous daily point.
    r#"
    CREATE TABLE anomalies (
        org_id INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
        metric TEXT NOT NULL,
        at INTEGER NOT NULL,
        day TEXT NOT NULL,
        value REAL NOT NULL,
        expected REAL NOT NULL,
        band REAL NOT NULL,
        score REAL NOT NULL,
        detected_at INTEGER NOT NULL,
        PRIMARY KEY (org_id, metric, at)
    );
    CREATE INDEX anomalies_org_at ON anomalies(org_id, at);
    "#,
    // 7: inbound webhooks: secret URLs that accept metric points for one org.
    r#"
    CREATE TABLE inbound_hooks (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        prefix TEXT NOT NULL UNIQUE,
        token_hash TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL,
        last_used_at INTEGER,
        revoked_at INTEGER
    );
    CREATE INDEX inbound_hooks_org ON inbound_hooks(org_id);
    "#,
    // 8: integrations (credentials sealed with data_dir/secret.key) and their sync history.
    r#"
    CREATE TABLE integrations (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
        provider TEXT NOT NULL,
        name TEXT NOT NULL,
        credentials TEXT NOT NULL,
        cursor TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL DEFAULT 'new',
        last_error TEXT NOT NULL DEFAULT '',
        created_at INTEGER NOT NULL,
        last_sync_at INTEGER
    );
    CREATE INDEX integrations_org ON integrations(org_id);
    CREATE TABLE sync_runs (
        id INTEGER PRIMARY KEY,
        integration_id INTEGER NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
        started_at INTEGER NOT NULL,
        finished_at INTEGER,
        rows INTEGER NOT NULL DEFAULT 0,
        outcome TEXT NOT NULL,
        message TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX sync_runs_integration ON sync_runs(integration_id, started_at);
    "#,
    // 9: provider webhook events already applied (idempotency by event id).
    r#"
    CREATE TABLE integration_events (
        integration_id INTEGER NOT NULL REFERENCES integrations(id) ON DELETE CASCADE,
        event_id TEXT NOT NULL,
        received_at INTEGER NOT NULL,
        PRIMARY KEY (integration_id, event_id)
    );
    "#,
    // 10: OAuth authorisations in flight: the state is bound to the org and the user, with the
    // PKCE verifier; used once, valid for ten minutes.
    r#"
    CREATE TABLE oauth_states (
        state_hash TEXT PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        provider TEXT NOT NULL,
        verifier TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    "#,
    // 11: each integration's own pull schedule (cron, seconds first; empty = only by hand).
    r#"
    ALTER TABLE integrations ADD COLUMN schedule TEXT NOT NULL DEFAULT '0 0 * * * *';
    "#,
    // 12: channel secrets sealed at rest like integration credentials. Rows written before
    // stay `sealed = 0` until App::open seals them (the key lives outside the database);
    // `secret_hint` is the masked tail shown on pages, so showing one needs no key.
    r#"
    ALTER TABLE notification_channels ADD COLUMN sealed INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE notification_channels ADD COLUMN secret_hint TEXT NOT NULL DEFAULT '';
    "#,
    // 13: sessions end after a configurable idle time; sessions open at the upgrade count as
    // seen then.
    r#"
    ALTER TABLE sessions ADD COLUMN last_seen_at INTEGER NOT NULL DEFAULT 0;
    UPDATE sessions SET last_seen_at = CAST(strftime('%s', 'now') AS INTEGER);
    "#,
    // 14: invitations to join an org: a single-use, expiring link the invitee accepts (only
    // a SHA-256 of its token is kept).
    r#"
    CREATE TABLE invitations (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
        email TEXT NOT NULL COLLATE NOCASE,
        role TEXT NOT NULL,
        token_hash TEXT NOT NULL UNIQUE,
        invited_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        accepted_at INTEGER,
        revoked_at INTEGER
    );
    CREATE INDEX invitations_org ON invitations(org_id);
    "#,
    // 15: the project write key of each org (SDKs embed it; it can only send events).
    r#"
    CREATE TABLE project_keys (
        org_id INTEGER PRIMARY KEY REFERENCES orgs(id) ON DELETE CASCADE,
        key TEXT NOT NULL UNIQUE,
        created_at INTEGER NOT NULL
    );
    "#,
    // 16: metrics computed from events (a custom metric's daily values: count, unique users or
    // sum of a property of an event).
    r#"
    CREATE TABLE event_metrics (
        org_id INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        definition TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        PRIMARY KEY (org_id, key)
    );
    "#,
    // 17: cohorts (saved user segments: a definition of behaviour and person conditions).
    r#"
    CREATE TABLE cohorts (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        definition TEXT NOT NULL,
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        UNIQUE (org_id, name)
    );
    "#,
    // 18: saved insights (a named event analysis and its question).
    r#"
    CREATE TABLE saved_insights (
        id INTEGER PRIMARY KEY,
        org_id INTEGER NOT NULL REFERENCES orgs(id) ON DELETE CASCADE,
        name TEXT NOT NULL,
        description TEXT NOT NULL,
        kind TEXT NOT NULL,
        query TEXT NOT NULL,
        last_days INTEGER,
        created_by TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE INDEX saved_insights_org ON saved_insights(org_id);
    "#,
];

pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Read connections kept open for reuse; more may be open at once while pages are busy.
const POOLED_READERS: usize = 8;

/// The SQLite store: one connection that writes (behind a mutex, so transactions never race
/// for the write lock) and a pool of read-only connections, which WAL lets read beside it and
/// each other. Page and API authentication read on every request; they take the pool.
#[derive(Clone)]
pub struct MetaStore {
    conn: Arc<Mutex<Connection>>,
    readers: Arc<Mutex<Vec<Connection>>>,
    path: Arc<std::path::PathBuf>,
    catalogs: catalog_cache::CatalogCache,
    /// Bumped after every `call` that changed a row: caches of org-level results compare it.
    writes: Arc<std::sync::atomic::AtomicU64>,
}

impl MetaStore {
    /// Opens (creating if needed) and migrates the database.
    pub fn open(path: &Path) -> Result<MetaStore, StoreError> {
        let mut conn = Connection::open(path)?;
        configure(&conn)?;
        migrate(&mut conn)?;
        Ok(MetaStore {
            conn: Arc::new(Mutex::new(conn)),
            readers: Arc::default(),
            path: Arc::new(path.to_path_buf()),
            catalogs: catalog_cache::CatalogCache::default(),
            writes: Arc::default(),
        })
    }

    /// Runs a read on a pooled read-only connection on the blocking thread pool. It sees every
    /// write committed before the call; it cannot write (`query_only`).
    pub async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = store
                .readers
                .lock()
                .map_err(|_| StoreError::internal("meta reader pool poisoned"))?
                .pop();
            let conn = match pooled {
                Some(c) => c,
                None => {
                    let c = Connection::open(store.path.as_ref())?;
                    c.busy_timeout(Duration::from_secs(5))?;
                    c.pragma_update(None, "query_only", "ON")?;
                    // Page and API authentication alone prepare about a dozen statements.
                    c.set_prepared_statement_cache_capacity(64);
                    c
                }
            };
            let result = f(&conn);
            if let Ok(mut pool) = store.readers.lock()
                && pool.len() < POOLED_READERS
            {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(StoreError::internal)?
    }

    /// The org's metric catalogue (built-ins, then custom metrics), from memory after the
    /// first read.
    pub async fn catalog(&self, org_id: i64) -> Result<catalog_cache::Catalog, StoreError> {
        let (kept, epoch) = self.catalogs.get(org_id);
        if let Some(catalog) = kept {
            return Ok(catalog);
        }
        let loaded = Arc::new(
            self.read(move |c| custom_metrics::catalog(c, org_id))
                .await?,
        );
        self.catalogs.keep(org_id, epoch, loaded.clone());
        Ok(loaded)
    }

    /// Call after committing a change to `org_id`'s custom metrics.
    pub fn catalog_changed(&self, org_id: i64) {
        self.catalogs.changed(org_id);
    }

    /// Runs `f` with the connection on the blocking thread pool.
    pub async fn call<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || store.call_blocking(f))
            .await
            .map_err(StoreError::internal)?
    }

    /// How many `call`s have changed rows so far (reads through `read` never do). A result
    /// computed from this store stays right while the count stands; a change made by another
    /// process (the CLI) is not counted.
    pub fn version(&self) -> u64 {
        self.writes.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Runs `f` on the current thread (for CLI commands and startup, outside the runtime).
    pub fn call_blocking<R>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut guard = self
            .conn
            .lock()
            .map_err(|_| StoreError::internal("meta store mutex poisoned"))?;
        let before = guard.total_changes();
        let result = f(&mut guard);
        if guard.total_changes() != before {
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
        result
    }
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(StoreError::Internal(format!(
            "meta.sqlite has schema version {current}, newer than this binary's {SCHEMA_VERSION}; \
             run a newer Vitals or restore a backup"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
        tracing::info!(version = i + 1, "meta store migrated");
    }
    Ok(())
}

/// Cheap liveness probe for `/healthz`.
pub fn ping(conn: &Connection) -> Result<(), StoreError> {
    conn.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?;
    Ok(())
}

/// Maps a UNIQUE violation to a user-facing conflict.
pub(crate) fn unique_conflict(e: rusqlite::Error, message: &str) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(message.to_string())
        }
        _ => StoreError::Sqlite(e),
    }
}

/// Refuses (409) a new row of `table` once the org holds `max` of them ("an organisation
/// keeps at most {max} {what}").
pub(crate) fn ensure_room(
    conn: &Connection,
    table: &str,
    org_id: i64,
    max: i64,
    what: &str,
) -> Result<(), StoreError> {
    let count: i64 = conn.query_row(
        &format!("SELECT count(*) FROM {table} WHERE org_id = ?"),
        [org_id],
        |r| r.get(0),
    )?;
    if count >= max {
        return Err(StoreError::Conflict(format!(
            "an organisation keeps at most {max} {what}"
        )));
    }
    Ok(())
}

pub(crate) trait OptionalRow<T> {
    fn found(self) -> Result<T, StoreError>;
}

impl<T> OptionalRow<T> for Result<T, rusqlite::Error> {
    fn found(self) -> Result<T, StoreError> {
        self.optional()?.ok_or(StoreError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_once_and_refuses_newer_databases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.sqlite");
        let store = MetaStore::open(&path).unwrap();
        let (version, fk, mode): (i64, i64, String) = store
            .call_blocking(|c| {
                Ok(c.query_row(
                    "SELECT (SELECT user_version FROM pragma_user_version), (SELECT foreign_keys FROM pragma_foreign_keys), (SELECT journal_mode FROM pragma_journal_mode)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )?)
            })
            .unwrap();
        assert_eq!((version, fk, mode.as_str()), (SCHEMA_VERSION, 1, "wal"));
        drop(store);
        MetaStore::open(&path).unwrap();
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(conn);
        let err = MetaStore::open(&path).err().unwrap();
        assert!(err.to_string().contains("newer than this binary"), "{err}");
    }

    /// A write through `call` is seen by the next `read`; a read connection refuses to write
    /// (the orgs table stays at the one row written); sixteen reads at once all answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_see_committed_writes_and_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(&dir.path().join("meta.sqlite")).unwrap();
        store
            .call(|c| {
                c.execute(
                    "INSERT INTO orgs (slug, name, time_zone, currency, created_at) VALUES ('a', 'A', 'UTC', 'EUR', 0)",
                    [],
                )?;
                Ok(())
            })
            .await
            .unwrap();
        let count = |c: &Connection| -> Result<i64, StoreError> {
            Ok(c.query_row("SELECT count(*) FROM orgs", [], |r| r.get(0))?)
        };
        assert_eq!(store.read(count).await.unwrap(), 1);
        let refused = store
            .read(|c| {
                c.execute(
                    "INSERT INTO orgs (slug, name, time_zone, currency, created_at) VALUES ('b', 'B', 'UTC', 'EUR', 0)",
                    [],
                )?;
                Ok(())
            })
            .await;
        assert!(refused.is_err());
        let reads: Vec<_> = (0..16).map(|_| store.read(count)).collect();
        for n in futures::future::join_all(reads).await {
            assert_eq!(n.unwrap(), 1);
        }
    }
}
