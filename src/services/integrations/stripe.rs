//! Stripe: a small hand-written client (pinned `Stripe-Version`, cursor pagination, 429 with
//! `Retry-After`, exponential backoff with jitter on 5xx and timeouts) and the mapping from its
//! subscriptions and charges to the pure SaaS metrics of [`crate::domain::saas_metrics`].

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::Rng;
use serde_json::Value;

use crate::domain::saas_metrics::{
    self, Charge, Discount, Interval, Item, Status, Subscription, to_major,
};

/// The API version the mapping below was written against.
pub const STRIPE_VERSION: &str = "2024-06-20";
const MAX_ATTEMPTS: u32 = 6;

#[derive(Debug, thiserror::Error)]
pub enum StripeError {
    /// The key was refused (revoked, wrong mode, missing permission): reconnect needed.
    #[error("Stripe refused the key: {0}")]
    Auth(String),
    #[error("Stripe answered {0}: {1}")]
    Api(u16, String),
    #[error("Stripe could not be reached: {0}")]
    Network(String),
    #[error("Stripe sent something unexpected: {0}")]
    Shape(String),
}

pub struct Client {
    http: crate::outbound::Outbound,
    base: String,
    key: String,
}

fn error_message(body: &Value) -> String {
    body["error"]["message"]
        .as_str()
        .unwrap_or("no message")
        .to_string()
}

impl Client {
    pub fn new(http: crate::outbound::Outbound, base: &str, key: &str) -> Client {
        Client {
            http,
            base: base.trim_end_matches('/').to_string(),
            key: key.to_string(),
        }
    }

    /// One GET with retries: 429 waits `Retry-After` (at most a minute), 5xx and network errors
    /// back off exponentially with jitter; 401/403 are a reconnect, other 4xx are errors.
    async fn get(&self, path: &str, query: &[(String, String)]) -> Result<Value, StripeError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self
                .http
                .get(&format!("{}{path}", self.base))
                .map_err(StripeError::Network)?
                .bearer_auth(&self.key)
                .header("Stripe-Version", STRIPE_VERSION)
                .query(query)
                .send()
                .await;
            let backoff = || {
                let base = 250u64 << attempt.min(6);
                Duration::from_millis(base + rand::thread_rng().gen_range(0..=base / 2))
            };
            let response = match sent {
                Ok(r) => r,
                Err(e) if attempt < MAX_ATTEMPTS => {
                    let error = crate::outbound::describe(e);
                    tracing::warn!(%error, attempt, "Stripe request failed; retrying");
                    tokio::time::sleep(backoff()).await;
                    continue;
                }
                Err(e) => return Err(StripeError::Network(crate::outbound::describe(e))),
            };
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            let body: Value = response.json().await.unwrap_or(Value::Null);
            match status {
                200..=299 => return Ok(body),
                401 | 403 => return Err(StripeError::Auth(error_message(&body))),
                429 if attempt < MAX_ATTEMPTS => {
                    let wait = retry_after.map(|s| Duration::from_secs(s.min(60)));
                    tokio::time::sleep(wait.unwrap_or_else(backoff)).await;
                }
                500..=599 if attempt < MAX_ATTEMPTS => tokio::time::sleep(backoff()).await,
                _ => return Err(StripeError::Api(status, error_message(&body))),
            }
        }
    }

    /// Every object of a list endpoint, following `has_more` / `starting_after`.
    pub async fn list_all(
        &self,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<Vec<Value>, StripeError> {
        self.list_all_with(path, params, &|_| {}).await
    }

    /// [`Client::list_all`], telling `progress` how many objects were read after each page.
    pub async fn list_all_with(
        &self,
        path: &str,
        params: &[(&str, String)],
        progress: &(dyn Fn(usize) + Send + Sync),
    ) -> Result<Vec<Value>, StripeError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let mut query: Vec<(String, String)> = params
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            query.push(("limit".into(), "100".into()));
            if let Some(a) = &after {
                query.push(("starting_after".into(), a.clone()));
            }
            let page = self.get(path, &query).await?;
            let data = page["data"]
                .as_array()
                .ok_or_else(|| StripeError::Shape(format!("{path}: no `data` list")))?;
            out.extend(data.iter().cloned());
            progress(out.len());
            after = data.last().and_then(|o| o["id"].as_str()).map(String::from);
            if !page["has_more"].as_bool().unwrap_or(false) || after.is_none() {
                return Ok(out);
            }
        }
    }
}

