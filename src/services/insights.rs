//! Insights: anomaly detection over every metric's daily series, forecasts, and the business
//! forecasts founders ask for (cash runway, MRR in 3 and 12 months, "will this month beat the
//! last?"). Reads the stores; the maths is in [`crate::domain::anomaly`] and
//! [`crate::domain::forecast`].
//!
//! Detection runs on complete local days (today is still filling up and would always look like
//! a dip), over the last two years, after ingest (debounced) and on schedule. Because the
//! detector is causal, re-running it gives the same anomalies for the same days; the stored rows
//! for the analysed days are replaced, never added to.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{Datelike, NaiveDate};
use serde::Serialize;

use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::app::{App, Signal};
use crate::domain::anomaly::{self, Detector, PointScore};
use crate::domain::catalog::{self, MetricDef};
use crate::domain::forecast::{self, Forecast};
use crate::domain::timebucket::{self, Bucket};
use crate::services::query;
use crate::services::signals::Debouncer;
use crate::store::meta::anomalies::{self, AnomalyRow};
use crate::store::meta::orgs::{self, Org};
use crate::store::meta::{custom_metrics, health_scores, org_settings};
use crate::store::metrics::{self, AggregateQuery, Bucketing};
use crate::store::{StoreError, now_secs};

/// A point is an anomaly from this score on: the threshold that maximised NAB's standard score
/// for the detector on the benchmark corpus (`vitals anomaly nab`), rounded down.
pub const ANOMALY_THRESHOLD: f64 = 0.27;
/// Days of history analysed.
pub const HISTORY_DAYS: i64 = 730;

/// One complete local day of a metric.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Day {
    pub date: NaiveDate,
    /// The day's start, UTC seconds.
    pub at: i64,
    pub value: f64,
}

/// Every metric's daily values over `[today - days, today)` in the org's time zone, by the
/// metric's aggregation; days without points are absent. One SQL statement for all metrics.
pub async fn daily_history(
    app: &App,
    org: &Org,
    defs: &[MetricDef],
    days: i64,
    now_micros: i64,
) -> Result<HashMap<String, Vec<Day>>, StoreError> {
    let tz = query::org_tz(org);
    let today = timebucket::start_of_local_day(tz, now_micros);
    let local_today = timebucket::local_naive(tz, today);
    let from = timebucket::local_to_utc_micros(tz, local_today - chrono::Duration::days(days));
    let q = AggregateQuery {
        org_id: org.id,
        metric: None,
        from_micros: from,
        to_micros: today,
        bucketing: Bucketing::Calendar {
            bucket: Bucket::Day,
            segments: timebucket::offset_segments(tz, from, today),
        },
        filters: Vec::new(),
        group_by: None,
    };
    let rows = app.metrics.read(move |c| metrics::aggregate(c, &q)).await?;
    let by_key: HashMap<&str, &MetricDef> = defs.iter().map(|d| (d.key.as_str(), d)).collect();
    let mut out: HashMap<String, Vec<Day>> = HashMap::new();
    for row in rows {
        let Some(def) = by_key.get(row.metric.as_str()) else {
            continue;
        };
        let Some(local) = chrono::DateTime::from_timestamp_micros(row.bucket) else {
            continue;
        };
        let local = local.naive_utc();
        out.entry(row.metric.clone()).or_default().push(Day {
            date: local.date(),
            at: timebucket::local_to_utc_micros(tz, local) / 1_000_000,
            value: row.value(def.aggregation),
        });
    }
    for days in out.values_mut() {
        days.sort_by_key(|d| d.at);
    }
    Ok(out)
}

/// The detector's verdict on every day of a series.
pub fn score_days(days: &[Day]) -> (Vec<PointScore>, usize) {
    let mut detector = Detector::new(86_400);
    let scores = days.iter().map(|d| detector.step(d.value)).collect();
    (scores, detector.period())
}

/// Whether day `i` repeats a monthly pattern (payroll on the 1st, invoicing at month end): in each
/// of the two months before, a day within one day of the same date deviated from its expected
/// value in the same direction by at least half as much. The detector knows daily and weekly
/// seasons from the data; calendar months vary in length, so this check works on dates.
pub fn recurs_monthly(days: &[Day], scores: &[PointScore], i: usize) -> bool {
    let deviation = |j: usize| {
        scores
            .get(j)
            .and_then(|s| s.expected)
            .map(|e| days[j].value - e)
    };
    let Some(here) = deviation(i) else {
        return false;
    };
    if here == 0.0 {
        return false;
    }
    (1..=2).all(|k| {
        let Some(then) = days[i].date.checked_sub_months(chrono::Months::new(k)) else {
            return false;
        };
        days.iter().enumerate().any(|(j, d)| {
            (d.date - then).num_days().abs() <= 1
                && deviation(j).is_some_and(|dev| dev * here > 0.0 && dev.abs() >= 0.5 * here.abs())
        })
    })
}

