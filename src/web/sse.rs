//! Live updates: one Server-Sent Events stream per open page, filtered to the member's org.
//! Each ingest sends `m-<metric>` events, which cards listen for to refresh themselves.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::{Stream, StreamExt};
use tokio_stream::wrappers::BroadcastStream;

use crate::app::App;
use crate::web::auth::OrgMember;

pub async fn events(State(app): State<App>, m: OrgMember) -> Response {
    let stream = org_stream(&app, m.org.id);
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
    let updates = BroadcastStream::new(app.events.subscribe()).filter_map(move |msg| async move {
        match msg {
            Ok(e) if e.org_id == org_id && e.alert.is_some() => {
                let id = e.alert.unwrap_or_default();
                Some(futures::stream::iter(vec![Ok(Event::default()
                    .event("alert")
                    .data(id.to_string()))]))
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
