//! SaaS metrics from billing data, written once. Pure: subscriptions, snapshots and charges in,
//! numbers out. The Stripe connector feeds it; the definitions follow what ChartMogul and
//! Baremetrics document, and each is stated on its function.
//!
//! Money is in major units of one currency (Stripe's minor units are converted per currency by
//! [`to_major`]); MRR excludes tax (Stripe's unit amounts are tax-exclusive unless the price is
//! tax-inclusive, which the connector converts before calling this).

use std::collections::{BTreeMap, BTreeSet};

/// Currencies Stripe bills without minor units (amount 500 = ¥500).
const ZERO_DECIMAL: &[&str] = &[
    "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
    "xaf", "xof", "xpf",
];
/// Currencies with three decimals (amount 1000 = 1.000 KWD).
const THREE_DECIMAL: &[&str] = &["bhd", "jod", "kwd", "omr", "tnd"];

/// A Stripe amount in minor units as a major-unit value: cents → euros, yen stay yen.
pub fn to_major(amount_minor: i64, currency: &str) -> f64 {
    let c = currency.to_ascii_lowercase();
    let divisor = if ZERO_DECIMAL.contains(&c.as_str()) {
        1.0
    } else if THREE_DECIMAL.contains(&c.as_str()) {
        1000.0
    } else {
        100.0
    };
    amount_minor as f64 / divisor
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interval {
    Day,
    Week,
    Month,
    Year,
}

impl Interval {
    pub fn parse(s: &str) -> Option<Interval> {
        match s {
            "day" => Some(Interval::Day),
            "week" => Some(Interval::Week),
            "month" => Some(Interval::Month),
            "year" => Some(Interval::Year),
            _ => None,
        }
    }

    /// How many of this interval make one month: a year is 1/12, a week 52/12, a day 365/12.
    fn per_month(self) -> f64 {
        match self {
            Interval::Day => 365.0 / 12.0,
            Interval::Week => 52.0 / 12.0,
            Interval::Month => 1.0,
            Interval::Year => 1.0 / 12.0,
        }
    }
}

/// One subscription item: a recurring price (major units per `interval_count` intervals) and a
/// quantity.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub unit_amount: f64,
    pub interval: Interval,
    pub interval_count: u32,
    pub quantity: u32,
}

/// A discount on a subscription: a percentage, or a fixed amount off each invoice (billing
/// period), until `ends_at` (None: forever).
#[derive(Debug, Clone, PartialEq)]
pub enum Discount {
    PercentOff { percent: f64, ends_at: Option<i64> },
    AmountOff { amount: f64, ends_at: Option<i64> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Active,
    PastDue,
    Trialing,
    Unpaid,
    Canceled,
    Incomplete,
    IncompleteExpired,
    Paused,
}

impl Status {
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "active" => Status::Active,
            "past_due" => Status::PastDue,
            "trialing" => Status::Trialing,
            "unpaid" => Status::Unpaid,
            "canceled" => Status::Canceled,
            "incomplete" => Status::Incomplete,
            "incomplete_expired" => Status::IncompleteExpired,
            "paused" => Status::Paused,
            _ => return None,
        })
    }
}

/// What an invoice billed a subscription for one service period, as MRR (the line's amount
/// after discounts, tax excluded, normalised to a month like a price).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InvoicedPeriod {
    pub start: i64,
    pub end: i64,
    pub mrr: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub customer: String,
    /// What its invoices billed, period by period: where one covers an instant, it is that
    /// instant's MRR (so past upgrades and downgrades show when they happened); elsewhere (before
    /// the first invoice, while a renewal is pending) the current items count.
    pub invoiced: Vec<InvoicedPeriod>,
    pub status: Status,
    pub items: Vec<Item>,
    pub discount: Option<Discount>,
    /// Start of billing (seconds); before it, no MRR.
    pub started_at: i64,
    pub trial_end: Option<i64>,
    /// When it ended (canceled and over); from then on, no MRR.
    pub ended_at: Option<i64>,
}

/// The MRR of an invoice line billing `amount` (after discounts) for `interval_count` ×
/// `interval`.
pub fn line_mrr(amount: f64, interval: Interval, interval_count: u32) -> f64 {
    amount * interval.per_month() / f64::from(interval_count.max(1))
}

