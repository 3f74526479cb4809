//! The one writer thread: group commit, and the append or replace path per group.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::mpsc;

use duckdb::{Connection, params};

use super::{Ack, StoreError, WriterMsg, ts_value};
use crate::domain::ingest::{Point, encode_dims};

/// Largest group of points committed in one transaction.
const MAX_GROUP_POINTS: usize = 250_000;

pub(super) fn writer_loop(
    conn: Connection,
    rx: mpsc::Receiver<WriterMsg>,
    generations: &Mutex<HashMap<i64, u64>>,
) {
    let mut ends = match SeriesEnds::load(&conn) {
        Ok(ends) => ends,
        Err(e) => {
            // Without the index every group takes the replace path: slower, never wrong.
            tracing::error!(error = %e, "cannot read the series' ends; appends go the replace path");
            SeriesEnds::unknown()
        }
    };
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        let mut queued: usize = group.iter().map(msg_len).sum();
        while queued < MAX_GROUP_POINTS {
            match rx.try_recv() {
                Ok(m) => {
                    queued += msg_len(&m);
                    group.push(m);
                }
                Err(_) => break,
            }
        }
        let jobs: Vec<(i64, Vec<Point>, Ack)> = group
            .into_iter()
            .map(
                |WriterMsg::Write {
                     org_id,
                     points,
                     ack,
                 }| (org_id, points, ack),
            )
            .collect();
        let all: Vec<(i64, &[Point])> = jobs.iter().map(|(o, p, _)| (*o, p.as_slice())).collect();
        let outcome = write_group(&conn, &all, &mut ends);
        // Before any acknowledgement: a reader told "stored" must not be served an older memo.
        // Every org of the group moves on, committed or not (a failed write only costs a
        // recomputation).
        if let Ok(mut g) = generations.lock() {
            for (org_id, _, _) in &jobs {
                *g.entry(*org_id).or_default() += 1;
            }
        }
        match outcome {
            Ok(_) => {
                for (_, points, ack) in jobs {
                    let _ = ack.send(Ok(points.len()));
                }
            }
            Err(e) if jobs.len() == 1 => {
                tracing::error!(error = %e, "metric write failed");
                for (_, _, ack) in jobs {
                    let _ = ack.send(Err(StoreError::Internal(e.to_string())));
                }
            }
            Err(_) => {
                // One bad job must not fail the others: retry each on its own.
                for (org_id, points, ack) in jobs {
                    let result =
                        write_group(&conn, &[(org_id, &points)], &mut ends).map(|_| points.len());
                    if let Err(e) = &result {
                        tracing::error!(error = %e, "metric write failed");
                    }
                    if let Ok(mut g) = generations.lock() {
                        *g.entry(org_id).or_default() += 1;
                    }
                    let _ = ack.send(result);
                }
            }
        }
    }
    if let Err(e) = conn.execute_batch("CHECKPOINT;") {
        tracing::error!(error = %e, "checkpoint on shutdown failed; the WAL will be replayed at next start");
    }
}

fn msg_len(m: &WriterMsg) -> usize {
    match m {
        WriterMsg::Write { points, .. } => points.len(),
    }
}

/// Each stored series' latest timestamp: org → metric → encoded dimensions → µs. A group whose
/// every point lies past its series' end cannot replace a stored point, so it is appended as it
/// is; only a group that overlaps stored data takes the replace path. Only the writer thread
/// writes points, so the index never lags the table (an end too late would only send a group
/// down the slower, still correct, path).
struct SeriesEnds {
    ends: HashMap<i64, HashMap<String, HashMap<String, i64>>>,
    /// False when the ends could not be read: then nothing is known to be new and every group
    /// takes the replace path.
    complete: bool,
}

impl SeriesEnds {
    fn load(conn: &Connection) -> Result<SeriesEnds, StoreError> {
        let mut ends = SeriesEnds::unknown();
        ends.complete = true;
        let mut stmt = conn
            .prepare("SELECT org_id, metric, dims, epoch_us(max(ts)) FROM points GROUP BY ALL")?;
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let (org_id, metric, dims, ts): (i64, String, String, i64) =
                (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
            ends.ends
                .entry(org_id)
                .or_default()
                .entry(metric)
                .or_default()
                .insert(dims, ts);
        }
        Ok(ends)
    }

    fn unknown() -> SeriesEnds {
        SeriesEnds {
            ends: HashMap::new(),
            complete: false,
        }
    }