/// The anomalies of one daily series: points scoring at least [`ANOMALY_THRESHOLD`] that are
/// not a monthly recurrence.
pub fn anomaly_rows(metric: &str, days: &[Day], detected_at: i64) -> Vec<AnomalyRow> {
    let (scores, _) = score_days(days);
    days.iter()
        .zip(&scores)
        .enumerate()
        .filter(|(i, (_, s))| s.score >= ANOMALY_THRESHOLD && !recurs_monthly(days, &scores, *i))
        .filter_map(|(_, (d, s))| {
            Some(AnomalyRow {
                metric: metric.to_string(),
                at: d.at,
                day: d.date.to_string(),
                value: d.value,
                expected: s.expected?,
                band: s.band?,
                score: s.score,
                detected_at,
            })
        })
        .collect()
}

/// Runs detection for one org and stores what it finds (the cached outlooks are not touched:
/// [`Insights::detect`] refreshes them too). Returns the number of anomalies.
pub async fn detect_org(app: &App, org: &Org) -> Result<usize, StoreError> {
    let org_id = org.id;
    let defs = app.meta.catalog(org_id).await?.to_vec();
    let now = chrono::Utc::now().timestamp_micros();
    let history = daily_history(app, org, &defs, HISTORY_DAYS, now).await?;
    let detected_at = now_secs();
    // The detector is CPU work (about 1.5 ms per two-year series): off the async runtime.
    let (per_metric, total) = tokio::task::spawn_blocking(move || {
        let mut per_metric = Vec::new();
        let mut total = 0;
        for (metric, days) in history {
            let Some(first) = days.first() else { continue };
            let rows = anomaly_rows(&metric, &days, detected_at);
            total += rows.len();
            per_metric.push((metric, first.at, rows));
        }
        (per_metric, total)
    })
    .await
    .map_err(StoreError::internal)?;
    app.meta
        .call(move |c| {
            for (metric, from, rows) in &per_metric {
                anomalies::replace_for_metric(c, org_id, metric, *from, rows)?;
            }
            Ok(())
        })
        .await?;
    Ok(total)
}

/// An anomaly ready to show: the stored row with its metric and sentence.
#[derive(Debug, Clone, Serialize)]
pub struct AnomalyView {
    pub metric: String,
    pub metric_name: String,
    pub category: &'static str,
    pub day: String,
    pub at: i64,
    pub value: f64,
    pub expected: f64,
    pub band: f64,
    pub score: f64,
    /// Whether the deviation is in the direction that hurts (revenue down, churn up).
    pub harmful: bool,
    /// Score × harm × the metric's share of the health score: what the ranking uses.
    pub impact: f64,
    pub text: String,
}

fn view(row: AnomalyRow, def: Option<&MetricDef>, org: &Org, weight: f64) -> AnomalyView {
    let (name, unit, higher_is_better, category) = match def {
        Some(d) => (
            d.name.clone(),
            d.unit,
            d.higher_is_better,
            d.category.as_str(),
        ),
        None => (row.metric.clone(), catalog::Unit::Count, true, ""),
    };
    let when = NaiveDate::parse_from_str(&row.day, "%Y-%m-%d")
        .map(|d| d.format("%a %-d %b %Y").to_string())
        .unwrap_or_else(|_| row.day.clone());
    let text = anomaly::describe(&name, &when, row.value, row.expected, row.band, |v| {
        catalog::format_value(unit, v, &org.currency)
    });
    let harmful = (row.value < row.expected) == higher_is_better;
    let impact = row.score * if harmful { 1.0 } else { 0.4 } * (1.0 + weight);
    AnomalyView {
        metric: row.metric,
        metric_name: name,
        category,
        day: row.day,
        at: row.at,
        value: row.value,
        expected: row.expected,
        band: row.band,
        score: row.score,
        harmful,
        impact,
        text,
    }
}

