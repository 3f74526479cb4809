//! The event side: one deterministic product-event dataset (30 event names, realistic
//! properties, a view → cart → purchase funnel taken by known shares), loaded into Vitals over
//! HTTP (the native batch API and PostHog's `/batch`), into DuckDB's appender (the ceiling),
//! PostgreSQL 15 (the seed's `events` table, jsonb properties) and ClickHouse (MergeTree), then
//! three questions asked of each: a 30-day trend of unique users by plan, a 3-step funnel with
//! a 7-day window over 30 days, and 8-week retention. Every contender's answers are checked
//! against the generator's before anything is timed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use vitals::app::{self, NewOrg};
use vitals::domain::roles::Scope;

use crate::per_sec;
use crate::postgres::Postgres;
use crate::procs::{self, ChildServer, Upload};
use crate::report::{self, Latency, ms, rate, ratio, runs_within};
use crate::vitals_side;

mod ceiling;
mod clickhouse;
mod postgres;
mod vitals_http;

const PLANS: [&str; 4] = ["free", "starter", "pro", "enterprise"];
const BROWSERS: [&str; 6] = ["chrome", "firefox", "safari", "edge", "opera", "other"];
const FUNNEL: [&str; 3] = ["view_product", "add_to_cart", "purchase"];
const TREND_EVENT: &str = "event_03";
const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;
const WINDOW: i64 = 7 * DAY;
/// Events per HTTP request, and connections.
pub const BATCH: usize = 10_000;
pub const CONNECTIONS: usize = 4;
const ORG_UUID: &str = "00000000-0000-4000-8000-00000000e0e0";

/// The dataset: `events` events of `users` users over the 8 weeks before `end` (a Monday,
/// 00:00 UTC).
#[derive(Debug, Clone, Copy)]
pub struct EventSpec {
    pub events: usize,
    pub users: u64,
    pub seed: u64,
    pub end: i64,
}

impl EventSpec {
    pub fn new(events: usize, users: u64, seed: u64) -> EventSpec {
        let today = chrono::Utc::now().timestamp().div_euclid(DAY) * DAY;
        // 1970-01-01 was a Thursday: Mondays are 4 days past a multiple of 7 days.
        let end = today - (today / DAY - 4).rem_euclid(7) * DAY;
        EventSpec {
            events,
            users,
            seed,
            end,
        }
    }

    fn start(&self) -> i64 {
        self.end - 8 * WEEK
    }

    fn trend_from(&self) -> i64 {
        self.end - 30 * DAY
    }

    pub fn describe(&self) -> String {
        format!(
            "{} events, {} users, 30 event names, 8 weeks to {}",
            self.events,
            self.users,
            rfc(self.end)
        )
    }
}

/// One generated event.
#[derive(Debug, Clone)]
pub struct Ev {
    pub uuid: uuid::Uuid,
    pub name: &'static str,
    pub user: u64,
    pub ts: i64,
    pub props: String,
}

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

fn names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = FUNNEL.to_vec();
    for i in 0..27 {
        names.push(Box::leak(format!("event_{i:02}").into_boxed_str()));
    }
    names
}

fn plan_of(user: u64) -> &'static str {
    PLANS[(user % 4) as usize]
}

