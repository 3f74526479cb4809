//! The in-process scheduler. The `cron` crate parses expressions (seconds first); running them is
//! ours: one loop per job, so a job never overlaps itself; a failure is logged and recorded and
//! the job runs again at its next time; a run missed while the server was down runs once at
//! startup; shutdown stops waiting and lets a running job finish (bounded by the caller).
//!
//! Time comes from a [`Clock`], so tests drive the scheduler with a manual clock.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use cron::Schedule;
use tokio_util::sync::CancellationToken;

use crate::domain::schedule::next_run;
use crate::store::StoreError;
use crate::store::meta::{MetaStore, job_runs};

pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Where the scheduler reads the time and waits.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<()>;
}

/// The real clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<()> {
        let wait = (at - Utc::now()).to_std().unwrap_or_default();
        Box::pin(tokio::time::sleep(wait))
    }
}

pub type JobFn = Arc<dyn Fn() -> BoxFuture<Result<String, String>> + Send + Sync>;

pub struct Job {
    pub name: &'static str,
    pub schedule: Option<Schedule>,
    pub expression: String,
    pub run: JobFn,
}

/// Runs every enabled job until `shutdown`; returns when all loops have stopped.
pub async fn run(
    jobs: Vec<Job>,
    meta: MetaStore,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    let mut loops = Vec::new();
    for job in jobs {
        let Some(schedule) = job.schedule.clone() else {
            tracing::info!(job = job.name, "job disabled (empty schedule)");
            continue;
        };
        let (meta, clock, shutdown) = (meta.clone(), clock.clone(), shutdown.clone());
        loops.push(tokio::spawn(async move {
            job_loop(job, schedule, meta, clock, shutdown).await
        }));
    }
    for l in loops {
        let _ = l.await;
    }
}

