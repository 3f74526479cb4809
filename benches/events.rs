//! A benchmark (not a test) of the event side: HTTP ingest (native batch and PostHog `/batch`)
//! with durable acknowledgements, then a 30-day trend with a breakdown, a 3-step funnel with a
//! 7-day window and 8-week retention, on the data just sent, over HTTP.
//!
//!     cargo bench --bench events                 # 1,000,000 events, 20,000 users, 4 connections
//!     cargo bench --bench events -- 10000000 200000 4
//!
//! The generator is deterministic: 30 event names; properties plan (4 values), country (30),
//! browser (6), path (500), amount (a number). The funnel's steps are taken by a known share of
//! users, printed beside the answers.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::net::TcpListener;
use vitals::app::{self, NewOrg};
use vitals::domain::roles::Scope;
use vitals::{App, Config};

const PLANS: [&str; 4] = ["free", "starter", "pro", "enterprise"];
const BROWSERS: [&str; 6] = ["chrome", "firefox", "safari", "edge", "opera", "other"];

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * p).round() as usize]
}

/// A small deterministic generator (SplitMix64).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let total: usize = args
        .first()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let users: u64 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let connections: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(4);
    let batch = 10_000;

    let dir = tempfile::tempdir()?;
    let mut config = Config::default();
    config.storage.data_dir = dir.path().display().to_string();
    config.rate_limits.api_per_minute = 1_000_000;
    config.rate_limits.ingest_per_minute = 1_000_000;
    config.rate_limits.pages_per_minute = 1_000_000;
    let app = App::open(config)?;
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
    let write_key = app
        .meta
        .call_blocking(|c| vitals::store::meta::project_keys::get_or_create(c, bench_org.id))?;

    // 30 days ending at the start of today (UTC), spread evenly; the funnel is
    // view_product → add_to_cart (40 % of views, within 1 h) → purchase (50 % of carts, within
    // 1 day).
    let day = 86_400i64;
    let end = chrono::Utc::now().timestamp() / day * day;
    let start = end - 30 * day;
    let names: Vec<String> = (0..27).map(|i| format!("event_{i:02}")).collect();
    let mut rng = Rng(42);
    let mut events: Vec<Value> = Vec::with_capacity(total);
    while events.len() < total {
        let user = rng.below(users);
        let ts = start + rng.below((30 * day) as u64) as i64;
        let props = |rng: &mut Rng| {
            json!({
                "plan": PLANS[(user % 4) as usize],
                "country": format!("c{:02}", user % 30),
                "browser": BROWSERS[rng.below(6) as usize],
                "path": format!("/p/{}", rng.below(500)),
                "amount": (rng.below(10_000) as f64) / 100.0,
            })
        };
        let roll = rng.below(100);
        let at = |t: i64| {
            chrono::DateTime::from_timestamp(t, 0)
                .unwrap_or_default()
                .to_rfc3339()
        };
        if roll < 10 {
            events.push(json!({"name": "view_product", "distinct_id": format!("u{user}"), "timestamp": at(ts), "properties": props(&mut rng)}));
            if rng.below(100) < 40 && ts + 1_800 < end {
                events.push(json!({"name": "add_to_cart", "distinct_id": format!("u{user}"), "timestamp": at(ts + 1_800), "properties": props(&mut rng)}));
                if rng.below(100) < 50 && ts + 7_200 < end {
                    events.push(json!({"name": "purchase", "distinct_id": format!("u{user}"), "timestamp": at(ts + 7_200), "properties": props(&mut rng)}));
                }
            }
        } else {
            let name = &names[rng.below(27) as usize];
            events.push(json!({"name": name, "distinct_id": format!("u{user}"), "timestamp": at(ts), "properties": props(&mut rng)}));
        }
    }
    events.truncate(total);
    // Half through the native API, half through PostHog's /batch (as posthog-node sends it).
    let half = total / 2;
    let native: Vec<String> = events[..half]
        .chunks(batch)
        .map(|c| serde_json::to_string(&json!({"events": c})).unwrap_or_default())
        .collect();
    let posthog: Vec<String> = events[half..]
        .chunks(batch)
        .map(|c| {
            let batch: Vec<Value> = c
                .iter()
                .map(|e| json!({"event": e["name"], "distinct_id": e["distinct_id"], "timestamp": e["timestamp"], "properties": e["properties"], "uuid": uuid::Uuid::new_v4().to_string()}))
                .collect();
            serde_json::to_string(&json!({"api_key": write_key, "batch": batch})).unwrap_or_default()
        })
        .collect();
    drop(events);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let server = tokio::spawn(vitals::serve(app.clone(), listener));
        let client = reqwest::Client::new();
        for (label, path, bodies, auth) in [
            ("native /api/v1/events/batch", "/api/v1/events/batch", native, true),
            ("PostHog /batch", "/batch", posthog, false),
        ] {
            let count = bodies.len();
            let started = Instant::now();
            let queue = std::sync::Arc::new(tokio::sync::Mutex::new(bodies));
            let mut workers = Vec::new();
            for _ in 0..connections {
                let (queue, client, url, key) = (queue.clone(), client.clone(), format!("{base}{path}"), key.clone());
                workers.push(tokio::spawn(async move {
                    loop {
                        let Some(body) = queue.lock().await.pop() else { break };
                        let mut req = client.post(&url).header("content-type", "application/json").body(body);
                        if auth {
                            req = req.bearer_auth(&key);
                        }
                        let r = req.send().await?;
                        anyhow::ensure!(r.status().is_success(), "ingest failed: {} {}", r.status(), r.text().await.unwrap_or_default());
                    }
                    anyhow::Ok(())
                }));
            }
            for w in workers {
                w.await??;
            }
            let elapsed = started.elapsed().as_secs_f64();
            let n = (count * batch).min(total - if auth { 0 } else { half }).min(if auth { half } else { total - half });
            println!("HTTP ingest, {label}: {n} events in {elapsed:.2} s = {:.0} events/s ({connections} connections, {batch} events/request, acknowledged after commit)", n as f64 / elapsed);
        }
        let from = chrono::DateTime::from_timestamp(start, 0).unwrap_or_default().to_rfc3339();
        let to = chrono::DateTime::from_timestamp(end, 0).unwrap_or_default().to_rfc3339();
        let questions = [
            ("30-day trend by country", "/api/v1/analytics/trends", json!({"event": "event_03", "math": "unique_users", "interval": "day", "breakdown": "country", "from": from, "to": to})),
            ("3-step funnel, 7-day window", "/api/v1/analytics/funnels", json!({"steps": ["view_product", "add_to_cart", "purchase"], "window": {"value": 7, "unit": "day"}, "from": from, "to": to})),
            ("8-week retention", "/api/v1/analytics/retention", json!({"target": "view_product", "returning": "purchase", "period": "week", "periods": 8, "from": chrono::DateTime::from_timestamp(end - 56 * day, 0).unwrap_or_default().to_rfc3339(), "to": to})),
        ];
        for (label, path, q) in questions {
            let mut samples = Vec::new();
            let mut answer = Value::Null;
            for _ in 0..10 {
                let t = Instant::now();
                let r = client.post(format!("{base}{path}")).bearer_auth(&key).json(&q).send().await?;
                anyhow::ensure!(r.status().is_success(), "{label} failed: {}", r.status());
                answer = r.json().await?;
                samples.push(t.elapsed());
            }
            let summary = match path {
                "/api/v1/analytics/funnels" => answer["steps"].as_array().map(|s| s.iter().map(|x| x["count"].to_string()).collect::<Vec<_>>().join(" → ")).unwrap_or_default(),
                "/api/v1/analytics/retention" => format!("{} cohorts", answer["cohorts"].as_array().map_or(0, Vec::len)),
                _ => format!("{} series", answer["series"].as_array().map_or(0, Vec::len)),
            };
            println!(
                "{label} (HTTP): p50 {:.1} ms, p95 {:.1} ms ({summary})",
                percentile(&mut samples, 0.5).as_secs_f64() * 1e3,
                percentile(&mut samples, 0.95).as_secs_f64() * 1e3
            );
        }
        app.shutdown.cancel();
        server.await??;
        anyhow::Ok(())
    })
}
