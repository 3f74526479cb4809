//! Server-rendered pages (askama + htmx). Every page renders its data without JavaScript; htmx
//! swaps fragments for the range picker and live updates.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde_json::json;

use super::auth::{CurrentUser, OrgMember, SESSION_COOKIE};
use super::error::PageError;
use crate::app::{self, App, NewOrg};
use crate::domain::catalog::{self, Category, MetricDef};
use crate::domain::ingest::validate_dimension_key;
use crate::domain::roles::{Permission, Role, Scope};
use crate::query::{self, Card, Range, SeriesRequest};
use crate::security;
use crate::store::StoreError;
use crate::store::meta::api_keys::{self, ApiKey};
use crate::store::meta::audit::{self, AuditEntry};
use crate::store::meta::orgs::{self, Member};
use crate::store::meta::{custom_metrics, sessions, users};
use crate::store::metrics;

/// Form fields as sent (repeated names kept, e.g. checkboxes).
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    pub fn get(&self, name: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

fn render(t: &impl Template) -> Result<Response, PageError> {
    Ok(Html(t.render()?).into_response())
}

fn render_status(status: StatusCode, t: &impl Template) -> Result<Response, PageError> {
    Ok((status, Html(t.render()?)).into_response())
}

/// What the header needs to draw navigation for a member.
pub struct Nav {
    pub user_email: String,
    pub org_slug: String,
    pub org_name: String,
    pub orgs: Vec<(String, String)>,
    pub csrf: String,
    pub can_keys: bool,
    pub can_members: bool,
    pub can_audit: bool,
    pub is_server_admin: bool,
    pub active: &'static str,
}

pub(crate) async fn nav(app: &App, m: &OrgMember, active: &'static str) -> Result<Nav, PageError> {
    let user_id = m.user.id;
    let orgs = app.meta.call(move |c| orgs::for_user(c, user_id)).await?;
    Ok(Nav {
        user_email: m.user.email.clone(),
        org_slug: m.org.slug.clone(),
        org_name: m.org.name.clone(),
        orgs: orgs.into_iter().map(|(o, _)| (o.slug, o.name)).collect(),
        csrf: m.csrf.clone(),
        can_keys: m.role.allows(Permission::ManageApiKeys),
        can_members: m.role.allows(Permission::ManageMembers),
        can_audit: m.role.allows(Permission::ViewAudit),
        is_server_admin: m.user.is_server_admin,
        active,
    })
}

fn session_cookie(app: &App, token: &str, max_age_secs: i64) -> HeaderValue {
    let secure = if app.config.secure_cookies() {
        "; Secure"
    } else {
        ""
    };
    let value = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}{secure}"
    );
    HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Starts a session and redirects; used by setup and login.
async fn start_session(app: &App, user_id: i64, to: &str) -> Result<Response, PageError> {
    let token = security::random_token();
    let hash = security::sha256_hex(&token);
    let csrf = security::random_token();
    let ttl = app.config.auth.session_ttl_hours as i64 * 3600;
    app.meta
        .call(move |c| sessions::create(c, &hash, user_id, &csrf, ttl))
        .await?;
    let mut response = Redirect::to(to).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie(app, &token, ttl));
    Ok(response)
}

/// Only same-site paths may be a login's destination.
fn safe_next(next: &str) -> &str {
    if next.starts_with('/') && !next.starts_with("//") && !next.starts_with("/\\") {
        next
    } else {
        "/"
    }
}

// ---------------------------------------------------------------------------------------------
// Setup, login, logout, home.

pub async fn home(
    State(app): State<App>,
    user: Result<CurrentUser, PageError>,
) -> Result<Response, PageError> {
    if app.meta.call(|c| users::count(c)).await? == 0 {
        return Ok(Redirect::to("/setup").into_response());
    }
    let user = user?;
    let user_id = user.user.id;
    let orgs = app.meta.call(move |c| orgs::for_user(c, user_id)).await?;
    match orgs.first() {
        Some((org, _)) => Ok(Redirect::to(&format!("/o/{}/", org.slug)).into_response()),
        None if user.user.is_server_admin => Ok(Redirect::to("/orgs/new").into_response()),
        None => Err(PageError::Forbidden(
            "You are not a member of any organisation yet. Ask an admin to add you.".into(),
        )),
    }
}

#[derive(Template, Default)]
#[template(path = "setup.html")]
pub struct SetupPage {
    pub values: HashMap<&'static str, String>,
    pub errors: HashMap<&'static str, String>,
    pub zones: Vec<&'static str>,
}

fn zones() -> Vec<&'static str> {
    chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()).collect()
}

pub async fn setup_form(State(app): State<App>) -> Result<Response, PageError> {
    if app.meta.call(|c| users::count(c)).await? > 0 {
        return Ok(Redirect::to("/login").into_response());
    }
    let mut values = HashMap::new();
    values.insert("time_zone", "UTC".to_string());
    values.insert("currency", "USD".to_string());
    render(&SetupPage {
        values,
        zones: zones(),
        ..Default::default()
    })
}

