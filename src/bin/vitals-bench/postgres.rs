//! PostgreSQL 15 with the seeds' own table, started from Debian's binaries on a loopback port
//! with a temp data dir. Loaded with server-side `COPY` (its best case) and, on a sample, with
//! 1,000-row `INSERT` statements (what an ORM sends). Asked through `psql`, timed by its
//! `\timing` (query sent to result received, connection set-up excluded).

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::answers::{Answers, Q1};
use crate::dataset::{PLANS, REGIONS, Spec};
use crate::procs;
use crate::questions::Questions;

const BIN: &str = "/usr/lib/postgresql/15/bin";
/// Rows per multi-row INSERT statement.
pub const INSERT_ROWS: usize = 1_000;

const SCHEMA: &str = "CREATE TABLE business_metrics (
    id uuid DEFAULT gen_random_uuid() PRIMARY KEY,
    organization_id uuid,
    metric_type varchar(100),
    category varchar(50),
    value decimal(15,2),
    metadata jsonb,
    recorded_at timestamptz,
    created_at timestamptz DEFAULT now()
);
CREATE INDEX business_metrics_org_type_time ON business_metrics (organization_id, metric_type, recorded_at DESC);";

pub fn org_uuid(org: usize) -> String {
    format!("00000000-0000-4000-8000-{org:012x}")
}

pub struct Postgres {
    data: PathBuf,
    log: PathBuf,
    port: u16,
    running: bool,
}

