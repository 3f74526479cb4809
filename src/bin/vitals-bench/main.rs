//! `vitals-bench`: Vitals against the stacks it replaces (PostgreSQL 15 with the seeds' table,
//! InfluxDB 1.x) and against DuckDB's own ceiling, on one deterministic dataset, in one run.
//! Prints one markdown table and writes it to `bench/results/latest.md`.
//!
//!     bench/run                 # full run (installs Debian packages when missing)
//!     bench/run --quick         # a few minutes
//!     bench/run --quick --check-only   # only checks that every contender answers alike
//!
//! Every server runs on loopback with a temp dir and is stopped at the end, on failure and on
//! Ctrl-C. Before a contender is timed, its answers to Q1–Q4 are checked against the answers
//! computed from the generator; any difference stops the run.

mod answers;
mod dataset;
mod duck;
mod events;
mod influx;
mod postgres;
mod procs;
mod questions;
mod report;
mod vitals_side;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;

use answers::Answers;
use dataset::Spec;
use questions::Questions;
use report::{Latency, Table, latency, mb, ms, rate, ratio, runs_within};

#[derive(Parser, Debug)]
#[command(
    about = "Benchmark Vitals against PostgreSQL 15, InfluxDB 1.x and DuckDB's appender ceiling"
)]
struct Args {
    /// Everyday size (10 orgs × 20 metrics × 730 days, daily): a few minutes.
    #[arg(long)]
    quick: bool,
    /// Load and compare the answers only; no timing. With --quick: a tiny dataset.
    #[arg(long)]
    check_only: bool,
    #[arg(long)]
    orgs: Option<usize>,
    /// Metrics per org (each with one series per region: eu, us, apac).
    #[arg(long)]
    metrics: Option<usize>,
    #[arg(long)]
    days: Option<i64>,
    /// Time between points of a series: 15m, 1h, 12h, 1d …
    #[arg(long)]
    interval: Option<String>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Most warm runs per question and contender (fewer when a run is slow).
    #[arg(long)]
    runs: Option<usize>,
    /// Seconds of wrk load per page.
    #[arg(long)]
    wrk_secs: Option<u64>,
    /// Rows loaded into PostgreSQL through INSERT statements (a sample: INSERT is slow).
    #[arg(long)]
    insert_rows: Option<usize>,
    /// Where the table is written.
    #[arg(long, default_value = "bench/results/latest.md")]
    out: PathBuf,
    /// Product events in the event benchmark (default 10 M; --quick 500 k; --check-only 20 k).
    #[arg(long)]
    events: Option<usize>,
    /// Users of the event benchmark (default 200 k; --quick 20 k; --check-only 1 k).
    #[arg(long)]
    event_users: Option<u64>,
    /// Only the event benchmark (Vitals, DuckDB, PostgreSQL, ClickHouse); its section of the
    /// results file is replaced, the rest kept.
    #[arg(long)]
    events_only: bool,
    /// Skip the event benchmark.
    #[arg(long)]
    no_events: bool,
    /// Only Vitals' side of the point benchmark (HTTP and store; answers still checked against
    /// the generator), for quick before/after comparisons: prints its figures, writes nothing.
    /// With --events-only: the event benchmark's appender ceiling and Vitals.
    #[arg(long)]
    vitals_only: bool,
    /// Keep the temp dir (every store's data) at the end and print its path, to profile a
    /// server started on it by hand.
    #[arg(long)]
    keep: bool,
}

fn parse_interval(s: &str) -> anyhow::Result<i64> {
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = n
        .parse()
        .with_context(|| format!("--interval {s:?}: expected e.g. 15m, 1h, 1d"))?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" | "" => n * 3600,
        "d" => n * 86_400,
        _ => bail!("--interval {s:?}: the unit must be s, m, h or d"),
    };
    if secs <= 0 || 86_400 % secs != 0 {
        bail!("--interval {s:?} must divide a day evenly");
    }
    Ok(secs)
}

impl Args {
    fn event_spec(&self) -> events::EventSpec {
        let (n, users) = match (self.quick, self.check_only) {
            (_, true) => (20_000, 1_000),
            (true, false) => (500_000, 20_000),
            _ => (10_000_000, 200_000),
        };
        events::EventSpec::new(
            self.events.unwrap_or(n),
            self.event_users.unwrap_or(users).max(1),
            self.seed,
        )
    }