pub async fn setup_submit(
    State(app): State<App>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormData(form);
    if app.meta.call(|c| users::count(c)).await? > 0 {
        return Err(PageError::Forbidden(
            "Setup is already done. Log in instead.".into(),
        ));
    }
    let fields = [
        "org_name",
        "time_zone",
        "currency",
        "name",
        "email",
        "password",
    ];
    let values: HashMap<&'static str, String> = fields
        .iter()
        .map(|f| (*f, form.get(f).to_string()))
        .filter(|(k, _)| *k != "password")
        .collect();
    let mut errors = HashMap::new();
    let org = match NewOrg::validate(
        form.get("org_name"),
        "",
        form.get("time_zone"),
        form.get("currency"),
    ) {
        Ok(o) => Some(o),
        Err((field, m)) => {
            errors.insert(
                if field == "name" || field == "slug" {
                    "org_name"
                } else {
                    field
                },
                m,
            );
            None
        }
    };
    let email = app::validate_email(form.get("email"))
        .map_err(|(_, m)| errors.insert("email", m))
        .ok();
    let name = form.get("name").trim().to_string();
    if name.is_empty() || name.chars().count() > 100 {
        errors.insert("name", "must be 1 to 100 characters".into());
    }
    if let Err(m) = security::validate_password(form.get("password")) {
        errors.insert("password", m);
    }
    let (Some(org), Some(email), true) = (org, email, errors.is_empty()) else {
        return render_status(
            StatusCode::UNPROCESSABLE_ENTITY,
            &SetupPage {
                values,
                errors,
                zones: zones(),
            },
        );
    };
    let password = form.get("password").to_string();
    let hash = tokio::task::spawn_blocking(move || security::hash_password(&password))
        .await
        .map_err(|_| PageError::Internal)?
        .map_err(|_| PageError::Internal)?;
    let (org, user) = app
        .meta
        .call(move |c| {
            if users::count(c)? > 0 {
                return Err(StoreError::Conflict("setup is already done".into()));
            }
            app::create_org_with_owner(c, &org, &email, &name, &hash, true)
        })
        .await?;
    tracing::info!(org = %org.slug, user = %user.email, "setup complete");
    start_session(&app, user.id, &format!("/o/{}/", org.slug)).await
}

#[derive(Template, Default)]
#[template(path = "login.html")]
pub struct LoginPage {
    pub email: String,
    pub next: String,
    pub error: String,
}

#[derive(serde::Deserialize)]
pub struct NextParam {
    #[serde(default)]
    next: String,
}

pub async fn login_form(
    State(app): State<App>,
    Query(q): Query<NextParam>,
) -> Result<Response, PageError> {
    if app.meta.call(|c| users::count(c)).await? == 0 {
        return Ok(Redirect::to("/setup").into_response());
    }
    render(&LoginPage {
        next: q.next,
        ..Default::default()
    })
}

pub async fn login_submit(
    State(app): State<App>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormData(form);
    let email = form.get("email").trim().to_string();
    let next = safe_next(form.get("next")).to_string();
    let ip = peer.ip().to_string();
    let keys = vec![format!("user:{}", email.to_lowercase()), format!("ip:{ip}")];
    let now = std::time::Instant::now();
    let blocked = app
        .throttle
        .lock()
        .map_err(|_| PageError::Internal)?
        .blocked(&keys, now);
    if let Some(wait) = blocked {
        return Err(PageError::TooManyRequests(wait.as_secs().max(1)));
    }
    let lookup = email.clone();
    let found = match app.meta.call(move |c| users::credentials(c, &lookup)).await {
        Ok(f) => Some(f),
        Err(StoreError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    let password = form.get("password").to_string();
    let stored = found.as_ref().map(|(_, h)| h.clone());
    let ok = tokio::task::spawn_blocking(move || match stored {
        Some(h) => security::verify_password(&password, &h),
        None => {
            // Same cost as a real check, so timing does not reveal which emails exist.
            security::verify_password(&password, security::dummy_hash());
            false
        }
    })
    .await
    .map_err(|_| PageError::Internal)?;
    match (ok, found) {
        (true, Some((user, _))) => {
            if let Ok(mut t) = app.throttle.lock() {
                t.record_success(&keys[0]);
            }
            let (uid, actor) = (user.id, format!("user:{}", user.email));
            let ip2 = ip.clone();
            app.meta
                .call(move |c| {
                    for (org, _) in orgs::for_user(c, uid)? {
                        audit::record(c, Some(org.id), &actor, "login", "", &ip2)?;
                    }
                    Ok(())
                })
                .await?;
            start_session(&app, user.id, &next).await
        }
        (_, found) => {
            if let Ok(mut t) = app.throttle.lock() {
                t.record_failure(&keys, now);
            }
            if let Some((user, _)) = found {
                let (uid, actor) = (user.id, format!("user:{}", user.email));
                app.meta
                    .call(move |c| {
                        for (org, _) in orgs::for_user(c, uid)? {
                            audit::record(
                                c,
                                Some(org.id),
                                &actor,
                                "login.failed",
                                "wrong password",
                                &ip,
                            )?;
                        }
                        Ok(())
                    })
                    .await?;
            }
            render_status(
                StatusCode::UNAUTHORIZED,
                &LoginPage {
                    email,
                    next,
                    error: "The email or password is wrong.".into(),
                },
            )
        }
    }
}

pub async fn logout(
    State(app): State<App>,
    user: CurrentUser,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    user.check_csrf(FormData(form).get("csrf"))?;
    let hash = user.token_hash.clone();
    app.meta.call(move |c| sessions::delete(c, &hash)).await?;
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, session_cookie(&app, "", 0));
    Ok(response)
}

#[derive(Template)]
#[template(path = "new_org.html")]
pub struct NewOrgPage {
    pub csrf: String,
    pub values: HashMap<&'static str, String>,
    pub errors: HashMap<&'static str, String>,
    pub zones: Vec<&'static str>,
}

pub async fn new_org_form(user: CurrentUser) -> Result<Response, PageError> {
    if !user.user.is_server_admin {
        return Err(PageError::Forbidden(
            "Only a server admin can create organisations.".into(),
        ));
    }
    let mut values = HashMap::new();
    values.insert("time_zone", "UTC".to_string());
    values.insert("currency", "USD".to_string());
    render(&NewOrgPage {
        csrf: user.csrf,
        values,
        errors: HashMap::new(),
        zones: zones(),
    })
}

pub async fn new_org_submit(
    State(app): State<App>,
    user: CurrentUser,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormData(form);
    user.check_csrf(form.get("csrf"))?;
    if !user.user.is_server_admin {
        return Err(PageError::Forbidden(
            "Only a server admin can create organisations.".into(),
        ));
    }
    let values: HashMap<&'static str, String> = ["name", "slug", "time_zone", "currency"]
        .iter()
        .map(|f| (*f, form.get(f).to_string()))
        .collect();
    let org = match NewOrg::validate(
        form.get("name"),
        form.get("slug"),
        form.get("time_zone"),
        form.get("currency"),
    ) {
        Ok(o) => o,
        Err((field, m)) => {
            let errors = HashMap::from([(field, m)]);
            return render_status(
                StatusCode::UNPROCESSABLE_ENTITY,
                &NewOrgPage {
                    csrf: user.csrf,
                    values,
                    errors,
                    zones: zones(),
                },
            );
        }
    };
    let (email, user_id) = (user.user.email.clone(), user.user.id);
    let created = app
        .meta
        .call(move |c| {
            let tx = c.transaction()?;
            let o = orgs::create(&tx, &org.slug, &org.name, &org.time_zone, &org.currency)?;
            orgs::add_member(&tx, o.id, user_id, Role::Owner)?;
            audit::record(
                &tx,
                Some(o.id),
                &format!("user:{email}"),
                "org.create",
                &o.slug,
                "",
            )?;
            tx.commit()?;
            Ok(o)
        })
        .await;
    match created {
        Ok(o) => Ok(Redirect::to(&format!("/o/{}/", o.slug)).into_response()),
        Err(StoreError::Conflict(m)) => {
            let errors = HashMap::from([("slug", m)]);
            render_status(
                StatusCode::CONFLICT,
                &NewOrgPage {
                    csrf: user.csrf,
                    values,
                    errors,
                    zones: zones(),
                },
            )
        }
        Err(e) => Err(e.into()),
    }
}

// ---------------------------------------------------------------------------------------------
// Overview and metric pages.

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

fn agg_label(def: &MetricDef) -> &'static str {
    match def.aggregation {
        catalog::Aggregation::Sum => "total",
        catalog::Aggregation::Avg => "average",
        catalog::Aggregation::Last => "latest",
        catalog::Aggregation::Min => "minimum",
        catalog::Aggregation::Max => "maximum",
    }
}

