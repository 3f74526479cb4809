//! The overview: metric cards by category, insight cards, live card fragments.

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde_json::json;

use super::health::{HealthView, health_view};
use super::{Nav, nav, render};
use crate::app::App;
use crate::domain::catalog::{self, Category, MetricDef};
use crate::services::Insights;
use crate::services::query::{self, Card, Range};
use crate::web::auth::OrgMember;
use crate::web::error::PageError;

/// A card as the template draws it.
pub struct CardView {
    pub key: String,
    pub name: String,
    pub description: String,
    pub value_text: String,
    pub previous_text: String,
    pub change_text: String,
    /// `good`, `bad` or `flat`.
    pub change_class: &'static str,
    pub chart_json: String,
    pub href: String,
    pub refresh_url: String,
    pub range_label: &'static str,
    pub agg_label: &'static str,
}

pub(crate) fn agg_label(def: &MetricDef) -> &'static str {
    match def.aggregation {
        catalog::Aggregation::Sum => "total",
        catalog::Aggregation::Avg => "average",
        catalog::Aggregation::Last => "latest",
        catalog::Aggregation::Min => "minimum",
        catalog::Aggregation::Max => "maximum",
    }
}

pub(crate) fn card_view(card: &Card, slug: &str, currency: &str, range: Range) -> CardView {
    let fmt = |v: Option<f64>| {
        v.map(|v| catalog::format_value(card.def.unit, v, currency))
            .unwrap_or_else(|| "no data".into())
    };
    // Changes that round to 0.0% are shown as flat, neither good nor bad.
    let change = card.change_pct.filter(|c| (c * 10.0).round() != 0.0);
    let change_text = match (card.change_pct, change) {
        (_, Some(c)) if c > 0.0 => format!("▲ {c:.1}%"),
        (_, Some(c)) => format!("▼ {:.1}%", c.abs()),
        (Some(_), None) => "±0.0%".into(),
        (None, _) => "–".into(),
    };
    let change_class = match change.map(|_| card.change_is_good()) {
        Some(Some(true)) => "good",
        Some(Some(false)) => "bad",
        _ => "flat",
    };
    let chart = json!({
        "x": card.spark.iter().map(|(t, _)| t).collect::<Vec<_>>(),
        "series": [{ "label": card.def.name, "values": card.spark.iter().map(|(_, v)| v).collect::<Vec<_>>() }],
        "unit": card.def.unit,
        "spark": true,
    });
    CardView {
        key: card.def.key.clone(),
        name: card.def.name.clone(),
        description: card.def.description.clone(),
        value_text: fmt(card.value),
        previous_text: fmt(card.previous),
        change_text,
        change_class,
        chart_json: chart.to_string(),
        href: format!(
            "/o/{slug}/metrics/{}?range={}",
            card.def.key,
            range.as_str()
        ),
        refresh_url: format!("/o/{slug}/cards/{}?range={}", card.def.key, range.as_str()),
        range_label: range.label(),
        agg_label: agg_label(&card.def),
    }
}

pub struct CategoryView {
    pub title: &'static str,
    pub cards: Vec<CardView>,
}

#[derive(serde::Deserialize, Default)]
pub struct RangeParam {
    #[serde(default)]
    pub range: Option<String>,
    #[serde(default)]
    pub group_by: Option<String>,
}

pub(crate) fn parse_range(p: &RangeParam) -> Result<Range, PageError> {
    match p.range.as_deref() {
        None | Some("") => Ok(Range::Days30),
        Some(r) => Range::parse(r).ok_or_else(|| {
            PageError::BadRequest(format!("range must be one of 7d, 30d, 90d, 12m; got {r:?}"))
        }),
    }
}

#[derive(Template)]
#[template(path = "overview.html")]
pub struct OverviewPage {
    pub nav: Nav,
    pub time_zone: String,
    /// The rendered [`OverviewBody`], shared by the org's members.
    pub body: std::sync::Arc<str>,
}

/// Everything of the overview below its heading: the same for every member of the org.
#[derive(Template)]
#[template(path = "overview_body.html")]
pub struct OverviewBody {
    pub health: HealthView,
    pub slug: String,
    /// The rendered [`GridFragment`].
    pub grid: String,
    /// The few most important anomalies and forecasts (insight cards).
    pub insights: Vec<InsightCard>,
}

/// One insight card on the overview.
pub struct InsightCard {
    pub title: String,
    pub text: String,
    pub href: String,
    /// `bad`, `good` or `info`.
    pub tone: &'static str,
}

/// The overview's insight cards: the three anomalies of the last 14 days that weigh most on the
/// health score, then the business forecasts.
async fn insight_cards(
    insight_service: &Insights,
    m: &OrgMember,
) -> Result<Vec<InsightCard>, PageError> {
    let found = insight_service.highlights(&m.org, 14, 3).await?;
    let slug = &m.org.slug;
    let mut cards: Vec<InsightCard> = found
        .anomalies
        .into_iter()
        .map(|a| InsightCard {
            title: format!("Unusual {}", a.metric_name.to_lowercase()),
            href: format!("/o/{slug}/metrics/{}?range=90d", a.metric),
            tone: if a.harmful { "bad" } else { "good" },
            text: a.text,
        })
        .collect();
    cards.extend(found.outlooks.into_iter().take(3).map(|o| InsightCard {
        title: o.title,
        text: o.text,
        href: format!("/o/{slug}/insights"),
        tone: "info",
    }));
    Ok(cards)
}

