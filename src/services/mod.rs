//! The service layer: work that spans stores and runs in the background. Each service owns its
//! state (debounce sets, caches, locks); none is in [`App`]. Writers announce [`Signal`]s on
//! the app; the services started by [`Services::start`] subscribe to them, so no writer calls a
//! service and [`App`] depends on none.
//!
//! Allowed imports, top to bottom: this module (it starts them all) → `scheduler` →
//! `integrations`, `insights`, `alerting`, `scoring` → `notify`, `query` (read models),
//! `signals`. Upward and sideways uses go through signals.

pub mod alerting;
pub mod analytics;
pub mod event_metrics;
pub mod insights;
pub mod integrations;
pub mod notify;
pub mod query;
pub mod scheduler;
pub mod scoring;
pub mod signals;
pub mod uploads;

use std::sync::Arc;

use chrono::Utc;

use crate::app::App;
use crate::domain::schedule::parse_schedule;
use crate::store::meta::job_runs;
use scheduler::Job;

pub use alerting::Alerting;
pub use event_metrics::EventMetrics;
pub use insights::Insights;
pub use integrations::Integrations;

/// The running services with their state, shared by the web layer (the router's state) and the
/// scheduler's jobs. Cloning is cheap.
#[derive(Clone)]
pub struct Services {
    pub app: App,
    pub alerting: Alerting,
    pub insights: Insights,
    pub integrations: Integrations,
    pub event_metrics: EventMetrics,
}

impl Services {
    pub fn new(app: App) -> Services {
        Services {
            alerting: Alerting::new(app.clone()),
            insights: Insights::new(app.clone()),
            integrations: Integrations::new(app.clone()),
            event_metrics: EventMetrics::default(),
            app,
        }
    }

    /// Subscribes every service to the app's signals (before returning, so nothing stored after
    /// this call is missed) and starts the background work: the scheduler, notification
    /// delivery, and syncs a stop cut short. Returns the scheduler's and the delivery worker's
    /// tasks, which end on `app.shutdown`.
    pub fn start(&self) -> (tokio::task::JoinHandle<()>, tokio::task::JoinHandle<()>) {
        let app = &self.app;
        scoring::listen(app.clone(), app.signals.subscribe());
        self.alerting.listen(app.signals.subscribe());
        self.insights.listen(app.signals.subscribe());
        self.event_metrics.listen(app, app.signals.subscribe());
        let delivery = tokio::spawn(notify::run_worker(app.clone(), app.signals.subscribe()));
        let jobs = tokio::spawn(scheduler::run(
            self.jobs(),
            app.meta.clone(),
            Arc::new(scheduler::SystemClock),
            app.shutdown.clone(),
        ));
        let integrations = self.integrations.clone();
        tokio::spawn(async move { integrations.resume_interrupted().await });
        (jobs, delivery)
    }

