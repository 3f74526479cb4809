//! PostgreSQL 15 with the seed's `events` table (jsonb properties).

use super::*;

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

pub(super) fn run_pg(run: &Run<'_>, res: &mut EventResults) -> anyhow::Result<()> {
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