/// The events in time order. A user never has two events in the same second (ClickHouse's
/// DateTime has seconds), so every contender sees one order. 10 % are product views; 40 % of
/// views add to the cart 30 minutes later, half of those purchase 2 hours after the view.
pub fn generate(spec: &EventSpec) -> Vec<Ev> {
    let names = names();
    let mut rng = Rng(spec.seed);
    let mut taken: HashSet<(u64, i64)> = HashSet::with_capacity(spec.events);
    let mut out: Vec<Ev> = Vec::with_capacity(spec.events + 16);
    let span = (spec.end - spec.start()) as u64;
    let mut push = |rng: &mut Rng, out: &mut Vec<Ev>, name: &'static str, user: u64, ts: i64| {
        let mut ts = ts;
        while !taken.insert((user, ts)) {
            ts += 1;
        }
        if ts >= spec.end {
            return false;
        }
        let props = format!(
            "{{\"plan\":\"{}\",\"country\":\"c{:02}\",\"browser\":\"{}\",\"path\":\"/p/{}\",\"amount\":{}}}",
            plan_of(user),
            user % 30,
            BROWSERS[rng.below(6) as usize],
            rng.below(500),
            rng.below(10_000) as f64 / 100.0
        );
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&rng.next().to_le_bytes());
        bytes[8..].copy_from_slice(&rng.next().to_le_bytes());
        out.push(Ev {
            uuid: uuid::Builder::from_random_bytes(bytes).into_uuid(),
            name,
            user,
            ts,
            props,
        });
        true
    };
    while out.len() < spec.events {
        let user = rng.below(spec.users);
        let ts = spec.start() + rng.below(span) as i64;
        if rng.below(100) < 10 {
            if push(&mut rng, &mut out, FUNNEL[0], user, ts)
                && rng.below(100) < 40
                && push(&mut rng, &mut out, FUNNEL[1], user, ts + 1_800)
                && rng.below(100) < 50
            {
                push(&mut rng, &mut out, FUNNEL[2], user, ts + 7_200);
            }
        } else {
            let name = names[3 + rng.below(27) as usize];
            push(&mut rng, &mut out, name, user, ts);
        }
    }
    out.truncate(spec.events);
    out.sort_by_key(|e| (e.ts, e.user));
    out
}

/// The answers every contender must give alike.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventAnswers {
    /// (day start, plan) → unique users of the trend event (zeros left out).
    pub trend: BTreeMap<(i64, String), i64>,
    /// People reaching each funnel step.
    pub funnel: Vec<i64>,
    /// (cohort week start, [size, retained after 1, 2, … weeks]).
    pub retention: BTreeMap<i64, Vec<i64>>,
}

impl EventAnswers {
    fn summary(&self) -> String {
        let unique: i64 = self.trend.values().sum();
        format!(
            "trend {} cells, Σ {unique}; funnel {:?}; retention sizes {:?}",
            self.trend.len(),
            self.funnel,
            self.retention.values().map(|r| r[0]).collect::<Vec<_>>()
        )
    }
}

/// The answers computed from the generated events themselves.
pub fn reference(spec: &EventSpec, events: &[Ev]) -> EventAnswers {
    let (from, end) = (spec.trend_from(), spec.end);
    let mut trend: HashMap<(i64, &str), HashSet<u64>> = HashMap::new();
    let mut per_user: HashMap<u64, Vec<(i64, usize)>> = HashMap::new();
    let mut first_view: HashMap<u64, i64> = HashMap::new();
    let mut purchases: HashSet<(u64, i64)> = HashSet::new();
    let week_of = |ts: i64| spec.start() + (ts - spec.start()).div_euclid(WEEK) * WEEK;
    for e in events {
        if e.name == TREND_EVENT && e.ts >= from && e.ts < end {
            trend
                .entry((e.ts.div_euclid(DAY) * DAY, plan_of(e.user)))
                .or_default()
                .insert(e.user);
        }
        if let Some(step) = FUNNEL.iter().position(|f| *f == e.name)
            && e.ts >= from
        {
            per_user.entry(e.user).or_default().push((e.ts, step));
        }
        if e.name == FUNNEL[0] {
            let t = first_view.entry(e.user).or_insert(e.ts);
            *t = (*t).min(e.ts);
        }
        if e.name == FUNNEL[2] {
            purchases.insert((e.user, week_of(e.ts)));
        }
    }
    let mut funnel = vec![0i64; 3];
    for list in per_user.values_mut() {
        list.sort();
        let mut best = 0;
        for (i, (t1, step)) in list.iter().enumerate() {
            if *step != 0 || *t1 >= end {
                continue;
            }
            // The earliest next step within the window is always the best choice.
            let mut reached = 1;
            let mut at = *t1;
            for want in 1..3 {
                match list[i + 1..]
                    .iter()
                    .find(|(t, s)| *s == want && *t > at && *t - t1 <= WINDOW)
                {
                    Some((t, _)) => {
                        reached += 1;
                        at = *t;
                    }
                    None => break,
                }
            }
            best = best.max(reached);
        }
        for k in funnel.iter_mut().take(best) {
            *k += 1;
        }
    }
    let mut retention: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for c in 0..8 {
        let w = spec.start() + c * WEEK;
        retention.insert(w, vec![0; (9usize).min((8 - c) as usize)]);
    }
    for (user, t) in &first_view {
        let w = week_of(*t);
        let Some(row) = retention.get_mut(&w) else {
            continue;
        };
        row[0] += 1;
        for (k, cell) in row.iter_mut().enumerate().skip(1) {
            if purchases.contains(&(*user, w + k as i64 * WEEK)) {
                *cell += 1;
            }
        }
    }
    EventAnswers {
        trend: trend
            .into_iter()
            .map(|((d, p), users)| ((d, p.to_string()), users.len() as i64))
            .collect(),
        funnel,
        retention,
    }
}

