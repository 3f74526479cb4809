//! Vitals as a user runs it: the `vitals serve` binary in its own process, loaded through
//! `POST /api/v1/metrics` and asked through its JSON API; then its store opened directly, so
//! the cost of HTTP shows.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use vitals::app::{self, NewOrg};
use vitals::domain::catalog::{Aggregation, Category, MetricDef, Unit};
use vitals::domain::ingest::decode_dims;
use vitals::domain::roles::Scope;
use vitals::domain::timebucket::{self, Bucket};
use vitals::store::meta::custom_metrics;
use vitals::store::metrics::{self, AggregateQuery, Bucketing, MetricStore, StoreOptions};
use vitals::{App, Config};

use crate::answers::{Answers, Q1};
use crate::dataset::{PLANS, REGIONS, Spec};
use crate::procs::{self, ChildServer, Upload};
use crate::questions::Questions;

pub const ADMIN_EMAIL: &str = "admin@bench.local";
pub const ADMIN_PASSWORD: &str = "bench-password-1";
/// Points per ingest request and client connections.
pub const BATCH: usize = 10_000;
pub const CONNECTIONS: usize = 4;

/// The orgs as created: (label, SQLite id, API key), in dataset order.
pub struct Fleet {
    pub orgs: Vec<(String, i64, String)>,
}

/// Creates the orgs (label as slug), an owner each (the first is server admin), a read/write
/// key each, and the dataset's metrics as custom metrics. Run before the server starts.
pub fn setup(spec: &Spec, data_dir: &Path) -> anyhow::Result<Fleet> {
    let app = App::open(config(data_dir))?;
    let hash = vitals::security::hash_password(ADMIN_PASSWORD).map_err(anyhow::Error::msg)?;
    let mut orgs = Vec::new();
    for i in 0..spec.orgs {
        let label = Spec::org_label(i);
        let input = NewOrg::validate(&format!("Bench {label}"), &label, "UTC", "USD")
            .map_err(|(f, m)| anyhow::anyhow!("org {label}: {f} {m}"))?;
        let email = owner_email(i);
        let (org, _) = app.meta.call_blocking(|c| {
            app::create_org_with_owner(c, &input, &email, "Bench owner", &hash, i == 0)
        })?;
        let (_, key) = app.meta.call_blocking(|c| {
            app::create_api_key(
                c,
                org.id,
                "bench",
                &[Scope::Read, Scope::Write],
                None,
                None,
                "bench",
            )
        })?;
        app.meta.call_blocking(|c| {
            for m in 0..spec.metrics {
                let def = MetricDef {
                    key: Spec::metric_key(m),
                    name: format!("Metric {m}"),
                    description: String::new(),
                    category: Category::ALL[m % Category::ALL.len()],
                    unit: Unit::Count,
                    higher_is_better: true,
                    aggregation: Aggregation::Sum,
                    custom: true,
                };
                custom_metrics::create(c, org.id, &def)?;
            }
            Ok(())
        })?;
        orgs.push((label, org.id, key));
    }
    app.close();
    Ok(Fleet { orgs })
}

/// The owner of the org at `index` (the first org's owner is the server admin).
pub fn owner_email(index: usize) -> String {
    if index == 0 {
        ADMIN_EMAIL.to_string()
    } else {
        format!("owner-{}@bench.local", Spec::org_label(index))
    }
}

fn config(data_dir: &Path) -> Config {
    let mut config = Config::default();
    config.storage.data_dir = data_dir.display().to_string();
    config
}

/// The login form's CSRF token (its cookie lands in `client`'s cookie store).
async fn login_form_token(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let html = client
        .get(format!("{base}/login"))
        .send()
        .await?
        .text()
        .await?;
    let start = html
        .find("name=\"csrf\" value=\"")
        .map(|i| i + "name=\"csrf\" value=\"".len())
        .ok_or_else(|| anyhow::anyhow!("no CSRF token on /login"))?;
    let end = html[start..]
        .find('"')
        .ok_or_else(|| anyhow::anyhow!("no CSRF token on /login"))?;
    Ok(html[start..start + end].to_string())
}

/// The Vitals server process.
pub struct Server {
    pub process: ChildServer,
    pub base: String,
}