/// Each metric's share of the overall health score (0 for metrics it does not use).
async fn score_weights(app: &App, org_id: i64) -> Result<HashMap<String, f64>, StoreError> {
    let settings = app
        .meta
        .read(move |c| org_settings::health(c, org_id))
        .await?;
    let targets = settings.targets();
    let mut out = HashMap::new();
    for t in &targets {
        let category_weight = settings
            .weights
            .iter()
            .find(|(c, _)| *c == t.category)
            .map(|(_, w)| *w / 100.0)
            .unwrap_or(0.0);
        let in_category: f64 = targets
            .iter()
            .filter(|o| o.category == t.category)
            .map(|o| o.weight)
            .sum();
        if in_category > 0.0 {
            out.insert(t.key.clone(), category_weight * t.weight / in_category);
        }
    }
    Ok(out)
}

/// Stored anomalies since `since_days` ago, newest first; one metric or all.
pub async fn list_anomalies(
    app: &App,
    org: &Org,
    metric: Option<String>,
    since_days: i64,
    limit: i64,
) -> Result<Vec<AnomalyView>, StoreError> {
    let org_id = org.id;
    let since = now_secs() - since_days * 86_400;
    let (defs, rows) = app
        .meta
        .read(move |c| {
            Ok((
                custom_metrics::catalog(c, org_id)?,
                anomalies::list(c, org_id, metric.as_deref(), since, limit)?,
            ))
        })
        .await?;
    let weights = score_weights(app, org_id).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            let def = defs.iter().find(|d| d.key == r.metric);
            let w = weights.get(&r.metric).copied().unwrap_or(0.0);
            view(r, def, org, w)
        })
        .collect())
}

/// A metric's forecast as the API and pages show it.
#[derive(Debug, Clone, Serialize)]
pub struct ForecastView {
    pub metric: String,
    pub method: &'static str,
    /// Seasonal period in days (0: none).
    pub period: usize,
    pub horizon: usize,
    /// Backtest (rolling origin) MASE of the model and of the seasonal-naive forecast.
    pub mase: Option<f64>,
    pub naive_mase: Option<f64>,
    /// Only a forecast that beat seasonal naive in the backtest is shown.
    pub shown: bool,
    pub reason: String,
    pub last_day: Option<String>,
    pub steps: Vec<ForecastStep>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ForecastStep {
    pub day: String,
    pub at: i64,
    pub mean: f64,
    pub low: f64,
    pub high: f64,
}

/// Fills the gaps of a daily series so a model sees one value per day: a missing day repeats
/// the day before (a quiet day is not a zero day unless someone sent a zero).
pub fn contiguous(days: &[Day]) -> Vec<f64> {
    let mut out = Vec::new();
    for pair in days.windows(2) {
        out.push(pair[0].value);
        let gap = (pair[1].date - pair[0].date).num_days();
        for _ in 1..gap {
            out.push(pair[0].value);
        }
    }
    if let Some(last) = days.last() {
        out.push(last.value);
    }
    out
}

fn forecast_days(days: &[Day], horizon: usize) -> Option<(Forecast, NaiveDate)> {
    let last = days.last()?;
    let values = contiguous(days);
    let (_, period) = score_days(days);
    Some((forecast::forecast(&values, period, horizon), last.date))
}

/// The forecast of one metric `horizon` days past the last complete day.
pub async fn forecast_metric(
    app: &App,
    org: &Org,
    def: &MetricDef,
    horizon: usize,
) -> Result<ForecastView, StoreError> {
    let now = chrono::Utc::now().timestamp_micros();
    let history = daily_history(app, org, std::slice::from_ref(def), HISTORY_DAYS, now).await?;
    let days = history.get(&def.key).cloned().unwrap_or_default();
    let tz = query::org_tz(org);
    let computed = tokio::task::spawn_blocking(move || forecast_days(&days, horizon))
        .await
        .map_err(StoreError::internal)?;
    let Some((f, last)) = computed else {
        return Ok(ForecastView {
            metric: def.key.clone(),
            method: forecast::Method::Naive.as_str(),
            period: 0,
            horizon,
            mase: None,
            naive_mase: None,
            shown: false,
            reason: "no data yet".into(),
            last_day: None,
            steps: Vec::new(),
        });
    };
    let shown = f.beats_naive();
    let reason = match (f.mase, f.naive_mase) {
        (Some(m), Some(n)) if m < n => {
            format!("backtest error {m:.2} (MASE) beats the seasonal-naive forecast's {n:.2}")
        }
        (Some(m), Some(n)) => format!(
            "not shown: backtest error {m:.2} (MASE) is no better than the seasonal-naive forecast's {n:.2}"
        ),
        _ => "not shown: too little history to backtest (at least 3 weeks of daily values)".into(),
    };
    let steps = f
        .steps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let date = last + chrono::Duration::days(i as i64 + 1);
            let at = date
                .and_hms_opt(0, 0, 0)
                .map(|t| timebucket::local_to_utc_micros(tz, t) / 1_000_000)
                .unwrap_or_default();
            ForecastStep {
                day: date.to_string(),
                at,
                mean: s.mean,
                low: s.low,
                high: s.high,
            }
        })
        .collect();
    Ok(ForecastView {
        metric: def.key.clone(),
        method: f.method.as_str(),
        period: f.period,
        horizon,
        mase: f.mase,
        naive_mase: f.naive_mase,
        shown,
        reason,
        last_day: Some(last.to_string()),
        steps,
    })
}

