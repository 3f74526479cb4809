//! The pull framework: each provider declares how it authenticates and the metrics it produces;
//! a sync pulls from the provider, derives daily values and stores them. Syncs run hourly (the
//! `integration_sync` job), on "Sync now", and never two at a time for one integration.
//! Re-syncing rewrites the same points (metric, day, `source` dimension), so it never adds up.

pub mod hubspot;
pub mod stripe;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::app::{App, Signal};
use crate::domain::catalog::{self, CustomMetricInput};
use crate::domain::ingest::{Dimensions, Point};
use crate::domain::schedule::{next_run, parse_schedule};
use crate::domain::timebucket;
use crate::services::query;
use crate::store::meta::integrations::{self, Integration};
use crate::store::meta::{custom_metrics, orgs};
use crate::store::{StoreError, now_secs};

/// How a provider authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// A (restricted, read-only) API key pasted by the user.
    ApiKey,
    /// OAuth 2.0 authorisation code with PKCE; tokens refreshed before they expire.
    OAuth,
}

/// A provider: its key, name, auth and the metrics it produces that are not built in
/// (registered as custom metrics of the org when connected).
pub struct Provider {
    pub key: &'static str,
    pub name: &'static str,
    pub auth: AuthKind,
    /// (key, name, category, unit, aggregation, higher is better, description).
    pub extra_metrics: &'static [(
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        bool,
        &'static str,
    )],
}

pub const STRIPE: Provider = Provider {
    key: "stripe",
    name: "Stripe",
    auth: AuthKind::ApiKey,
    extra_metrics: &[
        (
            "arr",
            "ARR",
            "financial",
            "currency",
            "last",
            true,
            "Annual recurring revenue: 12 × MRR",
        ),
        (
            "arpa",
            "ARPA",
            "customer",
            "currency",
            "last",
            true,
            "Average revenue per account: MRR ÷ customers",
        ),
        (
            "mrr_new",
            "New MRR",
            "growth",
            "currency",
            "sum",
            true,
            "MRR of new customers",
        ),
        (
            "mrr_expansion",
            "Expansion MRR",
            "growth",
            "currency",
            "sum",
            true,
            "MRR added by existing customers",
        ),
        (
            "mrr_contraction",
            "Contraction MRR",
            "customer",
            "currency",
            "sum",
            false,
            "MRR lost to downgrades",
        ),
        (
            "mrr_churned",
            "Churned MRR",
            "customer",
            "currency",
            "sum",
            false,
            "MRR of customers who left",
        ),
        (
            "mrr_reactivation",
            "Reactivation MRR",
            "growth",
            "currency",
            "sum",
            true,
            "MRR of customers who came back",
        ),
        (
            "gross_mrr_churn_rate",
            "Gross MRR churn",
            "customer",
            "percent",
            "avg",
            false,
            "(churned + contraction MRR) ÷ MRR 30 days before",
        ),
        (
            "net_mrr_churn_rate",
            "Net MRR churn",
            "customer",
            "percent",
            "avg",
            false,
            "(churned + contraction − expansion − reactivation) ÷ MRR 30 days before",
        ),
        (
            "net_revenue_retention",
            "Net revenue retention",
            "customer",
            "percent",
            "avg",
            true,
            "MRR kept and grown from customers of 30 days before",
        ),
        (
            "quick_ratio",
            "Quick ratio",
            "growth",
            "ratio",
            "avg",
            true,
            "(new + expansion MRR) ÷ (contraction + churned MRR), 30 days",
        ),
        (
            "refunds",
            "Refunds",
            "financial",
            "currency",
            "sum",
            false,
            "Money refunded",
        ),
        (
            "failed_payment_rate",
            "Failed payment rate",
            "risk",
            "percent",
            "avg",
            false,
            "Failed charges ÷ all charges",
        ),
        (
            "accounts",
            "Accounts",
            "customer",
            "count",
            "last",
            true,
            "Billing accounts in Stripe, paying or not",
        ),
    ],
};

pub const HUBSPOT: Provider = Provider {
    key: "hubspot",
    name: "HubSpot",
    auth: AuthKind::OAuth,
    extra_metrics: &[],
};

pub fn provider(key: &str) -> Option<&'static Provider> {
    [&STRIPE, &HUBSPOT].into_iter().find(|p| p.key == key)
}

