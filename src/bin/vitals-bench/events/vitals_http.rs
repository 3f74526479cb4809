//! Vitals as a user runs it: `vitals serve` loaded over HTTP (native batch and PostHog's
//! `/batch`) and asked through its analytics API.

use super::*;

struct VitalsSide {
    server: vitals_side::Server,
    key: String,
    client: reqwest::Client,
}

fn vitals_questions(spec: &EventSpec) -> [(&'static str, Value); 3] {
    [
        (
            "/api/v1/analytics/trends",
            json!({"event": TREND_EVENT, "math": "unique_users", "interval": "day",
                   "breakdown": "plan", "breakdown_limit": 10,
                   "from": rfc(spec.trend_from()), "to": rfc(spec.end)}),
        ),
        (
            "/api/v1/analytics/funnels",
            json!({"steps": FUNNEL, "window": {"value": 7, "unit": "day"},
                   "from": rfc(spec.trend_from()), "to": rfc(spec.end)}),
        ),
        (
            "/api/v1/analytics/retention",
            json!({"target": FUNNEL[0], "returning": FUNNEL[2], "period": "week", "periods": 8,
                   "kind": "first_time", "from": rfc(spec.start()), "to": rfc(spec.end)}),
        ),
    ]
}

impl VitalsSide {
    async fn ask(&self, spec: &EventSpec, which: usize) -> anyhow::Result<(Duration, Value)> {
        let (path, q) = &vitals_questions(spec)[which];
        let t = Instant::now();
        let r = self
            .client
            .post(format!("{}{path}", self.server.base))
            .bearer_auth(&self.key)
            .json(q)
            .send()
            .await?;
        let status = r.status();
        let body = r.bytes().await?;
        let elapsed = t.elapsed();
        if !status.is_success() {
            bail!(
                "{path} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok((elapsed, serde_json::from_slice(&body)?))
    }

    async fn answers(&self, spec: &EventSpec) -> anyhow::Result<EventAnswers> {
        let mut a = EventAnswers::default();
        let (_, trend) = self.ask(spec, 0).await?;
        let buckets: Vec<i64> = trend["buckets"]
            .as_array()
            .context("trend buckets")?
            .iter()
            .map(parse_rfc)
            .collect::<Result<_, _>>()?;
        for s in trend["series"].as_array().context("trend series")? {
            let label = s["label"].as_str().unwrap_or("").to_string();
            for (b, v) in buckets
                .iter()
                .zip(s["values"].as_array().context("values")?)
            {
                let n = v.as_f64().unwrap_or(0.0) as i64;
                if n != 0 {
                    a.trend.insert((*b, label.clone()), n);
                }
            }
        }
        let (_, funnel) = self.ask(spec, 1).await?;
        a.funnel = funnel["steps"]
            .as_array()
            .context("funnel steps")?
            .iter()
            .map(|s| s["count"].as_i64().unwrap_or(-1))
            .collect();
        let (_, ret) = self.ask(spec, 2).await?;
        for c in ret["cohorts"].as_array().context("cohorts")? {
            let w = parse_rfc(&c["period"])?;
            let row: Vec<i64> = c["retained"]
                .as_array()
                .context("retained")?
                .iter()
                .map(|v| v.as_i64().unwrap_or(-1))
                .collect();
            a.retention.insert(w, row);
        }
        Ok(a)
    }
}

/// The events as the native batch API takes them, and as PostHog's `/batch` (posthog-node's
/// shape), `BATCH` per request, written by hand before the clock starts.
fn vitals_uploads(events: &[Ev], key: &str, write_key: &str) -> (Vec<Upload>, Vec<Upload>) {
    // (opening, the event name's key, bearer token) of each wire form.
    let bodies = |events: &[Ev],
                  opening: &str,
                  name_key: &str,
                  bearer: Option<&str>|
     -> Vec<Upload> {
        events
            .chunks(BATCH)
            .map(|chunk| {
                let mut s = String::with_capacity(chunk.len() * 240);
                s.push_str(opening);
                for (i, e) in chunk.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    let _ = write!(
                        s,
                        "{{\"uuid\":\"{}\",\"{name_key}\":\"{}\",\"distinct_id\":\"u{}\",\"timestamp\":\"{}\",\"properties\":{}}}",
                        e.uuid, e.name, e.user, rfc(e.ts), e.props
                    );
                }
                s.push_str("]}");
                Upload { bearer: bearer.map(str::to_string), body: s.into_bytes(), points: chunk.len() }
            })
            .collect()
    };
    let (first, second) = events.split_at(events.len() / 2);
    (
        bodies(first, "{\"events\":[", "name", Some(key)),
        bodies(
            second,
            &format!("{{\"api_key\":\"{write_key}\",\"batch\":["),
            "event",
            None,
        ),
    )
}

pub(super) async fn run_vitals(run: &Run<'_>, res: &mut EventResults) -> anyhow::Result<()> {
    let Run {
        spec,
        events,
        truth,
        tmp,
        timing,
        budget,
        max_runs,
    } = *run;
    println!("Vitals (events) …");
    let data = tmp.join("vitals-events");
    let mut config = vitals::Config::default();
    config.storage.data_dir = data.display().to_string();
    let app = vitals::App::open(config)?;
    let hash =
        vitals::security::hash_password(vitals_side::ADMIN_PASSWORD).map_err(anyhow::Error::msg)?;
    let input = NewOrg::validate("Events", "events", "UTC", "USD")
        .map_err(|(f, m)| anyhow::anyhow!("{f} {m}"))?;
    let (org, _) = app.meta.call_blocking(|c| {
        app::create_org_with_owner(c, &input, "events@bench.local", "Bench", &hash, true)
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
    let write_key = app
        .meta
        .call_blocking(|c| vitals::store::meta::project_keys::get_or_create(c, org.id))?;
    app.close();
    // The database file is free for the server once every handle on it is gone.
    drop(app);
    // For profiling by hand on a kept dir (--keep): a throwaway key of a throwaway store.
    println!("  org {} (key {key})", org.id);
    let (native, posthog) = vitals_uploads(events, &key, &write_key);
    let (server, _) = vitals_side::start(&data, &tmp.join("vitals-events.log")).await?;
    let sampler = procs::RssSampler::start(server.process.pid());
    for (label, path, uploads) in [
        (
            "native /api/v1/events/batch",
            "/api/v1/events/batch",
            native,
        ),
        ("PostHog /batch", "/batch", posthog),
    ] {
        let t = Instant::now();
        let n = procs::post_all(
            &format!("{}{path}", server.base),
            "application/json",
            uploads,
            CONNECTIONS,
        )
        .await?;
        let d = t.elapsed();
        println!(
            "  {label}: {n} events in {:.1} s ({})",
            d.as_secs_f64(),
            rate(n as f64 / d.as_secs_f64())
        );
        res.vitals.ingest.push((label.to_string(), n, d));
    }
    res.vitals_rss_mb.0 = sampler.take_peak_mb();
    drop(sampler);
    // What the hourly compaction job does to a backfill, done now in one pass (the server
    // stopped: one process per DuckDB file), so the questions are asked of the layout a user
    // has an hour after loading. Weeks that ended less than two days ago stay as they came.
    let mut server = server;
    server.process.stop();
    let db_bytes = || {
        procs::disk_size(&data.join("metrics.duckdb"))
            + procs::disk_size(&data.join("metrics.duckdb.wal"))
    };
    res.vitals_bytes_uncompacted = db_bytes();
    {
        let mut config = vitals::Config::default();
        config.storage.data_dir = data.display().to_string();
        let app = vitals::App::open(config)?;
        let t = Instant::now();
        let report = app
            .events
            .compact_settled(chrono::Utc::now().timestamp_micros())
            .await?;
        res.compaction = Some((report, t.elapsed()));
        println!(
            "  compaction: {} settled weeks checked, {} rewritten ({} events) in {:.1} s",
            report.checked,
            report.rewritten,
            report.rows,
            t.elapsed().as_secs_f64()
        );
        app.close();
    }
    let (server, _) = vitals_side::start(&data, &tmp.join("vitals-events.log")).await?;
    let sampler = procs::RssSampler::start(server.process.pid());
    let side = VitalsSide {
        server,
        key,
        client: reqwest::Client::new(),
    };
    check("Vitals (HTTP API)", &side.answers(spec).await?, truth)?;
    if timing {
        for which in 0..3 {
            res.vitals.questions[which] = time_warm(budget, max_runs, || async {
                Ok(side.ask(spec, which).await?.0)
            })
            .await?;
        }
    }
    res.vitals_rss_mb.1 = sampler.take_peak_mb();
    drop(sampler);
    let mut server = side.server;
    server.process.stop();
    res.vitals_bytes = db_bytes();
    Ok(())
}
