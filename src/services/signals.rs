//! How services hear the app's [`Signal`]s: a subscriber task per service, and per-org
//! debouncing so a burst of signals causes one run of the work.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
#[derive(Clone, Default)]
pub struct Debouncer {
    pending: Arc<Mutex<HashSet<i64>>>,
}

impl Debouncer {
    pub fn schedule<F, Fut>(&self, app: &App, org_id: i64, delay: Duration, work: F)
    where
        F: FnOnce(Org) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
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
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = app.shutdown.cancelled() => return,
            }
            if let Ok(mut pending) = pending.lock() {
                pending.remove(&org_id);
            }
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
