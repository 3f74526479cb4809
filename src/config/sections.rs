//! The config sections and their defaults: one struct per `[section]` of the TOML file.

use serde::{Deserialize, Serialize};

/// Pulling data from outside services.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IntegrationsConfig {
    /// Stripe's API base URL (a test or proxy may stand in for it).
    pub stripe_api_base: String,
    /// Months of history pulled on the first sync.
    pub backfill_months: u32,
    /// The key file that seals integration credentials (32 bytes, base64); empty means
    /// `data_dir/secret.key`, created with mode 0600 on first use. Keep it out of backups of
    /// the data directory if those travel separately.
    pub secret_key_file: String,
    /// HubSpot OAuth app (empty: HubSpot cannot be connected); the secret is masked by
    /// `vitals config check`.
    pub hubspot_client_id: String,
    pub hubspot_client_secret: String,
    /// Where HubSpot's consent page and API live (a test or proxy may stand in).
    pub hubspot_auth_base: String,
    pub hubspot_api_base: String,
}

impl Default for IntegrationsConfig {
    fn default() -> Self {
        IntegrationsConfig {
            stripe_api_base: "https://api.stripe.com".into(),
            backfill_months: 24,
            secret_key_file: String::new(),
            hubspot_client_id: String::new(),
            hubspot_client_secret: String::new(),
            hubspot_auth_base: "https://app.hubspot.com".into(),
            hubspot_api_base: "https://api.hubapi.com".into(),
        }
    }
}

/// Scheduled jobs: cron expressions with seconds first (`sec min hour day month weekday`);
/// an empty string disables a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JobsConfig {
    /// Recompute every organisation's health score.
    pub score_recompute: String,
    /// Nightly housekeeping: expired sessions, old job runs, alert history past retention.
    pub housekeeping: String,
    /// How often due alert rules are looked for (each rule has its own interval).
    pub alert_evaluation: String,
    /// Anomaly detection over every metric (it also runs shortly after ingest).
    pub insights: String,
    /// How often integrations are checked for a due pull (each has its own schedule, hourly by
    /// default, and "Sync now").
    pub integration_sync: String,
    /// Rewrites each settled month of points in storage order (and again after late writes
    /// into it), so one org's questions read few row groups and the file stays small.
    pub compaction: String,
}