    fn spec(&self) -> anyhow::Result<Spec> {
        let (orgs, metrics, days, interval) = match (self.quick, self.check_only) {
            (true, true) => (3, 4, 730, "1d"),
            (true, false) => (10, 20, 730, "1d"),
            // 100 × 40 × 3 regions × 730 days × 4 a day = 35 M points: about half of the 30
            // minutes on a 2-core machine (17.5 M took 6.5 minutes; PostgreSQL's COPY is the
            // long pole), leaving room for a noisy neighbour.
            _ => (100, 40, 730, "6h"),
        };
        let today = chrono::Utc::now().timestamp().div_euclid(86_400) * 86_400;
        let spec = Spec {
            seed: self.seed,
            orgs: self.orgs.unwrap_or(orgs),
            metrics: self.metrics.unwrap_or(metrics),
            days: self.days.unwrap_or(days),
            interval_secs: parse_interval(self.interval.as_deref().unwrap_or(interval))?,
            end_secs: today,
        };
        // Q1 looks 90 days back and Q2 two years, each from the same org and metric.
        for (flag, value, min, max) in [
            ("--orgs", spec.orgs as i64, 1, 10_000),
            ("--metrics", spec.metrics as i64, 1, 100),
            ("--days", spec.days, 7, 3_650),
        ] {
            if !(min..=max).contains(&value) {
                bail!("{flag} {value}: must be from {min} to {max}");
            }
        }
        Ok(spec)
    }
}

/// Per contender: ingest (points, time) and each question's latency.
#[derive(Default)]
struct Results {
    vitals_ingest: Option<(usize, Duration)>,
    /// The second half of the orgs, sent as Arrow IPC streams.
    vitals_ingest_arrow: Option<(usize, Duration)>,
    ceiling_ingest: Option<(usize, Duration)>,
    pg_copy: Option<(usize, Duration)>,
    pg_insert: Option<(usize, Duration)>,
    influx_ingest: Option<(usize, Duration)>,
    vitals_http: [Latency; 4],
    vitals_store: [Latency; 4],
    /// Q1 over HTTP with the memo bypassed.
    vitals_q1_fresh: Latency,
    pg: [Latency; 4],
    influx: [Latency; 4],
    vitals_size: u64,
    /// On disk right after ingest, before the settled months were compacted.
    vitals_size_uncompacted: u64,
    /// The compaction job's pass over every settled month, and its time.
    compaction: Option<(vitals::store::metrics::CompactionReport, Duration)>,
    ceiling_size: u64,
    pg_size: (u64, u64),
    influx_size: u64,
    rss_ingest_mb: f64,
    rss_serving_mb: f64,
    settle: Duration,
    wrk: Vec<(String, f64, String, f64)>,
    cold_start: Duration,
    page_cache_dropped: bool,
}

fn check(name: &str, got: &Answers, truth: &Answers) -> anyhow::Result<()> {
    let diffs = answers::differences(got, truth);
    if !diffs.is_empty() {
        bail!(
            "{name} does not give the same answers as the others (generator truth); nothing is timed:\n  {}",
            diffs.join("\n  ")
        );
    }
    println!("  ✓ {name}: answers match ({})", answers::summary(got));
    Ok(())
}