fn rfc(ts: i64) -> String {
    chrono::DateTime::from_timestamp(ts, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn parse_rfc(v: &Value) -> anyhow::Result<i64> {
    let s = v.as_str().context("a time is not a string")?;
    Ok(chrono::DateTime::parse_from_rfc3339(s)?.timestamp())
}

fn check(name: &str, got: &EventAnswers, truth: &EventAnswers) -> anyhow::Result<()> {
    if got != truth {
        let mut diffs = Vec::new();
        if got.funnel != truth.funnel {
            diffs.push(format!(
                "funnel {:?}, expected {:?}",
                got.funnel, truth.funnel
            ));
        }
        for (k, v) in &truth.trend {
            if got.trend.get(k) != Some(v) {
                diffs.push(format!("trend {k:?}: {:?}, expected {v}", got.trend.get(k)));
            }
        }
        for k in got.trend.keys().filter(|k| !truth.trend.contains_key(*k)) {
            diffs.push(format!("trend {k:?}: unexpected {}", got.trend[k]));
        }
        for (w, row) in &truth.retention {
            if got.retention.get(w) != Some(row) {
                diffs.push(format!(
                    "retention {}: {:?}, expected {row:?}",
                    rfc(*w),
                    got.retention.get(w)
                ));
            }
        }
        diffs.truncate(12);
        bail!(
            "{name} does not give the generator's answers to the event questions; nothing is timed:\n  {}",
            diffs.join("\n  ")
        );
    }
    println!("  ✓ {name}: event answers match ({})", got.summary());
    Ok(())
}

/// One run's inputs, shared by the contenders.
#[derive(Clone, Copy)]
struct Run<'a> {
    spec: &'a EventSpec,
    events: &'a [Ev],
    truth: &'a EventAnswers,
    tmp: &'a Path,
    timing: bool,
    budget: Duration,
    max_runs: usize,
}

/// What one contender measured.
#[derive(Debug, Default, Clone)]
pub struct Contender {
    pub ingest: Vec<(String, usize, Duration)>,
    pub questions: [Latency; 3],
}

#[derive(Debug, Default)]
pub struct EventResults {
    pub spec: Option<EventSpec>,
    pub vitals: Contender,
    pub ceiling: Contender,
    pub pg: Contender,
    pub ch: Contender,
    pub vitals_bytes: u64,
    pub pg_bytes: u64,
    pub ch_bytes: u64,
    pub ceiling_bytes: u64,
    /// Vitals' peak RSS while ingesting and while answering (MB).
    pub vitals_rss_mb: (f64, f64),
    /// On disk right after ingest, before the settled weeks were compacted.
    pub vitals_bytes_uncompacted: u64,
    /// The compaction job's pass over every settled week, and its time.
    pub compaction: Option<(vitals::store::compaction::CompactionReport, Duration)>,
}

const QUESTION_NAMES: [&str; 3] = [
    "E1 trend: 30 days, unique users per day by plan",
    "E2 funnel: 3 steps, 7-day window, 30 days",
    "E3 retention: 8 weeks, first view → purchase",
];

/// Times `ask` warm: one run to size the budget, then up to `max_runs`.
async fn time_warm<F, Fut>(budget: Duration, max_runs: usize, mut ask: F) -> anyhow::Result<Latency>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Duration>>,
{
    let one = ask().await?;
    let mut warm = Vec::new();
    for _ in 0..runs_within(one, budget, 3, max_runs) {
        warm.push(ask().await?);
    }
    Ok(report::latency(&warm, Duration::ZERO))
}

/// Rows of tab-separated (key, …, value) lines into the answers' shapes (PostgreSQL and
/// ClickHouse answer alike).
fn answers_from_rows(spec: &EventSpec, rows: [&str; 3]) -> anyhow::Result<EventAnswers> {
    let mut a = EventAnswers::default();
    for line in rows[0].lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        anyhow::ensure!(f.len() == 3, "trend row {line:?}");
        a.trend
            .insert((f[0].parse()?, f[1].to_string()), f[2].parse()?);
    }
    let line = rows[1]
        .lines()
        .find(|l| !l.trim().is_empty())
        .context("no funnel row")?;
    a.funnel = line
        .split('\t')
        .map(|v| v.trim().parse())
        .collect::<Result<_, _>>()?;
    for c in 0..8 {
        a.retention.insert(
            spec.start() + c * WEEK,
            vec![0; (9usize).min((8 - c) as usize)],
        );
    }
    for line in rows[2].lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<i64> = line
            .split('\t')
            .map(|v| v.trim().parse())
            .collect::<Result<_, _>>()?;
        anyhow::ensure!(f.len() == 3, "retention row {line:?}");
        if let Some(row) = a.retention.get_mut(&f[0])
            && let Some(cell) = row.get_mut(f[1] as usize)
        {
            *cell = f[2];
        }
    }
    Ok(a)
}

