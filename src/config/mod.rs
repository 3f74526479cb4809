//! Configuration: defaults < TOML file < `VITALS_SECTION__KEY` environment < CLI flags.
//!
//! Everything is resolved by [`resolve`], a pure function that is tested directly. Unknown keys
//! and bad values are rejected with a message naming the key and where it came from.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod sections;
pub use sections::*;

/// Environment variables that start with `VITALS_` but are not config keys.
const NON_KEY_ENV_VARS: &[&str] = &["VITALS_CONFIG", "VITALS_LOG", "VITALS_API_KEY"];

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub auth: AuthConfig,
    pub ingest: IngestConfig,
    pub jobs: JobsConfig,
    pub alerts: AlertsConfig,
    pub integrations: IntegrationsConfig,
    pub log: LogConfig,
    pub rate_limits: RateLimitConfig,
    pub outbound: OutboundConfig,
}

/// Values given on the command line; they beat every other source.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub log_format: Option<String>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("config key `{key}` ({source_name}): {message}")]
pub struct ConfigError {
    pub key: String,
    pub source_name: String,
    pub message: String,
}

impl ConfigError {
    fn new(
        key: impl Into<String>,
        source_name: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        ConfigError {
            key: key.into(),
            source_name: source_name.into(),
            message: message.into(),
        }
    }
}

/// Resolves the effective configuration.
///
/// `file` is the config file's name (for messages) and its text; `env` is every environment
/// variable (only `VITALS_*` ones are looked at).
pub fn resolve(
    file: Option<(&str, &str)>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let defaults = toml::Table::try_from(Config::default())
        .map_err(|e| ConfigError::new("*", "defaults", e.to_string()))?;
    let mut merged = defaults.clone();

    if let Some((name, text)) = file {
        let table: toml::Table = toml::from_str(text)
            .map_err(|e| ConfigError::new("*", name, format!("not valid TOML: {}", e.message())))?;
        for (section, value) in table {
            let Some(default_section) = defaults.get(&section).and_then(|v| v.as_table()) else {
                return Err(ConfigError::new(
                    &section,
                    name,
                    format!("unknown section; known sections: {}", join_keys(&defaults)),
                ));
            };
            let toml::Value::Table(entries) = value else {
                return Err(ConfigError::new(
                    &section,
                    name,
                    "must be a table ([section])",
                ));
            };
            for (key, value) in entries {
                let full = format!("{section}.{key}");
                let Some(default_value) = default_section.get(&key) else {
                    return Err(ConfigError::new(
                        &full,
                        name,
                        format!(
                            "unknown key; known keys in [{section}]: {}",
                            join_keys(default_section)
                        ),
                    ));
                };
                let value = coerce_same_type(default_value, value)
                    .map_err(|message| ConfigError::new(&full, name, message))?;
                set(&mut merged, &section, &key, value);
            }
        }
    }

    let mut env: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("VITALS_") && !NON_KEY_ENV_VARS.contains(&k.as_str()))
        .collect();
    env.sort();
    for (var, raw) in env {
        let rest = &var["VITALS_".len()..];
        let Some((section, key)) = rest.split_once("__") else {
            return Err(ConfigError::new(
                &var,
                "environment",
                "not a config key; expected VITALS_SECTION__KEY, e.g. VITALS_SERVER__LISTEN",
            ));
        };
        let (section, key) = (section.to_ascii_lowercase(), key.to_ascii_lowercase());
        let full = format!("{section}.{key}");
        let Some(default_value) = defaults
            .get(&section)
            .and_then(|s| s.as_table())
            .and_then(|s| s.get(&key))
        else {
            return Err(ConfigError::new(&full, &var, "unknown key"));
        };
        let value =
            parse_env_value(default_value, &raw).map_err(|m| ConfigError::new(&full, &var, m))?;
        set(&mut merged, &section, &key, value);
    }

    if let Some(listen) = &overrides.listen {
        set(
            &mut merged,
            "server",
            "listen",
            toml::Value::String(listen.clone()),
        );
    }
    if let Some(dir) = &overrides.data_dir {
        let dir = dir.to_string_lossy().into_owned();
        set(&mut merged, "storage", "data_dir", toml::Value::String(dir));
    }
    if let Some(format) = &overrides.log_format {
        set(
            &mut merged,
            "log",
            "format",
            toml::Value::String(format.clone()),
        );
    }

    let config: Config = toml::Value::Table(merged)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::new("*", "merged", e.message().to_string()))?;
    config.validate()?;
    Ok(config)
}