fn per_sec(points: usize, d: Duration) -> f64 {
    points as f64 / d.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    // Ctrl-C: stop the servers and remove the temp dirs at once, even while the main task is
    // blocked in a long step.
    tokio::spawn(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            procs::stop_everything();
            eprintln!("vitals-bench: interrupted; servers stopped, temp dirs removed");
            std::process::exit(130);
        }
    });
    let outcome = run(&args).await;
    if let Err(e) = outcome {
        eprintln!("vitals-bench: {e:#}");
        std::process::exit(1);
    }
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let spec = args.spec()?;
    let q = Questions::for_spec(&spec);
    let timing = !args.check_only;
    let max_runs = args.runs.unwrap_or(if args.quick { 10 } else { 20 });
    let budget = Duration::from_secs(if args.quick { 4 } else { 15 });
    let wrk_secs = args.wrk_secs.unwrap_or(if args.quick { 5 } else { 20 });
    let started = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("vitals-bench-")
        .disable_cleanup(args.keep)
        .tempdir()?;
    if args.keep {
        println!("keeping {}", tmp.path().display());
    } else {
        procs::track_temp_dir(tmp.path());
    }
    // PostgreSQL runs as its own user and must reach its data dir.
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    if args.events_only {
        let peers = !args.vitals_only;
        let results = events::run(
            args.event_spec(),
            tmp.path(),
            timing,
            budget,
            max_runs,
            peers,
        )
        .await?;
        if !peers {
            println!("\n{}", events::vitals_summary(&results));
            return Ok(());
        }
        if timing {
            let section = events::render(&results, started.elapsed());
            println!("\n{section}");
            let old = std::fs::read_to_string(&args.out).unwrap_or_default();
            let kept = old
                .split("\n## Events")
                .next()
                .unwrap_or("")
                .trim_end()
                .to_string();
            std::fs::write(&args.out, format!("{kept}\n\n{section}"))
                .with_context(|| format!("while writing {}", args.out.display()))?;
            println!("written to {}", args.out.display());
        }
        return Ok(());
    }
    println!("dataset: {}", spec.describe());
    let truth = questions::reference(&spec, &q);
    println!(
        "reference answers from the generator: {}",
        answers::summary(&truth)
    );
    let mut res = Results::default();
    // 1. DuckDB's ceiling, in process.
    if !args.vitals_only {
        println!("DuckDB appender ceiling …");
        let ceiling = duck::load(&spec, &tmp.path().join("ceiling.duckdb"))?;
        res.ceiling_ingest = Some((ceiling.points, ceiling.elapsed));
        res.ceiling_size = ceiling.bytes_on_disk;
        let _ = std::fs::remove_file(tmp.path().join("ceiling.duckdb"));
    }

    // 2. Vitals over HTTP, then its store directly.
    vitals_phase(
        &spec,
        &q,
        &truth,
        tmp.path(),
        timing,
        max_runs,
        budget,
        wrk_secs,
        &mut res,
    )
    .await?;
    if args.vitals_only {
        println!("\n{}", vitals_summary(&res));
        return Ok(());
    }

    // 3. PostgreSQL.
    println!("PostgreSQL 15 …");
    {
        let mut pg = postgres::Postgres::start(tmp.path())?;
        pg.create_schema()?;
        let (d, n) = pg.copy_load(&spec, tmp.path())?;
        res.pg_copy = Some((n, d));
        println!("  COPY {n} rows in {:.1} s", d.as_secs_f64());
        let sample = args
            .insert_rows
            .unwrap_or(if args.quick { 100_000 } else { 500_000 })
            .min(spec.total_points());
        let (d, n) = pg.insert_load(&spec, tmp.path(), sample)?;
        res.pg_insert = Some((n, d));
        println!("  INSERT {n} rows in {:.1} s", d.as_secs_f64());
        pg.vacuum_analyze()?;
        res.pg_size = pg.sizes()?;
        check("PostgreSQL", &pg.answers(&q)?, &truth)?;
        if timing {
            for which in 1..=4 {
                let one = pg.time(tmp.path(), &q, which, 1)?[0];
                let warm = pg.time(tmp.path(), &q, which, runs_within(one, budget, 3, max_runs))?;
                pg.restart()?;
                res.page_cache_dropped = procs::drop_page_cache();
                let cold = pg.time(tmp.path(), &q, which, 1)?[0];
                res.pg[which - 1] = latency(&warm, cold);
            }
        }
    }

    // 4. InfluxDB.
    println!("InfluxDB 1.x …");
    {
        let mut influx = influx::Influx::start(tmp.path()).await?;
        let bodies = influx::Influx::bodies(&spec);
        let t = Instant::now();
        let n = influx.write(bodies).await?;
        let d = t.elapsed();
        res.influx_ingest = Some((n, d));
        println!("  {n} points in {:.1} s", d.as_secs_f64());
        check("InfluxDB", &influx.answers(&q).await?, &truth)?;
        if timing {
            for which in 1..=4 {
                let one = influx.ask(&q, which).await?.0;
                let mut warm = Vec::new();
                for _ in 0..runs_within(one, budget, 3, max_runs) {
                    warm.push(influx.ask(&q, which).await?.0);
                }
                influx.restart().await?;
                procs::drop_page_cache();
                let cold = influx.ask(&q, which).await?.0;
                res.influx[which - 1] = latency(&warm, cold);
            }
        }
        res.influx_size = influx.size();
    }

    println!("all four contenders give the same answers to Q1–Q4");
    let event_results = if args.no_events {
        None
    } else {
        Some(
            events::run(
                args.event_spec(),
                tmp.path(),
                timing,
                budget,
                max_runs,
                true,
            )
            .await?,
        )
    };
    if !timing {
        println!(
            "--check-only: nothing timed ({:.0} s)",
            started.elapsed().as_secs_f64()
        );
        return Ok(());
    }
    let mut md = render(&spec, &res, started.elapsed(), wrk_secs);
    if let Some(e) = &event_results {
        md.push_str("\n\n");
        md.push_str(&events::render(e, started.elapsed()));
    }
    println!("\n{md}");
    if let Some(dir) = args.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&args.out, &md)
        .with_context(|| format!("while writing {}", args.out.display()))?;
    println!("written to {}", args.out.display());
    Ok(())
}

