//! The command line: `vitals` (desktop), `serve`, `demo`, `user add`, `apikey …`, `config check`.

pub mod anomaly;

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use tokio::net::TcpListener;

use crate::app::{self, App};
use crate::config::{self, Config, Overrides};
use crate::domain::roles::{Role, Scope};
use crate::security;
use crate::store::StoreError;
use crate::store::meta::{MetaStore, api_keys, audit, orgs, users};

#[derive(Parser, Debug)]
#[command(
    name = "vitals",
    version,
    about = "Vitals: a self-hosted business health appliance.",
    long_about = "Vitals: a self-hosted business health appliance.\n\n\
        Run without a command for the desktop launch: it serves on 127.0.0.1 with data in your \
        user data directory and opens the browser. `vitals demo` starts with a ready demo \
        organisation; `vitals serve` is the server mode for a VPS or systemd."
)]
pub struct Cli {
    /// Config file (TOML). See config.example.toml for every key.
    #[arg(long, global = true, env = "VITALS_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (overrides storage.data_dir).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Log as JSON lines (overrides log.format).
    #[arg(long, global = true)]
    pub log_json: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve Vitals (server mode, e.g. under systemd).
    Serve(ListenArgs),
    /// Serve Vitals with a demo organisation holding 13 months of sample data.
    Demo {
        #[command(flatten)]
        listen: ListenArgs,
        /// Do not try to open a browser.
        #[arg(long)]
        no_browser: bool,
    },
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Apikey(ApiKeyCommand),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Show the scheduled jobs: schedule, last run, duration, outcome, next run.
    Jobs,
    /// Anomaly detection on files: score a CSV, or run the NAB benchmark.
    #[command(subcommand)]
    Anomaly(AnomalyCommand),
    /// Import data into a running server.
    #[command(subcommand)]
    Import(ImportCommand),
}

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// Import a CSV file through the server's API (`POST /api/v1/imports/csv`): every bad row is
    /// reported with its line number, and nothing is imported when there are any unless
    /// --valid-only is given. Re-importing the same file replaces, never double-counts.
    Csv(Box<CsvImportArgs>),
}

#[derive(Args, Debug)]
pub struct CsvImportArgs {
    /// The CSV file (UTF-8; comma, semicolon or tab separated).
    pub file: PathBuf,
    /// The organisation (checked against the API key's).
    #[arg(long)]
    pub org: Option<String>,
    /// An API key with the write scope.
    #[arg(long, env = "VITALS_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// The server's URL (default: http:// + server.listen).
    #[arg(long)]
    pub server: Option<String>,
    /// Column with the timestamps (default: timestamp, date, time or the first column).
    #[arg(long)]
    pub timestamp_column: Option<String>,
    /// strftime format of the timestamps (default: ISO dates and times, DD/MM/YYYY, unix seconds).
    #[arg(long)]
    pub timestamp_format: Option<String>,
    /// Time zone of timestamps without an offset (IANA name; default UTC).
    #[arg(long)]
    pub time_zone: Option<String>,
    /// Long files: the column holding metric keys ...
    #[arg(long)]
    pub metric_column: Option<String>,
    /// ... and the column holding values (default: value).
    #[arg(long)]
    pub value_column: Option<String>,
    /// Wide files: COLUMN:METRIC pairs, comma-separated (default: every other column, by header).
    #[arg(long)]
    pub columns: Option<String>,
    /// Columns that are dimensions, comma-separated.
    #[arg(long)]
    pub dimensions: Option<String>,
    /// comma, semicolon, tab or auto.
    #[arg(long, default_value = "auto")]
    pub delimiter: String,
    /// Decimal separator: point or comma.
    #[arg(long, default_value = "point")]
    pub decimal: String,
    /// Import the valid rows even when some rows have problems.
    #[arg(long)]
    pub valid_only: bool,
}