/// The whole event benchmark.
pub async fn run(
    spec: EventSpec,
    tmp: &Path,
    timing: bool,
    budget: Duration,
    max_runs: usize,
    peers: bool,
) -> anyhow::Result<EventResults> {
    println!("event dataset: {}", spec.describe());
    let t = Instant::now();
    let events = generate(&spec);
    let truth = reference(&spec, &events);
    println!(
        "  generated in {:.1} s; reference answers: {}",
        t.elapsed().as_secs_f64(),
        truth.summary()
    );
    let mut res = EventResults {
        spec: Some(spec),
        ..EventResults::default()
    };
    ceiling::run_ceiling(&events, &tmp.join("events-ceiling.duckdb"), &mut res)?;
    let run = Run {
        spec: &spec,
        events: &events,
        truth: &truth,
        tmp,
        timing,
        budget,
        max_runs,
    };
    vitals_http::run_vitals(&run, &mut res).await?;
    if !peers {
        return Ok(res);
    }
    postgres::run_pg(&run, &mut res)?;
    clickhouse::run_ch(&run, &mut res).await?;
    println!("all event contenders give the generator's answers to E1–E3");
    Ok(res)
}

/// Events per second of a contender's first load (NaN when it did not load).
fn first_rate(c: &Contender) -> f64 {
    c.ingest
        .first()
        .map(|(_, n, d)| per_sec(*n, *d))
        .unwrap_or(f64::NAN)
}

