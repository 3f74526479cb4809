//! Live updates: one Server-Sent Events stream per open page, filtered to the member's org.
//! Each ingest sends `m-<metric>` events, which cards listen for to refresh themselves.

use std::convert::Infallible;
use std::time::Duration;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;

use crate::app::App;
use crate::web::auth::OrgMember;

/// Open streams per login session and per org. Each stream holds a slot until it ends (the page
/// closes or the server stops), so neither one session nor one org can hold unbounded
/// connections and broadcast receivers.
#[derive(Clone, Default)]
pub struct StreamSlots {
    open: Arc<Mutex<HashMap<String, u64>>>,
}

/// A held slot; dropping it frees it.
pub struct StreamSlot {
    open: Arc<Mutex<HashMap<String, u64>>>,
    keys: [String; 2],
}

impl StreamSlots {
    /// Takes a slot for the session and the org, or names the setting that is exhausted.
    fn take(&self, session: &str, org_id: i64, app: &App) -> Result<StreamSlot, &'static str> {
        let keys = [format!("session:{session}"), format!("org:{org_id}")];
        let limits = [
            (
                app.config.server.max_streams_per_session,
                "server.max_streams_per_session",
            ),
            (
                app.config.server.max_streams_per_org,
                "server.max_streams_per_org",
            ),
        ];
        let mut open = self.open.lock().map_err(|_| "server.max_streams_per_org")?;
        for (key, (limit, setting)) in keys.iter().zip(limits) {
            if open.get(key).copied().unwrap_or(0) >= limit {
                return Err(setting);
            }
        }
        for key in &keys {
            *open.entry(key.clone()).or_default() += 1;
        }
        Ok(StreamSlot {
            open: self.open.clone(),
            keys,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        if let Ok(mut open) = self.open.lock() {
            for key in &self.keys {
                if let Some(n) = open.get_mut(key) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        open.remove(key);
                    }
                }
            }
        }
    }
}

pub async fn events(
    State(app): State<App>,
    Extension(slots): Extension<StreamSlots>,
    m: OrgMember,
) -> Response {
    // The CSRF token is per session: it keys the session's slots without keeping its secret.
    let slot = match slots.take(&crate::security::sha256_hex(&m.csrf), m.org.id, &app) {
        Ok(slot) => slot,
        Err(setting) => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too many live-update connections are open ({setting}); close some pages."),
            )
                .into_response();
        }
    };
    let stream = org_stream(&app, m.org.id).map(move |event| {
        let _held = &slot;
        event
    });
    let mut response = Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response();
    // Behind nginx, do not buffer the stream.
    response.headers_mut().insert(
        "x-accel-buffering",
        axum::http::HeaderValue::from_static("no"),
    );
    response
}

fn org_stream(app: &App, org_id: i64) -> impl Stream<Item = Result<Event, Infallible>> + use<> {
    let shutdown = app.shutdown.clone();
    let hello =
        futures::stream::once(async { Ok(Event::default().event("hello").data("connected")) });
    let updates = BroadcastStream::new(app.live.subscribe()).filter_map(move |msg| async move {
        match msg {
            Ok(e) if e.org_id == org_id && e.alert.is_some() => {
                let id = e.alert.unwrap_or_default();
                Some(futures::stream::iter(vec![Ok(Event::default()
                    .event("alert")
                    .data(id.to_string()))]))
            }
            Ok(e) if e.org_id == org_id && e.events.is_some() => {
                let n = e.events.unwrap_or_default();
                Some(futures::stream::iter(vec![Ok(Event::default()
                    .event("events")
                    .data(n.to_string()))]))
            }
            Ok(e) if e.org_id == org_id && e.score.is_some() => {
                let overall = e
                    .score
                    .flatten()
                    .map(|s| format!("{s:.1}"))
                    .unwrap_or_else(|| "null".into());
                Some(futures::stream::iter(vec![Ok(Event::default()
                    .event("score")
                    .data(overall))]))
            }
            Ok(e) if e.org_id == org_id => {
                let events: Vec<Result<Event, Infallible>> = e
                    .metrics
                    .iter()
                    .map(|m| Ok(Event::default().event(format!("m-{m}")).data(m.clone())))
                    .chain(std::iter::once(Ok(Event::default()
                        .event("points")
                        .data(e.metrics.join(",")))))
                    .collect();
                Some(futures::stream::iter(events))
            }
            Ok(_) => None,
            // A slow client missed some events: tell it to refresh everything.
            Err(_) => Some(futures::stream::iter(vec![
                Ok(Event::default().event("resync").data("*")),
                Ok(Event::default().event("score").data("*")),
            ])),
        }
    });
    // Streams end when the server shuts down, so graceful shutdown is not held open.
    hello
        .chain(updates.flatten())
        .take_until(async move { shutdown.cancelled_owned().await })
}
