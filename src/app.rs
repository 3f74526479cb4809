//! The application: both stores, the config, the two in-process channels (live events for open
//! pages, [`Signal`]s for the services), and the operations the web layer and the CLI share
//! (storing points, creating organisations, users, API keys, seeding the demo). It depends on
//! no service: services subscribe to its signals (see `ARCHITECTURE.md`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use chrono_tz::Tz;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::domain::roles::{Role, Scope};
use crate::domain::throttle::LoginThrottle;
use crate::domain::{demo, ingest::Point};
use crate::security;
use crate::store::events::EventStore;
use crate::store::meta::api_keys::{self, ApiKey, NewKey};
use crate::store::meta::orgs::{self, Org};
use crate::store::meta::users::{self, User};
use crate::store::meta::{MetaStore, audit};
use crate::store::metrics::{MetricStore, StoreOptions};
use crate::store::{StoreError, now_secs};

/// Something that changed in an org, pushed to its open pages.
#[derive(Debug, Clone)]
pub struct OrgEvent {
    pub org_id: i64,
    /// Metric keys that received points.
    pub metrics: Vec<String>,
    /// A new health score was computed (the overall value, `None` without data).
    pub score: Option<Option<f64>>,
    /// An alert changed state (its id).
    pub alert: Option<i64>,
    /// Product events were stored (how many).
    pub events: Option<usize>,
}

impl OrgEvent {
    pub fn alert_changed(org_id: i64, alert_id: i64) -> OrgEvent {
        OrgEvent {
            org_id,
            metrics: Vec::new(),
            score: None,
            alert: Some(alert_id),
            events: None,
        }
    }
}

/// Something a writer or a service did that other services react to. Sent on
/// [`App::signals`]; nobody listening (the CLI, a benchmark) is fine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// Points were durably stored for the org (its metrics, sorted, each once).
    PointsStored { org_id: i64, metrics: Vec<String> },
    /// An integration of the org finished a sync (its status may have changed).
    SyncFinished { org_id: i64 },
    /// Events were durably stored for the org, with times in `[from, to]`.
    EventsStored {
        org_id: i64,
        from_micros: i64,
        to_micros: i64,
    },
    /// Anomaly detection replaced the org's stored anomalies.
    AnomaliesDetected { org_id: i64 },
    /// Notifications were queued in the outbox.
    NoticesQueued,
}

#[derive(Clone)]
pub struct App {
    pub config: Arc<Config>,
    pub meta: MetaStore,
    pub metrics: MetricStore,
    /// Product events (SDKs, the events API), in the metric store's database file.
    pub events: EventStore,
    /// What open pages hear about (SSE).
    pub live: broadcast::Sender<OrgEvent>,
    pub throttle: Arc<Mutex<LoginThrottle>>,
    /// Password hashes (argon2: about 19 MiB and tens of milliseconds each) running at once are
    /// bounded, so a flood of logins cannot exhaust memory or the blocking pool.
    pub password_checks: Arc<tokio::sync::Semaphore>,
    /// Ingest batches parsed at once: one core fewer than the machine has (at least one), so
    /// a burst of large batches always leaves a core for everything else (`/healthz`, pages).
    pub parse_slots: Arc<tokio::sync::Semaphore>,
    /// Cancelled when the server should stop; open event streams end on it.
    pub shutdown: CancellationToken,
    /// What writers and services announce to the services (see [`Signal`]).
    pub signals: broadcast::Sender<Signal>,
    /// Where the server listens (`http://127.0.0.1:8080`), set by `serve`; links in messages use
    /// `server.public_url` when set, else this.
    pub bound_url: Arc<std::sync::OnceLock<String>>,
    /// Outbound HTTP (notifications, integrations): public addresses only unless
    /// `outbound.allow_private_targets` lists them; no redirects.
    pub http: crate::outbound::Outbound,
    /// Seals integration credentials at rest.
    pub secrets: crate::secrets::SecretBox,
    /// Rendered org-level page parts (the overview's body), shared by the org's members until
    /// its points or the meta store change.
    pub rendered: crate::org_cache::OrgCache<Arc<str>>,
}

/// `work` on the blocking pool while holding one of `slots`' permits.
async fn bounded_blocking<T: Send + 'static>(
    slots: &tokio::sync::Semaphore,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StoreError> {
    let _permit = slots.acquire().await.map_err(StoreError::internal)?;
    tokio::task::spawn_blocking(work)
        .await
        .map_err(StoreError::internal)
}