/// Monthly recurring revenue of one subscription at `at`: what the invoice covering `at` billed
/// (see [`Subscription::invoiced`]), else each item's amount × quantity
/// normalised to a month (yearly ÷ 12, weekly × 52/12, daily × 365/12, divided by the interval
/// count), the discount applied (a percentage off the total; a fixed amount off per billing
/// period, normalised like the prices), never below 0. Zero while trialing, before it starts,
/// after it ends, and while unpaid, incomplete or paused; past-due subscriptions still count
/// (the customer has not left yet).
pub fn subscription_mrr(s: &Subscription, at: i64) -> f64 {
    let counts = matches!(
        s.status,
        Status::Active | Status::PastDue | Status::Canceled
    ) || (s.status == Status::Trialing && s.trial_end.is_some_and(|t| at >= t));
    if !counts
        || at < s.started_at
        || s.trial_end.is_some_and(|t| at < t)
        || s.ended_at.is_some_and(|e| at >= e)
        || (s.status == Status::Canceled && s.ended_at.is_none())
    {
        return 0.0;
    }
    if let Some(p) = s.invoiced.iter().find(|p| p.start <= at && at < p.end) {
        return p.mrr.max(0.0);
    }
    let monthly = |amount: f64, item: &Item| {
        amount * item.interval.per_month() / f64::from(item.interval_count.max(1))
    };
    let gross: f64 = s
        .items
        .iter()
        .map(|i| monthly(i.unit_amount * f64::from(i.quantity), i))
        .sum();
    let net = match &s.discount {
        Some(Discount::PercentOff { percent, ends_at }) if ends_at.is_none_or(|e| at < e) => {
            gross * (1.0 - percent / 100.0)
        }
        Some(Discount::AmountOff { amount, ends_at }) if ends_at.is_none_or(|e| at < e) => {
            // Off each invoice: normalised with the first item's billing period.
            let off = s.items.first().map(|i| monthly(*amount, i)).unwrap_or(0.0);
            gross - off
        }
        _ => gross,
    };
    net.max(0.0)
}

/// Each customer's MRR at `at` (customers with 0 are left out).
pub fn customer_mrr(subs: &[Subscription], at: i64) -> BTreeMap<String, f64> {
    let mut out: BTreeMap<String, f64> = BTreeMap::new();
    for s in subs {
        let m = subscription_mrr(s, at);
        if m > 0.0 {
            *out.entry(s.customer.clone()).or_default() += m;
        }
    }
    out
}

/// How MRR moved between two snapshots.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Movements {
    /// MRR of customers with none before and never any earlier.
    pub new: f64,
    /// Increases of customers who had MRR and still have more.
    pub expansion: f64,
    /// Decreases of customers who still have some (a positive amount).
    pub contraction: f64,
    /// MRR of customers who had some and now have none (a positive amount).
    pub churn: f64,
    /// MRR of customers back after having had none (they paid at some point before).
    pub reactivation: f64,
    pub new_customers: usize,
    pub churned_customers: usize,
    pub reactivated_customers: usize,
}

/// Movements from `start` to `end`; `paid_before` holds every customer who had MRR at any time
/// before `start` (to tell reactivations from new customers).
pub fn movements(
    start: &BTreeMap<String, f64>,
    end: &BTreeMap<String, f64>,
    paid_before: &BTreeSet<String>,
) -> Movements {
    let mut m = Movements::default();
    let customers: BTreeSet<&String> = start.keys().chain(end.keys()).collect();
    for c in customers {
        let before = start.get(c).copied().unwrap_or(0.0);
        let after = end.get(c).copied().unwrap_or(0.0);
        match (before > 0.0, after > 0.0) {
            (false, true) if paid_before.contains(c) => {
                m.reactivation += after;
                m.reactivated_customers += 1;
            }
            (false, true) => {
                m.new += after;
                m.new_customers += 1;
            }
            (true, false) => {
                m.churn += before;
                m.churned_customers += 1;
            }
            (true, true) if after > before => m.expansion += after - before,
            (true, true) if after < before => m.contraction += before - after,
            _ => {}
        }
    }
    m
}

/// The period's SaaS metrics. Rates are fractions (0.05 = 5%); `None` where undefined.
#[derive(Debug, Clone, PartialEq)]
pub struct PeriodMetrics {
    pub mrr: f64,
    /// ARR = 12 × MRR.
    pub arr: f64,
    pub customers: usize,
    pub movements: Movements,
    /// Customers churned ÷ customers at the start of the period.
    pub customer_churn_rate: Option<f64>,
    /// (churn + contraction) ÷ MRR at the start.
    pub gross_mrr_churn_rate: Option<f64>,
    /// (churn + contraction − expansion − reactivation) ÷ MRR at the start (negative when
    /// existing customers grow more than they shrink).
    pub net_mrr_churn_rate: Option<f64>,
    /// Average revenue per account: MRR ÷ customers.
    pub arpa: Option<f64>,
    /// Lifetime value: ARPA ÷ customer churn rate; undefined (not infinite) without churn.
    pub ltv: Option<f64>,
    /// (new + expansion) ÷ (contraction + churn); undefined when nothing was lost.
    pub quick_ratio: Option<f64>,
    /// Net revenue retention: (start MRR + expansion − contraction − churn) ÷ start MRR, for the
    /// customers there at the start (new customers and reactivations are not in it).
    pub net_revenue_retention: Option<f64>,
}