/// A Stripe subscription in the org's currency as the pure model sees it; `None` for another
/// currency (counted and reported by the caller) or a shape it cannot read.
pub fn subscription_from(v: &Value, currency: &str) -> Option<Subscription> {
    let items = v["items"]["data"].as_array()?;
    let mut out_items = Vec::new();
    for it in items {
        let price = &it["price"];
        if !price["currency"].as_str()?.eq_ignore_ascii_case(currency) {
            return None;
        }
        let recurring = &price["recurring"];
        out_items.push(Item {
            unit_amount: to_major(price["unit_amount"].as_i64()?, currency),
            interval: Interval::parse(recurring["interval"].as_str()?)?,
            interval_count: recurring["interval_count"].as_u64().unwrap_or(1) as u32,
            quantity: it["quantity"].as_u64().unwrap_or(1) as u32,
        });
    }
    let discount = match &v["discount"] {
        Value::Object(d) => {
            let coupon = &d.get("coupon")?;
            let ends_at = d.get("end").and_then(|e| e.as_i64());
            if let Some(p) = coupon["percent_off"].as_f64() {
                Some(Discount::PercentOff {
                    percent: p,
                    ends_at,
                })
            } else {
                coupon["amount_off"].as_i64().map(|a| Discount::AmountOff {
                    amount: to_major(a, currency),
                    ends_at,
                })
            }
        }
        _ => None,
    };
    Some(Subscription {
        customer: v["customer"].as_str()?.to_string(),
        invoiced: Vec::new(),
        status: Status::parse(v["status"].as_str()?)?,
        items: out_items,
        discount,
        started_at: v["start_date"].as_i64()?,
        trial_end: v["trial_end"].as_i64(),
        ended_at: v["ended_at"].as_i64(),
    })
}

/// Why a charge read from Stripe is not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChargeLeftOut {
    OtherCurrency,
    /// Still processing (`status: pending`).
    Pending,
    /// Authorised, not captured: money held, not received.
    Uncaptured,
    /// A field the reference promises is missing.
    Malformed,
}

impl ChargeLeftOut {
    pub fn describe(self, count: usize, currency: &str) -> String {
        match self {
            ChargeLeftOut::OtherCurrency => {
                format!("{count} charges in other currencies than {currency}")
            }
            ChargeLeftOut::Pending => format!("{count} pending charges"),
            ChargeLeftOut::Uncaptured => {
                format!("{count} authorised charges not (yet) captured")
            }
            ChargeLeftOut::Malformed => {
                format!("{count} charges Stripe sent without an amount or time")
            }
        }
    }
}