/// Registers the provider's metrics that the org does not have yet.
pub async fn register_metrics(
    app: &App,
    org_id: i64,
    p: &'static Provider,
) -> Result<(), StoreError> {
    let registered = app
        .meta
        .call(move |c| {
            let have: HashSet<String> = custom_metrics::catalog(c, org_id)?
                .into_iter()
                .map(|d| d.key)
                .collect();
            for (key, name, category, unit, aggregation, higher, description) in p.extra_metrics {
                if have.contains(*key) {
                    continue;
                }
                let def = catalog::custom_metric(&CustomMetricInput {
                    key,
                    name,
                    description,
                    category,
                    unit,
                    aggregation,
                    higher_is_better: *higher,
                })
                .map_err(|(f, m)| StoreError::internal(format!("metric {key}: {f} {m}")))?;
                custom_metrics::create(c, org_id, &def)?;
            }
            Ok(())
        })
        .await;
    // Each create commits on its own: some may have landed even when a later one failed.
    app.meta.catalog_changed(org_id);
    registered
}

/// What is sealed for an integration: the API key and, for webhooks, their signing secret.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Credentials {
    pub api_key: String,
    #[serde(default)]
    pub webhook_secret: String,
}

impl Credentials {
    pub fn open(app: &App, integration: &Integration) -> Result<Credentials, String> {
        let text = app
            .secrets
            .open_sealed(&integration.credentials)
            .map_err(|e| e.to_string())?;
        serde_json::from_str(&text)
            .map_err(|_| "the stored credentials are unreadable; reconnect".into())
    }

    pub fn seal(&self, app: &App) -> String {
        app.secrets
            .seal(&serde_json::to_string(self).unwrap_or_default())
    }
}

/// What a sync did.
#[derive(Debug, Clone)]
pub struct SyncOutcome {
    pub points: usize,
    pub message: String,
}

/// What each running sync is doing, for the Integrations page and API.
#[derive(Clone, Default)]
pub struct Progress {
    by_integration: Arc<Mutex<HashMap<i64, String>>>,
}

impl Progress {
    fn set(&self, id: i64, text: String) {
        if let Ok(mut p) = self.by_integration.lock() {
            p.insert(id, text);
        }
    }

    fn clear(&self, id: i64) {
        if let Ok(mut p) = self.by_integration.lock() {
            p.remove(&id);
        }
    }

    fn of(&self, id: i64) -> String {
        self.by_integration
            .lock()
            .ok()
            .and_then(|p| p.get(&id).cloned())
            .unwrap_or_default()
    }
}

/// The integrations service: one sync per integration at a time (on "Sync now", on schedule,
/// after a restart cut one short), with its progress.
#[derive(Clone)]
pub struct Integrations {
    app: App,
    /// Integrations being synced now.
    syncing: Arc<Mutex<HashSet<i64>>>,
    progress: Progress,
}

impl Integrations {
    pub fn new(app: App) -> Integrations {
        Integrations {
            app,
            syncing: Arc::new(Mutex::new(HashSet::new())),
            progress: Progress::default(),
        }
    }

    /// What a running sync is doing (empty when none runs).
    pub fn progress_of(&self, id: i64) -> String {
        self.progress.of(id)
    }

    /// Whether a sync of the integration runs now.
    pub fn is_syncing(&self, id: i64) -> bool {
        self.syncing
            .lock()
            .map(|s| s.contains(&id))
            .unwrap_or(false)
    }

    /// Claims the integration for a sync; false when one runs already.
    fn claim(&self, id: i64) -> bool {
        self.syncing
            .lock()
            .map(|mut s| s.insert(id))
            .unwrap_or(false)
    }

    fn release(&self, id: i64) {
        if let Ok(mut s) = self.syncing.lock() {
            s.remove(&id);
        }
    }