/// Vitals' own figures of a run, one per line (`--vitals-only`).
fn vitals_summary(r: &Results) -> String {
    let mut lines = Vec::new();
    if let Some((n, d)) = r.vitals_ingest {
        lines.push(format!("ingest JSON: {} ({n} points)", rate(per_sec(n, d))));
    }
    if let Some((n, d)) = r.vitals_ingest_arrow {
        lines.push(format!(
            "ingest Arrow: {} ({n} points)",
            rate(per_sec(n, d))
        ));
    }
    for (i, (http, store)) in r.vitals_http.iter().zip(&r.vitals_store).enumerate() {
        lines.push(format!(
            "Q{}: HTTP {} / {} / cold {} · store {} / {} / cold {}",
            i + 1,
            ms(http.p50_ms),
            ms(http.p95_ms),
            ms(http.cold_ms),
            ms(store.p50_ms),
            ms(store.p95_ms),
            ms(store.cold_ms)
        ));
    }
    lines.push(format!(
        "Q1 memo bypassed: {} / {}",
        ms(r.vitals_q1_fresh.p50_ms),
        ms(r.vitals_q1_fresh.p95_ms)
    ));
    lines.push(format!(
        "peak RSS: ingest {:.0} MB / serving {:.0} MB",
        r.rss_ingest_mb, r.rss_serving_mb
    ));
    for (name, rps, p99, beside) in &r.wrk {
        lines.push(format!(
            "wrk {name}: {rps:.0} req/s, p99 {p99} (ingest beside {})",
            rate(*beside)
        ));
    }
    lines.push(format!(
        "on disk: {} ({} before compaction); cold start {:.1} ms",
        mb(r.vitals_size),
        mb(r.vitals_size_uncompacted),
        r.cold_start.as_secs_f64() * 1e3
    ));
    lines.join("\n")
}

