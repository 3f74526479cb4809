//! Scheduled jobs (server admins).

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::render;
use crate::services::Services;
use crate::web::auth::CurrentUser;
use crate::web::error::PageError;

pub struct JobView {
    pub name: &'static str,
    pub schedule: String,
    pub last_run: String,
    pub duration: String,
    pub outcome: String,
    pub message: String,
    pub next_run: String,
}

#[derive(Template)]
#[template(path = "jobs.html")]
pub struct JobsPage {
    pub jobs: Vec<JobView>,
}

pub async fn jobs_page(
    State(services): State<Services>,
    user: CurrentUser,
) -> Result<Response, PageError> {
    let app = &services.app;
    if !user.user.is_server_admin {
        return Err(PageError::Forbidden(
            "Only a server admin can see the scheduled jobs.".into(),
        ));
    }
    let now = chrono::Utc::now();
    let mut jobs = Vec::new();
    for job in services.jobs() {
        let name = job.name;
        let last = app
            .meta
            .call(move |c| crate::store::meta::job_runs::recent(c, name, 1))
            .await?
            .into_iter()
            .next();
        let last_started = last
            .as_ref()
            .and_then(|r| chrono::DateTime::from_timestamp(r.started_at, 0));
        jobs.push(JobView {
            name,
            schedule: if job.expression.is_empty() {
                "disabled".into()
            } else {
                job.expression.clone()
            },
            last_run: last_started
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_else(|| "never".into()),
            duration: last
                .as_ref()
                .and_then(|r| r.duration_ms)
                .map(|d| format!("{d} ms"))
                .unwrap_or_default(),
            outcome: last.as_ref().map(|r| r.outcome.clone()).unwrap_or_default(),
            message: last.map(|r| r.message).unwrap_or_default(),
            next_run: job
                .schedule
                .as_ref()
                .and_then(|s| crate::domain::schedule::next_run(s, last_started, now))
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_else(|| "–".into()),
        });
    }
    render(&JobsPage { jobs })
}