    /// Starts a sync in the background unless one is running; returns whether it started.
    pub fn sync_soon(&self, integration: Integration) -> bool {
        if !self.claim(integration.id) {
            return false;
        }
        let this = self.clone();
        tokio::spawn(async move {
            let id = integration.id;
            // A stop cuts the sync short like a crash would: the run stays "running" and the next
            // start resumes it (see `resume_interrupted`); re-syncing rewrites, so nothing doubles.
            tokio::select! {
                result = sync(&this.app, &this.progress, &integration) => {
                    if let Err(e) = result {
                        tracing::warn!(integration = id, error = %e, "sync failed");
                    }
                }
                _ = this.app.shutdown.cancelled() => {
                    tracing::info!(integration = id, "sync cut short by shutdown; it resumes at the next start");
                }
            }
            this.release(id);
        });
        true
    }

    /// The scheduled job: every due integration, one after the other.
    pub async fn sync_all(&self) -> Result<String, String> {
        let app = &self.app;
        let all = app
            .meta
            .call(|c| integrations::all(c))
            .await
            .map_err(|e| e.to_string())?;
        let (mut ok, mut failed) = (0, Vec::new());
        let now = chrono::Utc::now();
        for i in all {
            // Each integration has its own schedule; the job only looks for the due ones.
            let due = match parse_schedule(&i.schedule) {
                Ok(Some(schedule)) => {
                    let last = i
                        .last_sync_at
                        .or(Some(i.created_at))
                        .and_then(|t| chrono::DateTime::from_timestamp(t, 0));
                    next_run(&schedule, last, now).is_some_and(|next| next <= now)
                }
                _ => false,
            };
            // Skip one that "Sync now" is already running.
            if !due || !self.claim(i.id) {
                continue;
            }
            let result = sync(app, &self.progress, &i).await;
            self.release(i.id);
            match result {
                Ok(_) => ok += 1,
                Err(e) => failed.push(format!("integration {}: {e}", i.id)),
            }
        }
        if failed.is_empty() {
            Ok(format!("synced {ok} integrations"))
        } else {
            Err(failed.join("; "))
        }
    }

    /// At startup: syncs cut short by a crash or a stop are recorded as interrupted and run
    /// again from their last cursor.
    pub async fn resume_interrupted(&self) {
        let result = self
            .app
            .meta
            .call(|c| {
                let interrupted: Vec<Integration> = integrations::all(c)?
                    .into_iter()
                    .filter(|i| i.status == "syncing")
                    .collect();
                c.execute(
                    "UPDATE sync_runs SET outcome = 'error', finished_at = ?1,
                        message = 'interrupted: the server stopped during this sync; it ran again at the next start'
                     WHERE outcome = 'running'",
                    [now_secs()],
                )?;
                for i in &interrupted {
                    integrations::set_state(c, i.id, "error", "the last sync was interrupted by a restart", None, None)?;
                }
                Ok(interrupted)
            })
            .await;
        match result {
            Ok(list) => {
                for i in list {
                    tracing::info!(integration = i.id, "resuming an interrupted sync");
                    self.sync_soon(i);
                }
            }
            Err(e) => tracing::error!(error = %e, "could not look for interrupted syncs"),
        }
    }
}

/// Runs one sync now and records it (run history, status, cursor).
async fn sync(
    app: &App,
    progress: &Progress,
    integration: &Integration,
) -> Result<SyncOutcome, String> {
    let id = integration.id;
    let started = now_secs();
    let run = app
        .meta
        .call(move |c| {
            integrations::set_state(c, id, "syncing", "", None, None)?;
            integrations::start_run(c, id, started)
        })
        .await
        .map_err(|e| e.to_string())?;
    progress.set(id, "starting".into());
    let result = pull(app, progress, integration).await;
    progress.clear(id);
    let (status, outcome, rows, message, cursor) = match &result {
        Ok((o, cursor)) => (
            "ok",
            "ok",
            o.points as i64,
            o.message.clone(),
            Some(cursor.clone()),
        ),
        Err(PullError::Reconnect(m)) => ("reconnect", "error", 0, m.clone(), None),
        Err(PullError::Failed(m)) => ("error", "error", 0, m.clone(), None),
    };
    let finished = now_secs();
    let (status, last_error) = (
        status.to_string(),
        if outcome == "ok" {
            String::new()
        } else {
            message.clone()
        },
    );
    let run_message = message.clone();
    app.meta
        .call(move |c| {
            integrations::set_state(
                c,
                id,
                &status,
                &last_error,
                cursor.as_deref(),
                (outcome == "ok").then_some(finished),
            )?;
            integrations::finish_run(c, run, rows, outcome, &run_message)
        })
        .await
        .map_err(|e| e.to_string())?;
    // Integration alert rules see the new status.
    app.announce(Signal::SyncFinished {
        org_id: integration.org_id,
    });
    match result {
        Ok((o, _)) => Ok(o),
        Err(PullError::Reconnect(m) | PullError::Failed(m)) => Err(m),
    }
}