/// The event section of `bench/results/latest.md`.
pub fn render(r: &EventResults, elapsed: Duration) -> String {
    let mut t = String::from(
        "| Measure | Vitals | DuckDB appender | PostgreSQL 15 (jsonb) | ClickHouse 18.16 | Vitals ÷ PostgreSQL | Vitals ÷ ClickHouse |\n|---|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut row = |cells: &[&str]| {
        let cells: Vec<&str> = cells
            .iter()
            .map(|c| if c.is_empty() { "–" } else { c })
            .collect();
        t.push_str(&format!("| {} |\n", cells.join(" | ")));
    };
    let (pg, ch, ceil) = (first_rate(&r.pg), first_rate(&r.ch), first_rate(&r.ceiling));
    for (label, n, d) in &r.vitals.ingest {
        let v = per_sec(*n, *d);
        row(&[
            &format!("Ingest over HTTP, {label}, events/s (durable ack; higher is better)"),
            &format!("{} ({CONNECTIONS} conns × {BATCH}/req)", rate(v)),
            &format!("{} ({:.2}× of it)", rate(ceil), v / ceil),
            &format!("COPY {}", rate(pg)),
            &format!("{} (100 k/insert)", rate(ch)),
            &ratio(v, pg),
            &ratio(v, ch),
        ]);
    }
    for (i, name) in QUESTION_NAMES.iter().enumerate() {
        let (v, p, c) = (
            r.vitals.questions[i].p50_ms,
            r.pg.questions[i].p50_ms,
            r.ch.questions[i].p50_ms,
        );
        row(&[
            &format!("{name}, p50 (lower is better)"),
            &format!("{} (HTTP)", ms(v)),
            "",
            &ms(p),
            &format!("{} (HTTP)", ms(c)),
            &ratio(v, p),
            &ratio(v, c),
        ]);
    }
    if let Some((c, took)) = r.compaction {
        row(&[
            "Compaction of every settled week after the load (one pass, server stopped)",
            &format!(
                "{} weeks checked, {} rewritten ({} events) in {:.1} s",
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
        ]);
    }
    row(&[
        "On disk",
        &format!(
            "{} ({} before compaction)",
            report::mb(r.vitals_bytes),
            report::mb(r.vitals_bytes_uncompacted)
        ),
        &report::mb(r.ceiling_bytes),
        &report::mb(r.pg_bytes),
        &report::mb(r.ch_bytes),
        "",
        "",
    ]);
    let spec = r.spec.map(|s| s.describe()).unwrap_or_default();
    format!(
        "## Events\n\n{spec}; answers checked against the generator for every contender before timing. \
         Vitals is asked over HTTP like ClickHouse; PostgreSQL's times are psql's `\\timing` \
         (no HTTP). Ratios are Vitals over the peer: for ingest above 1 is faster, for questions below 1 is faster. Run took {:.0} s.\n\n{}",
        elapsed.as_secs_f64(),
        t
    )
}

/// Vitals' own event figures of a run, one per line (`--events-only --vitals-only`).
pub fn vitals_summary(r: &EventResults) -> String {
    let ceiling = first_rate(&r.ceiling);
    let mut lines = vec![format!("appender ceiling: {}", rate(ceiling))];
    for (label, n, d) in &r.vitals.ingest {
        let v = per_sec(*n, *d);
        lines.push(format!(
            "ingest {label}: {} ({:.2}× the ceiling)",
            rate(v),
            v / ceiling
        ));
    }
    for (name, q) in QUESTION_NAMES.iter().zip(&r.vitals.questions) {
        lines.push(format!(
            "{name}: p50 {} / p95 {}",
            ms(q.p50_ms),
            ms(q.p95_ms)
        ));
    }
    lines.push(format!(
        "peak RSS: ingest {:.0} MB / serving {:.0} MB",
        r.vitals_rss_mb.0, r.vitals_rss_mb.1
    ));
    if let Some((c, took)) = r.compaction {
        lines.push(format!(
            "compaction: {} weeks checked, {} rewritten ({} events) in {:.1} s",
            c.checked,
            c.rewritten,
            c.rows,
            took.as_secs_f64()
        ));
    }
    lines.push(format!(
        "on disk: {} ({} before compaction)",
        report::mb(r.vitals_bytes),
        report::mb(r.vitals_bytes_uncompacted)
    ));
    lines.join("\n")
}