    /// Whether a point at `ts` would lie past everything stored of its series.
    fn is_past_end(&self, org_id: i64, metric: &str, dims: &str, ts: i64) -> bool {
        let end = (|| self.ends.get(&org_id)?.get(metric)?.get(dims).copied())();
        self.complete && end.is_none_or(|end| ts > end)
    }

    fn raise(&mut self, org_id: i64, metric: &str, dims: &str, ts: i64) {
        let by_dims = self
            .ends
            .entry(org_id)
            .or_default()
            .entry(metric.to_string())
            .or_default();
        match by_dims.get_mut(dims) {
            Some(end) => *end = (*end).max(ts),
            None => {
                by_dims.insert(dims.to_string(), ts);
            }
        }
    }
}

/// One point of a group as the writer stores it.
struct Row<'a> {
    org_id: i64,
    metric: &'a str,
    dims: String,
    ts: i64,
    value: f64,
}

impl Row<'_> {
    fn same_series(&self, other: &Row) -> bool {
        self.org_id == other.org_id && self.metric == other.metric && self.dims == other.dims
    }
}

/// Which way a group went in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WritePath {
    /// Past every series' end: appended straight to the table.
    Append,
    /// Overlapping stored data or itself: staged, replacing what it re-sends.
    Replace,
}

/// Writes every job in one transaction. Rows are sorted by series and time (which also lays
/// them out for the zone maps); a group that is new on every series is appended directly,
/// any other is staged, the rows it replaces deleted and the staged rows inserted (the latest
/// staged copy of each key wins). `ends` moves on only after the commit.
fn write_group(
    conn: &Connection,
    jobs: &[(i64, &[Point])],
    ends: &mut SeriesEnds,
) -> Result<WritePath, StoreError> {
    let mut rows: Vec<Row> = jobs
        .iter()
        .flat_map(|(org_id, points)| {
            points.iter().map(|p| Row {
                org_id: *org_id,
                metric: p.metric.as_str(),
                dims: encode_dims(&p.dims),
                ts: p.ts_micros,
                value: p.value,
            })
        })
        .collect();
    // Stable: copies of one key keep their arrival order, so the last sent stays last.
    rows.sort_by(|a, b| {
        (a.org_id, a.metric, a.dims.as_str(), a.ts).cmp(&(
            b.org_id,
            b.metric,
            b.dims.as_str(),
            b.ts,
        ))
    });
    let appendable = rows
        .iter()
        .enumerate()
        .all(|(i, r)| match i.checked_sub(1) {
            Some(prev) if rows[prev].same_series(r) => r.ts > rows[prev].ts,
            _ => ends.is_past_end(r.org_id, r.metric, &r.dims, r.ts),
        });
    let path = if appendable {
        WritePath::Append
    } else {
        WritePath::Replace
    };
    conn.execute_batch("BEGIN TRANSACTION;")?;
    let result = match path {
        WritePath::Append => append_rows(conn, &rows),
        WritePath::Replace => replace_rows(conn, &rows),
    };
    match result {
        Ok(()) => {
            conn.execute_batch("COMMIT;")?;
            for (i, r) in rows.iter().enumerate() {
                let last_of_series = rows.get(i + 1).is_none_or(|next| !next.same_series(r));
                if last_of_series {
                    ends.raise(r.org_id, r.metric, &r.dims, r.ts);
                }
            }
            Ok(path)
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK;");
            let _ = conn.execute_batch("DELETE FROM staging;");
            Err(e)
        }
    }
}

fn append_rows(conn: &Connection, rows: &[Row]) -> Result<(), StoreError> {
    let mut app = conn.appender("points")?;
    for r in rows {
        app.append_row(params![
            r.org_id,
            r.metric,
            ts_value(r.ts),
            r.value,
            r.dims.as_str()
        ])?;
    }
    app.flush()?;
    Ok(())
}