/// A business forecast card.
#[derive(Debug, Clone, Serialize)]
pub struct OutlookCard {
    pub kind: &'static str,
    pub title: String,
    pub text: String,
    /// Lower is worse: used to rank the cards.
    pub urgency: f64,
}

/// How long computed outlooks are served from the cache at most (new data refreshes them sooner).
const OUTLOOK_TTL_SECS: i64 = 3600;

/// An org's cached outlooks. `generation` grows when they are forgotten, so a computation that
/// started before a settings change cannot store its stale result after it.
#[derive(Debug, Clone, Default)]
pub struct OutlookSlot {
    pub generation: u64,
    pub cards: Option<(i64, Vec<OutlookCard>)>,
}

async fn compute_outlooks(app: &App, org: &Org) -> Result<Vec<OutlookCard>, StoreError> {
    let org_id = org.id;
    let defs = app.meta.catalog(org_id).await?.to_vec();
    let now = chrono::Utc::now().timestamp_micros();
    let history = daily_history(app, org, &defs, HISTORY_DAYS, now).await?;
    let monthly_target = app
        .meta
        .read(move |c| org_settings::health(c, org_id))
        .await?
        .monthly_revenue_target;
    // Model fitting is CPU work (milliseconds per series): off the async runtime.
    let org = org.clone();
    tokio::task::spawn_blocking(move || outlook_cards(&history, &org, monthly_target, now))
        .await
        .map_err(StoreError::internal)
}

