//! One metric: its chart, breakdowns, daily overlays, anomalies and forecast.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde_json::json;

use super::overview::{CardView, RangeParam, card_view, find_metric, parse_range};
use super::{Nav, nav, render};
use crate::app::App;
use crate::domain::catalog::{self, MetricDef};
use crate::domain::ingest::validate_dimension_key;
use crate::domain::roles::Permission;
use crate::services::query::{self, Range, SeriesRequest};
use crate::store::metrics;
use crate::web::auth::OrgMember;
use crate::web::error::PageError;

pub struct Row {
    pub label: String,
    pub value: String,
    pub count: i64,
}

pub struct Breakdown {
    pub key: String,
    pub rows: Vec<Row>,
    pub href: String,
}

#[derive(Template)]
#[template(path = "metric.html")]
pub struct MetricPage {
    pub nav: Nav,
    pub def: MetricDef,
    pub unit: &'static str,
    pub slug: String,
    pub range: &'static str,
    pub ranges: Vec<(&'static str, &'static str)>,
    pub card: CardView,
    pub chart_json: String,
    pub rows: Vec<Row>,
    pub group_by: String,
    pub breakdowns: Vec<Breakdown>,
    pub bucket: &'static str,
    /// Anomalies in the range: (day, sentence, harmful).
    pub anomalies: Vec<(String, String, bool)>,
    /// What the forecast drawn on the chart is, or why there is none.
    pub forecast_note: String,
}

/// Daily overlays for the metric chart: the expected band and anomalies from the detector, and
/// the 30-day forecast (when it beat seasonal naive in its backtest). Extends `x` and pads the
/// value series with nulls for the forecast days.
async fn daily_overlays(
    app: &App,
    m: &OrgMember,
    def: &MetricDef,
    x: &mut Vec<i64>,
    series: &mut Vec<serde_json::Value>,
) -> Result<(Vec<(String, String, bool)>, String), PageError> {
    let now = chrono::Utc::now().timestamp_micros();
    let history = crate::services::insights::daily_history(
        app,
        &m.org,
        std::slice::from_ref(def),
        crate::services::insights::HISTORY_DAYS,
        now,
    )
    .await?;
    let days = history.get(&def.key).cloned().unwrap_or_default();
    let (days, scores) = tokio::task::spawn_blocking(move || {
        let (scores, _) = crate::services::insights::score_days(&days);
        (days, scores)
    })
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "detector task failed");
        PageError::Internal
    })?;
    let by_at: HashMap<i64, (f64, crate::domain::anomaly::PointScore)> = days
        .iter()
        .zip(&scores)
        .map(|(d, s)| (d.at, (d.value, *s)))
        .collect();
    let mut low = Vec::with_capacity(x.len());
    let mut high = Vec::with_capacity(x.len());
    let mut marks = Vec::with_capacity(x.len());
    for at in x.iter() {
        let entry = by_at.get(at);
        let band = entry.and_then(|(_, s)| Some((s.expected?, s.band?)));
        low.push(band.map(|(e, b)| e - b));
        high.push(band.map(|(e, b)| e + b));
        marks.push(
            entry
                .filter(|(_, s)| s.score >= crate::services::insights::ANOMALY_THRESHOLD)
                .map(|(v, _)| *v),
        );
    }
    let since_days = ((now / 1_000_000 - x.first().copied().unwrap_or(0)) / 86_400).max(1) + 1;
    let listed = crate::services::insights::list_anomalies(
        app,
        &m.org,
        Some(def.key.clone()),
        since_days,
        200,
    )
    .await?
    .into_iter()
    .map(|a| (a.day, a.text, a.harmful))
    .collect();
    let f = crate::services::insights::forecast_metric(app, &m.org, def, 30).await?;
    let mut forecast = (Vec::new(), Vec::new(), Vec::new());
    let note = if f.shown {
        let past = x.len();
        for s in &f.steps {
            x.push(s.at);
            forecast.0.push(Some(s.mean));
            forecast.1.push(Some(s.low));
            forecast.2.push(Some(s.high));
        }
        let pad = |v: &mut Vec<Option<f64>>, before: bool| {
            let nulls = if before { past } else { x.len() - v.len() };
            let mut padded = vec![None; nulls];
            if before {
                padded.append(v);
                *v = padded;
            } else {
                v.append(&mut padded);
            }
        };
        pad(&mut forecast.0, true);
        pad(&mut forecast.1, true);
        pad(&mut forecast.2, true);
        pad(&mut low, false);
        pad(&mut high, false);
        pad(&mut marks, false);
        for s in series.iter_mut() {
            if let Some(values) = s.get_mut("values").and_then(|v| v.as_array_mut()) {
                values.resize(x.len(), serde_json::Value::Null);
            }
        }
        format!(
            "Dashed: 30-day forecast ({}), 95% interval; {}.",
            f.method, f.reason
        )
    } else {
        format!(
            "No forecast drawn: {}",
            f.reason.trim_start_matches("not shown: ")
        )
    };
    series.push(json!({"label": "expected low", "values": low, "band": true}));
    series.push(json!({"label": "expected high", "values": high, "band": true}));
    series.push(json!({"label": "anomaly", "values": marks, "points": true}));
    if f.shown {
        series.push(json!({"label": "forecast", "values": forecast.0, "dash": true}));
        series.push(
            json!({"label": "forecast low", "values": forecast.1, "band": true, "dash": true}),
        );
        series.push(
            json!({"label": "forecast high", "values": forecast.2, "band": true, "dash": true}),
        );
    }
    Ok((listed, note))
}