/// Channel secrets written before they were sealed (schema 12) are sealed once, at start.
fn seal_legacy_channel_secrets(
    meta: &MetaStore,
    secrets: &crate::secrets::SecretBox,
) -> anyhow::Result<()> {
    use crate::store::meta::channels;
    meta.call_blocking(|c| {
        let tx = c.transaction()?;
        for (id, plain) in channels::unsealed(&tx)? {
            let secret = channels::StoredSecret {
                sealed: &secrets.seal(&plain),
                hint: &crate::domain::notify::mask_secret(&plain),
            };
            channels::store_sealed(&tx, id, &secret)?;
        }
        tx.commit()?;
        Ok(())
    })
    .context("while sealing channel secrets")
}

impl App {
    /// Creates the data directory if needed and opens (and migrates) both stores.
    pub fn open(config: Config) -> anyhow::Result<App> {
        let dir = config.data_dir();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("while creating the data directory {}", dir.display()))?;
        let meta = MetaStore::open(&dir.join("meta.sqlite"))
            .with_context(|| format!("while opening {}", dir.join("meta.sqlite").display()))?;
        let metrics = MetricStore::open(
            &dir.join("metrics.duckdb"),
            &StoreOptions {
                threads: config.storage.duckdb_threads,
                memory_limit: config.storage.duckdb_memory_limit.clone(),
                checkpoint_wal: config.storage.duckdb_checkpoint_wal.clone(),
            },
        )
        .with_context(|| format!("while opening {}", dir.join("metrics.duckdb").display()))?;
        let sealed = meta
            .call_blocking(|c| {
                Ok(crate::store::meta::integrations::count_all(c)?
                    + crate::store::meta::channels::count_sealed(c)?)
            })
            .context("while counting sealed secrets")?;
        let key_file = match config.integrations.secret_key_file.trim() {
            "" => dir.join("secret.key"),
            path => PathBuf::from(path),
        };
        let secrets = crate::secrets::SecretBox::open_file(&key_file, sealed)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        seal_legacy_channel_secrets(&meta, &secrets)?;
        let events = EventStore::open(&metrics).context("while starting the event writer")?;
        let (live, _) = broadcast::channel(1024);
        // A subscriber that falls this far behind is told so and treats every org as changed.
        let (signals, _) = broadcast::channel(4096);
        // rustls needs its crypto provider chosen once per process; a second call is a no-op error.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let policy = crate::outbound::TargetPolicy::new(&config.outbound.allow_private_targets)
            .map_err(|m| anyhow::anyhow!("outbound.allow_private_targets: {m}"))?;
        let http =
            crate::outbound::Outbound::new(policy).context("while building the HTTP client")?;
        let throttle = LoginThrottle::new(
            config.auth.login_max_failures as usize,
            Duration::from_secs(config.auth.login_window_secs),
        );
        Ok(App {
            config: Arc::new(config),
            meta,
            metrics,
            events,
            live,
            throttle: Arc::new(Mutex::new(throttle)),
            password_checks: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_PASSWORD_CHECKS)),
            parse_slots: Arc::new(tokio::sync::Semaphore::new(
                std::thread::available_parallelism()
                    .map_or(1, |n| n.get().saturating_sub(1))
                    .max(1),
            )),
            shutdown: CancellationToken::new(),
            signals,
            bound_url: Arc::new(std::sync::OnceLock::new()),
            http,
            secrets,
            rendered: Default::default(),
        })
    }

    /// The versions an org-level result computed now is made from (see [`crate::org_cache`]).
    pub fn versions(&self, org_id: i64) -> crate::org_cache::Versions {
        crate::org_cache::Versions {
            metrics: self.metrics.generation(org_id),
            meta: self.meta.version(),
        }
    }

    /// Stores points for an org (durably, before returning), tells open pages, and announces
    /// [`Signal::PointsStored`], on which the services recompute the score, evaluate alert rules
    /// and detect anomalies (each debounced). Every writer (API, inbound webhooks, CSV import,
    /// integrations) goes through here. Returns the number stored and the metrics touched.
    pub async fn store_points(
        &self,
        org_id: i64,
        points: Vec<crate::domain::ingest::Point>,
    ) -> Result<(usize, Vec<String>), crate::store::StoreError> {
        let mut touched: Vec<String> = points.iter().map(|p| p.metric.clone()).collect();
        touched.sort();
        touched.dedup();
        if points.is_empty() {
            return Ok((0, touched));
        }
        let stored = self.metrics.write(org_id, points).await?;
        self.points_stored(org_id, &touched);
        Ok((stored, touched))
    }

    /// Stores points that arrived as columns (an Arrow stream), as [`store_points`](Self::store_points).
    pub async fn store_columns(
        &self,
        org_id: i64,
        points: crate::domain::ingest_arrow::ColumnarPoints,
    ) -> Result<(usize, Vec<String>), crate::store::StoreError> {
        let touched = points.metrics.clone();
        let stored = self.metrics.write_columns(org_id, points).await?;
        self.points_stored(org_id, &touched);
        Ok((stored, touched))
    }

    /// Live pages and the services learn of stored points; nobody listening is fine.
    fn points_stored(&self, org_id: i64, touched: &[String]) {
        let _ = self.live.send(OrgEvent {
            org_id,
            metrics: touched.to_vec(),
            score: None,
            alert: None,
            events: None,
        });
        self.announce(Signal::PointsStored {
            org_id,
            metrics: touched.to_vec(),
        });
    }

    /// Stores product events for an org (durably, before returning; re-sent uuids once).
    pub async fn store_events(
        &self,
        events: crate::store::events::PreparedEvents,
    ) -> Result<crate::store::events::WriteOutcome, StoreError> {
        if events.is_empty() {
            return Ok(Default::default());
        }
        let (org_id, (from_micros, to_micros)) = (events.org_id(), events.time_range());
        let outcome = self.events.write(events).await?;
        if outcome.stored > 0 {
            let _ = self.live.send(OrgEvent {
                org_id,
                metrics: Vec::new(),
                score: None,
                alert: None,
                events: Some(outcome.stored),
            });
            self.announce(Signal::EventsStored {
                org_id,
                from_micros,
                to_micros,
            });
        }
        Ok(outcome)
    }

    /// Runs CPU-heavy request parsing on the blocking pool, at most `parse_slots` at once.
    pub async fn parse_work<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        bounded_blocking(&self.parse_slots, work).await
    }

    /// Runs password hashing or verification on the blocking pool, at most
    /// [`MAX_CONCURRENT_PASSWORD_CHECKS`] at once (the others wait their turn).
    pub async fn password_work<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        bounded_blocking(&self.password_checks, work).await
    }

    /// Tells the services; nobody listening is fine.
    pub fn announce(&self, signal: Signal) {
        let _ = self.signals.send(signal);
    }

    /// The base of links in notifications.
    pub fn base_url(&self) -> String {
        let public = self.config.server.public_url.trim_end_matches('/');
        if !public.is_empty() {
            return public.to_string();
        }
        self.bound_url
            .get()
            .cloned()
            .unwrap_or_else(|| format!("http://{}", self.config.server.listen))
    }

    pub fn data_dir(&self) -> PathBuf {
        self.config.data_dir()
    }

    /// Flushes and closes the DuckDB stores (the event writer first; the metric store's
    /// shutdown checkpoints the shared file).
    pub fn close(&self) {
        self.events.shutdown();
        self.metrics.shutdown();
    }
}