enum PullError {
    /// The credentials are refused or cannot be opened: the user must reconnect.
    Reconnect(String),
    Failed(String),
}

impl From<StoreError> for PullError {
    fn from(e: StoreError) -> Self {
        PullError::Failed(e.to_string())
    }
}

/// The days a sync works on, in the org's time zone.
struct SyncWindow {
    org: crate::store::meta::orgs::Org,
    tz: chrono_tz::Tz,
    today: chrono::NaiveDate,
    /// The earliest day a first sync reaches back to.
    backfill_from: chrono::NaiveDate,
    /// The first day pulled again this time: the cursor, or the backfill start.
    from: chrono::NaiveDate,
}

impl SyncWindow {
    async fn of(app: &App, integration: &Integration) -> Result<SyncWindow, PullError> {
        let org_id = integration.org_id;
        let org = app.meta.call(move |c| orgs::by_id(c, org_id)).await?;
        let tz = query::org_tz(&org);
        let now_us = chrono::Utc::now().timestamp_micros();
        let today = timebucket::local_naive(tz, timebucket::start_of_local_day(tz, now_us)).date();
        let backfill_from =
            today - chrono::Duration::days(i64::from(app.config.integrations.backfill_months) * 31);
        let from = chrono::NaiveDate::parse_from_str(&integration.cursor, "%Y-%m-%d")
            .ok()
            .filter(|d| *d > backfill_from)
            .unwrap_or(backfill_from);
        Ok(SyncWindow {
            org,
            tz,
            today,
            backfill_from,
            from,
        })
    }

    /// A local day's start, UTC seconds.
    fn at_utc(&self, d: chrono::NaiveDate) -> i64 {
        timebucket::local_to_utc_micros(self.tz, d.and_hms_opt(0, 0, 0).unwrap_or_default())
            / 1_000_000
    }

    /// The starts of the days from `first` through today, plus tomorrow's (closing today).
    fn day_starts(&self, first: chrono::NaiveDate) -> Vec<i64> {
        let mut out = Vec::new();
        let mut d = first;
        while d <= self.today + chrono::Duration::days(1) {
            out.push(self.at_utc(d));
            d += chrono::Duration::days(1);
        }
        out
    }

    /// The cursor the next sync starts from: two days back, so late-settling data is re-read.
    fn next_cursor(&self) -> String {
        (self.today - chrono::Duration::days(2)).to_string()
    }
}

async fn pull(
    app: &App,
    progress: &Progress,
    integration: &Integration,
) -> Result<(SyncOutcome, String), PullError> {
    match integration.provider.as_str() {
        "stripe" => pull_stripe(app, progress, integration).await,
        "hubspot" => pull_hubspot(app, integration).await,
        other => Err(PullError::Failed(format!("unknown provider {other}"))),
    }
}