pub fn vitals_binary() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name("vitals");
    if !bin.exists() {
        bail!(
            "{} is missing: build both binaries with `cargo build --release --bins` (bench/run does)",
            bin.display()
        );
    }
    Ok(bin)
}

/// Starts `vitals serve` on a free loopback port; returns once `/healthz` answers 200, with
/// the time from process start to that answer.
pub async fn start(data_dir: &Path, log: &Path) -> anyhow::Result<(Server, Duration)> {
    let port = procs::free_port()?;
    let mut cmd = Command::new(vitals_binary()?);
    cmd.args([
        "serve",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
    ])
    .arg(data_dir)
    // BENCH_SERVER_LOG (say vitals::store=debug) for the server log in a kept dir.
    .env(
        "VITALS_LOG",
        std::env::var("BENCH_SERVER_LOG").unwrap_or_else(|_| "warn".into()),
    )
    // The budgets stay on (their cost is part of every request) but sized above any load the
    // bench offers: it measures the server, not the limit.
    .env("VITALS_RATE_LIMITS__API_PER_MINUTE", "1000000")
    .env("VITALS_RATE_LIMITS__INGEST_PER_MINUTE", "1000000")
    .env("VITALS_RATE_LIMITS__PAGES_PER_MINUTE", "1000000");
    let started = Instant::now();
    let mut process = ChildServer::spawn("vitals", &mut cmd, log, Duration::from_secs(60))?;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let ready = procs::wait_http_ok(
        &client,
        &format!("{base}/healthz"),
        Duration::from_secs(120),
    )
    .await;
    if ready.is_err()
        && let Err(e) = process.check_running()
    {
        let log_text = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = log_text.lines().rev().take(5).collect();
        bail!(
            "{e}; its log ends:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
    ready?;
    Ok((Server { process, base }, started.elapsed()))
}

/// Request bodies per org, rows in time order, `BATCH` points each, written by hand (the
/// client's serialisation is not what is measured).
pub fn bodies(spec: &Spec, org: usize, key: &str) -> Vec<Upload> {
    let rows: Vec<_> = spec.org_rows(org).collect();
    rows.chunks(BATCH)
        .map(|chunk| {
            let mut s = String::with_capacity(chunk.len() * 90 + 16);
            s.push_str("{\"points\":[");
            for (i, r) in chunk.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                let _ = write!(
                    s,
                    "{{\"metric\":\"{}\",\"timestamp\":{},\"value\":{},\"dimensions\":{{\"plan\":\"{}\",\"region\":\"{}\"}}}}",
                    Spec::metric_key(r.metric),
                    r.ts_secs,
                    r.value,
                    PLANS[r.plan],
                    REGIONS[r.region]
                );
            }
            s.push_str("]}");
            Upload {
                bearer: Some(key.to_string()),
                body: s.into_bytes(),
                points: chunk.len(),
            }
        })
        .collect()
}

/// The same points as [`bodies`] as Arrow IPC streams (`application/vnd.apache.arrow.stream`):
/// metric, timestamp (seconds), value, plan and region columns, one record batch a request.
pub fn arrow_bodies(spec: &Spec, org: usize, key: &str) -> anyhow::Result<Vec<Upload>> {
    use arrow::array::{Float64Array, StringArray, TimestampSecondArray};
    use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    let schema = std::sync::Arc::new(Schema::new(vec![
        Field::new("metric", DataType::Utf8, false),
        Field::new(
            "timestamp",
            DataType::Timestamp(TimeUnit::Second, None),
            false,
        ),
        Field::new("value", DataType::Float64, false),
        Field::new("plan", DataType::Utf8, false),
        Field::new("region", DataType::Utf8, false),
    ]));
    let rows: Vec<_> = spec.org_rows(org).collect();
    rows.chunks(BATCH)
        .map(|chunk| {
            let batch = arrow::record_batch::RecordBatch::try_new(
                schema.clone(),
                vec![
                    std::sync::Arc::new(StringArray::from_iter_values(
                        chunk.iter().map(|r| Spec::metric_key(r.metric)),
                    )),
                    std::sync::Arc::new(TimestampSecondArray::from_iter_values(
                        chunk.iter().map(|r| r.ts_secs),
                    )),
                    std::sync::Arc::new(Float64Array::from_iter_values(
                        chunk.iter().map(|r| r.value),
                    )),
                    std::sync::Arc::new(StringArray::from_iter_values(
                        chunk.iter().map(|r| PLANS[r.plan]),
                    )),
                    std::sync::Arc::new(StringArray::from_iter_values(
                        chunk.iter().map(|r| REGIONS[r.region]),
                    )),
                ],
            )?;
            let mut body = Vec::new();
            let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut body, &schema)?;
            w.write(&batch)?;
            w.finish()?;
            drop(w);
            Ok(Upload {
                bearer: Some(key.to_string()),
                body,
                points: chunk.len(),
            })
        })
        .collect()
}