#[derive(Subcommand, Debug)]
pub enum AnomalyCommand {
    /// Print `timestamp,value,anomaly_score` for every row of a `timestamp,value` CSV file.
    Score {
        /// The CSV file.
        file: PathBuf,
    },
    /// Score the Numenta Anomaly Benchmark corpus in DIR (e.g. bench/nab) with NAB's scoring
    /// (windows, probation, scaled sigmoid, three profiles, one threshold for the corpus).
    Nab {
        /// The corpus: combined_windows.json and data/.
        #[arg(default_value = "bench/nab")]
        dir: PathBuf,
        /// Score another detector's per-row results instead (same relative paths,
        /// `timestamp,anomaly_score`), e.g. bench/nab/reference/numenta.
        #[arg(long, value_name = "DIR")]
        scores: Option<PathBuf>,
    },
}

#[derive(Args, Debug, Default)]
pub struct ListenArgs {
    /// Address and port to listen on, e.g. 127.0.0.1:8080 (overrides server.listen).
    #[arg(long, value_name = "ADDR:PORT")]
    pub listen: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Add a user to an organisation (creating the account if it does not exist).
    Add {
        /// Organisation slug.
        #[arg(long)]
        org: String,
        #[arg(long)]
        email: String,
        /// Display name (for a new account).
        #[arg(long, default_value = "")]
        name: String,
        /// owner, admin, manager, analyst or viewer.
        #[arg(long, default_value = "viewer")]
        role: String,
        /// Read the password from the first line of standard input (otherwise one is generated
        /// and printed).
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum ApiKeyCommand {
    /// Create a key; it is printed once and cannot be shown again.
    Create {
        /// Organisation slug.
        #[arg(long)]
        org: String,
        /// What the key is for.
        #[arg(long)]
        name: String,
        /// Comma-separated: read, write, admin.
        #[arg(long, default_value = "read,write")]
        scopes: String,
        /// Days until the key expires (default: never).
        #[arg(long)]
        expires_days: Option<i64>,
    },
    /// List an organisation's keys.
    List {
        #[arg(long)]
        org: String,
    },
    /// Revoke a key by its prefix (the part after `vk_`, as `list` shows it).
    Revoke {
        #[arg(long)]
        org: String,
        prefix: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate the configuration and print the effective values.
    Check(ListenArgs),
}

/// Parses the command line and runs it. Returns the process exit code.
pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let listen = match &cli.command {
        Some(Command::Serve(a))
        | Some(Command::Demo { listen: a, .. })
        | Some(Command::Config(ConfigCommand::Check(a))) => a.listen.clone(),
        _ => None,
    };
    let overrides = Overrides {
        listen: listen.clone(),
        data_dir: cli.data_dir.clone(),
        log_format: cli.log_json.then(|| "json".to_string()),
    };
    let config =
        config::load(cli.config.as_deref(), &overrides).map_err(|e| anyhow::anyhow!("{e}"))?;
    init_tracing(&config);

    match cli.command {
        None => run_server(
            config,
            Mode::Desktop {
                listen_given: false,
            },
        ),
        Some(Command::Serve(_)) => run_server(config, Mode::Serve),
        Some(Command::Demo { no_browser, .. }) => {
            run_demo(config, cli.data_dir.is_some(), listen.is_some(), no_browser)
        }
        Some(Command::Config(ConfigCommand::Check(_))) => {
            println!("# effective configuration (defaults < file < environment < flags)");
            print!("{}", config.to_toml());
            eprintln!("configuration is valid");
            Ok(())
        }
        Some(Command::User(cmd)) => user_command(&config, cmd),
        Some(Command::Apikey(cmd)) => apikey_command(&config, cmd),
        Some(Command::Jobs) => jobs_command(&config),
        Some(Command::Anomaly(AnomalyCommand::Score { file })) => {
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let written = crate::cli::anomaly::score_csv(&file, &mut out)
                .and_then(|()| out.flush().context("while writing the scores"));
            match written {
                // `vitals anomaly score f.csv | head` is fine.
                Err(e)
                    if e.chain().any(|c| {
                        c.downcast_ref::<std::io::Error>()
                            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
                    }) =>
                {
                    Ok(())
                }
                other => other,
            }
        }
        Some(Command::Import(ImportCommand::Csv(args))) => import_csv_command(&config, *args),
        Some(Command::Anomaly(AnomalyCommand::Nab { dir, scores })) => {
            let started = std::time::Instant::now();
            let results = crate::cli::anomaly::run_nab(&dir, scores.as_deref())?;
            print!("{}", crate::cli::anomaly::nab_table(&results));
            eprintln!("scored in {:.1} s", started.elapsed().as_secs_f64());
            Ok(())
        }
    }
}

fn init_tracing(config: &Config) {
    let filter = std::env::var("VITALS_LOG")
        .unwrap_or_else(|_| format!("{},tower_http=warn", config.log.level));
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.log.format == "json" {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

enum Mode {
    Serve,
    Desktop { listen_given: bool },
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("while starting the async runtime")
}

/// Binds the configured address; in desktop and demo mode a busy default port falls back to
/// any free port rather than failing.
async fn bind(config: &Config, fallback: bool) -> anyhow::Result<TcpListener> {
    let addr = config.listen_addr();
    match TcpListener::bind(addr).await {
        Ok(l) => Ok(l),
        Err(e) if fallback && e.kind() == std::io::ErrorKind::AddrInUse => {
            tracing::warn!(%addr, "address in use; picking a free port");
            Ok(TcpListener::bind(SocketAddr::new(addr.ip(), 0)).await?)
        }
        Err(e) => Err(e).with_context(|| format!("while binding {addr} (server.listen)")),
    }
}

async fn shutdown_signal(app: App) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: draining requests and flushing the metric store");
    app.shutdown.cancel();
}

fn url_of(listener: &TcpListener) -> anyhow::Result<String> {
    let addr = listener.local_addr()?;
    let host = if addr.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        addr.ip().to_string()
    };
    Ok(format!("http://{host}:{}/", addr.port()))
}

fn run_server(config: Config, mode: Mode) -> anyhow::Result<()> {
    let app = App::open(config).context("while opening the data directory")?;
    let rt = runtime()?;
    rt.block_on(async move {
        let desktop = matches!(
            mode,
            Mode::Desktop {
                listen_given: false
            }
        );
        let listener = bind(&app.config, desktop).await?;
        let url = url_of(&listener)?;
        tracing::info!(%url, data_dir = %app.data_dir().display(), "Vitals is listening");
        println!(
            "Vitals is running at {url}  (data: {})",
            app.data_dir().display()
        );
        if desktop && let Err(e) = open::that_detached(&url) {
            println!("Open {url} in your browser ({e}).");
        }
        tokio::spawn(shutdown_signal(app.clone()));
        crate::serve(app, listener).await
    })
}

fn run_demo(
    mut config: Config,
    data_dir_given: bool,
    listen_given: bool,
    no_browser: bool,
) -> anyhow::Result<()> {
    // A fresh directory per run unless one is given, so the demo always starts from the same data.
    let temp = if data_dir_given {
        None
    } else {
        let dir = tempfile::Builder::new()
            .prefix("vitals-demo-")
            .tempdir()
            .context("while creating a temporary data directory")?;
        config.storage.data_dir = dir.path().display().to_string();
        Some(dir)
    };
    let app = App::open(config).context("while opening the demo data directory")?;
    let existing = app.meta.call_blocking(|c| match orgs::by_slug(c, "demo") {
        Ok(o) => Ok(Some(o)),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    })?;
    let started = std::time::Instant::now();
    let login = match existing {
        Some(org) => {
            println!(
                "Using the existing demo organisation {} in {}",
                org.name,
                app.data_dir().display()
            );
            None
        }
        None => Some(app::seed_demo(&app)?),
    };
    let rt = runtime()?;
    let result = rt.block_on(async {
        if let Some(l) = &login {
            // A score history from the start: daily scores over the last 90 days, then now.
            crate::services::scoring::backfill(&app, &l.org, 90).await?;
            crate::services::scoring::recompute(&app, &l.org).await?;
            // Insights from the first page view: the demo's incidents are found by the detector.
            crate::services::insights::detect_org(&app, &l.org).await?;
        }
        let listener = bind(&app.config, !listen_given).await?;
        let url = url_of(&listener)?;
        println!();
        println!("  Vitals demo is running at {url}");
        match &login {
            Some(l) => {
                println!("  Log in as {} with password {}", l.email, l.password);
                println!("  Demo API key (read, write): {}", l.api_key);
                println!("  {} demo points written in {:.1} s", l.points, started.elapsed().as_secs_f64());
                println!();
                println!("  Try:  curl -H 'Authorization: Bearer {}' '{}api/v1/metrics/revenue/series?bucket=month&from={}'",
                    l.api_key, url, (chrono::Utc::now() - chrono::Duration::days(180)).format("%Y-%m-%d"));
            }
            None => println!("  Log in as {} with password {}", app::DEMO_EMAIL, app::DEMO_PASSWORD),
        }
        println!("  Data directory: {}{}", app.data_dir().display(), if temp.is_some() { " (removed on exit)" } else { "" });
        println!("  Stop with Ctrl-C.");
        println!();
        if !no_browser && std::io::stdout().is_terminal() {
            let _ = open::that_detached(&url);
        }
        tokio::spawn(shutdown_signal(app.clone()));
        crate::serve(app, listener).await
    });
    drop(temp);
    result
}

fn open_meta(config: &Config) -> anyhow::Result<MetaStore> {
    let dir = config.data_dir();
    let path = dir.join("meta.sqlite");
    if !path.exists() {
        bail!(
            "no Vitals data in {} (set --data-dir or storage.data_dir)",
            dir.display()
        );
    }
    MetaStore::open(&path).with_context(|| format!("while opening {}", path.display()))
}

fn user_command(config: &Config, cmd: UserCommand) -> anyhow::Result<()> {
    let UserCommand::Add {
        org,
        email,
        name,
        role,
        password_stdin,
    } = cmd;
    let meta = open_meta(config)?;
    let role = Role::parse(&role).with_context(|| {
        format!("--role {role:?}: use owner, admin, manager, analyst or viewer")
    })?;
    let email = app::validate_email(&email).map_err(|(f, m)| anyhow::anyhow!("--{f}: {m}"))?;
    let org = meta
        .call_blocking(|c| orgs::by_slug(c, &org))
        .map_err(|e| match e {
            StoreError::NotFound => anyhow::anyhow!("--org {org:?}: no such organisation"),
            e => e.into(),
        })?;
    let existing = meta.call_blocking(|c| match users::by_email(c, &email) {
        Ok(u) => Ok(Some(u)),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e),
    })?;
    let mut generated = None;
    let user = match existing {
        Some(u) => u,
        None => {
            if name.trim().is_empty() {
                bail!("--name is required for a new user");
            }
            let password = if password_stdin {
                let mut line = String::new();
                std::io::stdin().lock().read_line(&mut line)?;
                line.trim_end_matches(['\r', '\n']).to_string()
            } else {
                let p = security::random_token()[..20].to_string();
                generated = Some(p.clone());
                p
            };
            security::validate_password(&password).map_err(|m| anyhow::anyhow!("password {m}"))?;
            let hash = security::hash_password(&password).map_err(anyhow::Error::msg)?;
            meta.call_blocking(|c| users::create(c, &email, name.trim(), &hash, false))?
        }
    };
    meta.call_blocking(|c| {
        orgs::add_member(c, org.id, user.id, role)?;
        audit::record(
            c,
            Some(org.id),
            "cli",
            "member.add",
            &format!("{} as {}", user.email, role.as_str()),
            "",
        )
    })?;
    println!("{} is now {} of {}", user.email, role.title(), org.slug);
    if let Some(p) = generated {
        println!("initial password: {p}");
    }
    Ok(())
}

fn apikey_command(config: &Config, cmd: ApiKeyCommand) -> anyhow::Result<()> {
    let meta = open_meta(config)?;
    let org_slug = match &cmd {
        ApiKeyCommand::Create { org, .. }
        | ApiKeyCommand::List { org }
        | ApiKeyCommand::Revoke { org, .. } => org.clone(),
    };
    let org = meta
        .call_blocking(|c| orgs::by_slug(c, &org_slug))
        .map_err(|e| match e {
            StoreError::NotFound => anyhow::anyhow!("--org {org_slug:?}: no such organisation"),
            e => e.into(),
        })?;
    match cmd {
        ApiKeyCommand::Create {
            name,
            scopes,
            expires_days,
            ..
        } => {
            let scopes =
                Scope::parse_list(&scopes).map_err(|m| anyhow::anyhow!("--scopes: {m}"))?;
            if name.trim().is_empty() {
                bail!("--name must not be empty");
            }
            if let Some(d) = expires_days
                && !(1..=3650).contains(&d)
            {
                bail!("--expires-days must be between 1 and 3650");
            }
            let (key, secret) = meta.call_blocking(|c| {
                app::create_api_key(c, org.id, name.trim(), &scopes, None, expires_days, "cli")
            })?;
            eprintln!(
                "created key {} ({}) for {}; store it now, it is not shown again:",
                key.name, key.prefix, org.slug
            );
            println!("{secret}");
        }
        ApiKeyCommand::List { .. } => {
            let keys = meta.call_blocking(|c| api_keys::list(c, org.id))?;
            println!(
                "{:<14} {:<24} {:<18} {:<10} last used",
                "prefix", "name", "scopes", "status"
            );
            let now = crate::store::now_secs();
            for k in keys {
                let status = if k.revoked_at.is_some() {
                    "revoked"
                } else if k.is_active(now) {
                    "active"
                } else {
                    "expired"
                };
                let last = k
                    .last_used_at
                    .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| "never".into());
                println!(
                    "{:<14} {:<24} {:<18} {:<10} {}",
                    k.prefix,
                    k.name,
                    Scope::join(&k.scopes),
                    status,
                    last
                );
            }
        }
        ApiKeyCommand::Revoke { prefix, .. } => {
            let prefix = prefix.trim_start_matches("vk_").to_string();
            let key = meta.call_blocking(|c| {
                let (key, _) = api_keys::by_prefix(c, &prefix)?;
                if key.org_id != org.id {
                    return Err(StoreError::NotFound);
                }
                let key = api_keys::revoke(c, org.id, key.id)?;
                audit::record(
                    c,
                    Some(org.id),
                    "cli",
                    "apikey.revoke",
                    &format!("{} ({})", key.name, key.prefix),
                    "",
                )?;
                Ok(key)
            });
            match key {
                Ok(k) => println!("revoked {} ({})", k.name, k.prefix),
                Err(StoreError::NotFound) => bail!("no key with prefix {prefix:?} in {}", org.slug),
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

fn jobs_command(config: &Config) -> anyhow::Result<()> {
    let meta = open_meta(config)?;
    let now = chrono::Utc::now();
    println!(
        "{:<16} {:<16} {:<26} {:>9} {:<8} {:<26} message",
        "job", "schedule", "last run", "duration", "outcome", "next run"
    );
    for (name, expr) in config.jobs.schedules() {
        let schedule = crate::domain::schedule::parse_schedule(expr).map_err(anyhow::Error::msg)?;
        let last = meta
            .call_blocking(|c| crate::store::meta::job_runs::recent(c, name, 1))?
            .into_iter()
            .next();
        let last_started = last
            .as_ref()
            .and_then(|r| chrono::DateTime::from_timestamp(r.started_at, 0));
        let next = match &schedule {
            Some(s) => crate::domain::schedule::next_run(s, last_started, now)
                .map(|t| t.to_rfc3339())
                .unwrap_or_else(|| "never".into()),
            None => "disabled".into(),
        };
        let (last_text, duration, outcome, message) = match &last {
            Some(r) => (
                last_started.map(|t| t.to_rfc3339()).unwrap_or_default(),
                r.duration_ms.map(|d| format!("{d} ms")).unwrap_or_default(),
                r.outcome.clone(),
                r.message.clone(),
            ),
            None => ("never".into(), String::new(), String::new(), String::new()),
        };
        let shown = if expr.is_empty() {
            "(disabled)"
        } else {
            expr.as_str()
        };
        println!(
            "{name:<16} {shown:<16} {last_text:<26} {duration:>9} {outcome:<8} {next:<26} {message}"
        );
    }
    Ok(())
}

/// `vitals import csv`: streams the file to the server with a progress line, then prints the
/// report. DuckDB allows one process per database file, so the server does the writing.
fn import_csv_command(config: &Config, args: CsvImportArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("while reading {}", args.file.display()))?;
    let total = bytes.len() as u64;
    let server = args
        .server
        .clone()
        .unwrap_or_else(|| format!("http://{}", config.server.listen));
    let server = server.trim_end_matches('/').to_string();
    let mut query: Vec<(&str, String)> = vec![
        ("delimiter", args.delimiter.clone()),
        ("decimal", args.decimal.clone()),
        ("valid_only", args.valid_only.to_string()),
    ];
    for (k, v) in [
        ("timestamp_column", &args.timestamp_column),
        ("timestamp_format", &args.timestamp_format),
        ("time_zone", &args.time_zone),
        ("metric_column", &args.metric_column),
        ("value_column", &args.value_column),
        ("columns", &args.columns),
        ("dimensions", &args.dimensions),
    ] {
        if let Some(v) = v {
            query.push((k, v.clone()));
        }
    }
    let rt = runtime()?;
    rt.block_on(async move {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::new();
        if let Some(org) = &args.org {
            let who: serde_json::Value = client
                .get(format!("{server}/api/v1/org"))
                .bearer_auth(&args.api_key)
                .send()
                .await
                .with_context(|| format!("while reaching {server} (is `vitals serve` running?)"))?
                .json()
                .await
                .context("while reading the server's answer")?;
            let slug = who["org"]["slug"]
                .as_str()
                .or(who["slug"].as_str())
                .unwrap_or("");
            if slug != org {
                bail!("the API key belongs to organisation {slug:?}, not {org:?}");
            }
        }
        let started = std::time::Instant::now();
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let counter = sent.clone();
        let chunks: Vec<Vec<u8>> = bytes.chunks(256 * 1024).map(|c| c.to_vec()).collect();
        let stream = futures::stream::iter(chunks.into_iter().map(move |c| {
            let done = counter.fetch_add(c.len() as u64, std::sync::atomic::Ordering::Relaxed)
                + c.len() as u64;
            let width = 30;
            let filled = (done * width / total.max(1)) as usize;
            eprint!(
                "\r  uploading [{}{}] {:>3}%",
                "#".repeat(filled),
                " ".repeat(width as usize - filled),
                done * 100 / total.max(1)
            );
            Ok::<_, std::io::Error>(c)
        }));
        let response = client
            .post(format!("{server}/api/v1/imports/csv"))
            .bearer_auth(&args.api_key)
            .query(&query)
            .header("content-type", "text/csv")
            .body(reqwest::Body::wrap_stream(stream))
            .send()
            .await
            .with_context(|| {
                format!("while sending the file to {server} (is `vitals serve` running?)")
            })?;
        eprintln!(
            "\r  uploaded {} in {:.1} s, server answered {}        ",
            args.file.display(),
            started.elapsed().as_secs_f64(),
            response.status()
        );
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or(serde_json::Value::Null);
        if let Some(problems) = body["problems"].as_array() {
            for p in problems.iter().take(50) {
                eprintln!(
                    "  line {}: {}",
                    p["line"],
                    p["reason"].as_str().unwrap_or("")
                );
            }
            let more = body["problem_count"]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(50);
            if more > 0 {
                eprintln!("  … and {more} more problems");
            }
        }
        if status.is_success() {
            println!(
                "imported {} points from {} rows ({} rows skipped) in {:.1} s",
                body["imported_points"],
                body["rows"],
                body["skipped_rows"],
                started.elapsed().as_secs_f64()
            );
            Ok(())
        } else {
            bail!(
                "{}",
                body["error"]["message"]
                    .as_str()
                    .unwrap_or("the server refused the file")
            )
        }
    })
}