/// HubSpot: refreshes the access token when it is about to expire (a refused refresh means the
/// user must connect again), then counts new contacts per day as `leads`.
async fn pull_hubspot(
    app: &App,
    integration: &Integration,
) -> Result<(SyncOutcome, String), PullError> {
    let config = &app.config.integrations;
    let sealed = app
        .secrets
        .open_sealed(&integration.credentials)
        .map_err(|e| PullError::Reconnect(e.to_string()))?;
    let mut tokens: hubspot::Tokens = serde_json::from_str(&sealed).map_err(|_| {
        PullError::Reconnect("the stored tokens are unreadable; connect again".into())
    })?;
    let refused = |e: hubspot::OAuthError| match e {
        hubspot::OAuthError::Refused(m) => PullError::Reconnect(format!(
            "HubSpot refused the authorisation ({m}); connect again"
        )),
        other => PullError::Failed(other.to_string()),
    };
    if tokens.expires_at - 60 <= now_secs() {
        tokens = hubspot::refresh(&app.http, config, &tokens.refresh_token)
            .await
            .map_err(refused)?;
        let (id, resealed) = (
            integration.id,
            app.secrets
                .seal(&serde_json::to_string(&tokens).unwrap_or_default()),
        );
        app.meta
            .call(move |c| integrations::set_credentials(c, id, &resealed))
            .await?;
    }
    let w = SyncWindow::of(app, integration).await?;
    let created =
        hubspot::contacts_created(&app.http, config, &tokens.access_token, w.at_utc(w.from))
            .await
            .map_err(refused)?;
    let day_starts = w.day_starts(w.from);
    let mut dims = Dimensions::new();
    dims.insert("source".into(), "hubspot".into());
    let points: Vec<Point> = hubspot::leads_per_day(&created, &day_starts)
        .into_iter()
        .map(|(start, n)| Point {
            metric: "leads".into(),
            ts_micros: start * 1_000_000,
            value: n,
            dims: dims.clone(),
        })
        .collect();
    let (stored, _) = app.store_points(w.org.id, points).await?;
    let cursor = w.next_cursor();
    Ok((
        SyncOutcome {
            points: stored,
            message: format!(
                "{} new contacts read; {stored} daily values stored",
                created.len()
            ),
        },
        cursor,
    ))
}