impl JobsConfig {
    /// Every job's name and schedule, as the scheduler, `vitals jobs` and validation know them.
    pub fn schedules(&self) -> [(&'static str, &String); 6] {
        [
            ("score_recompute", &self.score_recompute),
            ("housekeeping", &self.housekeeping),
            ("alert_evaluation", &self.alert_evaluation),
            ("insights", &self.insights),
            ("integration_sync", &self.integration_sync),
            ("compaction", &self.compaction),
        ]
    }
}

impl Default for JobsConfig {
    fn default() -> Self {
        JobsConfig {
            score_recompute: "0 */5 * * * *".into(),
            housekeeping: "0 30 3 * * *".into(),
            alert_evaluation: "*/15 * * * * *".into(),
            insights: "0 10 * * * *".into(),
            integration_sync: "0 */5 * * * *".into(),
            compaction: "0 45 * * * *".into(),
        }
    }
}

/// Alert evaluation and notification delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Closed alerts (and delivered notifications) older than this are deleted by housekeeping.
    pub history_retention_days: u64,
    /// First retry delay of a failed notification; doubles per attempt (with jitter).
    pub retry_base_secs: u64,
    /// Longest delay between two attempts.
    pub retry_max_secs: u64,
    /// Attempts before a notification is given up (marked failed on the channel's page).
    pub max_attempts: u64,
    /// Seconds one delivery attempt may take before it counts as failed.
    pub send_timeout_secs: u64,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        AlertsConfig {
            history_retention_days: 180,
            retry_base_secs: 30,
            retry_max_secs: 3_600,
            max_attempts: 12,
            send_timeout_secs: 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on.
    pub listen: String,
    /// Public URL (e.g. `https://vitals.example.com`); when it is https, cookies are `Secure`.
    pub public_url: String,
    /// Seconds before a request is answered with 408.
    pub request_timeout_secs: u64,
    /// Live-update streams (SSE) one login session may hold open at once (one per open page).
    pub max_streams_per_session: u64,
    /// Live-update streams all members of one organisation may hold open at once.
    pub max_streams_per_org: u64,
    /// Reverse proxies (CIDR ranges or addresses) whose `X-Forwarded-For` names the client,
    /// for login throttling and the audit log. Empty: the connecting address is the client.
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Where `meta.sqlite` and `metrics.duckdb` live. Empty means the user's data directory.
    pub data_dir: String,
    /// Threads DuckDB may use for queries.
    pub duckdb_threads: u64,
    /// DuckDB buffer pool limit, e.g. `512MB` or `2GB`. 256MB by default, for a 1 GB VPS: on
    /// this bench's data (35 M points, 10 M events) it answered as fast as 1GB and kept event
    /// ingest's peak RSS at 575 MB instead of 800 MB; sorts and joins past it spill to disk.
    pub duckdb_memory_limit: String,
    /// Write-ahead log size at which DuckDB checkpoints (DuckDB's `checkpoint_threshold`).
    /// Each checkpoint rewrites the table's last, partly filled row group, so small ones
    /// cost nearly as much as large ones: 16MB (DuckDB's default) spent more than half of
    /// event ingest in checkpoints. The writers also checkpoint when writes pause.
    pub duckdb_checkpoint_wal: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// How long a login session lasts at most.
    pub session_ttl_hours: u64,
    /// A session unused this long ends (sign in again).
    pub session_idle_hours: u64,
    /// How long an invitation link to join an org works.
    pub invitation_ttl_hours: u64,
    /// Failed logins allowed per account or address within `login_window_secs`.
    pub login_max_failures: u64,
    /// Window (and lock-out time) for login throttling.
    pub login_window_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Largest accepted request body.
    pub max_body_bytes: u64,
    /// Largest accepted batch of points in one request.
    pub max_points_per_request: u64,
    /// How far in the future a point's timestamp may lie.
    pub max_future_secs: u64,
    /// Largest accepted CSV file (`POST /api/v1/imports/csv`, the import page).
    pub max_import_bytes: u64,
    /// Most events in one request (the events API and the SDK receivers).
    pub max_events_per_request: u64,
    /// Largest single event, as JSON (Segment's own limit of 32 KB applies to its routes).
    pub max_event_bytes: u64,
}

/// Where outbound requests to user-given and provider addresses may go.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboundConfig {
    /// Loopback, private, link-local and other non-public ranges that webhook and Slack
    /// channels, SMTP hosts and integration bases may reach anyway (CIDR ranges or single
    /// addresses). Empty: public addresses only.
    pub allow_private_targets: Vec<String>,
}

/// Request budgets (GCRA: the whole budget may be spent at once, then it refills evenly over
/// the minute). 0 turns a budget off.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Requests a minute one API key may make to the JSON API, ingest aside.
    pub api_per_minute: u64,
    /// Requests a minute one API key or inbound webhook may make to ingest
    /// (`POST /api/v1/metrics`, `POST /api/v1/imports/csv`, `POST /hooks/…`).
    pub ingest_per_minute: u64,
    /// Requests a minute one login session may make to pages (each live-updated card counts).
    pub pages_per_minute: u64,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            api_per_minute: 100,
            ingest_per_minute: 1_000,
            pages_per_minute: 600,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// trace, debug, info, warn or error.
    pub level: String,
    /// `text` for people, `json` for log collectors.
    pub format: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            public_url: String::new(),
            request_timeout_secs: 30,
            max_streams_per_session: 8,
            max_streams_per_org: 200,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: String::new(),
            duckdb_threads: 2,
            duckdb_memory_limit: "256MB".into(),
            duckdb_checkpoint_wal: "64MB".into(),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            session_ttl_hours: 24 * 14,
            session_idle_hours: 12,
            invitation_ttl_hours: 24 * 7,
            login_max_failures: 5,
            login_window_secs: 15 * 60,
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        IngestConfig {
            max_body_bytes: 16 * 1024 * 1024,
            max_points_per_request: 50_000,
            max_future_secs: 24 * 3600,
            max_import_bytes: 256 * 1024 * 1024,
            max_events_per_request: 20_000,
            max_event_bytes: 1024 * 1024,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: "text".into(),
        }
    }
}