pub async fn metric_detail(
    State(app): State<App>,
    m: OrgMember,
    Path((_, key)): Path<(String, String)>,
    Query(p): Query<RangeParam>,
) -> Result<Response, PageError> {
    let range = parse_range(&p)?;
    let def = find_metric(&app, m.org.id, &key).await?;
    let group_by = match p.group_by.as_deref() {
        None | Some("") => None,
        Some(g) => {
            validate_dimension_key(g)
                .map_err(|e| PageError::BadRequest(format!("group_by {e}")))?;
            Some(g.to_string())
        }
    };
    if group_by.is_some() {
        m.require(Permission::AnalyzeData)?;
    }
    let now = chrono::Utc::now().timestamp_micros();
    let tz = query::org_tz(&m.org);
    let (_, start, end) = query::periods(tz, range, now);
    let cards = query::cards(
        &app,
        &m.org,
        vec![def.clone()],
        range,
        now,
        query::Reuse::Memo,
    )
    .await?;
    let card = card_view(
        cards.first().ok_or(PageError::NotFound)?,
        &m.org.slug,
        &m.org.currency,
        range,
    );
    let groups = query::series(
        &app,
        &m.org,
        SeriesRequest {
            metric: def.key.clone(),
            from_micros: start,
            to_micros: end,
            bucket: range.bucket(),
            agg: def.aggregation,
            filters: Vec::new(),
            group_by: group_by.clone(),
        },
    )
    .await?;
    let fmt = |v: f64| catalog::format_value(def.unit, v, &m.org.currency);
    let mut x: Vec<i64> = groups
        .first()
        .map(|g| g.points.iter().map(|p| p.utc_micros / 1_000_000).collect())
        .unwrap_or_default();
    let mut series: Vec<serde_json::Value> = groups.iter().map(|g| json!({
            "label": g.group.clone().map(|s| if s.is_empty() { "(none)".to_string() } else { s }).unwrap_or_else(|| def.name.clone()),
            "values": g.points.iter().map(|p| p.value).collect::<Vec<_>>(),
        })).collect();
    let (anomalies, forecast_note) =
        if group_by.is_none() && range.bucket() == crate::domain::timebucket::Bucket::Day {
            daily_overlays(&app, &m, &def, &mut x, &mut series).await?
        } else {
            (Vec::new(), String::new())
        };
    let chart = json!({
        "x": x,
        "series": series,
        "unit": def.unit,
        "spark": false,
    });
    let rows = match groups.first() {
        Some(g) if group_by.is_none() => g
            .points
            .iter()
            .rev()
            .map(|p| Row {
                label: p
                    .local
                    .format(
                        if range.bucket() == crate::domain::timebucket::Bucket::Week {
                            "week of %a %d %b %Y"
                        } else {
                            "%a %d %b %Y"
                        },
                    )
                    .to_string(),
                value: p.value.map(fmt).unwrap_or_else(|| "–".into()),
                count: p.count,
            })
            .collect(),
        _ => Vec::new(),
    };
    // Breakdown by every dimension the metric has, over the whole range.
    let mut breakdowns = Vec::new();
    if m.role.allows(Permission::AnalyzeData) {
        let (org_id, metric_key) = (m.org.id, def.key.clone());
        let keys = app
            .metrics
            .read(move |c| metrics::dimension_keys(c, org_id, &metric_key))
            .await?;
        for dim in keys.into_iter().take(6) {
            let q = metrics::AggregateQuery {
                org_id,
                metric: Some(def.key.clone()),
                from_micros: start,
                to_micros: end,
                bucketing: metrics::Bucketing::Split { at_micros: start },
                filters: Vec::new(),
                group_by: Some(dim.clone()),
            };
            let mut totals = app.metrics.read(move |c| metrics::aggregate(c, &q)).await?;
            totals.sort_by(|a, b| {
                b.value(def.aggregation)
                    .total_cmp(&a.value(def.aggregation))
            });
            breakdowns.push(Breakdown {
                href: format!(
                    "/o/{}/metrics/{}?range={}&group_by={}",
                    m.org.slug,
                    def.key,
                    range.as_str(),
                    dim
                ),
                key: dim,
                rows: totals
                    .iter()
                    .take(20)
                    .map(|r| Row {
                        label: r
                            .group
                            .as_deref()
                            .map(crate::domain::ingest::decode_dim_value)
                            .filter(|s| !s.is_empty())
                            .unwrap_or_else(|| "(none)".into()),
                        value: fmt(r.value(def.aggregation)),
                        count: r.count,
                    })
                    .collect(),
            });
        }
    }
    let unit = def.unit.as_str();
    render(&MetricPage {
        nav: nav(&app, &m, "overview").await?,
        unit,
        slug: m.org.slug.clone(),
        range: range.as_str(),
        ranges: Range::ALL.iter().map(|r| (r.as_str(), r.label())).collect(),
        card,
        chart_json: chart.to_string(),
        rows,
        group_by: group_by.unwrap_or_default(),
        breakdowns,
        bucket: range.bucket().as_str(),
        def,
        anomalies,
        forecast_note,
    })
}