/// Stripe: pulls and stores; returns the outcome and the new cursor (the first day whose
/// payments the next sync pulls again: two days back, so late-settling charges are counted).
async fn pull_stripe(
    app: &App,
    progress: &Progress,
    integration: &Integration,
) -> Result<(SyncOutcome, String), PullError> {
    let key = Credentials::open(app, integration)
        .map_err(PullError::Reconnect)?
        .api_key;
    let w = SyncWindow::of(app, integration).await?;
    let (org, today, backfill_from, charges_from) = (&w.org, w.today, w.backfill_from, w.from);
    let at_utc = |d: chrono::NaiveDate| w.at_utc(d);
    register_metrics(app, org.id, &STRIPE).await?;
    let client = stripe::Client::new(
        app.http.clone(),
        &app.config.integrations.stripe_api_base,
        &key,
    );
    let currency = org.currency.to_ascii_lowercase();
    let map_err = |e: stripe::StripeError| match e {
        stripe::StripeError::Auth(m) => {
            PullError::Reconnect(format!("Stripe refused the key: {m}"))
        }
        other => PullError::Failed(other.to_string()),
    };
    let id = integration.id;
    let report = |what: &'static str| {
        let progress = progress.clone();
        move |n: usize| progress.set(id, format!("reading {what}: {n} so far"))
    };
    let mut raw_subs = client
        .list_all_with(
            "/v1/subscriptions",
            &[("status", "all".into())],
            &report("subscriptions"),
        )
        .await
        .map_err(map_err)?;
    // A subscription embeds its first items only (`items.has_more`): the rest come from the
    // subscription items list, or its MRR would miss them.
    for sub in raw_subs.iter_mut() {
        if sub["items"]["has_more"].as_bool().unwrap_or(false)
            && let Some(sub_id) = sub["id"].as_str().map(String::from)
        {
            let items = client
                .list_all("/v1/subscription_items", &[("subscription", sub_id)])
                .await
                .map_err(map_err)?;
            sub["items"]["data"] = serde_json::Value::Array(items);
            sub["items"]["has_more"] = serde_json::Value::Bool(false);
        }
    }
    progress.set(
        id,
        format!(
            "read {} subscriptions; reading charges since {charges_from}",
            raw_subs.len()
        ),
    );
    let raw_charges = client
        .list_all_with(
            "/v1/charges",
            &[("created[gte]", at_utc(charges_from).to_string())],
            &report("charges"),
        )
        .await
        .map_err(map_err)?;
    progress.set(
        id,
        format!("read {} charges; reading customers", raw_charges.len()),
    );
    let raw_customers = client
        .list_all_with("/v1/customers", &[], &report("customers"))
        .await
        .map_err(map_err)?;
    let mut account_created: Vec<i64> = raw_customers
        .iter()
        .filter(|c| !c["deleted"].as_bool().unwrap_or(false))
        .filter_map(|c| c["created"].as_i64())
        .collect();
    account_created.sort_unstable();
    progress.set(
        id,
        format!("read {} customers; reading invoices", raw_customers.len()),
    );
    let mut raw_invoices = client
        .list_all_with(
            "/v1/invoices",
            &[("created[gte]", at_utc(backfill_from).to_string())],
            &report("invoices"),
        )
        .await
        .map_err(map_err)?;
    // An invoice embeds its first lines; the rest come from its lines list.
    for inv in raw_invoices.iter_mut() {
        if inv["lines"]["has_more"].as_bool().unwrap_or(false)
            && let Some(inv_id) = inv["id"].as_str().map(String::from)
        {
            let lines = client
                .list_all(&format!("/v1/invoices/{inv_id}/lines"), &[])
                .await
                .map_err(map_err)?;
            inv["lines"]["data"] = serde_json::Value::Array(lines);
        }
    }
    let mut periods: std::collections::HashMap<
        String,
        Vec<crate::domain::saas_metrics::InvoicedPeriod>,
    > = std::collections::HashMap::new();
    for inv in &raw_invoices {
        for (sub_id, period) in stripe::invoiced_periods(inv, &currency) {
            periods.entry(sub_id).or_default().push(period);
        }
    }
    let subs: Vec<_> = raw_subs
        .iter()
        .filter_map(|s| {
            let mut sub = stripe::subscription_from(s, &currency)?;
            if let Some(p) = s["id"].as_str().and_then(|id| periods.get(id)) {
                sub.invoiced = p.clone();
            }
            Some(sub)
        })
        .collect();
    let mut charges = Vec::new();
    let mut left_out: std::collections::BTreeMap<stripe::ChargeLeftOut, usize> =
        std::collections::BTreeMap::new();
    for c in &raw_charges {
        match stripe::charge_from(c, &currency) {
            Ok(charge) => charges.push(charge),
            Err(reason) => *left_out.entry(reason).or_default() += 1,
        }
    }
    let skipped_subs = raw_subs.len() - subs.len();

    // Days from the first subscription (within the backfill) through today.
    let first = subs
        .iter()
        .map(|s| s.started_at)
        .min()
        .map(|t| timebucket::local_naive(w.tz, t * 1_000_000).date())
        .unwrap_or(today)
        .max(backfill_from);
    let day_starts = w.day_starts(first);
    let charges_from_at = at_utc(charges_from);
    progress.set(
        id,
        format!(
            "computing {} days of metrics",
            day_starts.len().saturating_sub(1)
        ),
    );
    let days =
        tokio::task::spawn_blocking(move || stripe::daily_metrics(&subs, &charges, &day_starts))
            .await
            .map_err(|e| PullError::Failed(e.to_string()))?;
    let payment_metrics = [
        "revenue",
        "refunds",
        "failed_payments",
        "failed_payment_rate",
    ];
    let mut dims = Dimensions::new();
    dims.insert("source".into(), "stripe".into());
    let mut points = Vec::new();
    for (start, mut values) in days {
        // Accounts at the end of the day: customers created before the next day starts.
        let end = start + 86_400;
        values.insert(
            "accounts",
            account_created.partition_point(|t| *t < end) as f64,
        );
        for (metric, value) in values {
            // Payments before the cursor were not pulled again: keep what is stored.
            if start < charges_from_at && payment_metrics.contains(&metric) {
                continue;
            }
            points.push(Point {
                metric: metric.to_string(),
                ts_micros: start * 1_000_000,
                value,
                dims: dims.clone(),
            });
        }
    }
    let (stored, _) = app.store_points(org.id, points).await?;
    let mut message = format!(
        "{} subscriptions and {} charges read; {stored} daily values stored",
        raw_subs.len(),
        raw_charges.len()
    );
    let mut left: Vec<String> = Vec::new();
    if skipped_subs > 0 {
        left.push(format!(
            "{skipped_subs} subscriptions in other currencies than {}",
            org.currency
        ));
    }
    left.extend(
        left_out
            .iter()
            .map(|(reason, n)| reason.describe(*n, &org.currency)),
    );
    if !left.is_empty() {
        message.push_str(&format!("; left out: {}", left.join(", ")));
    }
    let cursor = (today - chrono::Duration::days(2)).to_string();
    Ok((
        SyncOutcome {
            points: stored,
            message,
        },
        cursor,
    ))
}