/// Reads the file (if any) and the process environment, then [`resolve`]s.
pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
    let text = match path {
        Some(p) => Some(std::fs::read_to_string(p).map_err(|e| {
            ConfigError::new(
                "*",
                p.display().to_string(),
                format!("cannot read the config file: {e}"),
            )
        })?),
        None => None,
    };
    let name = path.map(|p| p.display().to_string()).unwrap_or_default();
    resolve(
        text.as_deref().map(|t| (name.as_str(), t)),
        std::env::vars(),
        overrides,
    )
}

fn join_keys(table: &toml::Table) -> String {
    table.keys().cloned().collect::<Vec<_>>().join(", ")
}

fn set(table: &mut toml::Table, section: &str, key: &str, value: toml::Value) {
    if let Some(toml::Value::Table(s)) = table.get_mut(section) {
        s.insert(key.to_string(), value);
    }
}

fn type_name(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "a whole number",
        toml::Value::Float(_) => "a number",
        toml::Value::Boolean(_) => "true or false",
        toml::Value::Datetime(_) => "a date-time",
        toml::Value::Array(_) => "a list",
        toml::Value::Table(_) => "a table",
    }
}

fn coerce_same_type(default: &toml::Value, value: toml::Value) -> Result<toml::Value, String> {
    match (default, &value) {
        (toml::Value::Integer(_), toml::Value::Integer(i)) if *i < 0 => {
            Err(format!("must not be negative, got {i}"))
        }
        (toml::Value::String(_), toml::Value::String(_))
        | (toml::Value::Integer(_), toml::Value::Integer(_))
        | (toml::Value::Boolean(_), toml::Value::Boolean(_))
        | (toml::Value::Float(_), toml::Value::Float(_)) => Ok(value),
        (toml::Value::Float(_), toml::Value::Integer(i)) => Ok(toml::Value::Float(*i as f64)),
        // Every list setting is a list of strings.
        (toml::Value::Array(_), toml::Value::Array(items)) => {
            match items.iter().find(|i| !i.is_str()) {
                Some(other) => Err(format!(
                    "must be a list of strings, got a list holding {}",
                    type_name(other)
                )),
                None => Ok(value),
            }
        }
        _ => Err(format!(
            "must be {}, got {}",
            type_name(default),
            type_name(&value)
        )),
    }
}

fn parse_env_value(default: &toml::Value, raw: &str) -> Result<toml::Value, String> {
    match default {
        toml::Value::String(_) => Ok(toml::Value::String(raw.to_string())),
        toml::Value::Integer(_) => raw
            .trim()
            .parse::<u32>()
            .map(|n| toml::Value::Integer(i64::from(n)))
            .or_else(|_| {
                raw.trim()
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .map(toml::Value::Integer)
                    .ok_or(())
            })
            .map_err(|_| format!("must be a non-negative whole number, got {raw:?}")),
        toml::Value::Boolean(_) => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(toml::Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(toml::Value::Boolean(false)),
            _ => Err(format!("must be true or false, got {raw:?}")),
        },
        // A list from the environment is comma-separated: `10.0.0.0/8,127.0.0.1`.
        toml::Value::Array(_) => Ok(toml::Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(|item| toml::Value::String(item.to_string()))
                .collect(),
        )),
        toml::Value::Float(_) => raw
            .trim()
            .parse::<f64>()
            .map(toml::Value::Float)
            .map_err(|_| format!("must be a number, got {raw:?}")),
        other => Err(format!(
            "cannot be set from the environment ({})",
            type_name(other)
        )),
    }
}

/// Parses sizes such as `512MB`, `2GB`, `1.5GiB` into bytes.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = t.split_at(split);
    let num: f64 = num.parse().ok()?;
    let factor: f64 = match unit.trim().to_ascii_uppercase().as_str() {
        "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "KIB" => 1024.0,
        "MIB" => 1024.0 * 1024.0,
        "GIB" => 1024.0 * 1024.0 * 1024.0,
        _ => return None,
    };
    let bytes = num * factor;
    (bytes.is_finite() && bytes >= 1.0).then_some(bytes as u64)
}