#[allow(clippy::too_many_arguments)]
async fn vitals_phase(
    spec: &Spec,
    q: &Questions,
    truth: &Answers,
    tmp: &Path,
    timing: bool,
    max_runs: usize,
    budget: Duration,
    wrk_secs: u64,
    res: &mut Results,
) -> anyhow::Result<()> {
    println!("Vitals …");
    let data = tmp.join("vitals");
    let log = tmp.join("vitals.log");
    let fleet = vitals_side::setup(spec, &data)?;
    // For profiling by hand on a kept dir (--keep): a throwaway key of a throwaway store.
    println!(
        "  questioned org {} (key {})",
        fleet.orgs[q.org].0, fleet.orgs[q.org].2
    );
    let (mut server, _) = vitals_side::start(&data, &log).await?;
    let sampler = procs::RssSampler::start(server.process.pid());
    // The first half of the orgs send JSON, the second half the same kind of points as Arrow
    // streams: both content types timed in one run, on one server.
    let json_orgs = fleet.orgs.len().div_ceil(2);
    let work: Vec<procs::Upload> = fleet
        .orgs
        .iter()
        .enumerate()
        .take(json_orgs)
        .flat_map(|(org, (_, _, key))| vitals_side::bodies(spec, org, key))
        .collect();
    let arrow_work: Vec<procs::Upload> = fleet
        .orgs
        .iter()
        .enumerate()
        .skip(json_orgs)
        .map(|(org, (_, _, key))| vitals_side::arrow_bodies(spec, org, key))
        .collect::<anyhow::Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    // The stream beside wrk re-sends the first org's first batches (replacing, not adding).
    let stream: Vec<procs::Upload> = work.iter().take(10).cloned().collect();
    let t = Instant::now();
    let n = vitals_side::ingest(&server.base, work, vitals_side::CONNECTIONS).await?;
    let d = t.elapsed();
    res.vitals_ingest = Some((n, d));
    println!("  {n} points over HTTP as JSON in {:.1} s", d.as_secs_f64());
    if !arrow_work.is_empty() {
        let t = Instant::now();
        let n = vitals_side::ingest_as(
            &server.base,
            vitals::domain::ingest_arrow::CONTENT_TYPE,
            arrow_work,
            vitals_side::CONNECTIONS,
        )
        .await?;
        let d = t.elapsed();
        res.vitals_ingest_arrow = Some((n, d));
        println!(
            "  {n} points over HTTP as Arrow streams in {:.1} s",
            d.as_secs_f64()
        );
    }
    // Ingest schedules score, alert and anomaly work; let it finish before asking questions.
    res.settle = procs::wait_idle(server.process.pid(), Duration::from_secs(600));
    res.rss_ingest_mb = sampler.take_peak_mb();
    println!("  peak RSS while ingesting: {:.0} MB", res.rss_ingest_mb);
    drop(sampler);
    // What the hourly compaction job does to a backfill, done now in one pass on the store
    // (the server stopped: one process per DuckDB file), so every question below is asked of
    // the layout a user has an hour after loading.
    server.process.stop();
    res.vitals_size_uncompacted = vitals_disk(&data);
    {
        let direct = vitals_side::Direct::open(&data, &fleet)?;
        let t = Instant::now();
        let report = direct
            .store
            .compact_settled(chrono::Utc::now().timestamp_micros())
            .await?;
        direct.store.shutdown();
        res.compaction = Some((report, t.elapsed()));
        println!(
            "  compaction: {} settled months checked, {} rewritten ({} points) in {:.1} s",
            report.checked,
            report.rewritten,
            report.rows,
            t.elapsed().as_secs_f64()
        );
    }
    server = vitals_side::start(&data, &log).await?.0;
    let sampler = procs::RssSampler::start(server.process.pid());
    let api = vitals_side::ApiClient::new(&server.base, &fleet, q).await?;
    check("Vitals (HTTP API)", &api.answers(q).await?, truth)?;
    if timing {
        for which in 1..=4 {
            let one = api.ask(q, which).await?.0;
            let mut warm = Vec::new();
            for _ in 0..runs_within(one, budget, 3, max_runs) {
                warm.push(api.ask(q, which).await?.0);
            }
            res.vitals_http[which - 1].p50_ms = report::percentile(&warm, 0.5);
            res.vitals_http[which - 1].p95_ms = report::percentile(&warm, 0.95);
            res.vitals_http[which - 1].runs = warm.len();
        }
        let mut fresh = vitals_side::ApiClient::new(&server.base, &fleet, q).await?;
        fresh.fresh = true;
        let one = fresh.ask(q, 1).await?.0;
        let mut warm = Vec::new();
        for _ in 0..runs_within(one, budget, 3, max_runs) {
            warm.push(fresh.ask(q, 1).await?.0);
        }
        res.vitals_q1_fresh = latency(&warm, Duration::ZERO);
        let cookie = api.session_cookie(&vitals_side::owner_email(q.org)).await?;
        let overview = format!("{}/o/{}/", server.base, fleet.orgs[q.org].0);
        for (name, url, headers) in [
            ("overview page", overview, vec![format!("Cookie: {cookie}")]),
            ("GET /healthz", format!("{}/healthz", server.base), vec![]),
        ] {
            let (rps, p99, beside) = wrk(&url, &headers, wrk_secs, &server.base, &stream).await?;
            res.wrk.push((name.to_string(), rps, p99, beside));
        }
    }
    res.rss_serving_mb = sampler.take_peak_mb();
    drop(sampler);
    server.process.stop();
    res.vitals_size = vitals_disk(&data);
    if timing {
        // Cold: process start to first 200 with the data present, then each question first
        // thing after a fresh start.
        procs::drop_page_cache();
        let (mut server, cold_start) = vitals_side::start(&data, &log).await?;
        res.cold_start = cold_start;
        for which in 1..=4 {
            if which > 1 {
                server.process.stop();
                procs::drop_page_cache();
                server = vitals_side::start(&data, &log).await?.0;
            }
            let api = vitals_side::ApiClient::new(&server.base, &fleet, q).await?;
            res.vitals_http[which - 1].cold_ms = api.ask(q, which).await?.0.as_secs_f64() * 1e3;
        }
        server.process.stop();
    }
    // The store directly, in this process.
    let direct = vitals_side::Direct::open(&data, &fleet)?;
    let mut got = Answers::default();
    for which in 1..=4 {
        direct.ask(q, which, &mut got)?;
    }
    check("Vitals (store)", &got, truth)?;
    if timing {
        let mut scratch = Answers::default();
        for which in 1..=4 {
            let one = direct.ask(q, which, &mut scratch)?;
            let mut warm = Vec::new();
            for _ in 0..runs_within(one, budget, 3, max_runs) {
                warm.push(direct.ask(q, which, &mut scratch)?);
            }
            res.vitals_store[which - 1] = latency(&warm, Duration::ZERO);
        }
        direct.store.shutdown();
        drop(direct);
        for which in 1..=4 {
            procs::drop_page_cache();
            let fresh = vitals_side::Direct::open(&data, &fleet)?;
            let cold = fresh.ask(q, which, &mut scratch)?;
            res.vitals_store[which - 1].cold_ms = cold.as_secs_f64() * 1e3;
            fresh.store.shutdown();
        }
    } else {
        direct.store.shutdown();
    }
    Ok(())
}

