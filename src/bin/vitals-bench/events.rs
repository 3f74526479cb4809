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

use crate::postgres::Postgres;
use crate::procs::{self, ChildServer, Upload};
use crate::report::{self, Latency, ms, rate, ratio, runs_within};
use crate::vitals_side;

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

// ---------- Vitals ----------

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
                Upload { bearer: bearer.map(str::to_string), body: s, points: chunk.len() }
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

async fn run_vitals(run: &Run<'_>, res: &mut EventResults) -> anyhow::Result<()> {
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
    let (native, posthog) = vitals_uploads(events, &key, &write_key);
    let (server, _) = vitals_side::start(&data, &tmp.join("vitals-events.log")).await?;
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
    let mut server = side.server;
    server.process.stop();
    res.vitals_bytes = procs::disk_size(&data.join("metrics.duckdb"))
        + procs::disk_size(&data.join("metrics.duckdb.wal"));
    Ok(())
}

// ---------- DuckDB's appender ----------

fn run_ceiling(events: &[Ev], path: &Path, res: &mut EventResults) -> anyhow::Result<()> {
    use duckdb::types::{TimeUnit, Value as Dv};
    println!("DuckDB appender ceiling (events) …");
    let config = duckdb::Config::default()
        .enable_autoload_extension(false)?
        .with("autoinstall_known_extensions", "false")?
        .threads(2)?
        .max_memory("1GB")?;
    let conn = duckdb::Connection::open_with_flags(path, config)?;
    conn.execute_batch(
        "CREATE TABLE events (org_id BIGINT NOT NULL, uuid UUID NOT NULL, name VARCHAR NOT NULL, distinct_id VARCHAR NOT NULL, ts TIMESTAMP NOT NULL, props VARCHAR);",
    )?;
    let ids: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.uuid.to_string(), format!("u{}", e.user)))
        .collect();
    let started = Instant::now();
    {
        let mut app = conn.appender("events")?;
        for (e, (uuid, user)) in events.iter().zip(&ids) {
            app.append_row(duckdb::params![
                1i64,
                uuid.as_str(),
                e.name,
                user.as_str(),
                Dv::Timestamp(TimeUnit::Microsecond, e.ts * 1_000_000),
                e.props.as_str(),
            ])?;
        }
        app.flush()?;
    }
    conn.execute_batch("CHECKPOINT;")?;
    let d = started.elapsed();
    drop(conn);
    println!(
        "  {} events in {:.1} s ({})",
        events.len(),
        d.as_secs_f64(),
        rate(events.len() as f64 / d.as_secs_f64())
    );
    res.ceiling
        .ingest
        .push(("appender".into(), events.len(), d));
    res.ceiling_bytes = procs::disk_size(path);
    let _ = std::fs::remove_file(path);
    Ok(())
}

// ---------- PostgreSQL ----------

/// The seed's table (partitioned by time; TimescaleDB is not in Debian, so native weekly
/// partitions), with the index a PostgreSQL user adds for per-user funnels and one for
/// per-event scans.
fn pg_schema(spec: &EventSpec) -> String {
    let mut sql = String::from(
        "CREATE TABLE events (
           id UUID DEFAULT gen_random_uuid(),
           org_id UUID,
           event_name VARCHAR(255) NOT NULL,
           properties JSONB,
           user_id VARCHAR(255),
           session_id VARCHAR(255),
           timestamp TIMESTAMPTZ DEFAULT NOW(),
           ip_address INET,
           user_agent TEXT,
           PRIMARY KEY (id, timestamp)
         ) PARTITION BY RANGE (timestamp);",
    );
    for w in 0..8 {
        let from = spec.start() + w * WEEK;
        let _ = write!(
            sql,
            "CREATE TABLE events_w{w} PARTITION OF events FOR VALUES FROM ('{}') TO ('{}');",
            rfc(from),
            rfc(from + WEEK)
        );
    }
    sql.push_str(
        "CREATE INDEX events_org_name_time ON events (org_id, event_name, timestamp);
         CREATE INDEX events_org_user_name_time ON events (org_id, user_id, event_name, timestamp);",
    );
    sql
}

