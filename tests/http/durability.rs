//! Durability: `vitals serve` killed with SIGKILL while it ingests at full speed over HTTP,
//! twenty times; every acknowledged batch is there after the restarts, whole.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::common::*;

const CYCLES: usize = 20;
const WRITERS: usize = 4;
const BATCH: usize = 1000;

/// One batch of `BATCH` points of `revenue`, value 1, labelled `batch=c{cycle}w{writer}s{seq}`;
/// its timestamps (one second apart, in 2025) are its own, so no batch replaces another.
fn batch(cycle: usize, writer: usize, seq: usize) -> (String, Value) {
    let label = format!("c{cycle}w{writer}s{seq}");
    let start = 1_735_689_600 // 2025-01-01T00:00:00Z
        + ((cycle * WRITERS + writer) * 200 + seq) as i64 * BATCH as i64;
    let points: Vec<Value> = (0..BATCH as i64)
        .map(|i| {
            let ts = chrono::DateTime::from_timestamp(start + i, 0).unwrap().to_rfc3339();
            json!({"metric": "revenue", "timestamp": ts, "value": 1.0, "dimensions": {"batch": label}})
        })
        .collect();
    (label, Value::Array(points))
}

/// Each cycle starts `vitals serve` on the same data dir (compaction every second, so some
/// kills land in it too), sends batches from four writers as fast as it answers, and kills
/// the process with SIGKILL 50–500 ms (varying by cycle) after the cycle's first
/// acknowledgement. A batch counts as acknowledged only on a 200.
///
/// Afterwards, on a server opened on the same dir: every acknowledged batch holds its 1,000
/// points; every batch present at all holds exactly 1,000 (a batch is stored whole or not
/// at all, acknowledged or not); no point is stored twice; and the API's sum of `revenue` over
/// 2025 equals the stored count. At least one batch was acknowledged per cycle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_kills_during_ingest_lose_no_acknowledged_point() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("VITALS_JOBS__COMPACTION", "* * * * * *")];
    let server = ServeChild::start(dir.path(), &env).await;
    let s = setup(&server, "Acme", "UTC").await;
    let key = api_key(&server, &s, &["read", "write"]).await;
    server.kill().await;
    let acked: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    for cycle in 0..CYCLES {
        let server = ServeChild::start(dir.path(), &env).await;
        let url = server.url("/api/v1/metrics");
        let first_ack = Arc::new(tokio::sync::Notify::new());
        let writers: Vec<_> = (0..WRITERS)
            .map(|writer| {
                let (url, key, acked, first_ack) =
                    (url.clone(), key.clone(), acked.clone(), first_ack.clone());
                tokio::spawn(async move {
                    let client = reqwest::Client::new();
                    for seq in 0..200 {
                        let (label, body) = batch(cycle, writer, seq);
                        let sent = client.post(&url).bearer_auth(&key).json(&body).send().await;
                        match sent {
                            Ok(r) if r.status() == StatusCode::OK => {
                                acked.lock().unwrap().insert(label);
                                first_ack.notify_one();
                            }
                            Ok(r) if r.status() != StatusCode::SERVICE_UNAVAILABLE => {
                                let text = r.text().await.unwrap_or_default();
                                panic!(
                                    "batch {label}: {}",
                                    text.chars().take(300).collect::<String>()
                                )
                            }
                            _ => return,
                        }
                    }
                })
            })
            .collect();
        tokio::time::timeout(Duration::from_secs(30), first_ack.notified())
            .await
            .expect("a first acknowledgement in the cycle");
        tokio::time::sleep(Duration::from_millis(50 + (cycle as u64 * 7919) % 450)).await;
        server.kill().await;
        for w in writers {
            w.await.unwrap();
        }
    }
    let acked = acked.lock().unwrap().clone();
    let server = TestServer::start_with(dir, |c| c.jobs.compaction = String::new()).await;
    let stored: Vec<(String, i64, i64)> = server
        .app
        .metrics
        .read(|c| {
            let mut stmt = c.prepare(
                "SELECT dims, count(*), count(DISTINCT ts) FROM points WHERE metric = 'revenue' GROUP BY dims",
            )?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
        .await
        .unwrap();
    let stored: BTreeMap<String, (i64, i64)> = stored
        .into_iter()
        .map(|(dims, n, distinct)| (dims.trim_start_matches("batch=").to_string(), (n, distinct)))
        .collect();
    let cycles_acked: BTreeSet<&str> = acked.iter().filter_map(|l| l.split('w').next()).collect();
    assert_eq!(
        cycles_acked.len(),
        CYCLES,
        "every cycle had an acknowledgement"
    );
    let missing: Vec<&String> = acked.iter().filter(|l| !stored.contains_key(*l)).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    let partial: Vec<_> = stored
        .iter()
        .filter(|(_, (n, distinct))| *n != BATCH as i64 || *distinct != BATCH as i64)
        .collect();
    assert!(
        partial.is_empty(),
        "batches stored in part or twice: {partial:?}"
    );
    let total = stored.len() as i64 * BATCH as i64;
    let (status, body) = get_json(
        &server,
        &key,
        "/api/v1/metrics/revenue/series?from=2025-01-01&to=2026-01-01&bucket=month&agg=sum",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let api_total: f64 = values(&body).into_iter().flatten().sum();
    assert_eq!(api_total, total as f64);
    println!(
        "{} batches acknowledged over {CYCLES} kills; {} stored (the rest were committed with their answer lost)",
        acked.len(),
        stored.len()
    );
    server.stop().await;
}