impl Config {
    fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| Err(ConfigError::new(key, "validation", message));
        if self.server.listen.parse::<SocketAddr>().is_err() {
            return bad(
                "server.listen",
                format!(
                    "{:?} is not an ADDRESS:PORT such as 127.0.0.1:8080",
                    self.server.listen
                ),
            );
        }
        let url = &self.server.public_url;
        if !url.is_empty() && !url.starts_with("http://") && !url.starts_with("https://") {
            return bad(
                "server.public_url",
                format!("{url:?} must start with http:// or https://"),
            );
        }
        if self.server.request_timeout_secs == 0 {
            return bad("server.request_timeout_secs", "must be at least 1".into());
        }
        for (key, value) in [
            (
                "server.max_streams_per_session",
                self.server.max_streams_per_session,
            ),
            (
                "server.max_streams_per_org",
                self.server.max_streams_per_org,
            ),
        ] {
            if !(1..=100_000).contains(&value) {
                return bad(key, "must be between 1 and 100000".into());
            }
        }
        for (key, value) in [
            (
                "rate_limits.api_per_minute",
                self.rate_limits.api_per_minute,
            ),
            (
                "rate_limits.ingest_per_minute",
                self.rate_limits.ingest_per_minute,
            ),
            (
                "rate_limits.pages_per_minute",
                self.rate_limits.pages_per_minute,
            ),
        ] {
            if value > 1_000_000 {
                return bad(
                    key,
                    "must be at most 1000000 (0 turns the limit off)".into(),
                );
            }
        }
        if let Err(m) = crate::domain::net::TargetPolicy::new(&self.outbound.allow_private_targets)
        {
            return bad("outbound.allow_private_targets", m);
        }
        if !(1..=256).contains(&self.storage.duckdb_threads) {
            return bad("storage.duckdb_threads", "must be between 1 and 256".into());
        }
        match parse_size(&self.storage.duckdb_memory_limit) {
            Some(b) if b >= 64 * 1_000_000 => {}
            Some(_) => {
                return bad(
                    "storage.duckdb_memory_limit",
                    "must be at least 64MB".into(),
                );
            }
            None => {
                return bad(
                    "storage.duckdb_memory_limit",
                    format!(
                        "{:?} is not a size such as 512MB or 2GB",
                        self.storage.duckdb_memory_limit
                    ),
                );
            }
        }
        match parse_size(&self.storage.duckdb_checkpoint_wal) {
            Some(b) if (1_000_000..=4_000_000_000).contains(&b) => {}
            _ => {
                return bad(
                    "storage.duckdb_checkpoint_wal",
                    format!(
                        "{:?} is not a size between 1MB and 4GB, such as 64MB",
                        self.storage.duckdb_checkpoint_wal
                    ),
                );
            }
        }
        if self.auth.session_ttl_hours == 0 {
            return bad("auth.session_ttl_hours", "must be at least 1".into());
        }
        if !(1..=24 * 90).contains(&self.auth.invitation_ttl_hours) {
            return bad(
                "auth.invitation_ttl_hours",
                "must be between 1 and 2160".into(),
            );
        }
        if self.auth.session_idle_hours == 0 {
            return bad("auth.session_idle_hours", "must be at least 1".into());
        }
        if self.auth.login_max_failures == 0 {
            return bad("auth.login_max_failures", "must be at least 1".into());
        }
        if self.auth.login_window_secs == 0 {
            return bad("auth.login_window_secs", "must be at least 1".into());
        }
        if self.ingest.max_body_bytes < 1024 {
            return bad("ingest.max_body_bytes", "must be at least 1024".into());
        }
        if self.ingest.max_import_bytes < 1024 {
            return bad("ingest.max_import_bytes", "must be at least 1024".into());
        }
        for (key, base) in [
            (
                "integrations.stripe_api_base",
                &self.integrations.stripe_api_base,
            ),
            (
                "integrations.hubspot_auth_base",
                &self.integrations.hubspot_auth_base,
            ),
            (
                "integrations.hubspot_api_base",
                &self.integrations.hubspot_api_base,
            ),
        ] {
            if !(base.starts_with("https://") || base.starts_with("http://")) {
                return bad(key, "must be an http(s) URL".into());
            }
        }
        if !(1..=120).contains(&self.integrations.backfill_months) {
            return bad(
                "integrations.backfill_months",
                "must be from 1 to 120".into(),
            );
        }
        if self.ingest.max_points_per_request == 0 {
            return bad("ingest.max_points_per_request", "must be at least 1".into());
        }
        if self.ingest.max_events_per_request == 0 {
            return bad("ingest.max_events_per_request", "must be at least 1".into());
        }
        if self.ingest.max_event_bytes < 1024 {
            return bad("ingest.max_event_bytes", "must be at least 1024".into());
        }
        for (name, expr) in self.jobs.schedules() {
            if let Err(m) = crate::domain::schedule::parse_schedule(expr) {
                return bad(&format!("jobs.{name}"), m);
            }
        }
        for (key, value) in [
            (
                "alerts.history_retention_days",
                self.alerts.history_retention_days,
            ),
            ("alerts.retry_base_secs", self.alerts.retry_base_secs),
            ("alerts.retry_max_secs", self.alerts.retry_max_secs),
            ("alerts.max_attempts", self.alerts.max_attempts),
            ("alerts.send_timeout_secs", self.alerts.send_timeout_secs),
        ] {
            if value == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        if self.alerts.retry_max_secs < self.alerts.retry_base_secs {
            return bad(
                "alerts.retry_max_secs",
                "must be at least alerts.retry_base_secs".into(),
            );
        }
        if !["trace", "debug", "info", "warn", "error"].contains(&self.log.level.as_str()) {
            return bad(
                "log.level",
                format!(
                    "{:?} is not one of trace, debug, info, warn, error",
                    self.log.level
                ),
            );
        }
        if !["text", "json"].contains(&self.log.format.as_str()) {
            return bad(
                "log.format",
                format!("{:?} is not text or json", self.log.format),
            );
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> SocketAddr {
        // validate() guarantees this parses; fall back to the default rather than panic.
        self.server
            .listen
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 8080)))
    }

    pub fn secure_cookies(&self) -> bool {
        self.server.public_url.starts_with("https://")
    }

    /// The data directory, falling back to the user's data directory (XDG on Linux).
    pub fn data_dir(&self) -> PathBuf {
        if !self.storage.data_dir.is_empty() {
            return PathBuf::from(&self.storage.data_dir);
        }
        default_data_dir()
    }

    /// The effective configuration as TOML, for `vitals config check`.
    pub fn to_toml(&self) -> String {
        let mut table = toml::Table::try_from(self).unwrap_or_default();
        if let Some(toml::Value::Table(storage)) = table.get_mut("storage") {
            storage.insert(
                "data_dir".into(),
                toml::Value::String(self.data_dir().display().to_string()),
            );
        }
        if let Some(toml::Value::Table(integrations)) = table.get_mut("integrations")
            && !self.integrations.hubspot_client_secret.is_empty()
        {
            integrations.insert(
                "hubspot_client_secret".into(),
                toml::Value::String("•••• (set)".into()),
            );
        }
        let mut ordered = BTreeMap::new();
        for (k, v) in table {
            ordered.insert(k, v);
        }
        toml::to_string(&ordered).unwrap_or_default()
    }
}

pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .map(|d| d.join("vitals"))
        .unwrap_or_else(|| PathBuf::from("vitals-data"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_apply_without_any_source() {
        let c = resolve(None, env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.listen_addr().port(), 8080);
    }

    #[test]
    fn precedence_is_defaults_file_env_flags() {
        let file = "[server]\nlisten = \"127.0.0.1:9000\"\n[storage]\ndata_dir = \"/from/file\"\nduckdb_threads = 3\n";
        let c = resolve(Some(("c.toml", file)), env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:9000");
        assert_eq!(c.storage.duckdb_threads, 3);

        let e = env(&[
            ("VITALS_SERVER__LISTEN", "127.0.0.1:9100"),
            ("VITALS_STORAGE__DUCKDB_THREADS", "4"),
        ]);
        let c = resolve(Some(("c.toml", file)), e.clone(), &Overrides::default()).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:9100");
        assert_eq!(c.storage.duckdb_threads, 4);
        assert_eq!(c.storage.data_dir, "/from/file");

        let flags = Overrides {
            listen: Some("127.0.0.1:9200".into()),
            data_dir: Some("/from/flag".into()),
            log_format: None,
        };
        let c = resolve(Some(("c.toml", file)), e, &flags).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:9200");
        assert_eq!(c.storage.data_dir, "/from/flag");
        assert_eq!(c.storage.duckdb_threads, 4);
    }

    /// A list setting comes from the file as a TOML list of strings, or from the environment
    /// comma-separated (spaces and empty items dropped); a non-string item or a bad range is
    /// named.
    #[test]
    fn list_settings_come_from_file_and_environment() {
        let file = "[outbound]\nallow_private_targets = [\"10.0.0.0/8\"]\n";
        let c = resolve(Some(("c.toml", file)), env(&[]), &Overrides::default()).unwrap();
        assert_eq!(c.outbound.allow_private_targets, vec!["10.0.0.0/8"]);
        let e = env(&[(
            "VITALS_OUTBOUND__ALLOW_PRIVATE_TARGETS",
            "192.168.0.0/16, 127.0.0.1,",
        )]);
        let c = resolve(Some(("c.toml", file)), e, &Overrides::default()).unwrap();
        assert_eq!(
            c.outbound.allow_private_targets,
            vec!["192.168.0.0/16", "127.0.0.1"]
        );
        for bad in [
            "[outbound]\nallow_private_targets = [1]\n",
            "[outbound]\nallow_private_targets = \"10.0.0.0/8\"\n",
            "[outbound]\nallow_private_targets = [\"10.0.0.0/40\"]\n",
        ] {
            let err = resolve(Some(("c.toml", bad)), env(&[]), &Overrides::default()).unwrap_err();
            assert_eq!(err.key, "outbound.allow_private_targets", "{bad}");
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = resolve(
            Some(("c.toml", "[server]\nlisen = \"x\"\n")),
            env(&[]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(err.key, "server.lisen");
        assert_eq!(err.source_name, "c.toml");
        let err = resolve(
            Some(("c.toml", "[sever]\n")),
            env(&[]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(err.key, "sever");
        let err = resolve(
            None,
            env(&[("VITALS_SERVER__LISEN", "x")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(err.key, "server.lisen");
        assert_eq!(err.source_name, "VITALS_SERVER__LISEN");
        let err = resolve(None, env(&[("VITALS_FOO", "x")]), &Overrides::default()).unwrap_err();
        assert_eq!(err.key, "VITALS_FOO");
        // Variables that are not config keys are allowed.
        assert!(
            resolve(
                None,
                env(&[("VITALS_CONFIG", "/x"), ("PATH", "/bin")]),
                &Overrides::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn bad_values_are_named() {
        for (text, key) in [
            (
                "[server]\nmax_streams_per_session = 0\n",
                "server.max_streams_per_session",
            ),
            (
                "[server]\nmax_streams_per_org = 1000000\n",
                "server.max_streams_per_org",
            ),
        ] {
            let err = resolve(Some(("c.toml", text)), env(&[]), &Overrides::default()).unwrap_err();
            assert_eq!(err.key, key);
        }
        let err = resolve(
            Some(("c.toml", "[server]\nlisten = 8080\n")),
            env(&[]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(err.key, "server.listen");
        assert!(err.message.contains("string"), "{err}");
        let err = resolve(
            Some(("c.toml", "[server]\nlisten = \"nowhere\"\n")),
            env(&[]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(err.key, "server.listen");
        let err = resolve(
            None,
            env(&[("VITALS_STORAGE__DUCKDB_THREADS", "many")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(err.key, "storage.duckdb_threads");
        let err = resolve(
            None,
            env(&[("VITALS_STORAGE__DUCKDB_THREADS", "-2")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(err.key, "storage.duckdb_threads");
        let err = resolve(
            None,
            env(&[("VITALS_LOG__FORMAT", "xml")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(err.key, "log.format");
        let err = resolve(
            None,
            env(&[("VITALS_STORAGE__DUCKDB_MEMORY_LIMIT", "lots")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(err.key, "storage.duckdb_memory_limit");
        for bad_wal in ["64", "512KB", "5GB"] {
            let err = resolve(
                None,
                env(&[("VITALS_STORAGE__DUCKDB_CHECKPOINT_WAL", bad_wal)]),
                &Overrides::default(),
            )
            .unwrap_err();
            assert_eq!(err.key, "storage.duckdb_checkpoint_wal", "{bad_wal}");
        }
        let ok = resolve(
            None,
            env(&[("VITALS_STORAGE__DUCKDB_CHECKPOINT_WAL", "256MiB")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(ok.storage.duckdb_checkpoint_wal, "256MiB");
        let err = resolve(
            None,
            env(&[("VITALS_JOBS__HOUSEKEEPING", "nightly")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(err.key, "jobs.housekeeping");
        let ok = resolve(
            None,
            env(&[("VITALS_JOBS__HOUSEKEEPING", "")]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(ok.jobs.housekeeping, "");
        let err = resolve(
            Some(("c.toml", "not toml [")),
            env(&[]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(err.source_name, "c.toml");
    }

    #[test]
    fn example_config_documents_every_key_with_its_default() {
        let text = include_str!("../../config.example.toml");
        let c = resolve(
            Some(("config.example.toml", text)),
            env(&[]),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c, Config::default(), "the example must show the defaults");
        let example: toml::Table = toml::from_str(text).unwrap();
        let defaults = toml::Table::try_from(Config::default()).unwrap();
        for (section, keys) in &defaults {
            for key in keys.as_table().unwrap().keys() {
                assert!(
                    example.get(section).and_then(|s| s.get(key)).is_some(),
                    "config.example.toml lacks {section}.{key}"
                );
            }
        }
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("512MB"), Some(512_000_000));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("1.5 GB"), Some(1_500_000_000));
        assert_eq!(parse_size("12"), None);
        assert_eq!(parse_size("GB"), None);
    }
}