#[derive(Template)]
#[template(path = "overview_grid.html")]
pub struct GridFragment {
    pub slug: String,
    pub range: &'static str,
    pub range_label: &'static str,
    pub ranges: Vec<(&'static str, &'static str)>,
    pub categories: Vec<CategoryView>,
    pub has_data: bool,
}

#[derive(Template)]
#[template(path = "card.html")]
pub struct CardFragment {
    pub card: CardView,
}

async fn categories(
    app: &App,
    m: &OrgMember,
    range: Range,
) -> Result<(Vec<CategoryView>, bool), PageError> {
    let org_id = m.org.id;
    let catalog = app.meta.catalog(org_id).await?.to_vec();
    let cards = query::cards(
        app,
        &m.org,
        catalog,
        range,
        chrono::Utc::now().timestamp_micros(),
        query::Reuse::Memo,
    )
    .await?;
    let has_data = cards
        .iter()
        .any(|c| c.value.is_some() || c.previous.is_some());
    let views = Category::ALL
        .into_iter()
        .map(|cat| CategoryView {
            title: cat.title(),
            cards: cards
                .iter()
                .filter(|c| c.def.category == cat)
                .map(|c| card_view(c, &m.org.slug, &m.org.currency, range))
                .collect(),
        })
        .filter(|c| !c.cards.is_empty())
        .collect();
    Ok((views, has_data))
}

pub async fn overview(
    State(app): State<App>,
    State(insight_service): State<Insights>,
    m: OrgMember,
    Query(p): Query<RangeParam>,
) -> Result<Response, PageError> {
    let range = parse_range(&p)?;
    let key = format!("overview body {}", range.as_str());
    let body = rendered_for_org(&app, &m, &key, async {
        Ok(OverviewBody {
            grid: grid_fragment(&app, &m, range).await?.render()?,
            health: health_view(&app, &m).await?,
            slug: m.org.slug.clone(),
            insights: insight_cards(&insight_service, &m).await?,
        }
        .render()?)
    })
    .await?;
    render(&OverviewPage {
        nav: nav(&app, &m, "overview").await?,
        time_zone: m.org.time_zone.clone(),
        body,
    })
}

/// How long an org-level rendering is reused at most without a change: as long as the
/// memoised reads under it ([`query::Reuse::Memo`]), since "now" moves on.
const RENDERED_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(30);

/// The org-level HTML kept under `key`, or `make`'s, kept for the org's other members and
/// later requests until the org's points or the meta store change. Requests missing together
/// wait for one rendering.
async fn rendered_for_org(
    app: &App,
    m: &OrgMember,
    key: &str,
    make: impl std::future::Future<Output = Result<String, PageError>>,
) -> Result<std::sync::Arc<str>, PageError> {
    let versions = app.versions(m.org.id);
    app.rendered
        .get_or_make(m.org.id, key, versions, RENDERED_MAX_AGE, async {
            Ok(std::sync::Arc::from(make.await?))
        })
        .await
}

async fn grid_fragment(app: &App, m: &OrgMember, range: Range) -> Result<GridFragment, PageError> {
    let (categories, has_data) = categories(app, m, range).await?;
    Ok(GridFragment {
        slug: m.org.slug.clone(),
        range: range.as_str(),
        range_label: range.label(),
        ranges: Range::ALL.iter().map(|r| (r.as_str(), r.label())).collect(),
        categories,
        has_data,
    })
}

pub async fn overview_grid(
    State(app): State<App>,
    m: OrgMember,
    Query(p): Query<RangeParam>,
) -> Result<Response, PageError> {
    let range = parse_range(&p)?;
    let key = format!("overview grid {}", range.as_str());
    let grid = rendered_for_org(&app, &m, &key, async {
        Ok(grid_fragment(&app, &m, range).await?.render()?)
    })
    .await?;
    Ok(axum::response::IntoResponse::into_response(
        axum::response::Html(grid.to_string()),
    ))
}

pub(crate) async fn find_metric(app: &App, org_id: i64, key: &str) -> Result<MetricDef, PageError> {
    let key = key.to_string();
    let catalog = app.meta.catalog(org_id).await?;
    catalog
        .iter()
        .find(|d| d.key == key)
        .cloned()
        .ok_or(PageError::NotFound)
}

pub async fn card(
    State(app): State<App>,
    m: OrgMember,
    Path((_, key)): Path<(String, String)>,
    Query(p): Query<RangeParam>,
) -> Result<Response, PageError> {
    let range = parse_range(&p)?;
    let def = find_metric(&app, m.org.id, &key).await?;
    let cards = query::cards(
        &app,
        &m.org,
        vec![def],
        range,
        chrono::Utc::now().timestamp_micros(),
        query::Reuse::Memo,
    )
    .await?;
    let card = cards.first().ok_or(PageError::NotFound)?;
    render(&CardFragment {
        card: card_view(card, &m.org.slug, &m.org.currency, range),
    })
}