/// Password hashes computed at once: two per core of this appliance's usual machine.
pub const MAX_CONCURRENT_PASSWORD_CHECKS: usize = 4;

/// Validated input for a new organisation.
#[derive(Debug, Clone)]
pub struct NewOrg {
    pub name: String,
    pub slug: String,
    pub time_zone: String,
    pub currency: String,
}

/// A field-level validation failure: (field, message).
pub type FieldError = (&'static str, String);

impl NewOrg {
    pub fn validate(
        name: &str,
        slug: &str,
        time_zone: &str,
        currency: &str,
    ) -> Result<NewOrg, FieldError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(("name", "must be 1 to 100 characters".into()));
        }
        let slug = if slug.trim().is_empty() {
            orgs::slugify(name)
        } else {
            slug.trim().to_string()
        };
        if slug.len() > 48
            || !slug
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            || slug.starts_with('-')
        {
            return Err((
                "slug",
                "must be lowercase letters, digits and dashes (at most 48)".into(),
            ));
        }
        if time_zone.parse::<Tz>().is_err() {
            return Err((
                "time_zone",
                format!("{time_zone:?} is not an IANA time zone such as Europe/Berlin"),
            ));
        }
        let currency = currency.trim().to_ascii_uppercase();
        if currency.len() != 3 || !currency.chars().all(|c| c.is_ascii_uppercase()) {
            return Err((
                "currency",
                "must be a three-letter ISO 4217 code such as EUR".into(),
            ));
        }
        Ok(NewOrg {
            name: name.to_string(),
            slug,
            time_zone: time_zone.to_string(),
            currency,
        })
    }
}

pub fn validate_email(email: &str) -> Result<String, FieldError> {
    let email = email.trim();
    let ok = email.len() <= 254
        && email.split_once('@').is_some_and(|(a, d)| {
            !a.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.')
        })
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !ok {
        return Err(("email", "is not an email address".into()));
    }
    Ok(email.to_string())
}

