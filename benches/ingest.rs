//! A short benchmark (not a test): HTTP batch ingest points/second against the real server,
//! and the latency of the overview query on the demo data set, through the store and over HTTP.
//!
//!     cargo bench --bench ingest            # defaults: 400,000 points, 4 connections
//!     cargo bench --bench ingest -- 1000000 8
//!
//! Runs under the bench profile, which inherits release, so DuckDB is not compiled again.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::net::TcpListener;
use vitals::app::{self, NewOrg};
use vitals::domain::roles::Scope;
use vitals::services::query::{self, Range};
use vitals::store::meta::custom_metrics;
use vitals::{App, Config};

const REGIONS: [&str; 3] = ["eu", "us", "apac"];

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let i = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[i]
}

/// Reading one 10,000-point body: through a `Value` tree, and typed from the bytes (what the
/// API does first).
fn parse_speed() {
    use vitals::domain::ingest::{self, Limits};
    let now = chrono::Utc::now().timestamp();
    let points: Vec<Value> = (0..10_000)
        .map(|n| {
            json!({"metric": "revenue", "timestamp": now - 86_400 + n, "value": n as f64 * 0.5,
                   "dimensions": {"plan": "pro", "region": REGIONS[n as usize % 3]}})
        })
        .collect();
    let body = serde_json::to_vec(&json!({ "points": points })).unwrap_or_default();
    let limits = Limits {
        now_micros: now * 1_000_000,
        max_future_micros: 0,
        max_points: 50_000,
    };
    let known = |k: &str| k == "revenue";
    let time = |f: &dyn Fn() -> usize| {
        let mut samples: Vec<Duration> = (0..30)
            .map(|_| {
                let t = Instant::now();
                assert_eq!(f(), 10_000);
                t.elapsed()
            })
            .collect();
        percentile(&mut samples, 0.5)
    };
    let tree = time(&|| {
        let v: Value = serde_json::from_slice(&body).unwrap_or_default();
        ingest::parse_batch(&v, known, &limits)
            .map(|p| p.len())
            .unwrap_or(0)
    });
    let typed = time(&|| {
        ingest::parse_batch_bytes(&body, known, &limits)
            .map(|p| p.len())
            .unwrap_or(0)
    });
    let per_s = |d: Duration| 10_000.0 / d.as_secs_f64();
    println!(
        "parse 10,000 points ({} KB): Value tree p50 {:.2} ms ({:.0} points/s); typed p50 {:.2} ms ({:.0} points/s)",
        body.len() / 1024,
        tree.as_secs_f64() * 1e3,
        per_s(tree),
        typed.as_secs_f64() * 1e3,
        per_s(typed)
    );
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let total: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(400_000);
    let connections: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(4);
    let batch = 10_000;

    let dir = tempfile::tempdir()?;
    let mut config = Config::default();
    config.storage.data_dir = dir.path().display().to_string();
    // Budgets on (their cost is measured) but above anything this bench sends.
    config.rate_limits.api_per_minute = 1_000_000;
    config.rate_limits.ingest_per_minute = 1_000_000;
    config.rate_limits.pages_per_minute = 1_000_000;
    let app = App::open(config)?;
    let demo = app::seed_demo(&app)?;
    let org = NewOrg::validate("Bench", "bench", "UTC", "USD")
        .map_err(|(f, m)| anyhow::anyhow!("{f} {m}"))?;
    let hash = vitals::security::hash_password("bench-password-1").map_err(anyhow::Error::msg)?;
    let (bench_org, _) = app.meta.call_blocking(|c| {
        app::create_org_with_owner(c, &org, "bench@vitals.local", "Bench", &hash, false)
    })?;
    let (_, key) = app.meta.call_blocking(|c| {
        app::create_api_key(
            c,
            bench_org.id,
            "bench",
            &[Scope::Read, Scope::Write],
            None,
            None,
            "bench",
        )
    })?;

    parse_speed();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(vitals::serve(app.clone(), listener));

        // Pre-serialise the bodies so the client's JSON work is not measured.
        let metrics = ["revenue", "traffic", "leads", "support_tickets", "expenses"];
        let start_ts = chrono::Utc::now().timestamp() - 365 * 86_400;
        let bodies: Vec<String> = (0..total.div_ceil(batch))
            .map(|b| {
                let points: Vec<Value> = (0..batch)
                    .map(|i| {
                        let n = b * batch + i;
                        json!({
                            "metric": metrics[n % metrics.len()],
                            "timestamp": start_ts + (n / metrics.len()) as i64 * 60,
                            "value": (n % 97) as f64,
                            "dimensions": {"region": REGIONS[n % 3]},
                        })
                    })
                    .collect();
                serde_json::to_string(&json!({"points": points})).unwrap_or_default()
            })
            .collect();
        let client = reqwest::Client::new();
        let started = Instant::now();
        let queue = std::sync::Arc::new(tokio::sync::Mutex::new(bodies));
        let mut workers = Vec::new();
        for _ in 0..connections {
            let (queue, client, base, key) = (queue.clone(), client.clone(), base.clone(), key.clone());
            workers.push(tokio::spawn(async move {
                loop {
                    let Some(body) = queue.lock().await.pop() else { break };
                    let r = client
                        .post(format!("{base}/api/v1/metrics"))
                        .bearer_auth(&key)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await?;
                    anyhow::ensure!(r.status().is_success(), "ingest failed: {}", r.status());
                }
                anyhow::Ok(())
            }));
        }
        for w in workers {
            w.await??;
        }
        let elapsed = started.elapsed();
        println!(
            "HTTP batch ingest: {total} points in {:.2} s = {:.0} points/s ({connections} connections, {batch} points/request, acknowledged after commit)",
            elapsed.as_secs_f64(),
            total as f64 / elapsed.as_secs_f64()
        );

        // /healthz while eight maximal batches (50,000 points, about 4 MB of JSON each) are
        // parsed and stored: the runtime must keep answering.
        let healthz = format!("{base}/healthz");
        let mut idle = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            client.get(&healthz).send().await?.bytes().await?;
            idle.push(t.elapsed());
        }
        let max_batch: String = {
            let points: Vec<Value> = (0..50_000)
                .map(|i| json!({"metric": "revenue", "timestamp": start_ts + 360 * 86_400 - i * 60, "value": i % 97, "dimensions": {"region": REGIONS[i as usize % 3]}}))
                .collect();
            serde_json::to_string(&json!({"points": points}))?
        };
        let loaded = std::sync::Arc::new(tokio::sync::Mutex::new(Vec::new()));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let prober = {
            let (client, healthz, loaded, done) = (client.clone(), healthz.clone(), loaded.clone(), done.clone());
            tokio::spawn(async move {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let t = Instant::now();
                    if let Ok(r) = client.get(&healthz).send().await {
                        let _ = r.bytes().await;
                        loaded.lock().await.push(t.elapsed());
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            })
        };
        let started = Instant::now();
        let batches: Vec<_> = (0..8)
            .map(|_| {
                let (client, base, key, body) = (client.clone(), base.clone(), key.clone(), max_batch.clone());
                tokio::spawn(async move {
                    client.post(format!("{base}/api/v1/metrics")).bearer_auth(&key).header("content-type", "application/json").body(body).send().await
                })
            })
            .collect();
        for b in batches {
            let r = b.await??;
            anyhow::ensure!(r.status().is_success(), "maximal batch failed: {}", r.status());
        }
        let load_time = started.elapsed();
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        prober.await?;
        let mut loaded = loaded.lock().await.clone();
        println!(
            "/healthz: idle p50 {:.2} ms; during 8 parallel 50,000-point batches ({:.2} s): {} answers, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            percentile(&mut idle, 0.5).as_secs_f64() * 1e3,
            load_time.as_secs_f64(),
            loaded.len(),
            percentile(&mut loaded, 0.5).as_secs_f64() * 1e3,
            percentile(&mut loaded, 0.99).as_secs_f64() * 1e3,
            loaded.iter().max().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );

        // Overview query on the demo org (26 metrics, 400 days), through the store.
        let catalog = app.meta.call(move |c| custom_metrics::catalog(c, demo.org.id)).await?;
        for range in [Range::Days30, Range::Months12] {
            let mut samples = Vec::new();
            for _ in 0..30 {
                let t = Instant::now();
                query::cards(&app, &demo.org, catalog.clone(), range, chrono::Utc::now().timestamp_micros(), query::Reuse::Fresh).await?;
                samples.push(t.elapsed());
            }
            println!(
                "overview query ({}, {} metrics, store): p50 {:.2} ms, p95 {:.2} ms",
                range.as_str(),
                catalog.len(),
                percentile(&mut samples, 0.5).as_secs_f64() * 1e3,
                percentile(&mut samples, 0.95).as_secs_f64() * 1e3
            );
        }
        // And the whole overview page over HTTP with a session.
        let browser = reqwest::Client::builder().cookie_store(true).build()?;
        let login_page = browser.get(format!("{base}/login")).send().await?.text().await?;
        let token = login_page
            .split("name=\"csrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_string();
        let r = browser
            .post(format!("{base}/login"))
            .form(&[("csrf", token.as_str()), ("email", app::DEMO_EMAIL), ("password", app::DEMO_PASSWORD)])
            .send()
            .await?;
        anyhow::ensure!(r.url().path().starts_with("/o/"), "demo login failed: {}", r.url());
        let mut samples = Vec::new();
        for _ in 0..30 {
            let t = Instant::now();
            let r = browser.get(format!("{base}/o/demo/?range=30d")).send().await?;
            anyhow::ensure!(r.status().is_success(), "overview failed: {}", r.status());
            r.bytes().await?;
            samples.push(t.elapsed());
        }
        println!(
            "overview page (30d, HTTP, rendered): p50 {:.2} ms, p95 {:.2} ms",
            percentile(&mut samples, 0.5).as_secs_f64() * 1e3,
            percentile(&mut samples, 0.95).as_secs_f64() * 1e3
        );
        // Health score recomputation across many orgs (what the scheduled job does).
        let orgs: usize = std::env::var("BENCH_SCORE_ORGS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
        let today = chrono::Utc::now().date_naive();
        let started = Instant::now();
        for i in 0..orgs {
            let input = NewOrg::validate(&format!("Org {i}"), &format!("org-{i}"), "UTC", "USD").map_err(|(f, m)| anyhow::anyhow!("{f} {m}"))?;
            let org = app.meta.call(move |c| vitals::store::meta::orgs::create(c, &input.slug, &input.name, &input.time_zone, &input.currency)).await?;
            app.metrics.write(org.id, vitals::domain::demo::generate(today, 60, i as u64)).await?;
        }
        println!("score bench data: {orgs} orgs × 26 metrics × 60 days written in {:.1} s", started.elapsed().as_secs_f64());
        let started = Instant::now();
        let n = vitals::services::scoring::recompute_all(&app).await?;
        let elapsed = started.elapsed();
        println!(
            "score recomputation: {n} orgs in {:.2} s ({:.1} ms per org)",
            elapsed.as_secs_f64(),
            elapsed.as_secs_f64() * 1e3 / n as f64
        );
        app.shutdown.cancel();
        server.await??;
        anyhow::Ok(())
    })
}