async fn job_loop(
    job: Job,
    schedule: Schedule,
    meta: MetaStore,
    clock: Arc<dyn Clock>,
    shutdown: CancellationToken,
) {
    loop {
        let name = job.name;
        let last = match meta.call(move |c| job_runs::last_started(c, name)).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(job = name, error = %e, "cannot read the job's last run");
                None
            }
        };
        let Some(at) = next_run(&schedule, last, clock.now()) else {
            return;
        };
        tokio::select! {
            _ = clock.sleep_until(at) => {}
            _ = shutdown.cancelled() => return,
        }
        let started = clock.now();
        let run_id = match meta
            .call(move |c| job_runs::start(c, name, started.timestamp()))
            .await
        {
            Ok(id) => id,
            Err(e) => {
                tracing::error!(job = name, error = %e, "cannot record the job's start");
                return;
            }
        };
        let outcome = (job.run)().await;
        let finished = clock.now();
        match &outcome {
            Ok(m) => tracing::info!(job = name, message = %m, "job done"),
            Err(m) => {
                tracing::error!(job = name, error = %m, "job failed; it runs again at its next time")
            }
        }
        let result: Result<(), StoreError> = meta
            .call(move |c| {
                job_runs::finish(
                    c,
                    run_id,
                    finished.timestamp_millis() - started.timestamp_millis(),
                    &outcome,
                )
            })
            .await;
        if let Err(e) = result {
            tracing::error!(job = name, error = %e, "cannot record the job's outcome");
        }
        if shutdown.is_cancelled() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::schedule::parse_schedule;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// A clock moved by hand; sleepers wake when it passes their time.
    struct ManualClock {
        now: tokio::sync::watch::Sender<DateTime<Utc>>,
    }

    impl ManualClock {
        fn advance(&self, by: Duration) {
            self.now
                .send_modify(|t| *t += chrono::Duration::from_std(by).unwrap());
        }
    }

    impl Clock for Arc<ManualClock> {
        fn now(&self) -> DateTime<Utc> {
            *self.now.borrow()
        }

        fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<()> {
            let mut rx = self.now.subscribe();
            Box::pin(async move {
                let _ = rx.wait_for(|t| *t >= at).await;
            })
        }
    }

    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_on_cadence_never_overlaps_catches_up_and_stops_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetaStore::open(&dir.path().join("m.sqlite")).unwrap();
        let (tx, _) = tokio::sync::watch::channel(at("2026-01-01T10:00:30Z"));
        let clock = Arc::new(ManualClock { now: tx });
        let runs = Arc::new(AtomicUsize::new(0));
        let running = Arc::new(Mutex::new(0usize));
        let max_parallel = Arc::new(AtomicUsize::new(0));
        let make_job = |runs: Arc<AtomicUsize>,
                        running: Arc<Mutex<usize>>,
                        max_parallel: Arc<AtomicUsize>,
                        clock: Arc<ManualClock>| Job {
            name: "tick",
            schedule: parse_schedule("0 * * * * *").unwrap(),
            expression: "0 * * * * *".into(),
            run: Arc::new(move || {
                let (runs, running, max_parallel, clock) = (
                    runs.clone(),
                    running.clone(),
                    max_parallel.clone(),
                    clock.clone(),
                );
                Box::pin(async move {
                    let n = {
                        let mut r = running.lock().unwrap();
                        *r += 1;
                        *r
                    };
                    max_parallel.fetch_max(n, Ordering::SeqCst);
                    // A slow run: the clock passes two more slots while it works.
                    clock.advance(Duration::from_secs(150));
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    *running.lock().unwrap() -= 1;
                    let k = runs.fetch_add(1, Ordering::SeqCst);
                    if k == 0 {
                        Err("first run fails".to_string())
                    } else {
                        Ok(format!("run {k}"))
                    }
                })
            }),
        };
        let shutdown = CancellationToken::new();
        let handle = tokio::spawn(run(
            vec![make_job(
                runs.clone(),
                running.clone(),
                max_parallel.clone(),
                clock.clone(),
            )],
            meta.clone(),
            Arc::new(clock.clone()),
            shutdown.clone(),
        ));
        settle().await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            0,
            "nothing before the first slot"
        );
        clock.advance(Duration::from_secs(30)); // 10:01:00, first slot
        settle().await;
        // Run 1 (fails) moved the clock to 10:03:30; the missed slots cause one catch-up run,
        // which moves it to 10:06:00; the 10:04 and 10:05 slots again cause one catch-up...
        let after = runs.load(Ordering::SeqCst);
        assert!(after >= 2, "a failed run does not stop the job");
        assert_eq!(max_parallel.load(Ordering::SeqCst), 1, "never overlaps");
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .expect("stops")
            .unwrap();
        let stopped_at = runs.load(Ordering::SeqCst);
        clock.advance(Duration::from_secs(600));
        settle().await;
        assert_eq!(
            runs.load(Ordering::SeqCst),
            stopped_at,
            "nothing runs after shutdown"
        );
        let history = meta
            .call(|c| job_runs::recent(c, "tick", 100))
            .await
            .unwrap();
        assert_eq!(history.len(), stopped_at);
        assert_eq!(history.last().unwrap().outcome, "error");
        assert_eq!(history.last().unwrap().message, "first run fails");

        // Restart after downtime: one catch-up run at startup, not one per missed minute.
        let before_restart = runs.load(Ordering::SeqCst);
        clock.advance(Duration::from_secs(3600));
        let shutdown = CancellationToken::new();
        // The job's own slow run advances the clock; make it quick now.
        let quick_runs = Arc::new(AtomicUsize::new(0));
        let q = quick_runs.clone();
        let quick = Job {
            name: "tick",
            schedule: parse_schedule("0 * * * * *").unwrap(),
            expression: "0 * * * * *".into(),
            run: Arc::new(move || {
                let q = q.clone();
                Box::pin(async move {
                    q.fetch_add(1, Ordering::SeqCst);
                    Ok("quick".to_string())
                })
            }),
        };
        let handle = tokio::spawn(run(
            vec![quick],
            meta.clone(),
            Arc::new(clock.clone()),
            shutdown.clone(),
        ));
        settle().await;
        assert_eq!(
            quick_runs.load(Ordering::SeqCst),
            1,
            "one catch-up run for an hour of downtime"
        );
        clock.advance(Duration::from_secs(60));
        settle().await;
        assert_eq!(quick_runs.load(Ordering::SeqCst), 2, "then back on cadence");
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), handle)
            .await
            .expect("stops")
            .unwrap();
        assert_eq!(runs.load(Ordering::SeqCst), before_restart);
    }
}
