//! The Insights page: anomalies (with their plain sentence) and the business forecasts.

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::app::App;
use crate::services::Insights;
use crate::services::insights::{self, AnomalyView, OutlookCard};
use crate::web::auth::OrgMember;
use crate::web::error::PageError;
use crate::web::pages::{Nav, nav};

#[derive(Template)]
#[template(path = "insights.html")]
pub struct InsightsPage {
    pub nav: Nav,
    pub days: i64,
    pub choices: Vec<(i64, &'static str)>,
    pub outlooks: Vec<OutlookCard>,
    pub anomalies: Vec<AnomalyRowView>,
    pub threshold: f64,
}

pub struct AnomalyRowView {
    pub metric: String,
    pub metric_name: String,
    pub day: String,
    pub text: String,
    pub score: String,
    pub harmful: bool,
}

impl From<AnomalyView> for AnomalyRowView {
    fn from(a: AnomalyView) -> Self {
        AnomalyRowView {
            metric: a.metric,
            metric_name: a.metric_name,
            day: a.day,
            text: a.text,
            score: format!("{:.2}", a.score),
            harmful: a.harmful,
        }
    }
}

/// `GET /o/{slug}/insights?days=90`.
pub async fn insights_page(
    State(app): State<App>,
    State(insight_service): State<Insights>,
    m: OrgMember,
    RawQuery(raw): RawQuery,
) -> Result<Response, PageError> {
    let mut days = 90;
    for (k, v) in crate::web::api::parse_query(raw.as_deref().unwrap_or(""))
        .map_err(|_| PageError::BadRequest("the query string is not valid".into()))?
    {
        match (k.as_str(), v.parse::<i64>()) {
            ("days", Ok(d)) if (1..=730).contains(&d) => days = d,
            ("days", _) => {
                return Err(PageError::BadRequest(
                    "days must be a whole number from 1 to 730".into(),
                ));
            }
            _ => {}
        }
    }
    let anomalies = insights::list_anomalies(&app, &m.org, None, days, 500).await?;
    let outlooks = insight_service.outlooks(&m.org).await?;
    let page = InsightsPage {
        nav: nav(&app, &m, "insights").await?,
        days,
        choices: vec![
            (30, "30 days"),
            (90, "90 days"),
            (365, "1 year"),
            (730, "2 years"),
        ],
        outlooks,
        anomalies: anomalies.into_iter().map(AnomalyRowView::from).collect(),
        threshold: insights::ANOMALY_THRESHOLD,
    };
    Ok((StatusCode::OK, Html(page.render()?)).into_response())
}