/// The outlook cards from the daily history (no I/O).
fn outlook_cards(
    history: &HashMap<String, Vec<Day>>,
    org: &Org,
    monthly_target: Option<f64>,
    now: i64,
) -> Vec<OutlookCard> {
    let money = |v: f64| catalog::format_value(catalog::Unit::Currency, v, &org.currency);
    let mut cards = Vec::new();

    // Runway: the latest cash over the monthly burn (each of the last six months' last value).
    if let (Some(cash), Some(burn)) = (history.get("cash_balance"), history.get("burn_rate"))
        && let Some(latest_cash) = cash.last()
    {
        let mut month_ends: Vec<(i32, u32, f64)> = Vec::new();
        for d in burn {
            let key = (d.date.year(), d.date.month());
            match month_ends.last_mut() {
                Some(last) if (last.0, last.1) == key => last.2 = d.value,
                _ => month_ends.push((key.0, key.1, d.value)),
            }
        }
        let burns: Vec<f64> = month_ends.iter().rev().take(6).map(|m| m.2).collect();
        match forecast::runway(latest_cash.value, &burns) {
            Some(r) => cards.push(OutlookCard {
                kind: "runway",
                title: "Cash runway".into(),
                text: format!(
                    "{:.1} months at the average burn of the last {} months ({} cash); {:.1}–{} months as burn varies",
                    r.months,
                    burns.len(),
                    money(latest_cash.value),
                    r.low,
                    if r.high.is_finite() {
                        format!("{:.1}", r.high)
                    } else {
                        "∞".into()
                    }
                ),
                urgency: r.months,
            }),
            None => cards.push(OutlookCard {
                kind: "runway",
                title: "Cash runway".into(),
                text: "Not burning cash: the last months' net burn is not positive.".into(),
                urgency: 1_000.0,
            }),
        }
    }

    // MRR in 3 and 12 months.
    if let Some(mrr) = history.get("mrr")
        && let Some((f, _)) = forecast_days(mrr, 365)
    {
        if f.beats_naive() {
            let at = |days: usize| f.steps.get(days - 1).copied();
            if let (Some(q), Some(y), Some(now_v)) = (at(91), at(365), mrr.last()) {
                let change = if now_v.value.abs() > 1e-9 {
                    (y.mean / now_v.value - 1.0) * 100.0
                } else {
                    0.0
                };
                cards.push(OutlookCard {
                    kind: "mrr",
                    title: "MRR outlook".into(),
                    text: format!(
                        "{} in 3 months ({}–{}), {} in 12 months ({}–{}), from {} today",
                        money(q.mean),
                        money(q.low),
                        money(q.high),
                        money(y.mean),
                        money(y.low),
                        money(y.high),
                        money(now_v.value)
                    ),
                    urgency: 50.0 + change,
                });
            }
        } else {
            cards.push(OutlookCard {
                kind: "mrr",
                title: "MRR outlook".into(),
                text: "No forecast: in backtests it did not beat repeating the recent past.".into(),
                urgency: 500.0,
            });
        }
    }

    // Revenue this month against the monthly target (or last month's revenue without one).
    if let Some(revenue) = history.get("revenue") {
        let tz = query::org_tz(org);
        let today = timebucket::local_naive(tz, now).date();
        let month_start = today.with_day(1).unwrap_or(today);
        let last_month_start = (month_start - chrono::Duration::days(1))
            .with_day(1)
            .unwrap_or(month_start);
        let so_far: f64 = revenue
            .iter()
            .filter(|d| d.date >= month_start)
            .map(|d| d.value)
            .sum();
        let last_month: f64 = revenue
            .iter()
            .filter(|d| d.date >= last_month_start && d.date < month_start)
            .map(|d| d.value)
            .sum();
        let (target, against) = match monthly_target {
            Some(t) => (t, "the monthly target of"),
            None => (last_month, "last month's"),
        };
        let next_month = (month_start + chrono::Duration::days(32))
            .with_day(1)
            .unwrap_or(month_start);
        let remaining = (next_month - today).num_days().max(0) as usize;
        if target > 0.0
            && let Some((f, _)) = forecast_days(revenue, remaining.max(1))
            && f.beats_naive()
        {
            let steps = &f.steps[..remaining.min(f.steps.len())];
            let o = forecast::month_outlook(so_far, steps, target);
            cards.push(OutlookCard {
                kind: "month",
                title: format!("Revenue in {}", month_start.format("%B")),
                text: format!(
                    "{} projected ({}–{}) against {against} {}: {}",
                    money(o.projected),
                    money(o.low),
                    money(o.high),
                    money(target),
                    if o.on_track {
                        "on track"
                    } else if o.high >= target {
                        "within reach, but behind"
                    } else {
                        "behind"
                    }
                ),
                urgency: 100.0 * (o.projected / target - 1.0),
            });
        }
    }
    cards.sort_by(|a, b| a.urgency.total_cmp(&b.urgency));
    cards
}

/// The overview's insight cards: the few most important recent anomalies (ranked by impact on
/// the health score) and the business forecasts.
#[derive(Debug, Clone, Serialize)]
pub struct Highlights {
    pub anomalies: Vec<AnomalyView>,
    pub outlooks: Vec<OutlookCard>,
}

/// The insights service: detection after new data (debounced per org) and on schedule, and
/// each org's outlooks, cached because fitting the models takes tens of milliseconds.
#[derive(Clone)]
pub struct Insights {
    app: App,
    /// Each org's forecast cards and when they were computed (seconds); detection after
    /// ingest refreshes them.
    outlooks: Arc<Mutex<HashMap<i64, OutlookSlot>>>,
}