fn pg_questions(spec: &EventSpec) -> [String; 3] {
    let t = |s: i64| format!("'{}'", rfc(s));
    let (from, start, end) = (t(spec.trend_from()), t(spec.start()), t(spec.end));
    [
        format!(
            "SELECT extract(epoch FROM date_trunc('day', timestamp AT TIME ZONE 'UTC'))::bigint, properties->>'plan', count(DISTINCT user_id)
               FROM events WHERE org_id = '{ORG_UUID}' AND event_name = '{TREND_EVENT}' AND timestamp >= {from} AND timestamp < {end}
              GROUP BY 1, 2 ORDER BY 1, 2"
        ),
        format!(
            "SELECT count(DISTINCT s1.user_id),
                    count(DISTINCT s1.user_id) FILTER (WHERE s2.t2 IS NOT NULL),
                    count(DISTINCT s1.user_id) FILTER (WHERE s3.t3 IS NOT NULL)
               FROM (SELECT user_id, timestamp AS t1 FROM events
                      WHERE org_id = '{ORG_UUID}' AND event_name = '{f0}' AND timestamp >= {from} AND timestamp < {end}) s1
               LEFT JOIN LATERAL (SELECT min(e.timestamp) AS t2 FROM events e
                      WHERE e.org_id = '{ORG_UUID}' AND e.user_id = s1.user_id AND e.event_name = '{f1}'
                        AND e.timestamp > s1.t1 AND e.timestamp <= s1.t1 + interval '7 days') s2 ON true
               LEFT JOIN LATERAL (SELECT min(e.timestamp) AS t3 FROM events e
                      WHERE e.org_id = '{ORG_UUID}' AND e.user_id = s1.user_id AND e.event_name = '{f2}'
                        AND e.timestamp > s2.t2 AND e.timestamp <= s1.t1 + interval '7 days') s3 ON true",
            f0 = FUNNEL[0],
            f1 = FUNNEL[1],
            f2 = FUNNEL[2]
        ),
        format!(
            "WITH firsts AS (
               SELECT user_id, min(timestamp) AS t FROM events
                WHERE org_id = '{ORG_UUID}' AND event_name = '{f0}' AND timestamp < {end} GROUP BY user_id),
             cohort AS (SELECT user_id, date_trunc('week', t AT TIME ZONE 'UTC') AS w FROM firsts WHERE t >= {start}),
             ret AS (SELECT DISTINCT user_id, date_trunc('week', timestamp AT TIME ZONE 'UTC') AS w FROM events
                      WHERE org_id = '{ORG_UUID}' AND event_name = '{f2}' AND timestamp >= {start} AND timestamp < {end})
             SELECT extract(epoch FROM w)::bigint, 0, count(*) FROM cohort GROUP BY w
             UNION ALL
             SELECT extract(epoch FROM c.w)::bigint, (extract(epoch FROM r.w - c.w) / 604800)::int AS k, count(*)
               FROM cohort c JOIN ret r ON r.user_id = c.user_id AND r.w > c.w AND r.w <= c.w + interval '8 weeks'
              GROUP BY 1, 2",
            f0 = FUNNEL[0],
            f2 = FUNNEL[2]
        ),
    ]
}

/// Rows of tab-separated (key, …, value) lines into the answers' shapes.
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

fn run_pg(run: &Run<'_>, res: &mut EventResults) -> anyhow::Result<()> {
    let Run {
        spec,
        events,
        truth,
        tmp,
        timing,
        budget,
        max_runs,
    } = *run;
    println!("PostgreSQL 15 (events) …");
    // PostgreSQL runs as its own user: its parent dir must be open to it.
    let parent = tmp.join("pg-events");
    std::fs::create_dir_all(&parent)?;
    std::fs::set_permissions(&parent, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let mut pg = Postgres::start(&parent)?;
    pg.sql(&pg_schema(spec))?;
    let file = tmp.join("events.tsv");
    {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&file)?);
        for e in events {
            writeln!(
                out,
                "{}\t{ORG_UUID}\t{}\t{}\tu{}\t{}",
                e.uuid,
                e.name,
                e.props,
                e.user,
                rfc(e.ts)
            )?;
        }
    }
    let t = Instant::now();
    pg.sql(&format!(
        "COPY events (id, org_id, event_name, properties, user_id, timestamp) FROM '{}'",
        file.display()
    ))?;
    let d = t.elapsed();
    let _ = std::fs::remove_file(&file);
    println!(
        "  COPY {} events in {:.1} s ({})",
        events.len(),
        d.as_secs_f64(),
        rate(events.len() as f64 / d.as_secs_f64())
    );
    res.pg.ingest.push(("COPY".into(), events.len(), d));
    pg.sql("VACUUM ANALYZE events")?;
    res.pg_bytes = pg
        .sql("SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = 'events'::regclass")?
        .trim()
        .parse()
        .unwrap_or(0);
    let qs = pg_questions(spec);
    let rows = [pg.sql(&qs[0])?, pg.sql(&qs[1])?, pg.sql(&qs[2])?];
    check(
        "PostgreSQL",
        &answers_from_rows(spec, [&rows[0], &rows[1], &rows[2]])?,
        truth,
    )?;
    if timing {
        for (which, sql) in qs.iter().enumerate() {
            let one = pg.time_sql(tmp, &format!("e{which}"), sql, 1)?[0];
            let warm = pg.time_sql(
                tmp,
                &format!("e{which}"),
                sql,
                runs_within(one, budget, 3, max_runs),
            )?;
            res.pg.questions[which] = report::latency(&warm, Duration::ZERO);
        }
    }
    pg.stop();
    Ok(())
}

