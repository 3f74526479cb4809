//! ClickHouse (Debian's 18.16) with a MergeTree table, asked over HTTP.

use super::*;

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

pub(super) async fn run_ch(run: &Run<'_>, res: &mut EventResults) -> anyhow::Result<()> {
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
                body: s.into_bytes(),
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