impl Insights {
    pub fn new(app: App) -> Insights {
        Insights {
            app,
            outlooks: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Detection for one org, then its outlooks (the data changed: the forecasts too); anomaly
    /// alert rules hear of it. Returns the number of anomalies.
    pub async fn detect(&self, org: &Org) -> Result<usize, StoreError> {
        let found = detect_org(&self.app, org).await?;
        self.app
            .announce(Signal::AnomaliesDetected { org_id: org.id });
        self.refresh_outlooks(org).await?;
        Ok(found)
    }

    /// The scheduled job: detection for every org.
    pub async fn detect_all(&self) -> Result<usize, StoreError> {
        let ids = self.app.meta.call(|c| health_scores::org_ids(c)).await?;
        let mut found = 0;
        for id in ids {
            let org = self.app.meta.call(move |c| orgs::by_id(c, id)).await?;
            found += self.detect(&org).await?;
        }
        Ok(found)
    }

    /// Detects an org's anomalies two seconds after points are stored for it (a burst of
    /// batches is analysed once), until shutdown.
    pub fn listen(&self, signals: broadcast::Receiver<Signal>) {
        let detector = self.clone();
        let work = move |org: Org| {
            let this = detector.clone();
            async move {
                if let Err(e) = this.detect(&org).await {
                    tracing::error!(org_id = org.id, error = %e, "anomaly detection after ingest failed");
                }
            }
        };
        Debouncer::default().after_points_stored(&self.app, signals, Duration::from_secs(2), work);
    }

    /// Cash runway, MRR in 3 and 12 months, and this month's revenue against its target: from
    /// the cache when fresh, else computed and cached.
    pub async fn outlooks(&self, org: &Org) -> Result<Vec<OutlookCard>, StoreError> {
        let now = now_secs();
        if let Ok(cache) = self.outlooks.lock()
            && let Some(OutlookSlot {
                cards: Some((at, cards)),
                ..
            }) = cache.get(&org.id)
            && now - at < OUTLOOK_TTL_SECS
        {
            return Ok(cards.clone());
        }
        self.refresh_outlooks(org).await
    }

    /// Forgets an org's cached outlooks (after its settings change).
    pub fn forget_outlooks(&self, org_id: i64) {
        if let Ok(mut cache) = self.outlooks.lock() {
            let slot = cache.entry(org_id).or_default();
            slot.generation += 1;
            slot.cards = None;
        }
    }

    /// Computes the outlooks and caches them.
    pub async fn refresh_outlooks(&self, org: &Org) -> Result<Vec<OutlookCard>, StoreError> {
        let started = now_secs();
        let generation = self
            .outlooks
            .lock()
            .map(|c| c.get(&org.id).map(|s| s.generation).unwrap_or(0))
            .unwrap_or(0);
        let cards = compute_outlooks(&self.app, org).await?;
        if let Ok(mut cache) = self.outlooks.lock() {
            let slot = cache.entry(org.id).or_default();
            if slot.generation == generation {
                slot.cards = Some((started, cards.clone()));
            }
        }
        Ok(cards)
    }

    /// The most important anomalies of the last `days` (at most `top`) and the outlooks.
    pub async fn highlights(
        &self,
        org: &Org,
        days: i64,
        top: usize,
    ) -> Result<Highlights, StoreError> {
        let mut anomalies = list_anomalies(&self.app, org, None, days, 500).await?;
        anomalies.sort_by(|a, b| b.impact.total_cmp(&a.impact));
        anomalies.truncate(top);
        Ok(Highlights {
            anomalies,
            outlooks: self.outlooks(org).await?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(d: &str, v: f64) -> Day {
        Day {
            date: NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap_or_default(),
            at: 0,
            value: v,
        }
    }

    #[test]
    fn a_payment_on_the_first_of_every_month_is_a_pattern_not_an_anomaly() {
        // 300 days from 1 Jan 2025: 1,000 a day, 30,000 on the 1st of each month.
        let start = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap_or_default();
        let days: Vec<Day> = (0..300)
            .map(|i| {
                let date = start + chrono::Duration::days(i);
                let noise = ((i as f64 * 12.9898).sin() * 43_758.545_3).fract() * 40.0;
                Day {
                    date,
                    at: i * 86_400,
                    value: if date.day() == 1 {
                        30_000.0
                    } else {
                        1_000.0 + noise
                    },
                }
            })
            .collect();
        let (scores, _) = score_days(&days);
        let first_of = |m: u32| {
            days.iter()
                .position(|d| d.date == NaiveDate::from_ymd_opt(2025, m, 1).unwrap_or_default())
                .unwrap_or(0)
        };
        // The detector expects values from day 100 (11 April) on; from July the 1st has
        // deviated the same way in the two months before.
        for m in 7..=10 {
            assert!(recurs_monthly(&days, &scores, first_of(m)), "month {m}");
        }
        // A one-off on the 15th is not a pattern.
        let mid = first_of(8) + 14;
        let mut with_one_off = days.clone();
        with_one_off[mid].value = 60_000.0;
        let (scores, _) = score_days(&with_one_off);
        assert!(scores[mid].score >= ANOMALY_THRESHOLD, "{:?}", scores[mid]);
        assert!(!recurs_monthly(&with_one_off, &scores, mid));
    }

    #[test]
    fn gaps_repeat_the_day_before() {
        let days = [
            day("2024-03-01", 1.0),
            day("2024-03-04", 4.0),
            day("2024-03-05", 5.0),
        ];
        assert_eq!(contiguous(&days), vec![1.0, 1.0, 1.0, 4.0, 5.0]);
        assert!(contiguous(&[]).is_empty());
    }
}