/// Creates an org and its first Owner in one transaction. The password is hashed by the caller.
pub fn create_org_with_owner(
    conn: &mut rusqlite::Connection,
    org: &NewOrg,
    email: &str,
    name: &str,
    password_hash: &str,
    server_admin: bool,
) -> Result<(Org, User), StoreError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let created = orgs::create(&tx, &org.slug, &org.name, &org.time_zone, &org.currency)?;
    let user = match users::by_email(&tx, email) {
        Ok(u) => u,
        Err(StoreError::NotFound) => users::create(&tx, email, name, password_hash, server_admin)?,
        Err(e) => return Err(e),
    };
    orgs::add_member(&tx, created.id, user.id, Role::Owner)?;
    audit::record(
        &tx,
        Some(created.id),
        &format!("user:{}", user.email),
        "org.create",
        &created.slug,
        "",
    )?;
    tx.commit()?;
    Ok((created, user))
}

/// Creates an API key; returns the stored key and the secret (shown once).
pub fn create_api_key(
    conn: &rusqlite::Connection,
    org_id: i64,
    name: &str,
    scopes: &[Scope],
    created_by: Option<i64>,
    expires_in_days: Option<i64>,
    actor: &str,
) -> Result<(ApiKey, String), StoreError> {
    let (secret, prefix) = security::new_api_key();
    let key = api_keys::create(
        conn,
        &NewKey {
            org_id,
            name,
            prefix: &prefix,
            key_hash: &security::sha256_hex(&secret),
            scopes,
            created_by,
            expires_at: expires_in_days.map(|d| now_secs() + d * 86_400),
        },
    )?;
    audit::record(
        conn,
        Some(org_id),
        actor,
        "apikey.create",
        &format!("{} ({}) {}", key.name, key.prefix, Scope::join(scopes)),
        "",
    )?;
    Ok((key, secret))
}

pub struct DemoLogin {
    pub org: Org,
    pub email: String,
    pub password: String,
    pub api_key: String,
    pub points: usize,
}

pub const DEMO_EMAIL: &str = "demo@vitals.local";
pub const DEMO_PASSWORD: &str = "vitals-demo";

/// Seeds the demo organisation with 400 days of data ending today. Blocking; call before serving.
pub fn seed_demo(app: &App) -> anyhow::Result<DemoLogin> {
    let hash = security::hash_password(DEMO_PASSWORD).map_err(anyhow::Error::msg)?;
    let org_input = NewOrg::validate("Acme Analytics (demo)", "demo", "Europe/Berlin", "EUR")
        .map_err(|(f, m)| anyhow::anyhow!("{f} {m}"))?;
    let (org, user) = app
        .meta
        .call_blocking(|c| {
            create_org_with_owner(c, &org_input, DEMO_EMAIL, "Demo Owner", &hash, true)
        })
        .context("while creating the demo organisation")?;
    let (_, api_key) = app
        .meta
        .call_blocking(|c| {
            create_api_key(
                c,
                org.id,
                "demo script",
                &[Scope::Read, Scope::Write],
                Some(user.id),
                None,
                "cli",
            )
        })
        .context("while creating the demo API key")?;
    let today = chrono::Utc::now().date_naive();
    let points: Vec<Point> = demo::generate(today, 400, 2026);
    let n = points.len();
    app.metrics
        .write_blocking(org.id, points)
        .context("while writing demo points")?;
    Ok(DemoLogin {
        org,
        email: DEMO_EMAIL.into(),
        password: DEMO_PASSWORD.into(),
        api_key,
        points: n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_input_is_validated_per_field() {
        assert_eq!(
            NewOrg::validate("", "", "UTC", "EUR").unwrap_err().0,
            "name"
        );
        assert_eq!(
            NewOrg::validate("Acme", "Bad Slug", "UTC", "EUR")
                .unwrap_err()
                .0,
            "slug"
        );
        assert_eq!(
            NewOrg::validate("Acme", "", "Mars/Base", "EUR")
                .unwrap_err()
                .0,
            "time_zone"
        );
        assert_eq!(
            NewOrg::validate("Acme", "", "UTC", "euro").unwrap_err().0,
            "currency"
        );
        let ok = NewOrg::validate(" Acme Inc ", "", "Europe/Berlin", "eur").unwrap();
        assert_eq!(
            (ok.name.as_str(), ok.slug.as_str(), ok.currency.as_str()),
            ("Acme Inc", "acme-inc", "EUR")
        );
    }

    #[test]
    fn emails_are_checked() {
        assert!(validate_email("a@b.io").is_ok());
        assert!(validate_email("a@b").is_err());
        assert!(validate_email("a b@c.io").is_err());
        assert!(validate_email("@c.io").is_err());
    }
}