// ---------- ClickHouse ----------

struct ClickHouse {
    process: ChildServer,
    base: String,
    data: std::path::PathBuf,
    client: reqwest::Client,
}

impl ClickHouse {
    async fn start(tmp: &Path) -> anyhow::Result<ClickHouse> {
        let dir = tmp.join("clickhouse");
        std::fs::create_dir_all(&dir)?;
        let (http, tcp, inter) = (
            procs::free_port()?,
            procs::free_port()?,
            procs::free_port()?,
        );
        let users = std::fs::read_to_string("/etc/clickhouse-server/users.xml")
            .context("ClickHouse's users.xml (Debian's clickhouse-server)")?;
        std::fs::write(dir.join("users.xml"), users)?;
        let d = dir.display();
        std::fs::write(
            dir.join("config.xml"),
            format!(
                "<?xml version=\"1.0\"?>
<yandex>
  <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/err.log</errorlog></logger>
  <http_port>{http}</http_port><tcp_port>{tcp}</tcp_port><interserver_http_port>{inter}</interserver_http_port>
  <listen_host>127.0.0.1</listen_host>
  <path>{d}/data/</path><tmp_path>{d}/tmp/</tmp_path><user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <users_config>{d}/users.xml</users_config>
  <default_profile>default</default_profile><default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>536870912</mark_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
</yandex>
"
            ),
        )?;
        let mut cmd = Command::new("clickhouse-server");
        cmd.arg(format!("--config-file={d}/config.xml"));
        let process = ChildServer::spawn(
            "clickhouse",
            &mut cmd,
            &dir.join("stdout.log"),
            Duration::from_secs(30),
        )?;
        let base = format!("http://127.0.0.1:{http}");
        let client = reqwest::Client::new();
        procs::wait_http_ok(&client, &format!("{base}/ping"), Duration::from_secs(60)).await?;
        Ok(ClickHouse {
            process,
            base,
            data: dir.join("data"),
            client,
        })
    }

    async fn sql(&self, sql: &str) -> anyhow::Result<(Duration, String)> {
        let t = Instant::now();
        let r = self
            .client
            .post(format!("{}/", self.base))
            .body(sql.to_string())
            .send()
            .await?;
        let status = r.status();
        let text = r.text().await?;
        let d = t.elapsed();
        if !status.is_success() {
            bail!("ClickHouse answered {status} to {sql}: {text}");
        }
        Ok((d, text))
    }
}

fn ch_questions(spec: &EventSpec) -> [String; 3] {
    let t = |s: i64| format!("toDateTime({s})");
    let (from, start, end) = (t(spec.trend_from()), t(spec.start()), t(spec.end));
    let firsts = format!(
        "SELECT user_id, toDateTime(toMonday(min(timestamp))) AS w, min(timestamp) AS t FROM events
          WHERE org_id = '{ORG_UUID}' AND event_name = '{f0}' AND timestamp < {end} GROUP BY user_id HAVING t >= {start}",
        f0 = FUNNEL[0]
    );
    [
        format!(
            "SELECT toUInt32(toStartOfDay(timestamp)) AS d, visitParamExtractString(properties, 'plan') AS p, uniqExact(user_id)
               FROM events WHERE org_id = '{ORG_UUID}' AND event_name = '{TREND_EVENT}' AND timestamp >= {from} AND timestamp < {end}
              GROUP BY d, p ORDER BY d, p FORMAT TabSeparated"
        ),
        format!(
            "SELECT countIf(level >= 1), countIf(level >= 2), countIf(level >= 3) FROM (
               SELECT user_id, windowFunnel({WINDOW})(timestamp, event_name = '{f0}' AND timestamp < {end}, event_name = '{f1}', event_name = '{f2}') AS level
                 FROM events WHERE org_id = '{ORG_UUID}' AND event_name IN ('{f0}', '{f1}', '{f2}')
                  AND timestamp >= {from} AND timestamp < toDateTime({end_window})
                GROUP BY user_id) WHERE level >= 1 FORMAT TabSeparated",
            f0 = FUNNEL[0],
            f1 = FUNNEL[1],
            f2 = FUNNEL[2],
            end_window = spec.end + WINDOW
        ),
        format!(
            "SELECT toUInt32(w), 0, count() FROM ({firsts}) GROUP BY w
             UNION ALL
             SELECT toUInt32(w), toInt32((toUInt32(rw) - toUInt32(w)) / 604800) AS k, count() FROM
               (SELECT user_id, w FROM ({firsts}))
               ALL INNER JOIN
               (SELECT DISTINCT user_id, toDateTime(toMonday(timestamp)) AS rw FROM events
                 WHERE org_id = '{ORG_UUID}' AND event_name = '{f2}' AND timestamp >= {start} AND timestamp < {end})
               USING user_id
             WHERE rw > w AND k <= 8 GROUP BY w, k FORMAT TabSeparated",
            f2 = FUNNEL[2]
        ),
    ]
}

