//! DuckDB's appender: the same events straight into a bare table (the ceiling).

use super::*;

pub(super) fn run_ceiling(
    events: &[Ev],
    path: &Path,
    res: &mut EventResults,
) -> anyhow::Result<()> {
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