/// Sends every upload to `POST /api/v1/metrics` over `connections` connections; returns the
/// points acknowledged (each after its commit).
pub async fn ingest(base: &str, work: Vec<Upload>, connections: usize) -> anyhow::Result<usize> {
    ingest_as(base, "application/json", work, connections).await
}

/// [`ingest`] with bodies of another content type (Arrow streams).
pub async fn ingest_as(
    base: &str,
    content_type: &'static str,
    work: Vec<Upload>,
    connections: usize,
) -> anyhow::Result<usize> {
    procs::post_all(
        &format!("{base}/api/v1/metrics"),
        content_type,
        work,
        connections,
    )
    .await
}

fn rfc(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn parse_ts(v: &Value) -> anyhow::Result<i64> {
    let s = v.as_str().context("timestamp is not a string")?;
    Ok(chrono::DateTime::parse_from_rfc3339(s)?.timestamp())
}

/// An HTTP client of the API: one org's key, and a server admin's session for the fleet.
pub struct ApiClient {
    pub client: reqwest::Client,
    pub session: reqwest::Client,
    pub base: String,
    pub key: String,
    pub metric: String,
    /// Ask with `Cache-Control: no-cache`: Vitals computes the answer instead of reusing its
    /// memo of the org's unchanged data.
    pub fresh: bool,
}

impl ApiClient {
    pub async fn new(base: &str, fleet: &Fleet, q: &Questions) -> anyhow::Result<ApiClient> {
        let session = reqwest::Client::builder().cookie_store(true).build()?;
        let token = login_form_token(&session, base).await?;
        let r = session
            .post(format!("{base}/login"))
            .form(&[
                ("csrf", token.as_str()),
                ("email", ADMIN_EMAIL),
                ("password", ADMIN_PASSWORD),
                ("next", "/"),
            ])
            .send()
            .await?;
        anyhow::ensure!(
            r.status().is_success(),
            "bench admin login failed: {}",
            r.status()
        );
        Ok(ApiClient {
            client: reqwest::Client::new(),
            session,
            base: base.to_string(),
            key: fleet.orgs[q.org].2.clone(),
            metric: Spec::metric_key(q.metric),
            fresh: false,
        })
    }

    pub fn url(&self, q: &Questions, which: usize) -> String {
        let (base, m) = (&self.base, &self.metric);
        match which {
            1 => format!(
                "{base}/api/v1/overview?from={}&to={}&bucket=day&agg=sum",
                rfc(q.q1_from),
                rfc(q.end)
            ),
            2 => format!(
                "{base}/api/v1/metrics/{m}/series?from={}&to={}&bucket=week&agg=sum&group_by=region",
                rfc(q.q2_from),
                rfc(q.end)
            ),
            3 => format!(
                "{base}/admin/fleet.json?from={}&to={}",
                rfc(q.q3_from),
                rfc(q.end)
            ),
            _ => format!(
                "{base}/api/v1/metrics/{m}/points?from={}&to={}&limit=100000",
                rfc(q.q4_from),
                rfc(q.end)
            ),
        }
    }

    /// One question: the time until the whole body has arrived, and the body.
    pub async fn ask(&self, q: &Questions, which: usize) -> anyhow::Result<(Duration, Vec<u8>)> {
        let url = self.url(q, which);
        let started = Instant::now();
        let request = if which == 3 {
            self.session.get(&url)
        } else {
            self.client.get(&url).bearer_auth(&self.key)
        };
        let request = if self.fresh {
            request.header("cache-control", "no-cache")
        } else {
            request
        };
        let r = request.send().await?;
        let status = r.status();
        let body = r.bytes().await?;
        let elapsed = started.elapsed();
        if !status.is_success() {
            bail!(
                "Q{which} {url} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok((elapsed, body.to_vec()))
    }

    pub async fn answers(&self, q: &Questions) -> anyhow::Result<Answers> {
        let mut a = Answers::default();
        let v: Value = serde_json::from_slice(&self.ask(q, 1).await?.1)?;
        let mut q1 = Q1::default();
        for m in v["metrics"].as_array().context("Q1 metrics")? {
            let key = m["key"].as_str().unwrap_or_default().to_string();
            if let Some(latest) = m["latest"].as_object() {
                let value = latest["value"].as_f64().context("Q1 latest value")?;
                q1.latest
                    .insert(key.clone(), (parse_ts(&latest["timestamp"])?, value));
            }
            for p in m["points"].as_array().context("Q1 points")? {
                let count = p["count"].as_i64().unwrap_or(0);
                if count > 0 {
                    let sum = p["value"].as_f64().context("Q1 value")?;
                    q1.daily
                        .insert((key.clone(), parse_ts(&p["start"])?), (sum, count));
                }
            }
        }
        a.q1 = q1;
        let v: Value = serde_json::from_slice(&self.ask(q, 2).await?.1)?;
        for g in v["series"].as_array().context("Q2 series")? {
            let region = g["group"].as_str().unwrap_or_default().to_string();
            for p in g["points"].as_array().context("Q2 points")? {
                let count = p["count"].as_i64().unwrap_or(0);
                if count > 0 {
                    let sum = p["value"].as_f64().context("Q2 value")?;
                    a.q2.insert((parse_ts(&p["start"])?, region.clone()), (sum, count));
                }
            }
        }
        let v: Value = serde_json::from_slice(&self.ask(q, 3).await?.1)?;
        for o in v["orgs"].as_array().context("Q3 orgs")? {
            let org = o["org"].as_str().unwrap_or_default().to_string();
            for m in o["metrics"].as_array().context("Q3 metrics")? {
                a.q3.insert(
                    (
                        org.clone(),
                        m["key"].as_str().unwrap_or_default().to_string(),
                    ),
                    (
                        m["avg"].as_f64().context("Q3 avg")?,
                        m["count"].as_i64().context("Q3 count")?,
                    ),
                );
            }
        }
        let v: Value = serde_json::from_slice(&self.ask(q, 4).await?.1)?;
        anyhow::ensure!(v["truncated"] == false, "Q4 was truncated");
        for p in v["points"].as_array().context("Q4 points")? {
            a.q4.push((
                parse_ts(&p["timestamp"])?,
                p["dimensions"]["region"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["value"].as_f64().context("Q4 value")?,
            ));
        }
        Ok(a)
    }

    /// A session cookie of `email`, for wrk.
    pub async fn session_cookie(&self, email: &str) -> anyhow::Result<String> {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let token = login_form_token(&client, &self.base).await?;
        let r = client
            .post(format!("{}/login", self.base))
            .form(&[
                ("csrf", token.as_str()),
                ("email", email),
                ("password", ADMIN_PASSWORD),
                ("next", "/"),
            ])
            .send()
            .await?;
        for v in r.headers().get_all("set-cookie") {
            let s = v.to_str().unwrap_or_default();
            if s.starts_with("vitals_session=") {
                return Ok(s.split(';').next().unwrap_or_default().to_string());
            }
        }
        bail!("no session cookie from /login ({})", r.status())
    }
}

/// The store opened directly in this process (the server must be stopped: one process per
/// DuckDB file).
pub struct Direct {
    pub store: MetricStore,
    pub ids: Vec<i64>,
    pub labels: HashMap<i64, String>,
}

impl Direct {
    pub fn open(data_dir: &Path, fleet: &Fleet) -> anyhow::Result<Direct> {
        let defaults = Config::default();
        let store = MetricStore::open(
            &data_dir.join("metrics.duckdb"),
            &StoreOptions {
                threads: defaults.storage.duckdb_threads,
                memory_limit: defaults.storage.duckdb_memory_limit.clone(),
                checkpoint_wal: defaults.storage.duckdb_checkpoint_wal.clone(),
            },
        )?;
        Ok(Direct {
            store,
            ids: fleet.orgs.iter().map(|o| o.1).collect(),
            labels: fleet.orgs.iter().map(|o| (o.1, o.0.clone())).collect(),
        })
    }

    fn calendar(bucket: Bucket, from: i64, to: i64) -> Bucketing {
        Bucketing::Calendar {
            bucket,
            segments: timebucket::offset_segments(
                chrono_tz::Tz::UTC,
                from * 1_000_000,
                to * 1_000_000,
            ),
        }
    }

    /// One question through the store's own functions; returns the time and the answer part.
    pub fn ask(&self, q: &Questions, which: usize, into: &mut Answers) -> anyhow::Result<Duration> {
        let org_id = self.ids[q.org];
        let metric = Spec::metric_key(q.metric);
        let started = Instant::now();
        match which {
            1 => {
                let query = AggregateQuery {
                    org_id,
                    metric: None,
                    from_micros: q.q1_from * 1_000_000,
                    to_micros: q.end * 1_000_000,
                    bucketing: Self::calendar(Bucket::Day, q.q1_from, q.end),
                    filters: Vec::new(),
                    group_by: None,
                };
                let (latest, rows) = self.store.read_blocking(|c| {
                    Ok((metrics::latest(c, org_id)?, metrics::aggregate(c, &query)?))
                })?;
                let elapsed = started.elapsed();
                into.q1 = Q1 {
                    latest: latest
                        .into_iter()
                        .map(|(k, l)| (k, (l.ts_micros / 1_000_000, l.value)))
                        .collect(),
                    daily: rows
                        .into_iter()
                        .map(|r| ((r.metric, r.bucket / 1_000_000), (r.sum, r.count)))
                        .collect(),
                };
                Ok(elapsed)
            }
            2 => {
                let query = AggregateQuery {
                    org_id,
                    metric: Some(metric),
                    from_micros: q.q2_from * 1_000_000,
                    to_micros: q.end * 1_000_000,
                    bucketing: Self::calendar(Bucket::Week, q.q2_from, q.end),
                    filters: Vec::new(),
                    group_by: Some("region".into()),
                };
                let rows = self
                    .store
                    .read_blocking(|c| metrics::aggregate(c, &query))?;
                let elapsed = started.elapsed();
                into.q2 = rows
                    .into_iter()
                    .map(|r| {
                        (
                            (r.bucket / 1_000_000, r.group.unwrap_or_default()),
                            (r.sum, r.count),
                        )
                    })
                    .collect();
                Ok(elapsed)
            }
            3 => {
                let (from, to) = (q.q3_from * 1_000_000, q.end * 1_000_000);
                let rows = self
                    .store
                    .read_blocking(|c| metrics::period_fleet(c, &self.ids, from, from, to))?;
                let elapsed = started.elapsed();
                into.q3 = rows
                    .into_iter()
                    .filter(|((_, _, bucket), _)| *bucket == 1)
                    .map(|((org, metric, _), r)| {
                        let label = self.labels.get(&org).cloned().unwrap_or_default();
                        ((label, metric), (r.value(Aggregation::Avg), r.count))
                    })
                    .collect();
                Ok(elapsed)
            }
            _ => {
                let (from, to) = (q.q4_from * 1_000_000, q.end * 1_000_000);
                let rows = self.store.read_blocking(|c| {
                    metrics::raw_points(c, org_id, &metric, from, to, &[], 100_000)
                })?;
                let elapsed = started.elapsed();
                into.q4 = rows
                    .into_iter()
                    .map(|p| {
                        let region = decode_dims(&p.dims)
                            .get("region")
                            .cloned()
                            .unwrap_or_default();
                        (p.ts_micros / 1_000_000, region, p.value)
                    })
                    .collect();
                Ok(elapsed)
            }
        }
    }
}