async fn run_ch(run: &Run<'_>, res: &mut EventResults) -> anyhow::Result<()> {
    let Run {
        spec,
        events,
        truth,
        tmp,
        timing,
        budget,
        max_runs,
    } = *run;
    println!("ClickHouse (events) …");
    let mut ch = ClickHouse::start(tmp).await?;
    ch.sql(
        "CREATE TABLE events (id String, org_id String, event_name String, user_id String, timestamp DateTime, properties String)
         ENGINE = MergeTree() PARTITION BY toMonday(timestamp) ORDER BY (org_id, event_name, user_id, timestamp)",
    )
    .await?;
    // ClickHouse's advice: large inserts (100 k rows each), TSV over HTTP.
    let bodies: Vec<Upload> = events
        .chunks(100_000)
        .map(|chunk| {
            let mut s = String::with_capacity(chunk.len() * 200);
            for e in chunk {
                let _ = writeln!(
                    s,
                    "{}\t{ORG_UUID}\t{}\tu{}\t{}\t{}",
                    e.uuid, e.name, e.user, e.ts, e.props
                );
            }
            Upload {
                bearer: None,
                body: s,
                points: chunk.len(),
            }
        })
        .collect();
    let t = Instant::now();
    let n = procs::post_all(
        &format!(
            "{}/?query=INSERT%20INTO%20events%20FORMAT%20TabSeparated",
            ch.base
        ),
        "text/tab-separated-values",
        bodies,
        2,
    )
    .await?;
    let d = t.elapsed();
    println!(
        "  {n} events in {:.1} s ({})",
        d.as_secs_f64(),
        rate(n as f64 / d.as_secs_f64())
    );
    res.ch
        .ingest
        .push(("HTTP TSV, 100 k rows/insert".into(), n, d));
    ch.sql("OPTIMIZE TABLE events FINAL").await?;
    let qs = ch_questions(spec);
    let mut rows = Vec::new();
    for q in &qs {
        rows.push(ch.sql(q).await?.1);
    }
    check(
        "ClickHouse",
        &answers_from_rows(spec, [&rows[0], &rows[1], &rows[2]])?,
        truth,
    )?;
    if timing {
        for (which, q) in qs.iter().enumerate() {
            res.ch.questions[which] =
                time_warm(budget, max_runs, || async { Ok(ch.sql(q).await?.0) }).await?;
        }
    }
    res.ch_bytes = procs::disk_size(&ch.data);
    ch.process.stop();
    Ok(())
}

/// The whole event benchmark.
pub async fn run(
    spec: EventSpec,
    tmp: &Path,
    timing: bool,
    budget: Duration,
    max_runs: usize,
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
    run_ceiling(&events, &tmp.join("events-ceiling.duckdb"), &mut res)?;
    let run = Run {
        spec: &spec,
        events: &events,
        truth: &truth,
        tmp,
        timing,
        budget,
        max_runs,
    };
    run_vitals(&run, &mut res).await?;
    run_pg(&run, &mut res)?;
    run_ch(&run, &mut res).await?;
    println!("all event contenders give the generator's answers to E1–E3");
    Ok(res)
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
    let per_sec = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    let first = |c: &Contender| {
        c.ingest
            .first()
            .map(|(_, n, d)| per_sec(*n, *d))
            .unwrap_or(f64::NAN)
    };
    let (pg, ch, ceil) = (first(&r.pg), first(&r.ch), first(&r.ceiling));
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
    row(&[
        "On disk",
        &report::mb(r.vitals_bytes),
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
