//! How services hear the app's [`Signal`]s: a subscriber task per service, and per-org
//! debouncing so a burst of signals causes one run of the work.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::app::{App, Signal};
use crate::store::StoreError;
use crate::store::meta::health_scores;
use crate::store::meta::orgs::{self, Org};

/// What a subscriber heard: a signal, or that it fell behind and missed some.
pub enum Heard {
    Signal(Signal),
    Missed,
}

/// Calls `on` with every signal until shutdown, on a task of its own. A subscriber that fell
/// behind hears [`Heard::Missed`] once and should act as if every org had changed.
pub fn subscribe(
    app: &App,
    mut signals: broadcast::Receiver<Signal>,
    mut on: impl FnMut(Heard) + Send + 'static,
) {
    let shutdown = app.shutdown.clone();
    tokio::spawn(async move {
        loop {
            let heard = tokio::select! {
                heard = signals.recv() => heard,
                _ = shutdown.cancelled() => return,
            };
            match heard {
                Ok(signal) => on(Heard::Signal(signal)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "a service fell behind the signals; treating every org as changed"
                    );
                    on(Heard::Missed)
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

/// Runs per-org work a little later, once for a burst: a request for an org that already waits
/// is dropped, so ten batches stored within the delay cause one recomputation after the last
/// of them. Shutdown cancels the waits.
#[derive(Clone)]
pub struct Debouncer {
    pending: Arc<Mutex<HashSet<i64>>>,
    /// Runs of the work at once: when a long load pauses, every org it touched is due together,
    /// and each run reads the org's history (a hundred at once took the server past 1 GB).
    running: Arc<tokio::sync::Semaphore>,
    /// When points were last stored (for any org), as [`after_points_stored`] hears it.
    ///
    /// [`after_points_stored`]: Debouncer::after_points_stored
    last_write: Arc<Mutex<Option<Instant>>>,
}

/// Runs of one debounced work at once (a core's worth each on this appliance's 2 cores).
pub const MAX_CONCURRENT_RUNS: usize = 2;

impl Default for Debouncer {
    fn default() -> Debouncer {
        Debouncer {
            pending: Arc::default(),
            running: Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_RUNS)),
            last_write: Arc::default(),
        }
    }
}

/// The longest that work after stored points waits for ingest to pause.
pub const MAX_DEFERRAL: Duration = Duration::from_secs(120);

/// How much longer deferred work waits, or `None` when it may run now: once nothing has been
/// stored for `quiet`, or once it has waited `max_wait` since it was asked for. Analysis of
/// points (scores, anomalies) reads the org's whole history: run after every burst of a long
/// load, it took a third of the CPU the load needed and is stale by the next burst anyway.
pub fn wait_before_run(
    since_last_write: Duration,
    since_asked: Duration,
    quiet: Duration,
    max_wait: Duration,
) -> Option<Duration> {
    if since_last_write >= quiet || since_asked >= max_wait {
        return None;
    }
    Some((quiet - since_last_write).min(max_wait - since_asked))
}

impl Debouncer {
    pub fn schedule<F, Fut>(&self, app: &App, org_id: i64, delay: Duration, work: F)
    where
        F: FnOnce(Org) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.schedule_inner(app, org_id, delay, false, work)
    }

    /// [`schedule`](Self::schedule), then also waiting until no points have been stored for
    /// `delay` (at most [`MAX_DEFERRAL`] in all): ingest goes first.
    fn schedule_when_quiet<F, Fut>(&self, app: &App, org_id: i64, delay: Duration, work: F)
    where
        F: FnOnce(Org) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.schedule_inner(app, org_id, delay, true, work)
    }

    fn schedule_inner<F, Fut>(
        &self,
        app: &App,
        org_id: i64,
        delay: Duration,
        when_quiet: bool,
        work: F,
    ) where
        F: FnOnce(Org) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let asked = Instant::now();
        let (last_write, running) = (self.last_write.clone(), self.running.clone());
        let first = self
            .pending
            .lock()
            .map(|mut pending| pending.insert(org_id))
            .unwrap_or(false);
        if !first {
            return;
        }
        let (app, pending) = (app.clone(), self.pending.clone());
        tokio::spawn(async move {
            let mut wait = Some(delay);
            while let Some(d) = wait {
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = app.shutdown.cancelled() => return,
                }
                let last = last_write.lock().ok().and_then(|l| *l);
                wait = when_quiet
                    .then(|| {
                        let since_write = last.map_or(Duration::MAX, |t| t.elapsed());
                        wait_before_run(since_write, asked.elapsed(), delay, MAX_DEFERRAL)
                    })
                    .flatten();
            }
            if let Ok(mut pending) = pending.lock() {
                pending.remove(&org_id);
            }
            let _permit = tokio::select! {
                permit = running.acquire_owned() => match permit {
                    Ok(p) => p,
                    Err(_) => return,
                },
                _ = app.shutdown.cancelled() => return,
            };
            match app.meta.call(move |c| orgs::by_id(c, org_id)).await {
                Ok(org) => work(org).await,
                // Deleted meanwhile: nothing to do.
                Err(StoreError::NotFound) => {}
                Err(e) => {
                    tracing::error!(org_id, error = %e, "cannot load the org for deferred work")
                }
            }
        });
    }

    /// Runs `work` for an org `delay` after points are stored for it (once per burst), and
    /// once no points have been stored for any org for `delay` (or after [`MAX_DEFERRAL`]),
    /// until shutdown; after missed signals, for every org.
    pub fn after_points_stored<F, Fut>(
        &self,
        app: &App,
        signals: broadcast::Receiver<Signal>,
        delay: Duration,
        work: F,
    ) where
        F: Fn(Org) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (this, target) = (self.clone(), app.clone());
        subscribe(app, signals, move |heard| match heard {
            Heard::Signal(Signal::PointsStored { org_id, .. }) => {
                if let Ok(mut last) = this.last_write.lock() {
                    *last = Some(Instant::now());
                }
                this.schedule_when_quiet(&target, org_id, delay, work.clone())
            }
            Heard::Signal(_) => {}
            Heard::Missed => this.schedule_all(&target, delay, work.clone()),
        });
    }

    /// Schedules `work` for every org (after a subscriber missed signals).
    pub fn schedule_all<F, Fut>(&self, app: &App, delay: Duration, work: F)
    where
        F: Fn(Org) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let (app, this) = (app.clone(), self.clone());
        tokio::spawn(async move {
            match app.meta.call(|c| health_scores::org_ids(c)).await {
                Ok(ids) => {
                    for id in ids {
                        this.schedule(&app, id, delay, work.clone());
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot list the orgs"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::app::NewOrg;
    use crate::config::Config;

    async fn app_with_orgs(dir: &tempfile::TempDir, n: usize) -> (App, Vec<i64>) {
        let mut config = Config::default();
        config.storage.data_dir = dir.path().display().to_string();
        config.storage.duckdb_threads = 1;
        let app = tokio::task::spawn_blocking(move || App::open(config))
            .await
            .unwrap()
            .unwrap();
        let mut ids = Vec::new();
        for i in 0..n {
            let org = NewOrg::validate(&format!("Org {i}"), "", "UTC", "EUR").unwrap();
            let (created, _) = app
                .meta
                .call(move |c| {
                    crate::app::create_org_with_owner(
                        c,
                        &org,
                        &format!("o{i}@x.io"),
                        "O",
                        "h",
                        false,
                    )
                })
                .await
                .unwrap();
            ids.push(created.id);
        }
        (app, ids)
    }

    fn counting(runs: &Arc<AtomicUsize>) -> impl Fn(Org) -> std::future::Ready<()> + Clone + use<> {
        let runs = runs.clone();
        move |_org| {
            runs.fetch_add(1, Ordering::SeqCst);
            std::future::ready(())
        }
    }

    /// Ten requests for one org within the delay run the work once, after the delay; a request
    /// after that run is a new burst and runs it again: 1, then 2. Another org is not held back
    /// by the first org's pending run.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_burst_runs_the_work_once_per_org() {
        let dir = tempfile::tempdir().unwrap();
        let (app, ids) = app_with_orgs(&dir, 2).await;
        let (runs, other) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let pending = Debouncer::default();
        let delay = Duration::from_millis(100);
        for _ in 0..10 {
            pending.schedule(&app, ids[0], delay, counting(&runs));
        }
        pending.schedule(&app, ids[1], delay, counting(&other));
        assert_eq!(runs.load(Ordering::SeqCst), 0, "nothing before the delay");
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(other.load(Ordering::SeqCst), 1);
        pending.schedule(&app, ids[0], delay, counting(&runs));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 2);
    }

    /// Quiet for 1 s, at most 120 s in all: stored 0.3 s ago after 5 s of waiting, it waits
    /// 0.7 s more; stored 0.3 s ago after 119.5 s, only 0.5 s more; quiet for 1 s (or for
    /// longer) it runs; after 120 s it runs whatever was stored.
    #[test]
    fn deferred_work_waits_for_a_pause_but_not_for_ever() {
        let (s, ms) = (Duration::from_secs, Duration::from_millis);
        let (quiet, max) = (s(1), s(120));
        assert_eq!(wait_before_run(ms(300), s(5), quiet, max), Some(ms(700)));
        assert_eq!(
            wait_before_run(ms(300), ms(119_500), quiet, max),
            Some(ms(500))
        );
        assert_eq!(wait_before_run(s(1), s(5), quiet, max), None);
        assert_eq!(wait_before_run(Duration::MAX, s(1), quiet, max), None);
        assert_eq!(wait_before_run(ms(10), s(120), quiet, max), None);
    }

    /// A subscriber that missed signals schedules every org: three orgs, three runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn missed_signals_schedule_every_org() {
        let dir = tempfile::tempdir().unwrap();
        let (app, _) = app_with_orgs(&dir, 3).await;
        let runs = Arc::new(AtomicUsize::new(0));
        Debouncer::default().schedule_all(&app, Duration::from_millis(10), counting(&runs));
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }

    /// A receiver that falls more than the channel's capacity behind hears `Missed`, then the
    /// signals still in the channel; shutdown ends the subscriber.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lagging_subscriber_hears_missed() {
        let dir = tempfile::tempdir().unwrap();
        let (app, _) = app_with_orgs(&dir, 0).await;
        let (sender, receiver) = broadcast::channel(2);
        for org_id in 1..=5 {
            sender.send(Signal::SyncFinished { org_id }).unwrap();
        }
        let heard = Arc::new(Mutex::new(Vec::new()));
        let log = heard.clone();
        subscribe(&app, receiver, move |h| {
            log.lock().unwrap().push(match h {
                Heard::Signal(Signal::SyncFinished { org_id }) => org_id,
                Heard::Signal(_) => -1,
                Heard::Missed => 0,
            })
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        // Capacity 2 of 5 sent: 1–3 were dropped, 4 and 5 remain.
        assert_eq!(*heard.lock().unwrap(), vec![0, 4, 5]);
        app.shutdown.cancel();
        drop(sender);
    }
}