pub fn charge_from(v: &Value, currency: &str) -> Result<Charge, ChargeLeftOut> {
    let same_currency = v["currency"]
        .as_str()
        .is_some_and(|c| c.eq_ignore_ascii_case(currency));
    if !same_currency {
        return Err(ChargeLeftOut::OtherCurrency);
    }
    let status = v["status"].as_str().ok_or(ChargeLeftOut::Malformed)?;
    if status == "pending" {
        return Err(ChargeLeftOut::Pending);
    }
    let amount = v["amount"].as_i64().ok_or(ChargeLeftOut::Malformed)?;
    let at = v["created"].as_i64().ok_or(ChargeLeftOut::Malformed)?;
    let succeeded = status == "succeeded";
    // A succeeded charge with `captured: false` is an authorisation: money held, not received
    // (it is captured later, in part or whole, or released after seven days). Revenue is what
    // was captured (`amount_captured`, less than `amount` after a partial capture), and a
    // refund can only give back what was captured.
    if succeeded && v["captured"].as_bool() == Some(false) {
        return Err(ChargeLeftOut::Uncaptured);
    }
    let captured = if succeeded {
        v["amount_captured"].as_i64().unwrap_or(amount)
    } else {
        0
    };
    let refunded = v["amount_refunded"]
        .as_i64()
        .unwrap_or(0)
        .clamp(0, captured);
    Ok(Charge {
        at,
        amount: to_major(if succeeded { captured } else { amount }, currency),
        succeeded,
        refunded: to_major(refunded, currency),
    })
}

/// One day's derived values, keyed by metric.
pub type DayValues = BTreeMap<&'static str, f64>;

/// Daily metrics for the days starting at `day_starts` (each day is `[start, next start)`; the
/// last entry closes the last day). MRR and customers are the end-of-day snapshot; movements
/// and payments are the day's; rates are over the trailing 30 days.
pub fn daily_metrics(
    subs: &[Subscription],
    charges: &[Charge],
    day_starts: &[i64],
) -> Vec<(i64, DayValues)> {
    let mut out = Vec::new();
    let snapshots: Vec<BTreeMap<String, f64>> = day_starts
        .iter()
        .map(|t| saas_metrics::customer_mrr(subs, *t - 1))
        .collect();
    // Customers that paid at any time up to each snapshot (for reactivations).
    let mut paid_until: Vec<BTreeSet<String>> = Vec::with_capacity(snapshots.len());
    let mut acc = BTreeSet::new();
    for s in &snapshots {
        paid_until.push(acc.clone());
        acc.extend(s.keys().cloned());
    }
    for i in 1..day_starts.len() {
        let (start, end) = (day_starts[i - 1], day_starts[i]);
        let (prev, now) = (&snapshots[i - 1], &snapshots[i]);
        let day = saas_metrics::period_metrics(prev, now, &paid_until[i - 1]);
        let month_ago = i.saturating_sub(30);
        let month =
            saas_metrics::period_metrics(&snapshots[month_ago], now, &paid_until[month_ago]);
        let (revenue, refunds, failed_rate) = saas_metrics::payments(charges, start, end);
        let failed = charges
            .iter()
            .filter(|c| c.at >= start && c.at < end && !c.succeeded)
            .count();
        let mut v = DayValues::new();
        v.insert("mrr", day.mrr);
        v.insert("arr", day.arr);
        v.insert("customers", day.customers as f64);
        v.insert("new_customers", day.movements.new_customers as f64);
        v.insert("mrr_new", day.movements.new);
        v.insert("mrr_expansion", day.movements.expansion);
        v.insert("mrr_contraction", day.movements.contraction);
        v.insert("mrr_churned", day.movements.churn);
        v.insert("mrr_reactivation", day.movements.reactivation);
        v.insert("revenue", revenue);
        v.insert("refunds", refunds);
        v.insert("failed_payments", failed as f64);
        if let Some(r) = failed_rate {
            v.insert("failed_payment_rate", 100.0 * r);
        }
        if let Some(a) = day.arpa {
            v.insert("arpa", a);
        }
        if let Some(c) = month.customer_churn_rate {
            v.insert("churn_rate", 100.0 * c);
        }
        if let Some(r) = month.gross_mrr_churn_rate {
            v.insert("gross_mrr_churn_rate", 100.0 * r);
        }
        if let Some(r) = month.net_mrr_churn_rate {
            v.insert("net_mrr_churn_rate", 100.0 * r);
        }
        if let Some(r) = month.net_revenue_retention {
            v.insert("net_revenue_retention", 100.0 * r);
        }
        if let Some(q) = month.quick_ratio {
            v.insert("quick_ratio", q);
        }
        if let (Some(arpa), Some(churn)) = (day.arpa, month.customer_churn_rate)
            && churn > 0.0
        {
            v.insert("ltv", arpa / churn);
        }
        out.push((start, v));
    }
    out
}

