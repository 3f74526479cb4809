//! The health score panel.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use serde_json::json;

use super::render;
use crate::app::App;
use crate::domain::catalog::{self, Category};
use crate::services::query::{self};
use crate::web::auth::OrgMember;
use crate::web::error::PageError;

pub struct CategoryView2 {
    pub title: &'static str,
    pub score: String,
    pub class: &'static str,
    pub is_risk: bool,
}

pub struct DragView {
    pub name: String,
    pub points_lost: String,
    pub sub_score: String,
}

/// One row of the full breakdown.
pub struct BreakdownRow {
    pub category: &'static str,
    pub name: String,
    pub value: String,
    pub target: String,
    pub trend: String,
    pub sub_score: String,
    pub points: String,
    pub points_lost: String,
}

pub struct HealthView {
    pub overall: String,
    pub class: &'static str,
    /// Length of the gauge arc (of 100) drawn in the score's colour.
    pub arc: String,
    pub categories: Vec<CategoryView2>,
    pub coverage: String,
    pub stale: String,
    pub drags: Vec<DragView>,
    pub breakdown: Vec<BreakdownRow>,
    pub recommendations: Vec<String>,
    pub vs_yesterday: String,
    pub vs_week: String,
    pub history_json: String,
    pub computed_at: String,
}

fn score_class(score: f64) -> &'static str {
    if score >= 70.0 {
        "good"
    } else if score >= 40.0 {
        "warn"
    } else {
        "bad"
    }
}

fn delta_text(now: Option<f64>, then: Option<f64>) -> String {
    match (now, then) {
        (Some(n), Some(t)) if (n - t).abs() >= 0.05 => {
            format!("{}{:.1}", if n > t { "▲ " } else { "▼ " }, (n - t).abs())
        }
        (Some(_), Some(_)) => "±0.0".into(),
        _ => "–".into(),
    }
}

pub(crate) async fn health_view(app: &App, m: &OrgMember) -> Result<HealthView, PageError> {
    let report = match crate::services::scoring::latest(app, m.org.id).await? {
        Some(r) => r,
        None => crate::services::scoring::recompute(app, &m.org).await?,
    };
    let org_id = m.org.id;
    let at = report.computed_at;
    let (day_ago, week_ago, history) = app
        .meta
        .read(move |c| {
            use crate::store::meta::health_scores;
            Ok((
                health_scores::before(c, org_id, at - 86_400)?,
                health_scores::before(c, org_id, at - 7 * 86_400)?,
                health_scores::history(c, org_id, at - 90 * 86_400, at + 1)?,
            ))
        })
        .await?;
    // Daily closing values for the chart.
    let tz = query::org_tz(&m.org);
    let mut daily: Vec<(i64, Option<f64>)> = Vec::new();
    for (t, v) in history {
        let day = crate::domain::timebucket::start_of_local_day(tz, t * 1_000_000) / 1_000_000;
        match daily.last_mut() {
            Some(last) if last.0 == day => last.1 = v,
            _ => daily.push((day, v)),
        }
    }
    let defs = {
        let org_id = m.org.id;
        app.meta.catalog(org_id).await?.to_vec()
    };
    let name = |k: &str| {
        defs.iter()
            .find(|d| d.key == k)
            .map(|d| d.name.clone())
            .unwrap_or_else(|| k.to_string())
    };
    let overall = report.overall;
    Ok(HealthView {
        overall: overall.map(|o| format!("{o:.0}")).unwrap_or_else(|| "–".into()),
        class: overall.map(score_class).unwrap_or("flat"),
        arc: format!("{:.1}", overall.unwrap_or(0.0)),
        categories: report
            .categories
            .iter()
            .map(|c| {
                let is_risk = c.category == Category::Risk;
                CategoryView2 {
                    title: c.category.title(),
                    score: format!("{:.0}", c.score),
                    class: score_class(if is_risk { 100.0 - c.score } else { c.score }),
                    is_risk,
                }
            })
            .collect(),
        coverage: format!(
            "Based on {} of {} metrics, {} of {} categories.",
            report.coverage.metrics_used, report.coverage.metrics_total, report.coverage.categories_used, report.coverage.categories_total
        ),
        stale: if report.coverage.stale.is_empty() {
            String::new()
        } else {
            format!("Left out as stale: {}.", report.coverage.stale.iter().map(|k| name(k)).collect::<Vec<_>>().join(", "))
        },
        drags: report
            .top_drags
            .iter()
            .filter_map(|k| report.metrics.iter().find(|x| &x.key == k))
            .map(|x| DragView { name: name(&x.key), points_lost: format!("{:.1}", x.points_lost), sub_score: format!("{:.0}", x.sub_score) })
            .collect(),
        breakdown: {
            let mut rows: Vec<&crate::domain::health::MetricScore> = report.metrics.iter().collect();
            rows.sort_by(|a, b| b.points_lost.total_cmp(&a.points_lost));
            rows.into_iter()
                .map(|x| {
                    let def = defs.iter().find(|d| d.key == x.key);
                    let fmt = |v: f64| def.map(|d| catalog::format_value(d.unit, v, &m.org.currency)).unwrap_or_else(|| format!("{v}"));
                    let target = match x.basis {
                        crate::domain::health::Basis::Level { healthy, critical } => format!("healthy {}, critical {}", fmt(healthy), fmt(critical)),
                        crate::domain::health::Basis::Trend { healthy, critical } => format!("growth healthy {healthy:+}%, critical {critical:+}%"),
                    };
                    BreakdownRow {
                        category: x.category.title(),
                        name: name(&x.key),
                        value: fmt(x.value),
                        target,
                        trend: x.growth_pct.map(|g| format!("{g:+.1}%")).unwrap_or_else(|| "–".into()),
                        sub_score: format!("{:.0}", x.sub_score),
                        points: format!("{:.1}", x.points),
                        points_lost: format!("{:.1}", x.points_lost),
                    }
                })
                .collect()
        },
        recommendations: report.recommendations.clone(),
        vs_yesterday: delta_text(overall, day_ago),
        vs_week: delta_text(overall, week_ago),
        history_json: json!({
            "x": daily.iter().map(|d| d.0).collect::<Vec<_>>(),
            "series": [{"label": "Health score", "values": daily.iter().map(|d| d.1).collect::<Vec<_>>()}],
            "unit": "score",
            "spark": true,
        })
        .to_string(),
        computed_at: chrono::DateTime::from_timestamp(at, 0)
            .map(|t| t.with_timezone(&tz).format("%d %b %H:%M").to_string())
            .unwrap_or_default(),
    })
}

#[derive(Template)]
#[template(path = "health.html")]
pub struct HealthFragment {
    pub slug: String,
    pub health: HealthView,
}

pub async fn health_panel(State(app): State<App>, m: OrgMember) -> Result<Response, PageError> {
    let health = health_view(&app, &m).await?;
    render(&HealthFragment {
        slug: m.org.slug.clone(),
        health,
    })
}