fn ratio(num: f64, den: f64) -> Option<f64> {
    (den > 0.0).then(|| num / den)
}

/// The metrics of a period from its start and end snapshots.
pub fn period_metrics(
    start: &BTreeMap<String, f64>,
    end: &BTreeMap<String, f64>,
    paid_before: &BTreeSet<String>,
) -> PeriodMetrics {
    let m = movements(start, end, paid_before);
    let start_mrr: f64 = start.values().sum();
    let mrr: f64 = end.values().sum();
    let customers = end.len();
    let customer_churn_rate = ratio(m.churned_customers as f64, start.len() as f64);
    let arpa = ratio(mrr, customers as f64);
    PeriodMetrics {
        mrr,
        arr: 12.0 * mrr,
        customers,
        movements: m,
        customer_churn_rate,
        gross_mrr_churn_rate: ratio(m.churn + m.contraction, start_mrr),
        net_mrr_churn_rate: ratio(
            m.churn + m.contraction - m.expansion - m.reactivation,
            start_mrr,
        ),
        arpa,
        ltv: match (arpa, customer_churn_rate) {
            (Some(a), Some(c)) if c > 0.0 => Some(a / c),
            _ => None,
        },
        quick_ratio: ratio(m.new + m.expansion, m.contraction + m.churn),
        net_revenue_retention: ratio(start_mrr + m.expansion - m.contraction - m.churn, start_mrr),
    }
}

/// A charge (payment attempt) and what was refunded of it, major units.
#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    pub at: i64,
    pub amount: f64,
    pub succeeded: bool,
    pub refunded: f64,
}