impl Postgres {
    /// initdb + start. Memory: 1 GB of shared buffers, four times Vitals' default DuckDB budget;
    /// durability stays on (fsync, synchronous commit), as Vitals acknowledges only committed
    /// points.
    pub fn start(dir: &Path) -> anyhow::Result<Postgres> {
        let data = procs::owned_temp_dir(dir, "pgdata", "postgres")?;
        procs::run(
            procs::as_user("postgres", &format!("{BIN}/initdb"))
                .arg("-D")
                .arg(&data)
                .args(["--auth=trust", "-U", "postgres", "-E", "UTF8", "--no-sync"]),
        )?;
        let mut pg = Postgres {
            log: dir.join("postgres.log"),
            data,
            port: procs::free_port()?,
            running: false,
        };
        pg.launch()?;
        Ok(pg)
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c shared_buffers=1GB -c max_wal_size=8GB -c work_mem=64MB",
            self.port,
            self.data.display()
        );
        // The log goes where the postgres user may write.
        let log = self.data.join("server.log");
        procs::run(
            procs::as_user("postgres", &format!("{BIN}/pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .arg("-l")
                .arg(&log)
                .args(["-o", &options, "-w", "-t", "120", "start"]),
        )?;
        self.running = true;
        procs::track_pg(&self.data, true);
        Ok(())
    }

    pub fn stop(&mut self) {
        if self.running {
            let _ = procs::as_user("postgres", &format!("{BIN}/pg_ctl"))
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "fast", "-w", "stop"])
                .output();
            let _ = std::fs::copy(self.data.join("server.log"), &self.log);
            self.running = false;
            procs::track_pg(&self.data, false);
        }
    }

    /// Stops and starts the server: its buffer cache starts empty.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.launch()
    }

    fn psql(&self) -> Command {
        let mut c = Command::new("psql");
        c.args([
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-X",
            "-q",
        ])
        .args(["-v", "ON_ERROR_STOP=1", "-p", &self.port.to_string()]);
        c
    }

    /// Runs SQL; returns its unaligned, tab-separated output.
    pub fn sql(&self, sql: &str) -> anyhow::Result<String> {
        let out = procs::run(self.psql().args(["-A", "-t", "-F", "\t", "-c", sql]))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn run_file(&self, file: &Path) -> anyhow::Result<String> {
        let out = procs::run(self.psql().arg("-f").arg(file))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    pub fn create_schema(&self) -> anyhow::Result<()> {
        self.sql(SCHEMA)?;
        self.sql(&SCHEMA.replace("business_metrics", "business_metrics_insert"))?;
        Ok(())
    }

    /// Writes the COPY file (not timed), then times `COPY` into the table.
    pub fn copy_load(&self, spec: &Spec, dir: &Path) -> anyhow::Result<(Duration, usize)> {
        let file = dir.join("business_metrics.tsv");
        let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&file)?);
        let mut rows = 0;
        let mut line = String::new();
        for org in 0..spec.orgs {
            let uuid = org_uuid(org);
            for r in spec.org_rows(org) {
                line.clear();
                row_text(&mut line, &uuid, &r);
                out.write_all(line.as_bytes())?;
                rows += 1;
            }
        }
        out.flush()?;
        drop(out);
        let started = Instant::now();
        self.sql(&format!(
            "COPY business_metrics (organization_id, metric_type, category, value, metadata, recorded_at) FROM '{}'",
            file.display()
        ))?;
        let elapsed = started.elapsed();
        let _ = std::fs::remove_file(&file);
        Ok((elapsed, rows))
    }

    /// Times `rows` rows (the first orgs' data) sent as 1,000-row INSERT statements, each its
    /// own transaction, into a second table of the same shape.
    pub fn insert_load(
        &self,
        spec: &Spec,
        dir: &Path,
        rows: usize,
    ) -> anyhow::Result<(Duration, usize)> {
        let file = dir.join("inserts.sql");
        let mut out = std::io::BufWriter::with_capacity(1 << 20, std::fs::File::create(&file)?);
        let mut written = 0;
        let mut stmt = String::new();
        'orgs: for org in 0..spec.orgs {
            let uuid = org_uuid(org);
            for r in spec.org_rows(org) {
                if written == rows {
                    break 'orgs;
                }
                if written % INSERT_ROWS == 0 {
                    if !stmt.is_empty() {
                        stmt.push_str(";\n");
                        out.write_all(stmt.as_bytes())?;
                        stmt.clear();
                    }
                    stmt.push_str("INSERT INTO business_metrics_insert (organization_id, metric_type, category, value, metadata, recorded_at) VALUES ");
                } else {
                    stmt.push(',');
                }
                let _ = write!(
                    stmt,
                    "('{uuid}','{}','{}',{},'{{\"plan\": \"{}\", \"region\": \"{}\"}}','{}')",
                    Spec::metric_key(r.metric),
                    Spec::category(r.metric),
                    r.value,
                    PLANS[r.plan],
                    REGIONS[r.region],
                    timestamp(r.ts_secs)
                );
                written += 1;
            }
        }
        if !stmt.is_empty() {
            stmt.push_str(";\n");
            out.write_all(stmt.as_bytes())?;
        }
        out.flush()?;
        drop(out);
        let started = Instant::now();
        self.run_file(&file)?;
        let elapsed = started.elapsed();
        let _ = std::fs::remove_file(&file);
        let stored: usize = self
            .sql("SELECT count(*) FROM business_metrics_insert")?
            .trim()
            .parse()?;
        anyhow::ensure!(
            stored == written,
            "INSERT stored {stored} of {written} rows"
        );
        Ok((elapsed, written))
    }

    /// What autovacuum would do after a bulk load: statistics and the visibility map.
    pub fn vacuum_analyze(&self) -> anyhow::Result<()> {
        self.sql("VACUUM ANALYZE business_metrics")?;
        Ok(())
    }

    /// Table + indexes (the whole relation), and the data dir.
    pub fn sizes(&self) -> anyhow::Result<(u64, u64)> {
        let rel: u64 = self
            .sql("SELECT pg_total_relation_size('business_metrics')")?
            .trim()
            .parse()?;
        Ok((rel, procs::disk_size(&self.data)))
    }

    pub fn query(q: &Questions, which: usize) -> String {
        let org = org_uuid(q.org);
        let metric = Spec::metric_key(q.metric);
        let t = |s: i64| format!("'{}'", timestamp(s));
        match which {
            // Latest (per metric: the newest time and the sum of values at it) and the daily
            // series, in one statement.
            1 => format!(
                "WITH newest AS (
                   SELECT metric_type, max(recorded_at) AS t FROM business_metrics
                   WHERE organization_id = '{org}' GROUP BY metric_type)
                 SELECT 'L', b.metric_type, extract(epoch FROM n.t)::bigint, sum(b.value), count(*)
                 FROM newest n JOIN business_metrics b ON b.organization_id = '{org}'
                   AND b.metric_type = n.metric_type AND b.recorded_at = n.t
                 GROUP BY b.metric_type, n.t
                 UNION ALL
                 SELECT 'D', metric_type, extract(epoch FROM date_trunc('day', recorded_at AT TIME ZONE 'UTC'))::bigint,
                        sum(value), count(*)
                 FROM business_metrics
                 WHERE organization_id = '{org}' AND recorded_at >= {} AND recorded_at < {}
                 GROUP BY 2, 3",
                t(q.q1_from),
                t(q.end)
            ),
            2 => format!(
                "SELECT extract(epoch FROM date_trunc('week', recorded_at AT TIME ZONE 'UTC'))::bigint,
                        metadata->>'region', sum(value), count(*)
                 FROM business_metrics
                 WHERE organization_id = '{org}' AND metric_type = '{metric}'
                   AND recorded_at >= {} AND recorded_at < {}
                 GROUP BY 1, 2",
                t(q.q2_from),
                t(q.end)
            ),
            3 => format!(
                "SELECT organization_id, metric_type, avg(value), count(*)
                 FROM business_metrics WHERE recorded_at >= {} AND recorded_at < {}
                 GROUP BY 1, 2",
                t(q.q3_from),
                t(q.end)
            ),
            _ => format!(
                "SELECT extract(epoch FROM recorded_at)::bigint, metadata->>'region', value
                 FROM business_metrics
                 WHERE organization_id = '{org}' AND metric_type = '{metric}'
                   AND recorded_at >= {} AND recorded_at < {}
                 ORDER BY recorded_at, metadata->>'region'",
                t(q.q4_from),
                t(q.end)
            ),
        }
    }

    /// Runs a question `runs` times in one session; returns each run's time.
    pub fn time(
        &self,
        dir: &Path,
        q: &Questions,
        which: usize,
        runs: usize,
    ) -> anyhow::Result<Vec<Duration>> {
        self.time_sql(dir, &format!("q{which}"), &Self::query(q, which), runs)
    }

    /// Runs `sql` `runs` times in one psql session; returns each run's time as psql's
    /// `\timing` measures it (query sent to result received).
    pub fn time_sql(
        &self,
        dir: &Path,
        name: &str,
        sql: &str,
        runs: usize,
    ) -> anyhow::Result<Vec<Duration>> {
        let file = dir.join(format!("{name}.sql"));
        let mut script = String::from("\\timing on\n\\pset tuples_only on\n\\o /dev/null\n");
        for _ in 0..runs {
            script.push_str(sql);
            script.push_str(";\n");
        }
        std::fs::write(&file, script)?;
        let out = self.run_file(&file)?;
        let times: Vec<Duration> = out
            .lines()
            .filter_map(|l| l.strip_prefix("Time: "))
            .filter_map(|l| l.split_whitespace().next())
            .filter_map(|v| v.parse::<f64>().ok())
            .map(|ms| Duration::from_secs_f64(ms / 1e3))
            .collect();
        if times.len() != runs {
            bail!(
                "psql printed {} timings for {runs} runs: {out}",
                times.len()
            );
        }
        Ok(times)
    }

    pub fn answers(&self, q: &Questions) -> anyhow::Result<Answers> {
        let mut a = Answers::default();
        let mut q1 = Q1::default();
        for line in self.sql(&Self::query(q, 1))?.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() != 5 {
                bail!("Q1: unexpected row {line:?}");
            }
            let (ts, sum): (i64, f64) = (f[2].parse()?, f[3].parse()?);
            if f[0] == "L" {
                q1.latest.insert(f[1].to_string(), (ts, sum));
            } else {
                q1.daily
                    .insert((f[1].to_string(), ts), (sum, f[4].parse()?));
            }
        }
        a.q1 = q1;
        for line in self.sql(&Self::query(q, 2))?.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            a.q2.insert(
                (f[0].parse()?, f[1].to_string()),
                (f[2].parse()?, f[3].parse()?),
            );
        }
        for line in self.sql(&Self::query(q, 3))?.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            // org_uuid's last group is the org's index in hex.
            let index = f[0].rsplit('-').next().unwrap_or_default();
            let org = usize::from_str_radix(index, 16)
                .map(Spec::org_label)
                .with_context(|| format!("Q3 org id {:?}", f[0]))?;
            a.q3.insert((org, f[1].to_string()), (f[2].parse()?, f[3].parse()?));
        }
        for line in self.sql(&Self::query(q, 4))?.lines() {
            let f: Vec<&str> = line.split('\t').collect();
            a.q4.push((f[0].parse()?, f[1].to_string(), f[2].parse()?));
        }
        Ok(a)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn timestamp(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S+00").to_string())
        .unwrap_or_default()
}

/// One COPY text-format line.
fn row_text(line: &mut String, uuid: &str, r: &crate::dataset::Row) {
    let _ = writeln!(
        line,
        "{uuid}\t{}\t{}\t{}\t{{\"plan\": \"{}\", \"region\": \"{}\"}}\t{}",
        Spec::metric_key(r.metric),
        Spec::category(r.metric),
        r.value,
        PLANS[r.plan],
        REGIONS[r.region],
        timestamp(r.ts_secs)
    );
}
