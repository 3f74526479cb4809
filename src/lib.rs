//! Vitals: a self-hosted business health appliance in one binary.
//!
//! `main` parses the command line and calls into [`cli`]; the server itself is [`serve`], which
//! tests call with a listener on `127.0.0.1:0` and a temp data directory. `ARCHITECTURE.md`
//! says which layer may import which.

pub mod app;
pub mod cli;
pub mod config;
pub mod domain;
#[cfg(test)]
mod fuzz;
pub mod org_cache;
pub mod outbound;
pub mod secrets;
pub mod security;
pub mod services;
pub mod store;
pub mod web;

use std::net::SocketAddr;

use tokio::net::TcpListener;

pub use app::App;
pub use config::Config;
pub use services::Services;

/// Serves `app` on `listener` until `app.shutdown` is cancelled, then drains in-flight requests
/// and flushes the metric writer.
pub async fn serve(app: App, listener: TcpListener) -> anyhow::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        let _ = app.bound_url.set(format!("http://{addr}"));
    }
    let services = Services::new(app.clone());
    let (jobs, delivery) = services.start();
    let router = web::router(services);
    let shutdown = app.shutdown.clone();
    let result = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await;
    // A running job may finish; it is not waited on forever.
    app.shutdown.cancel();
    if tokio::time::timeout(std::time::Duration::from_secs(30), jobs)
        .await
        .is_err()
    {
        tracing::warn!("a scheduled job was still running after 30 s; stopping anyway");
    }
    // In-flight deliveries are leased in the outbox: if cut short here they are retried after restart.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), delivery).await;
    let closing = app.clone();
    tokio::task::spawn_blocking(move || closing.close()).await?;
    result?;
    Ok(())
}