fn replace_rows(conn: &Connection, rows: &[Row]) -> Result<(), StoreError> {
    {
        let mut app = conn.appender_to_catalog_and_db("staging", "temp", "main")?;
        for (seq, r) in rows.iter().enumerate() {
            app.append_row(params![
                r.org_id,
                r.metric,
                ts_value(r.ts),
                r.value,
                r.dims.as_str(),
                seq as i64
            ])?;
        }
        app.flush()?;
    }
    conn.execute_batch(
        "DELETE FROM points USING (SELECT DISTINCT org_id, metric, ts, dims FROM staging) s
           WHERE points.org_id = s.org_id AND points.metric = s.metric
             AND points.ts = s.ts AND points.dims = s.dims;
         INSERT INTO points
           SELECT org_id, metric, ts, value, dims FROM staging
           QUALIFY row_number() OVER (PARTITION BY org_id, metric, ts, dims ORDER BY seq DESC) = 1
           ORDER BY org_id, metric, ts;
         DELETE FROM staging;",
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::migrate;
    use super::*;
    use crate::domain::ingest::Dimensions;

    fn point(ts: i64, value: f64) -> Point {
        let mut dims = Dimensions::new();
        dims.insert("region".into(), "eu".into());
        Point {
            metric: "revenue".into(),
            ts_micros: ts,
            value,
            dims,
        }
    }

    fn open_writer(dir: &tempfile::TempDir) -> Connection {
        let conn = Connection::open(dir.path().join("m.duckdb")).unwrap();
        migrate(&conn).unwrap();
        conn.execute_batch(
            "CREATE TEMP TABLE staging (org_id BIGINT, metric VARCHAR, ts TIMESTAMP, value DOUBLE, dims VARCHAR, seq BIGINT);",
        )
        .unwrap();
        conn
    }

    fn org_rows(conn: &Connection, org_id: i64) -> Vec<(i64, f64)> {
        let mut stmt = conn
            .prepare("SELECT epoch_us(ts), value FROM points WHERE org_id = ? ORDER BY ts")
            .unwrap();
        stmt.query_map([org_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    /// One series (revenue, region=eu) of org 1, group by group:
    /// 1. ts 1, 2, 3 (10, 20, 30) into an empty table: appended; the series ends at 3.
    /// 2. ts 4, 5 (40, 50): past the end, appended.
    /// 3. ts 5 again (55) and 6 (60): 5 is stored, so the replace path: 55 replaces 50.
    /// 4. ts 7 twice in one group (70, then 77): not past itself, so replaced; the last wins.
    /// 5. Org 2 at ts 1 (5) beside org 1 at ts 8 (80), in one group: new for both, appended.
    ///
    /// Org 1 ends with (1,10) (2,20) (3,30) (4,40) (5,55) (6,60) (7,77) (8,80); org 2 (1,5).
    /// Reloading the ends from the table: org 1 ends at 8, org 2 at 1.
    #[test]
    fn new_points_are_appended_and_overlapping_ones_replace() {
        let dir = tempfile::tempdir().unwrap();
        let conn = open_writer(&dir);
        let mut ends = SeriesEnds::load(&conn).unwrap();
        let mut write = |jobs: &[(i64, &[Point])]| write_group(&conn, jobs, &mut ends).unwrap();
        let g1 = [point(1, 10.0), point(2, 20.0), point(3, 30.0)];
        assert_eq!(write(&[(1, &g1)]), WritePath::Append);
        assert_eq!(
            write(&[(1, &[point(4, 40.0), point(5, 50.0)])]),
            WritePath::Append
        );
        assert_eq!(
            write(&[(1, &[point(5, 55.0), point(6, 60.0)])]),
            WritePath::Replace
        );
        assert_eq!(
            write(&[(1, &[point(7, 70.0)]), (1, &[point(7, 77.0)])]),
            WritePath::Replace
        );
        assert_eq!(
            write(&[(2, &[point(1, 5.0)]), (1, &[point(8, 80.0)])]),
            WritePath::Append
        );
        assert_eq!(
            org_rows(&conn, 1),
            vec![
                (1, 10.0),
                (2, 20.0),
                (3, 30.0),
                (4, 40.0),
                (5, 55.0),
                (6, 60.0),
                (7, 77.0),
                (8, 80.0)
            ]
        );
        assert_eq!(org_rows(&conn, 2), vec![(1, 5.0)]);
        let reloaded = SeriesEnds::load(&conn).unwrap();
        assert!(!reloaded.is_past_end(1, "revenue", "region=eu", 8));
        assert!(reloaded.is_past_end(1, "revenue", "region=eu", 9));
        assert!(!reloaded.is_past_end(2, "revenue", "region=eu", 1));
        assert!(reloaded.is_past_end(2, "revenue", "region=us", 1));
        assert!(!SeriesEnds::unknown().is_past_end(3, "revenue", "", 1));
    }
}