fn card_view(card: &Card, slug: &str, currency: &str, range: Range) -> CardView {
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
    range: Option<String>,
    #[serde(default)]
    group_by: Option<String>,
}

fn parse_range(p: &RangeParam) -> Result<Range, PageError> {
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
    pub health: HealthView,
    pub slug: String,
    pub range: &'static str,
    pub range_label: &'static str,
    pub ranges: Vec<(&'static str, &'static str)>,
    pub categories: Vec<CategoryView>,
    pub has_data: bool,
    pub time_zone: String,
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
async fn insight_cards(app: &App, m: &OrgMember) -> Result<Vec<InsightCard>, PageError> {
    let found = crate::insights::insights(app, &m.org, 14, 3).await?;
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
#[template(path = "overview.html", block = "grid")]
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
    let catalog = app
        .meta
        .call(move |c| custom_metrics::catalog(c, org_id))
        .await?;
    let cards = query::cards(
        app,
        &m.org,
        catalog,
        range,
        chrono::Utc::now().timestamp_micros(),
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
    m: OrgMember,
    Query(p): Query<RangeParam>,
) -> Result<Response, PageError> {
    let range = parse_range(&p)?;
    let (categories, has_data) = categories(&app, &m, range).await?;
    render(&OverviewPage {
        health: health_view(&app, &m).await?,
        nav: nav(&app, &m, "overview").await?,
        slug: m.org.slug.clone(),
        range: range.as_str(),
        range_label: range.label(),
        ranges: Range::ALL.iter().map(|r| (r.as_str(), r.label())).collect(),
        categories,
        has_data,
        time_zone: m.org.time_zone.clone(),
        insights: insight_cards(&app, &m).await?,
    })
}

pub async fn overview_grid(
    State(app): State<App>,
    m: OrgMember,
    Query(p): Query<RangeParam>,
) -> Result<Response, PageError> {
    let range = parse_range(&p)?;
    let (categories, has_data) = categories(&app, &m, range).await?;
    render(&GridFragment {
        slug: m.org.slug.clone(),
        range: range.as_str(),
        range_label: range.label(),
        ranges: Range::ALL.iter().map(|r| (r.as_str(), r.label())).collect(),
        categories,
        has_data,
    })
}

async fn find_metric(app: &App, org_id: i64, key: &str) -> Result<MetricDef, PageError> {
    let key = key.to_string();
    let catalog = app
        .meta
        .call(move |c| custom_metrics::catalog(c, org_id))
        .await?;
    catalog
        .into_iter()
        .find(|d| d.key == key)
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
    )
    .await?;
    let card = cards.first().ok_or(PageError::NotFound)?;
    render(&CardFragment {
        card: card_view(card, &m.org.slug, &m.org.currency, range),
    })
}

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
    let history = crate::insights::daily_history(
        app,
        &m.org,
        std::slice::from_ref(def),
        crate::insights::HISTORY_DAYS,
        now,
    )
    .await?;
    let days = history.get(&def.key).cloned().unwrap_or_default();
    let (days, scores) = tokio::task::spawn_blocking(move || {
        let (scores, _) = crate::insights::score_days(&days);
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
                .filter(|(_, s)| s.score >= crate::insights::ANOMALY_THRESHOLD)
                .map(|(v, _)| *v),
        );
    }
    let since_days = ((now / 1_000_000 - x.first().copied().unwrap_or(0)) / 86_400).max(1) + 1;
    let listed =
        crate::insights::list_anomalies(app, &m.org, Some(def.key.clone()), since_days, 200)
            .await?
            .into_iter()
            .map(|a| (a.day, a.text, a.harmful))
            .collect();
    let f = crate::insights::forecast_metric(app, &m.org, def, 30).await?;
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
    let cards = query::cards(&app, &m.org, vec![def.clone()], range, now).await?;
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

// ---------------------------------------------------------------------------------------------
// API keys.

pub struct KeyView {
    pub id: i64,
    pub name: String,
    pub prefix: String,
    pub scopes: String,
    pub created: String,
    pub created_by: String,
    pub expires: String,
    pub last_used: String,
    pub status: &'static str,
}

fn date(secs: Option<i64>) -> String {
    secs.and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "–".into())
}