/// Vitals' DuckDB file and its write-ahead log.
fn vitals_disk(data: &Path) -> u64 {
    procs::disk_size(&data.join("metrics.duckdb"))
        + procs::disk_size(&data.join("metrics.duckdb.wal"))
}

/// wrk with 64 connections against `url` while one connection streams ingest batches beside
/// it. Returns requests/s, wrk's p99, and the ingest stream's points/s.
async fn wrk(
    url: &str,
    headers: &[String],
    secs: u64,
    base: &str,
    stream: &[procs::Upload],
) -> anyhow::Result<(f64, String, f64)> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let streamer = {
        let (stop, base, stream) = (stop.clone(), base.to_string(), stream.to_vec());
        tokio::spawn(async move {
            let started = Instant::now();
            let mut sent = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for item in &stream {
                    sent += vitals_side::ingest(&base, vec![item.clone()], 1).await?;
                }
            }
            anyhow::Ok(per_sec(sent, started.elapsed()))
        })
    };
    let mut cmd = tokio::process::Command::new("wrk");
    cmd.args([
        "-t",
        "2",
        "-c",
        "64",
        "-d",
        &format!("{secs}s"),
        "--latency",
    ]);
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd
        .arg(url)
        .output()
        .await
        .context("while running wrk (Debian package wrk)")?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let beside = streamer.await??;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    }
    if text.contains("Non-2xx") {
        bail!("wrk saw errors on {url}: {text}");
    }
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .context("wrk printed no Requests/sec")?;
    let p99 = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("99%"))
        .map(|v| v.trim().to_string())
        .context("wrk printed no 99% latency")?;
    Ok((rps, p99, beside))
}