/// Revenue (succeeded charges), refunds, and the failed payment rate (failed attempts ÷ all
/// attempts) of charges with `from <= at < to`.
pub fn payments(charges: &[Charge], from: i64, to: i64) -> (f64, f64, Option<f64>) {
    let window: Vec<&Charge> = charges
        .iter()
        .filter(|c| c.at >= from && c.at < to)
        .collect();
    let revenue = window
        .iter()
        .filter(|c| c.succeeded)
        .map(|c| c.amount)
        .sum();
    let refunds = window.iter().map(|c| c.refunded).sum();
    let failed = window.iter().filter(|c| !c.succeeded).count();
    (revenue, refunds, ratio(failed as f64, window.len() as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;
    // 1 Jan, 1 Feb, 1 Mar, 1 Apr 2025 (UTC).
    const JAN: i64 = 1_735_689_600;
    const FEB: i64 = 1_738_368_000;
    const MAR: i64 = 1_740_787_200;
    const APR: i64 = 1_743_465_600;

    fn item(amount: f64, interval: Interval, quantity: u32) -> Item {
        Item {
            unit_amount: amount,
            interval,
            interval_count: 1,
            quantity,
        }
    }

    fn sub(customer: &str, items: Vec<Item>) -> Subscription {
        Subscription {
            customer: customer.into(),
            invoiced: Vec::new(),
            status: Status::Active,
            items,
            discount: None,
            started_at: JAN,
            trial_end: None,
            ended_at: None,
        }
    }

    #[test]
    fn minor_units_follow_the_currency() {
        assert_eq!(to_major(12_345, "eur"), 123.45);
        assert_eq!(to_major(500, "JPY"), 500.0);
        assert_eq!(to_major(1_500, "kwd"), 1.5);
    }

    #[test]
    fn items_are_normalised_to_a_month_and_discounts_applied() {
        let at = FEB;
        // 1,200/year → 100; 30/week × 52/12 = 130; 2 seats × 50/month = 100; quarterly 300 → 100.
        let quarterly = Item {
            interval_count: 3,
            ..item(300.0, Interval::Month, 1)
        };
        let s = sub(
            "a",
            vec![
                item(1_200.0, Interval::Year, 1),
                item(30.0, Interval::Week, 1),
                item(50.0, Interval::Month, 2),
                quarterly,
            ],
        );
        assert!((subscription_mrr(&s, at) - 430.0).abs() < 1e-9);
        let pct = Subscription {
            discount: Some(Discount::PercentOff {
                percent: 20.0,
                ends_at: None,
            }),
            ..s.clone()
        };
        assert!((subscription_mrr(&pct, at) - 344.0).abs() < 1e-9);
        // 120 off a yearly invoice = 10 a month; expired discounts no longer count.
        let yearly = sub("b", vec![item(1_200.0, Interval::Year, 1)]);
        let off = Subscription {
            discount: Some(Discount::AmountOff {
                amount: 120.0,
                ends_at: Some(MAR),
            }),
            ..yearly
        };
        assert!((subscription_mrr(&off, FEB) - 90.0).abs() < 1e-9);
        assert!((subscription_mrr(&off, MAR) - 100.0).abs() < 1e-9);
    }

    #[test]
    fn invoices_date_upgrades_where_they_happened() {
        // 50 a month billed for February, then upgraded: 80 billed from 1 March; items say 80.
        let s = Subscription {
            invoiced: vec![
                InvoicedPeriod {
                    start: FEB,
                    end: MAR,
                    mrr: 50.0,
                },
                InvoicedPeriod {
                    start: MAR,
                    end: APR,
                    mrr: line_mrr(240.0, Interval::Month, 3),
                },
            ],
            ..sub("a", vec![item(80.0, Interval::Month, 1)])
        };
        assert_eq!(subscription_mrr(&s, FEB + DAY), 50.0);
        assert_eq!(subscription_mrr(&s, MAR + DAY), 80.0);
        // After the last invoiced period (renewal pending) and before the first: the items.
        assert_eq!(subscription_mrr(&s, APR + DAY), 80.0);
        assert_eq!(subscription_mrr(&s, JAN + DAY), 80.0);
        let ended = Subscription {
            status: Status::Canceled,
            ended_at: Some(MAR + 5 * DAY),
            ..s
        };
        assert_eq!(
            subscription_mrr(&ended, MAR + 6 * DAY),
            0.0,
            "ended inside a paid period"
        );
    }

    #[test]
    fn trials_unpaid_and_ended_subscriptions_bring_no_mrr() {
        let base = sub("a", vec![item(100.0, Interval::Month, 1)]);
        let trial = Subscription {
            status: Status::Trialing,
            trial_end: Some(FEB),
            ..base.clone()
        };
        assert_eq!(subscription_mrr(&trial, FEB - DAY), 0.0);
        assert_eq!(subscription_mrr(&trial, FEB), 100.0);
        for status in [Status::Unpaid, Status::Incomplete, Status::Paused] {
            let s = Subscription {
                status,
                ..base.clone()
            };
            assert_eq!(subscription_mrr(&s, FEB), 0.0, "{status:?}");
        }
        let past_due = Subscription {
            status: Status::PastDue,
            ..base.clone()
        };
        assert_eq!(subscription_mrr(&past_due, FEB), 100.0);
        let canceled = Subscription {
            status: Status::Canceled,
            ended_at: Some(MAR),
            ..base
        };
        assert_eq!(subscription_mrr(&canceled, FEB), 100.0);
        assert_eq!(subscription_mrr(&canceled, MAR), 0.0);
    }

    /// A fixture business over three months, worked out by hand:
    ///
    /// | customer | Jan 1 | Feb 1 | Mar 1 | Apr 1 |
    /// |---|---|---|---|---|
    /// | A | 100 | 100 | 150 (upgrade) | 150 |
    /// | B | 200 | 200 | 0 (churned) | 0 |
    /// | C | 50 | 30 (downgrade) | 30 | 30 |
    /// | D | – | 80 (new) | 80 | 80 |
    /// | E | 120 | 0 (churned) | 0 | 120 (back) |
    ///
    /// February (Jan 1 → Feb 1): start 470 over 4 customers; new 80 (D), contraction 20 (C),
    /// churn 120 (E). End 410 over 4 customers.
    /// March (Feb 1 → Mar 1): start 410; expansion 50 (A), churn 200 (B). End 260 over 3.
    /// April (Mar 1 → Apr 1): start 260; reactivation 120 (E). End 380 over 4.
    #[test]
    fn a_three_month_fixture_matches_the_hand_computation() {
        let snap = |pairs: &[(&str, f64)]| -> BTreeMap<String, f64> {
            pairs
                .iter()
                .filter(|(_, v)| *v > 0.0)
                .map(|(k, v)| (k.to_string(), *v))
                .collect()
        };
        let jan = snap(&[("A", 100.0), ("B", 200.0), ("C", 50.0), ("E", 120.0)]);
        let feb = snap(&[("A", 100.0), ("B", 200.0), ("C", 30.0), ("D", 80.0)]);
        let mar = snap(&[("A", 150.0), ("C", 30.0), ("D", 80.0)]);
        let apr = snap(&[("A", 150.0), ("C", 30.0), ("D", 80.0), ("E", 120.0)]);
        let paid = |snaps: &[&BTreeMap<String, f64>]| -> BTreeSet<String> {
            snaps.iter().flat_map(|s| s.keys().cloned()).collect()
        };

        let february = period_metrics(&jan, &feb, &paid(&[&jan]));
        assert_eq!(february.mrr, 410.0);
        assert_eq!(february.arr, 4_920.0);
        assert_eq!(
            (
                february.movements.new,
                february.movements.contraction,
                february.movements.churn
            ),
            (80.0, 20.0, 120.0)
        );
        assert_eq!(february.customer_churn_rate, Some(0.25)); // 1 of 4
        assert_eq!(february.gross_mrr_churn_rate, Some(140.0 / 470.0));
        assert_eq!(february.net_mrr_churn_rate, Some(140.0 / 470.0));
        assert_eq!(february.arpa, Some(102.5)); // 410 / 4
        assert_eq!(february.ltv, Some(410.0)); // 102.5 / 0.25
        assert_eq!(february.quick_ratio, Some(80.0 / 140.0));
        assert_eq!(february.net_revenue_retention, Some(330.0 / 470.0));

        let march = period_metrics(&feb, &mar, &paid(&[&jan, &feb]));
        assert_eq!(march.mrr, 260.0);
        assert_eq!(
            (march.movements.expansion, march.movements.churn),
            (50.0, 200.0)
        );
        assert_eq!(march.customer_churn_rate, Some(0.25)); // 1 of 4
        assert_eq!(march.net_mrr_churn_rate, Some(150.0 / 410.0));
        assert_eq!(march.quick_ratio, Some(50.0 / 200.0));
        assert_eq!(march.net_revenue_retention, Some(260.0 / 410.0));

        let april = period_metrics(&mar, &apr, &paid(&[&jan, &feb, &mar]));
        assert_eq!(april.movements.reactivation, 120.0);
        assert_eq!(april.movements.new, 0.0, "E is back, not new");
        assert_eq!(april.customer_churn_rate, Some(0.0));
        assert_eq!(april.ltv, None, "no churn: LTV is undefined, not infinite");
        assert_eq!(april.quick_ratio, None, "nothing lost");
        assert_eq!(april.net_mrr_churn_rate, Some(-120.0 / 260.0));
        assert_eq!(april.net_revenue_retention, Some(1.0));
    }

    #[test]
    fn snapshots_come_from_subscriptions() {
        let mut b = sub("B", vec![item(200.0, Interval::Month, 1)]);
        b.status = Status::Canceled;
        b.ended_at = Some(MAR);
        let subs = vec![
            sub("A", vec![item(1_200.0, Interval::Year, 1)]),
            b,
            Subscription {
                started_at: FEB + 10 * DAY,
                ..sub("D", vec![item(80.0, Interval::Month, 1)])
            },
        ];
        let feb = customer_mrr(&subs, FEB);
        assert_eq!(feb.get("A"), Some(&100.0));
        assert_eq!(feb.get("B"), Some(&200.0));
        assert_eq!(feb.get("D"), None);
        let mar = customer_mrr(&subs, MAR);
        assert_eq!(mar.values().sum::<f64>(), 180.0);
        let _ = APR;
    }

    #[test]
    fn payments_give_revenue_refunds_and_the_failed_rate() {
        let charges = vec![
            Charge {
                at: FEB,
                amount: 100.0,
                succeeded: true,
                refunded: 0.0,
            },
            Charge {
                at: FEB + DAY,
                amount: 50.0,
                succeeded: false,
                refunded: 0.0,
            },
            Charge {
                at: FEB + 2 * DAY,
                amount: 80.0,
                succeeded: true,
                refunded: 30.0,
            },
            Charge {
                at: MAR,
                amount: 999.0,
                succeeded: true,
                refunded: 0.0,
            },
        ];
        assert_eq!(payments(&charges, FEB, MAR), (180.0, 30.0, Some(1.0 / 3.0)));
        assert_eq!(payments(&charges, JAN, FEB), (0.0, 0.0, None));
    }
}