fn key_view(k: &ApiKey) -> KeyView {
    let now = crate::store::now_secs();
    KeyView {
        id: k.id,
        name: k.name.clone(),
        prefix: k.prefix.clone(),
        scopes: Scope::join(&k.scopes),
        created: date(Some(k.created_at)),
        created_by: k.created_by.clone().unwrap_or_else(|| "cli".into()),
        expires: k
            .expires_at
            .map(|e| date(Some(e)))
            .unwrap_or_else(|| "never".into()),
        last_used: k
            .last_used_at
            .map(|e| date(Some(e)))
            .unwrap_or_else(|| "never".into()),
        status: if k.revoked_at.is_some() {
            "revoked"
        } else if !k.is_active(now) {
            "expired"
        } else {
            "active"
        },
    }
}

#[derive(Template)]
#[template(path = "api_keys.html")]
pub struct ApiKeysPage {
    pub nav: Nav,
    pub slug: String,
    pub keys: Vec<KeyView>,
    pub new_key: String,
    pub errors: HashMap<&'static str, String>,
    pub name: String,
}

async fn api_keys_page(
    app: &App,
    m: &OrgMember,
    new_key: String,
    errors: HashMap<&'static str, String>,
    name: String,
) -> Result<ApiKeysPage, PageError> {
    let org_id = m.org.id;
    let keys = app.meta.call(move |c| api_keys::list(c, org_id)).await?;
    Ok(ApiKeysPage {
        nav: nav(app, m, "keys").await?,
        slug: m.org.slug.clone(),
        keys: keys.iter().map(key_view).collect(),
        new_key,
        errors,
        name,
    })
}

pub async fn api_keys_list(State(app): State<App>, m: OrgMember) -> Result<Response, PageError> {
    m.require(Permission::ManageApiKeys)?;
    render(&api_keys_page(&app, &m, String::new(), HashMap::new(), String::new()).await?)
}

