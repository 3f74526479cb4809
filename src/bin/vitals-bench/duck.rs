//! The ceiling: the same rows through DuckDB's appender in this process, into a table shaped
//! like Vitals' points table. No HTTP, no JSON, no de-duplication: what Vitals' ingest path
//! could at best approach.

use std::path::Path;
use std::time::{Duration, Instant};

use duckdb::types::{TimeUnit, Value};
use duckdb::{Connection, params};

use crate::dataset::{PLANS, REGIONS, Row, Spec};

pub struct CeilingLoad {
    pub elapsed: Duration,
    pub points: usize,
    pub bytes_on_disk: u64,
}

pub fn load(spec: &Spec, path: &Path) -> anyhow::Result<CeilingLoad> {
    let config = duckdb::Config::default()
        .enable_autoload_extension(false)?
        .with("autoinstall_known_extensions", "false")?
        .threads(2)?
        .max_memory("1GB")?;
    let conn = Connection::open_with_flags(path, config)?;
    conn.execute_batch(
        "CREATE TABLE points (org_id BIGINT NOT NULL, metric VARCHAR NOT NULL, ts TIMESTAMP NOT NULL, value DOUBLE NOT NULL, dims VARCHAR NOT NULL);",
    )?;
    let metric_keys: Vec<String> = (0..spec.metrics).map(Spec::metric_key).collect();
    // Vitals' canonical form (keys sorted, `k=v` joined by `&`), made before the clock starts.
    let dims: Vec<String> = PLANS
        .iter()
        .flat_map(|p| REGIONS.iter().map(move |r| format!("plan={p}&region={r}")))
        .collect();
    // Generated before the clock starts, as the other contenders' payloads are.
    let rows: Vec<Row> = (0..spec.orgs).flat_map(|org| spec.org_rows(org)).collect();
    let started = Instant::now();
    let mut points = 0;
    {
        let mut app = conn.appender("points")?;
        for row in &rows {
            {
                app.append_row(params![
                    row.org as i64 + 1,
                    metric_keys[row.metric].as_str(),
                    Value::Timestamp(TimeUnit::Microsecond, row.ts_secs * 1_000_000),
                    row.value,
                    dims[row.plan * REGIONS.len() + row.region].as_str(),
                ])?;
                points += 1;
            }
        }
        app.flush()?;
    }
    conn.execute_batch("CHECKPOINT;")?;
    let elapsed = started.elapsed();
    let stored: i64 = conn.query_row("SELECT count(*) FROM points", [], |r| r.get(0))?;
    anyhow::ensure!(
        stored as usize == points,
        "the ceiling table holds {stored} rows, {points} were appended"
    );
    drop(conn);
    Ok(CeilingLoad {
        elapsed,
        points,
        bytes_on_disk: crate::procs::disk_size(path),
    })
}