    /// The built-in jobs with their schedules from the config.
    pub fn jobs(&self) -> Vec<Job> {
        let services = self;
        let app = &services.app;
        let config = &app.config.jobs;
        let recompute_app = app.clone();
        let housekeeping_meta = app.meta.clone();
        let housekeeping_app = app.clone();
        let alerting = services.alerting.clone();
        let insights = services.insights.clone();
        let integrations = services.integrations.clone();
        let metrics = app.metrics.clone();
        let events = app.events.clone();
        vec![
            Job {
                name: "score_recompute",
                schedule: parse_schedule(&config.score_recompute).ok().flatten(),
                expression: config.score_recompute.clone(),
                run: Arc::new(move || {
                    let app = recompute_app.clone();
                    Box::pin(async move {
                        crate::services::scoring::recompute_all(&app)
                            .await
                            .map(|n| format!("recomputed {n} organisations"))
                            .map_err(|e| e.to_string())
                    })
                }),
            },
            Job {
                name: "housekeeping",
                schedule: parse_schedule(&config.housekeeping).ok().flatten(),
                expression: config.housekeeping.clone(),
                run: Arc::new(move || {
                    let meta = housekeeping_meta.clone();
                    let app = housekeeping_app.clone();
                    let idle_secs = app.config.auth.session_idle_hours as i64 * 3600;
                    Box::pin(async move {
                        let (alerts, deliveries) = crate::services::alerting::purge_history(&app)
                            .await
                            .map_err(|e| e.to_string())?;
                        let uploads_app = app.clone();
                        let uploads =
                            tokio::task::spawn_blocking(move || uploads::prune_all(&uploads_app))
                                .await
                                .unwrap_or(0);
                        meta.call(move |c| {
                        let sessions = crate::store::meta::sessions::delete_expired(c, idle_secs)?;
                        let runs = job_runs::prune(c, Utc::now().timestamp() - 30 * 86_400)?;
                        // Score history: every recomputation for a week, then each day's closing score.
                        let week_ago = Utc::now().timestamp() - 7 * 86_400;
                        let mut scores = 0;
                        for id in crate::store::meta::health_scores::org_ids(c)? {
                            let org = crate::store::meta::orgs::by_id(c, id)?;
                            let tz: chrono_tz::Tz = org.time_zone.parse().unwrap_or(chrono_tz::Tz::UTC);
                            let offset = i64::from(crate::domain::timebucket::offset_at(tz, Utc::now().timestamp_micros()));
                            scores += crate::store::meta::health_scores::compact(c, id, week_ago, offset)?;
                        }
                        Ok(format!(
                            "removed {sessions} expired sessions, {runs} old job runs, {scores} intraday scores older than a week, \
                             {alerts} closed alerts and {deliveries} notifications past the alert retention, \
                             {uploads} CSV uploads never imported"
                        ))
                    })
                    .await
                    .map_err(|e| e.to_string())
                    })
                }),
            },
            Job {
                name: "alert_evaluation",
                schedule: parse_schedule(&config.alert_evaluation).ok().flatten(),
                expression: config.alert_evaluation.clone(),
                run: Arc::new(move || {
                    let alerting = alerting.clone();
                    Box::pin(async move {
                        alerting
                            .evaluate_due()
                            .await
                            .map(|n| format!("evaluated {n} rules"))
                            .map_err(|e| e.to_string())
                    })
                }),
            },
            Job {
                name: "insights",
                schedule: parse_schedule(&config.insights).ok().flatten(),
                expression: config.insights.clone(),
                run: Arc::new(move || {
                    let insights = insights.clone();
                    Box::pin(async move {
                        insights
                            .detect_all()
                            .await
                            .map(|n| format!("{n} anomalies in the last two years"))
                            .map_err(|e| e.to_string())
                    })
                }),
            },
            Job {
                name: "integration_sync",
                schedule: parse_schedule(&config.integration_sync).ok().flatten(),
                expression: config.integration_sync.clone(),
                run: Arc::new(move || {
                    let integrations = integrations.clone();
                    Box::pin(async move { integrations.sync_all().await })
                }),
            },
            Job {
                name: "compaction",
                schedule: parse_schedule(&config.compaction).ok().flatten(),
                expression: config.compaction.clone(),
                run: Arc::new(move || {
                    let (metrics, events) = (metrics.clone(), events.clone());
                    Box::pin(async move {
                        let now = Utc::now().timestamp_micros();
                        let months = metrics
                            .compact_settled(now)
                            .await
                            .map_err(|e| e.to_string())?;
                        let weeks = events
                            .compact_settled(now)
                            .await
                            .map_err(|e| e.to_string())?;
                        Ok(format!(
                            "{} settled months of points checked, {} rewritten in storage order ({} points); \
                             {} settled weeks of events checked, {} rewritten ({} events); \
                             the rest already in order",
                            months.checked,
                            months.rewritten,
                            months.rows,
                            weeks.checked,
                            weeks.rewritten,
                            weeks.rows
                        ))
                    })
                }),
            },
        ]
    }
}