pub async fn api_keys_create(
    State(app): State<App>,
    m: OrgMember,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormData(form);
    m.check_csrf(form.get("csrf"))?;
    m.require(Permission::ManageApiKeys)?;
    let name = form.get("name").trim().to_string();
    let mut errors = HashMap::new();
    if name.is_empty() || name.chars().count() > 100 {
        errors.insert("name", "must be 1 to 100 characters".to_string());
    }
    let scopes = Scope::parse_list(&form.all("scopes").join(","))
        .map_err(|e| errors.insert("scopes", e))
        .unwrap_or_default();
    let expires = match form.get("expires_days").trim() {
        "" | "0" => None,
        d => match d.parse::<i64>() {
            Ok(n) if (1..=3650).contains(&n) => Some(n),
            _ => {
                errors.insert(
                    "expires_days",
                    "must be a whole number of days from 1 to 3650, or empty for never".into(),
                );
                None
            }
        },
    };
    if !errors.is_empty() {
        let page = api_keys_page(&app, &m, String::new(), errors, name).await?;
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    let (org_id, user_id, actor, key_name) = (m.org.id, m.user.id, m.actor(), name.clone());
    let (_, secret) = app
        .meta
        .call(move |c| {
            app::create_api_key(
                c,
                org_id,
                &key_name,
                &scopes,
                Some(user_id),
                expires,
                &actor,
            )
        })
        .await?;
    render(&api_keys_page(&app, &m, secret, HashMap::new(), String::new()).await?)
}

pub async fn api_keys_revoke(
    State(app): State<App>,
    m: OrgMember,
    Path((_, id)): Path<(String, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    m.check_csrf(FormData(form).get("csrf"))?;
    m.require(Permission::ManageApiKeys)?;
    let (org_id, actor, ip) = (m.org.id, m.actor(), m.ip.clone());
    app.meta
        .call(move |c| {
            let key = api_keys::revoke(c, org_id, id)?;
            audit::record(
                c,
                Some(org_id),
                &actor,
                "apikey.revoke",
                &format!("{} ({})", key.name, key.prefix),
                &ip,
            )
        })
        .await?;
    Ok(Redirect::to(&format!("/o/{}/api-keys", m.org.slug)).into_response())
}

// ---------------------------------------------------------------------------------------------
// Members and roles.

pub struct MemberView {
    pub user_id: i64,
    pub email: String,
    pub name: String,
    pub role: &'static str,
    pub role_title: &'static str,
    pub editable: bool,
    pub is_me: bool,
}

#[derive(Template)]
#[template(path = "members.html")]
pub struct MembersPage {
    pub nav: Nav,
    pub slug: String,
    pub members: Vec<MemberView>,
    pub roles: Vec<(&'static str, &'static str)>,
    pub assignable: Vec<(&'static str, &'static str)>,
    pub errors: HashMap<&'static str, String>,
    pub values: HashMap<&'static str, String>,
    pub notice: String,
}

async fn members_page(
    app: &App,
    m: &OrgMember,
    errors: HashMap<&'static str, String>,
    values: HashMap<&'static str, String>,
    notice: String,
) -> Result<MembersPage, PageError> {
    let org_id = m.org.id;
    let members: Vec<Member> = app.meta.call(move |c| orgs::members(c, org_id)).await?;
    let can_manage = m.role.allows(Permission::ManageMembers);
    Ok(MembersPage {
        nav: nav(app, m, "members").await?,
        slug: m.org.slug.clone(),
        members: members
            .iter()
            .map(|x| MemberView {
                user_id: x.user_id,
                email: x.email.clone(),
                name: x.name.clone(),
                role: x.role.as_str(),
                role_title: x.role.title(),
                editable: can_manage && m.role.can_assign(x.role) && x.user_id != m.user.id,
                is_me: x.user_id == m.user.id,
            })
            .collect(),
        roles: Role::ALL.iter().map(|r| (r.as_str(), r.title())).collect(),
        assignable: Role::ALL
            .iter()
            .filter(|r| m.role.can_assign(**r))
            .map(|r| (r.as_str(), r.title()))
            .collect(),
        errors,
        values,
        notice,
    })
}

pub async fn members_list(State(app): State<App>, m: OrgMember) -> Result<Response, PageError> {
    m.require(Permission::ManageMembers)?;
    render(&members_page(&app, &m, HashMap::new(), HashMap::new(), String::new()).await?)
}

pub async fn members_add(
    State(app): State<App>,
    m: OrgMember,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormData(form);
    m.check_csrf(form.get("csrf"))?;
    m.require(Permission::ManageMembers)?;
    let values: HashMap<&'static str, String> = ["email", "name", "role"]
        .iter()
        .map(|f| (*f, form.get(f).to_string()))
        .collect();
    let mut errors = HashMap::new();
    let email = app::validate_email(form.get("email"))
        .map_err(|(_, e)| errors.insert("email", e))
        .ok();
    let role = match Role::parse(form.get("role")) {
        Some(r) if m.role.can_assign(r) => Some(r),
        Some(_) => {
            errors.insert("role", "you cannot give this role".into());
            None
        }
        None => {
            errors.insert("role", "choose a role".into());
            None
        }
    };
    let name = form.get("name").trim().to_string();
    let password = form.get("password").to_string();
    let (Some(email), Some(role), true) = (email, role, errors.is_empty()) else {
        let page = members_page(&app, &m, errors, values, String::new()).await?;
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
    };
    let lookup = email.clone();
    let existing = match app.meta.call(move |c| users::by_email(c, &lookup)).await {
        Ok(u) => Some(u),
        Err(StoreError::NotFound) => None,
        Err(e) => return Err(e.into()),
    };
    let hash = if existing.is_none() {
        if name.is_empty() || name.chars().count() > 100 {
            errors.insert(
                "name",
                "a new user needs a name (1 to 100 characters)".into(),
            );
        }
        if let Err(e) = security::validate_password(&password) {
            errors.insert(
                "password",
                format!("a new user needs an initial password that {e}"),
            );
        }
        if !errors.is_empty() {
            let page = members_page(&app, &m, errors, values, String::new()).await?;
            return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
        Some(
            tokio::task::spawn_blocking(move || security::hash_password(&password))
                .await
                .map_err(|_| PageError::Internal)?
                .map_err(|_| PageError::Internal)?,
        )
    } else {
        None
    };
    let (org_id, actor, ip, em) = (m.org.id, m.actor(), m.ip.clone(), email.clone());
    let result = app
        .meta
        .call(move |c| {
            let tx = c.transaction()?;
            let user = match (&existing, &hash) {
                (Some(u), _) => u.clone(),
                (None, Some(h)) => users::create(&tx, &em, &name, h, false)?,
                (None, None) => return Err(StoreError::internal("no password hash")),
            };
            orgs::add_member(&tx, org_id, user.id, role)?;
            audit::record(
                &tx,
                Some(org_id),
                &actor,
                "member.add",
                &format!("{} as {}", user.email, role.as_str()),
                &ip,
            )?;
            tx.commit()?;
            Ok(())
        })
        .await;
    match result {
        Ok(()) => render(
            &members_page(
                &app,
                &m,
                HashMap::new(),
                HashMap::new(),
                format!("{email} was added as {}.", role.title()),
            )
            .await?,
        ),
        Err(StoreError::Conflict(msg)) => {
            let page = members_page(
                &app,
                &m,
                HashMap::from([("email", msg)]),
                values,
                String::new(),
            )
            .await?;
            render_status(StatusCode::CONFLICT, &page)
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn members_set_role(
    State(app): State<App>,
    m: OrgMember,
    Path((_, user_id)): Path<(String, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormData(form);
    m.check_csrf(form.get("csrf"))?;
    m.require(Permission::ManageMembers)?;
    let role = Role::parse(form.get("role")).ok_or_else(|| {
        PageError::BadRequest("role: choose one of owner, admin, manager, analyst, viewer".into())
    })?;
    let (org_id, actor, ip, my_role, my_id) =
        (m.org.id, m.actor(), m.ip.clone(), m.role, m.user.id);
    if user_id == my_id {
        return Err(PageError::BadRequest(
            "You cannot change your own role.".into(),
        ));
    }
    app.meta
        .call(move |c| {
            let current = orgs::member_role(c, org_id, user_id)?;
            if !my_role.can_assign(current) || !my_role.can_assign(role) {
                return Err(StoreError::Conflict(
                    "your role cannot make this change".into(),
                ));
            }
            orgs::set_role(c, org_id, user_id, role)?;
            audit::record(
                c,
                Some(org_id),
                &actor,
                "member.role",
                &format!("user {user_id}: {} -> {}", current.as_str(), role.as_str()),
                &ip,
            )
        })
        .await?;
    Ok(Redirect::to(&format!("/o/{}/members", m.org.slug)).into_response())
}

pub async fn members_remove(
    State(app): State<App>,
    m: OrgMember,
    Path((_, user_id)): Path<(String, i64)>,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    m.check_csrf(FormData(form).get("csrf"))?;
    m.require(Permission::ManageMembers)?;
    let (org_id, actor, ip, my_role) = (m.org.id, m.actor(), m.ip.clone(), m.role);
    app.meta
        .call(move |c| {
            let current = orgs::member_role(c, org_id, user_id)?;
            if !my_role.can_assign(current) {
                return Err(StoreError::Conflict(
                    "your role cannot remove this member".into(),
                ));
            }
            orgs::remove_member(c, org_id, user_id)?;
            audit::record(
                c,
                Some(org_id),
                &actor,
                "member.remove",
                &format!("user {user_id}"),
                &ip,
            )
        })
        .await?;
    Ok(Redirect::to(&format!("/o/{}/members", m.org.slug)).into_response())
}

// ---------------------------------------------------------------------------------------------
// Audit log.

pub struct AuditView {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub detail: String,
    pub ip: String,
}

#[derive(Template)]
#[template(path = "audit.html")]
pub struct AuditPage {
    pub nav: Nav,
    pub entries: Vec<AuditView>,
}

pub async fn audit_log(State(app): State<App>, m: OrgMember) -> Result<Response, PageError> {
    m.require(Permission::ViewAudit)?;
    let org_id = m.org.id;
    let entries: Vec<AuditEntry> = app
        .meta
        .call(move |c| audit::recent(c, org_id, 500))
        .await?;
    render(&AuditPage {
        nav: nav(&app, &m, "audit").await?,
        entries: entries
            .into_iter()
            .map(|e| AuditView {
                at: date(Some(e.at)),
                actor: e.actor,
                action: e.action,
                detail: e.detail,
                ip: e.ip,
            })
            .collect(),
    })
}

/// Form re-rendering helpers used by templates as `self.v("field")` and `self.e("field")`.
macro_rules! form_helpers {
    ($($page:ty),*) => {$(
        impl $page {
            pub fn v(&self, field: &str) -> &str {
                self.values.get(field).map(String::as_str).unwrap_or("")
            }
            pub fn e(&self, field: &str) -> &str {
                self.errors.get(field).map(String::as_str).unwrap_or("")
            }
        }
    )*};
}

form_helpers!(SetupPage, NewOrgPage, MembersPage);

// ---------------------------------------------------------------------------------------------
// Health score panel.

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

async fn health_view(app: &App, m: &OrgMember) -> Result<HealthView, PageError> {
    let report = match crate::scoring::latest(app, m.org.id).await? {
        Some(r) => r,
        None => crate::scoring::recompute(app, &m.org).await?,
    };
    let org_id = m.org.id;
    let at = report.computed_at;
    let (day_ago, week_ago, history) = app
        .meta
        .call(move |c| {
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
        app.meta
            .call(move |c| custom_metrics::catalog(c, org_id))
            .await?
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

// ---------------------------------------------------------------------------------------------
// Scheduled jobs (server admins).

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

pub async fn jobs_page(State(app): State<App>, user: CurrentUser) -> Result<Response, PageError> {
    if !user.user.is_server_admin {
        return Err(PageError::Forbidden(
            "Only a server admin can see the scheduled jobs.".into(),
        ));
    }
    let now = chrono::Utc::now();
    let mut jobs = Vec::new();
    for job in crate::scheduler::builtin_jobs(&app) {
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
                .and_then(|s| crate::scheduler::next_run(s, last_started, now))
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_else(|| "–".into()),
        });
    }
    render(&JobsPage { jobs })
}

// ---------------------------------------------------------------------------------------------
// Scoring settings.

pub struct TargetRow {
    pub key: String,
    pub name: String,
    pub category: &'static str,
    pub basis: &'static str,
    pub healthy: String,
    pub critical: String,
    pub weight: String,
}

#[derive(Template)]
#[template(path = "settings.html")]
pub struct SettingsPage {
    pub nav: Nav,
    pub slug: String,
    pub kinds: Vec<(&'static str, &'static str)>,
    pub kind: &'static str,
    pub weights: Vec<(&'static str, &'static str, String)>,
    pub targets: Vec<TargetRow>,
    pub errors: HashMap<String, String>,
    pub notice: String,
    pub monthly_revenue_target: String,
    pub currency: String,
}

impl SettingsPage {
    pub fn err(&self, field: &str) -> &str {
        self.errors.get(field).map(String::as_str).unwrap_or("")
    }
}

fn fmt_num(v: f64) -> String {
    let s = format!("{v}");
    s.trim_end_matches(".0").to_string()
}

async fn settings_page(
    app: &App,
    m: &OrgMember,
    settings: &crate::domain::health::HealthSettings,
    errors: HashMap<String, String>,
    notice: String,
) -> Result<SettingsPage, PageError> {
    use crate::domain::health::{Basis, BusinessKind};
    let org_id = m.org.id;
    let defs = app
        .meta
        .call(move |c| custom_metrics::catalog(c, org_id))
        .await?;
    Ok(SettingsPage {
        nav: nav(app, m, "settings").await?,
        slug: m.org.slug.clone(),
        kinds: BusinessKind::ALL
            .iter()
            .map(|k| (k.as_str(), k.title()))
            .collect(),
        kind: settings.kind.as_str(),
        weights: Category::ALL
            .iter()
            .map(|c| {
                let w = settings
                    .weights
                    .iter()
                    .find(|(x, _)| x == c)
                    .map(|(_, w)| *w)
                    .unwrap_or(0.0);
                (c.as_str(), c.title(), fmt_num(w))
            })
            .collect(),
        targets: settings
            .targets()
            .into_iter()
            .map(|t| {
                let (basis, healthy, critical) = match t.basis {
                    Basis::Level { healthy, critical } => ("level", healthy, critical),
                    Basis::Trend { healthy, critical } => ("growth %", healthy, critical),
                };
                TargetRow {
                    name: defs
                        .iter()
                        .find(|d| d.key == t.key)
                        .map(|d| d.name.clone())
                        .unwrap_or_else(|| t.key.clone()),
                    key: t.key,
                    category: t.category.title(),
                    basis,
                    healthy: fmt_num(healthy),
                    critical: fmt_num(critical),
                    weight: fmt_num(t.weight),
                }
            })
            .collect(),
        errors,
        notice,
        monthly_revenue_target: settings
            .monthly_revenue_target
            .map(fmt_num)
            .unwrap_or_default(),
        currency: m.org.currency.clone(),
    })
}

pub async fn settings_form(State(app): State<App>, m: OrgMember) -> Result<Response, PageError> {
    m.require(Permission::ManageOrg)?;
    let org_id = m.org.id;
    let settings = app
        .meta
        .call(move |c| crate::store::meta::org_settings::health(c, org_id))
        .await?;
    render(&settings_page(&app, &m, &settings, HashMap::new(), String::new()).await?)
}

pub async fn settings_save(
    State(app): State<App>,
    m: OrgMember,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    use crate::domain::health::{BusinessKind, HealthSettings, TargetOverride};
    let form = FormData(form);
    m.check_csrf(form.get("csrf"))?;
    m.require(Permission::ManageOrg)?;
    let org_id = m.org.id;
    let current = app
        .meta
        .call(move |c| crate::store::meta::org_settings::health(c, org_id))
        .await?;
    let mut errors = HashMap::new();
    let kind = BusinessKind::parse(form.get("kind")).unwrap_or_else(|| {
        errors.insert(
            "kind".to_string(),
            "choose SaaS, e-commerce or services".to_string(),
        );
        current.kind
    });
    let mut number = |field: String| -> f64 {
        match form.get(&field).trim().parse::<f64>() {
            Ok(v) if v.is_finite() => v,
            _ => {
                errors.insert(field, "must be a number".into());
                0.0
            }
        }
    };
    let weights: Vec<(Category, f64)> = Category::ALL
        .iter()
        .map(|c| (*c, number(format!("weight.{}", c.as_str()))))
        .collect();
    // Switching the business kind starts from that kind's default targets.
    let overrides = if kind == current.kind {
        current
            .targets()
            .iter()
            .map(|t| TargetOverride {
                key: t.key.clone(),
                healthy: number(format!("{}.healthy", t.key)),
                critical: number(format!("{}.critical", t.key)),
                weight: number(format!("{}.weight", t.key)),
            })
            .collect()
    } else {
        Vec::new()
    };
    let monthly_revenue_target = match form.get("monthly_revenue_target").trim() {
        "" => None,
        raw => match raw.replace([',', ' '], "").parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 => Some(v),
            _ => {
                errors.insert(
                    "monthly_revenue_target".into(),
                    "must be a positive amount, or empty to compare with last month".into(),
                );
                None
            }
        },
    };
    let settings = HealthSettings {
        kind,
        weights,
        overrides,
        monthly_revenue_target,
    };
    if errors.is_empty()
        && let Err((field, message)) = settings.validate()
    {
        errors.insert(field, message);
    }
    if !errors.is_empty() {
        let page = settings_page(&app, &m, &settings, errors, String::new()).await?;
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    let (actor, ip, saved) = (m.actor(), m.ip.clone(), settings.clone());
    app.meta
        .call(move |c| {
            crate::store::meta::org_settings::set_health(c, org_id, &saved)?;
            audit::record(
                c,
                Some(org_id),
                &actor,
                "settings.health",
                saved.kind.as_str(),
                &ip,
            )
        })
        .await?;
    crate::insights::forget_outlooks(&app, org_id);
    let report = crate::scoring::recompute(&app, &m.org).await?;
    let notice = format!(
        "Saved. The score is now {}. Use “Recompute history” to apply the settings to past days.",
        report
            .overall
            .map(|o| format!("{o:.0}"))
            .unwrap_or_else(|| "not available (no data)".into())
    );
    render(&settings_page(&app, &m, &settings, HashMap::new(), notice).await?)
}

pub async fn settings_recompute_history(
    State(app): State<App>,
    m: OrgMember,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    m.check_csrf(FormData(form).get("csrf"))?;
    m.require(Permission::ManageOrg)?;
    let days = crate::scoring::backfill(&app, &m.org, 90).await?;
    crate::scoring::recompute(&app, &m.org).await?;
    let org_id = m.org.id;
    let settings = app
        .meta
        .call(move |c| crate::store::meta::org_settings::health(c, org_id))
        .await?;
    let notice =
        format!("Recomputed the daily scores of the last {days} days with the current settings.");
    render(&settings_page(&app, &m, &settings, HashMap::new(), notice).await?)
}

// ---------------------------------------------------------------------------------------------
// Metric catalog and custom metrics.

pub struct CatalogRow {
    pub key: String,
    pub name: String,
    pub category: &'static str,
    pub unit: &'static str,
    pub aggregation: &'static str,
    pub direction: &'static str,
    pub latest: String,
    pub custom: bool,
}

#[derive(Template)]
#[template(path = "catalog.html")]
pub struct CatalogPage {
    pub nav: Nav,
    pub slug: String,
    pub rows: Vec<CatalogRow>,
    pub can_write: bool,
    pub categories: Vec<(&'static str, &'static str)>,
    pub units: Vec<&'static str>,
    pub aggregations: Vec<&'static str>,
    pub values: HashMap<&'static str, String>,
    pub errors: HashMap<&'static str, String>,
    pub notice: String,
}

async fn catalog_page(
    app: &App,
    m: &OrgMember,
    values: HashMap<&'static str, String>,
    errors: HashMap<&'static str, String>,
    notice: String,
) -> Result<CatalogPage, PageError> {
    let (defs, latest) = query::catalog_with_latest(app, m.org.id).await?;
    Ok(CatalogPage {
        nav: nav(app, m, "catalog").await?,
        slug: m.org.slug.clone(),
        rows: defs
            .iter()
            .map(|d| CatalogRow {
                key: d.key.clone(),
                name: d.name.clone(),
                category: d.category.title(),
                unit: d.unit.as_str(),
                aggregation: d.aggregation.as_str(),
                direction: if d.higher_is_better {
                    "higher is better"
                } else {
                    "lower is better"
                },
                latest: latest
                    .get(&d.key)
                    .map(|l| catalog::format_value(d.unit, l.value, &m.org.currency))
                    .unwrap_or_else(|| "no data".into()),
                custom: d.custom,
            })
            .collect(),
        can_write: m.role.allows(Permission::WriteData),
        categories: Category::ALL
            .iter()
            .map(|c| (c.as_str(), c.title()))
            .collect(),
        units: catalog::Unit::ALL.iter().map(|u| u.as_str()).collect(),
        aggregations: catalog::Aggregation::ALL
            .iter()
            .map(|a| a.as_str())
            .collect(),
        values,
        errors,
        notice,
    })
}

pub async fn catalog_list(State(app): State<App>, m: OrgMember) -> Result<Response, PageError> {
    render(&catalog_page(&app, &m, HashMap::new(), HashMap::new(), String::new()).await?)
}

pub async fn catalog_create(
    State(app): State<App>,
    m: OrgMember,
    Form(form): Form<Vec<(String, String)>>,
) -> Result<Response, PageError> {
    let form = FormData(form);
    m.check_csrf(form.get("csrf"))?;
    m.require(Permission::WriteData)?;
    let fields = [
        "key",
        "name",
        "description",
        "category",
        "unit",
        "aggregation",
        "direction",
    ];
    let values: HashMap<&'static str, String> = fields
        .iter()
        .map(|f| (*f, form.get(f).to_string()))
        .collect();
    let def = catalog::custom_metric(&catalog::CustomMetricInput {
        key: form.get("key"),
        name: form.get("name"),
        description: form.get("description"),
        category: form.get("category"),
        unit: form.get("unit"),
        aggregation: form.get("aggregation"),
        higher_is_better: form.get("direction") != "lower",
    });
    let def = match def {
        Ok(d) => d,
        Err((field, message)) => {
            let page = catalog_page(
                &app,
                &m,
                values,
                HashMap::from([(field, message)]),
                String::new(),
            )
            .await?;
            return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    };
    let (org_id, actor, ip, stored) = (m.org.id, m.actor(), m.ip.clone(), def.clone());
    let created = app
        .meta
        .call(move |c| {
            custom_metrics::create(c, org_id, &stored)?;
            audit::record(c, Some(org_id), &actor, "metric.create", &stored.key, &ip)
        })
        .await;
    match created {
        Ok(()) => {
            let notice = format!(
                "Added `{}`. Push points for it to POST /api/v1/metrics.",
                def.key
            );
            render(&catalog_page(&app, &m, HashMap::new(), HashMap::new(), notice).await?)
        }
        Err(StoreError::Conflict(msg)) => {
            let page = catalog_page(
                &app,
                &m,
                values,
                HashMap::from([("key", msg)]),
                String::new(),
            )
            .await?;
            render_status(StatusCode::CONFLICT, &page)
        }
        Err(e) => Err(e.into()),
    }
}

impl CatalogPage {
    pub fn v(&self, field: &str) -> &str {
        self.values.get(field).map(String::as_str).unwrap_or("")
    }
    pub fn e(&self, field: &str) -> &str {
        self.errors.get(field).map(String::as_str).unwrap_or("")
    }
}
