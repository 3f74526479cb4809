//! InfluxDB 1.x from Debian's `influxd`, on loopback ports with a temp dir: line protocol over
//! `/write` in batches, InfluxQL over `/query`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;

use crate::answers::{Answers, Q1};
use crate::dataset::{PLANS, REGIONS, Spec};
use crate::procs::{self, ChildServer, Upload};
use crate::questions::Questions;

/// Lines per write request (InfluxData recommends 5,000–10,000) and client connections.
pub const BATCH: usize = 5_000;
pub const CONNECTIONS: usize = 4;
const DB: &str = "bench";

pub struct Influx {
    dir: PathBuf,
    process: Option<ChildServer>,
    pub base: String,
    client: reqwest::Client,
}

impl Influx {
    pub async fn start(parent: &Path) -> anyhow::Result<Influx> {
        let dir = parent.join("influx");
        std::fs::create_dir_all(&dir)?;
        let http = procs::free_port()?;
        let rpc = procs::free_port()?;
        let d = dir.display();
        let config = format!(
            "reporting-disabled = true
bind-address = \"127.0.0.1:{rpc}\"
[meta]
  dir = \"{d}/meta\"
  logging-enabled = false
[data]
  dir = \"{d}/data\"
  wal-dir = \"{d}/wal\"
  query-log-enabled = false
  cache-max-memory-size = \"1g\"
  wal-fsync-delay = \"0s\"
[http]
  bind-address = \"127.0.0.1:{http}\"
  log-enabled = false
  max-body-size = 0
[monitor]
  store-enabled = false
[continuous_queries]
  enabled = false
"
        );
        std::fs::write(dir.join("influxdb.conf"), config)?;
        let mut influx = Influx {
            dir,
            process: None,
            base: format!("http://127.0.0.1:{http}"),
            client: reqwest::Client::new(),
        };
        influx.launch().await?;
        influx.statement(&format!("CREATE DATABASE {DB}")).await?;
        Ok(influx)
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new("influxd");
        cmd.arg("-config").arg(self.dir.join("influxdb.conf"));
        let mut process = ChildServer::spawn(
            "influxd",
            &mut cmd,
            &self.dir.join("influxd.log"),
            Duration::from_secs(60),
        )?;
        let ready = procs::wait_http_ok(
            &self.client,
            &format!("{}/ping", self.base),
            Duration::from_secs(120),
        )
        .await;
        if ready.is_err() {
            process.check_running()?;
        }
        ready?;
        self.process = Some(process);
        Ok(())
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.process.take() {
            p.stop();
        }
    }

    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.launch().await
    }

    pub fn size(&self) -> u64 {
        procs::disk_size(&self.dir.join("data")) + procs::disk_size(&self.dir.join("wal"))
    }

    async fn statement(&self, q: &str) -> anyhow::Result<Value> {
        let r = self
            .client
            .post(format!("{}/query", self.base))
            .form(&[("q", q)])
            .send()
            .await?;
        let status = r.status();
        let body: Value = r.json().await?;
        if !status.is_success() || body["results"][0].get("error").is_some() {
            bail!("InfluxDB refused {q:?}: {body}");
        }
        Ok(body)
    }

    /// Line-protocol bodies per org (tags sorted by key, as InfluxDB prefers), not timed.
    pub fn bodies(spec: &Spec) -> Vec<Upload> {
        let mut out = Vec::new();
        for org in 0..spec.orgs {
            let label = Spec::org_label(org);
            let rows: Vec<_> = spec.org_rows(org).collect();
            for chunk in rows.chunks(BATCH) {
                let mut s = String::with_capacity(chunk.len() * 80);
                for r in chunk {
                    let _ = writeln!(
                        s,
                        "metrics,category={},metric={},org={label},plan={},region={} value={} {}",
                        Spec::category(r.metric),
                        Spec::metric_key(r.metric),
                        PLANS[r.plan],
                        REGIONS[r.region],
                        r.value,
                        r.ts_secs
                    );
                }
                out.push(Upload {
                    bearer: None,
                    body: s.into_bytes(),
                    points: chunk.len(),
                });
            }
        }
        out
    }

    /// Writes every body over `CONNECTIONS` connections; returns the points acknowledged.
    pub async fn write(&self, bodies: Vec<Upload>) -> anyhow::Result<usize> {
        let url = format!("{}/write?db={DB}&precision=s", self.base);
        procs::post_all(&url, "text/plain; charset=utf-8", bodies, CONNECTIONS).await
    }

    pub fn query(q: &Questions, which: usize) -> String {
        let org = Spec::org_label(q.org);
        let metric = Spec::metric_key(q.metric);
        let range = |from: i64| format!("time >= {from}s AND time < {}s", q.end);
        match which {
            1 => format!(
                "SELECT last(value) FROM metrics WHERE org = '{org}' GROUP BY metric, region; \
                 SELECT sum(value), count(value) FROM metrics WHERE org = '{org}' AND {} GROUP BY time(1d), metric fill(none)",
                range(q.q1_from)
            ),
            // Weeks start on Monday: the epoch was a Thursday, so offset by 4 days.
            2 => format!(
                "SELECT sum(value), count(value) FROM metrics WHERE org = '{org}' AND metric = '{metric}' AND {} GROUP BY time(1w, 4d), region fill(none)",
                range(q.q2_from)
            ),
            3 => format!(
                "SELECT mean(value), count(value) FROM metrics WHERE {} GROUP BY org, metric",
                range(q.q3_from)
            ),
            _ => format!(
                "SELECT value, region FROM metrics WHERE org = '{org}' AND metric = '{metric}' AND {}",
                range(q.q4_from)
            ),
        }
    }

    /// One question: time until the whole body has arrived, and the body.
    pub async fn ask(&self, q: &Questions, which: usize) -> anyhow::Result<(Duration, Vec<u8>)> {
        let sql = Self::query(q, which);
        let started = Instant::now();
        let r = self
            .client
            .get(format!("{}/query", self.base))
            .query(&[("db", DB), ("epoch", "s"), ("q", sql.as_str())])
            .send()
            .await?;
        let status = r.status();
        let body = r.bytes().await?;
        let elapsed = started.elapsed();
        if !status.is_success() {
            bail!(
                "InfluxDB Q{which} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok((elapsed, body.to_vec()))
    }

    pub async fn answers(&self, q: &Questions) -> anyhow::Result<Answers> {
        let mut a = Answers::default();
        let v: Value = serde_json::from_slice(&self.ask(q, 1).await?.1)?;
        let mut q1 = Q1::default();
        let mut newest: BTreeMap<String, (i64, f64)> = BTreeMap::new();
        for s in series(&v, 0)? {
            let metric = tag(s, "metric");
            for row in values(s)? {
                let (ts, value) = (int(&row[0])?, num(&row[1])?);
                let e = newest.entry(metric.clone()).or_insert((ts, 0.0));
                if ts > e.0 {
                    *e = (ts, value);
                } else if ts == e.0 {
                    e.1 += value;
                }
            }
        }
        q1.latest = newest;
        for s in series(&v, 1)? {
            let metric = tag(s, "metric");
            for row in values(s)? {
                q1.daily.insert(
                    (metric.clone(), int(&row[0])?),
                    (num(&row[1])?, int(&row[2])?),
                );
            }
        }
        a.q1 = q1;
        let v: Value = serde_json::from_slice(&self.ask(q, 2).await?.1)?;
        for s in series(&v, 0)? {
            let region = tag(s, "region");
            for row in values(s)? {
                a.q2.insert(
                    (int(&row[0])?, region.clone()),
                    (num(&row[1])?, int(&row[2])?),
                );
            }
        }
        let v: Value = serde_json::from_slice(&self.ask(q, 3).await?.1)?;
        for s in series(&v, 0)? {
            for row in values(s)? {
                a.q3.insert(
                    (tag(s, "org"), tag(s, "metric")),
                    (num(&row[1])?, int(&row[2])?),
                );
            }
        }
        let v: Value = serde_json::from_slice(&self.ask(q, 4).await?.1)?;
        for s in series(&v, 0)? {
            for row in values(s)? {
                a.q4.push((
                    int(&row[0])?,
                    row[2].as_str().unwrap_or_default().to_string(),
                    num(&row[1])?,
                ));
            }
        }
        Ok(a)
    }
}

impl Drop for Influx {
    fn drop(&mut self) {
        self.stop();
    }
}

fn series(v: &Value, statement: usize) -> anyhow::Result<Vec<&Value>> {
    let result = &v["results"][statement];
    if let Some(e) = result.get("error") {
        bail!("InfluxDB error: {e}");
    }
    Ok(result["series"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default())
}

fn values(s: &Value) -> anyhow::Result<&Vec<Value>> {
    s["values"].as_array().context("series without values")
}

fn tag(s: &Value, key: &str) -> String {
    s["tags"][key].as_str().unwrap_or_default().to_string()
}

fn int(v: &Value) -> anyhow::Result<i64> {
    v.as_i64().with_context(|| format!("{v} is not an integer"))
}

fn num(v: &Value) -> anyhow::Result<f64> {
    v.as_f64().with_context(|| format!("{v} is not a number"))
}