fn render(spec: &Spec, r: &Results, elapsed: Duration, wrk_secs: u64) -> String {
    let mut t = Table::default();
    let ingest = |x: Option<(usize, Duration)>| x.map(|(n, d)| per_sec(n, d)).unwrap_or(f64::NAN);
    let (v, c, pc, pi, ix) = (
        ingest(r.vitals_ingest),
        ingest(r.ceiling_ingest),
        ingest(r.pg_copy),
        ingest(r.pg_insert),
        ingest(r.influx_ingest),
    );
    t.row(&[
        "Ingest as JSON, points/s (higher is better; half the orgs)",
        &format!(
            "{} ({} conns × {} pts/req)",
            rate(v),
            vitals_side::CONNECTIONS,
            vitals_side::BATCH
        ),
        "",
        &format!("{} (appender)", rate(c)),
        &format!(
            "COPY {}; INSERT {} ({} rows, {} per stmt)",
            rate(pc),
            rate(pi),
            r.pg_insert.map(|x| x.0).unwrap_or(0),
            postgres::INSERT_ROWS
        ),
        &format!(
            "{} ({} conns × {} lines/req)",
            rate(ix),
            influx::CONNECTIONS,
            influx::BATCH
        ),
        &ratio(v, c),
        &format!("{} (vs COPY); {} (vs INSERT)", ratio(v, pc), ratio(v, pi)),
        &ratio(v, ix),
    ]);
    if let Some(arrow) = r.vitals_ingest_arrow {
        let a = ingest(Some(arrow));
        t.row(&[
            "Ingest as Arrow IPC streams, points/s (the other half of the orgs)",
            &format!(
                "{} ({} conns × {} pts/req)",
                rate(a),
                vitals_side::CONNECTIONS,
                vitals_side::BATCH
            ),
            "",
            &format!("{} (appender)", rate(c)),
            "",
            "",
            &ratio(a, c),
            &format!("{} (vs COPY)", ratio(a, pc)),
            &ratio(a, ix),
        ]);
    }
    let names = [
        "Q1 overview (1 org: latest + 90 daily buckets of every metric)",
        "Q2 explorer (1 metric, 2 years, weekly × region)",
        "Q3 fleet (every org × metric, 30-day average)",
        "Q4 range scan (1 org, 1 metric, 7 days raw)",
    ];
    for (i, name) in names.iter().enumerate() {
        let (h, s, p, x) = (r.vitals_http[i], r.vitals_store[i], r.pg[i], r.influx[i]);
        if i == 1 {
            // Q1 again, computed on every request (the row above reuses the memo of the
            // org's unchanged data, as every repeated page or API read does).
            let f = r.vitals_q1_fresh;
            t.row(&[
                "Q1 overview, memo bypassed (Cache-Control: no-cache): p50 / p95",
                &format!("{} / {}", ms(f.p50_ms), ms(f.p95_ms)),
                "",
                "",
                "",
                "",
                "",
                &format!("HTTP {}", ratio(f.p50_ms, r.pg[0].p50_ms)),
                &format!("HTTP {}", ratio(f.p50_ms, r.influx[0].p50_ms)),
            ]);
        }
        let cell = |l: Latency| {
            format!(
                "{} / {} / cold {}",
                ms(l.p50_ms),
                ms(l.p95_ms),
                ms(l.cold_ms)
            )
        };
        t.row(&[
            &format!("{name}: p50 / p95 / cold"),
            &cell(h),
            &cell(s),
            "",
            &cell(p),
            &cell(x),
            "",
            &format!(
                "HTTP {} · store {}",
                ratio(h.p50_ms, p.p50_ms),
                ratio(s.p50_ms, p.p50_ms)
            ),
            &format!(
                "HTTP {} · store {}",
                ratio(h.p50_ms, x.p50_ms),
                ratio(s.p50_ms, x.p50_ms)
            ),
        ]);
    }
    if let Some((c, took)) = r.compaction {
        t.row(&[
            "Compaction of every settled month after the load (store, one pass)",
            &format!(
                "{} months checked, {} rewritten ({} points; the rest already clustered by org) in {:.1} s",
                c.checked,
                c.rewritten,
                c.rows,
                took.as_secs_f64()
            ),
            "",
            "",
            "",
            "",
            "",
            "",
            "",
        ]);
    }
    t.row(&[
        "On disk (same data)",
        &format!(
            "{} ({} before compaction)",
            mb(r.vitals_size),
            mb(r.vitals_size_uncompacted)
        ),
        "",
        &mb(r.ceiling_size),
        &format!(
            "{} table+indexes ({} data dir)",
            mb(r.pg_size.0),
            mb(r.pg_size.1)
        ),
        &mb(r.influx_size),
        &ratio(r.vitals_size as f64, r.ceiling_size as f64),
        &ratio(r.vitals_size as f64, r.pg_size.0 as f64),
        &ratio(r.vitals_size as f64, r.influx_size as f64),
    ]);
    t.row(&[
        "Vitals peak RSS: ingest / serving",
        &format!("{:.0} MB / {:.0} MB", r.rss_ingest_mb, r.rss_serving_mb),
    ]);
    for (name, rps, p99, beside) in &r.wrk {
        t.row(&[
            &format!("wrk 64 conns {wrk_secs} s, {name}, ingest beside"),
            &format!(
                "{rps:.0} req/s, p99 {p99} (ingest beside: {})",
                rate(*beside)
            ),
        ]);
    }
    t.row(&[
        "Cold start to first 200 on /healthz",
        &ms(r.cold_start.as_secs_f64() * 1e3),
    ]);
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    // What the server ran with: the environment's override (which it inherits) or the default.
    let duckdb_limit = std::env::var("VITALS_STORAGE__DUCKDB_MEMORY_LIMIT")
        .unwrap_or_else(|_| vitals::config::StorageConfig::default().duckdb_memory_limit);
    format!(
        "# Vitals benchmark\n\n\
         Dataset: {}. \
         Machine: {cpus} cores. Run took {:.0} s on {}.\n\n{}\n\
         Ratios are Vitals ÷ other: for ingest above 1 means Vitals is faster; for latency and size below 1 means Vitals is faster or smaller. \
         Latency: p50 / p95 of warm runs, then one cold run right after a restart of that store's process{}. \
         Vitals (HTTP) is timed from request to the whole JSON body received, from a separate process; Vitals (store) calls the store's functions in process; \
         PostgreSQL is timed by psql's \\timing; InfluxDB over its HTTP API. After its load Vitals' background work (scores, alerts, anomaly detection) settled in {:.0} s before any question was asked. \
         PostgreSQL got `VACUUM ANALYZE` after COPY, shared_buffers = 1GB (DuckDB's memory limit in Vitals: {duckdb_limit}); fsync and synchronous commit stay on everywhere.\n",
        spec.describe(),
        elapsed.as_secs_f64(),
        chrono::Utc::now().format("%Y-%m-%d"),
        t.markdown(),
        if r.page_cache_dropped {
            " with the OS page cache dropped"
        } else {
            " (the OS page cache could not be dropped here, so cold means the process's own caches are empty)"
        },
        r.settle.as_secs_f64()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_parse_and_must_divide_a_day() {
        assert_eq!(parse_interval("15m").unwrap(), 900);
        assert_eq!(parse_interval("12h").unwrap(), 43_200);
        assert_eq!(parse_interval("1d").unwrap(), 86_400);
        assert!(parse_interval("7m").is_err());
        assert!(parse_interval("2d").is_err());
        assert!(parse_interval("h").is_err());
        assert!(parse_interval("5y").is_err());
    }

    #[test]
    fn sizes_out_of_range_are_refused_by_flag() {
        for (args, flag) in [
            (vec!["--orgs", "0"], "--orgs 0"),
            (vec!["--metrics", "0"], "--metrics 0"),
            (vec!["--days", "3"], "--days 3"),
        ] {
            let parsed = Args::parse_from(std::iter::once("vitals-bench").chain(args));
            let err = parsed.spec().unwrap_err().to_string();
            assert!(err.starts_with(flag), "{err}");
        }
        assert!(
            Args::parse_from(["vitals-bench", "--days", "7", "--orgs", "1"])
                .spec()
                .is_ok()
        );
    }

    #[test]
    fn the_full_run_holds_at_least_ten_million_points() {
        let args = Args::parse_from(["vitals-bench"]);
        let spec = args.spec().unwrap();
        assert_eq!(spec.total_points(), 100 * 40 * 3 * 730 * 4);
        assert!(spec.total_points() >= 10_000_000);
        let quick = Args::parse_from(["vitals-bench", "--quick", "--check-only"])
            .spec()
            .unwrap();
        assert_eq!(quick.total_points(), 3 * 4 * 3 * 730);
    }
}