/// The service periods an invoice billed, per subscription id: subscription lines (not
/// prorations) of paid or open invoices in the org's currency, after their discounts.
pub fn invoiced_periods(
    invoice: &Value,
    currency: &str,
) -> Vec<(String, saas_metrics::InvoicedPeriod)> {
    let status = invoice["status"].as_str().unwrap_or("");
    if !matches!(status, "paid" | "open") {
        return Vec::new();
    }
    let mut out = Vec::new();
    for line in invoice["lines"]["data"].as_array().into_iter().flatten() {
        let (Some(sub), Some(amount), Some(start), Some(end)) = (
            line["subscription"].as_str(),
            line["amount"].as_i64(),
            line["period"]["start"].as_i64(),
            line["period"]["end"].as_i64(),
        ) else {
            continue;
        };
        if line["proration"].as_bool().unwrap_or(false)
            || line["type"].as_str().is_some_and(|t| t != "subscription")
            || !line["currency"]
                .as_str()
                .unwrap_or("")
                .eq_ignore_ascii_case(currency)
        {
            continue;
        }
        let recurring = &line["price"]["recurring"];
        let Some(interval) = recurring["interval"].as_str().and_then(Interval::parse) else {
            continue;
        };
        let discounts: i64 = line["discount_amounts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["amount"].as_i64())
            .sum();
        let count = recurring["interval_count"].as_u64().unwrap_or(1) as u32;
        out.push((
            sub.to_string(),
            saas_metrics::InvoicedPeriod {
                start,
                end,
                mrr: saas_metrics::line_mrr(
                    to_major(amount - discounts, currency),
                    interval,
                    count,
                ),
            },
        ));
    }
    // One invoice bills every item of a subscription, one line each, usually for the same
    // period: the subscription's MRR in that period is their sum, not the first line's.
    let mut merged: Vec<(String, saas_metrics::InvoicedPeriod)> = Vec::with_capacity(out.len());
    for (sub, period) in out {
        match merged
            .iter_mut()
            .find(|(s, p)| *s == sub && p.start == period.start && p.end == period.end)
        {
            Some((_, same)) => same.mrr += period.mrr,
            None => merged.push((sub, period)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn line(sub: &str, amount: i64, interval: &str, start: i64, end: i64) -> Value {
        json!({"type": "subscription", "subscription": sub, "amount": amount, "currency": "eur",
               "proration": false, "period": {"start": start, "end": end}, "discount_amounts": [],
               "price": {"recurring": {"interval": interval, "interval_count": 1}}})
    }

    /// Stripe finding 2: a subscription with a 40.00 / month item and a 25.00 / month item is
    /// invoiced as two lines for one period; its MRR there is 65.00 (it was 40.00: the first
    /// line won). Another subscription's line on the same invoice is not merged in.
    #[test]
    fn every_item_line_of_an_invoice_counts() {
        let (start, end) = (1_735_689_600, 1_738_368_000);
        let invoice = json!({"status": "paid", "lines": {"data": [
            line("sub_a", 4_000, "month", start, end),
            line("sub_a", 2_500, "month", start, end),
            line("sub_b", 1_000, "month", start, end),
        ]}});
        let periods = invoiced_periods(&invoice, "eur");
        let mrr: Vec<(&str, i64, f64)> = periods
            .iter()
            .map(|(s, p)| (s.as_str(), p.end, (p.mrr * 100.0).round() / 100.0))
            .collect();
        assert_eq!(mrr, vec![("sub_a", end, 65.0), ("sub_b", end, 10.0)]);
    }
}
