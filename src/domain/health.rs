//! The health score engine. Pure: it takes each metric's recent level (and the level of the
//! period before) and returns the score, its breakdown and coverage. No I/O.
//!
//! The model:
//! - Each scored metric has a basis: its *level* against a healthy and a critical level (rates
//!   such as churn or uptime), or its *trend*, the growth against the previous period, against a
//!   healthy and a critical growth (absolute amounts such as revenue, whose healthy level depends
//!   on the business's size). Churn also counts its trend, a quarter of its sub-score.
//! - Position `t` is 0 at the critical mark and 1 at the healthy one (either direction). The
//!   sub-score is the logistic `100 / (1 + 9^(1 - 2t))`: 10 at critical, 50 halfway, 90 at
//!   healthy, smooth and strictly monotone, never leaving (0, 100): no cliffs.
//! - A category's score is the weighted mean of its metrics' sub-scores; Risk is reported as
//!   risk (`100 - that mean`) and enters the overall score inverted, as `100 - risk`.
//! - Metrics without recent data are left out and the weights renormalised; coverage says how
//!   many metrics and categories the score rests on.

use serde::{Deserialize, Serialize};

use super::catalog::Category;

/// Default category weights (percent): Financial 25, Customer 25, Operational 20, Growth 20, Risk 10.
pub const DEFAULT_CATEGORY_WEIGHTS: [(Category, f64); 5] = [
    (Category::Financial, 25.0),
    (Category::Customer, 25.0),
    (Category::Operational, 20.0),
    (Category::Growth, 20.0),
    (Category::Risk, 10.0),
];

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The level against healthy and critical levels, in the metric's unit.
    Level { healthy: f64, critical: f64 },
    /// Growth in percent against the previous period, against healthy and critical growth.
    Trend { healthy: f64, critical: f64 },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricTarget {
    pub key: String,
    pub category: Category,
    pub basis: Basis,
    /// Share of the sub-score given to the trend for a level-based metric (0 for none).
    pub trend_weight: f64,
    /// Weight of the metric inside its category.
    pub weight: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BusinessKind {
    Saas,
    Ecommerce,
    Services,
}

/// Default targets for the built-in metrics. Cash flow and burn rate are not scored on their
/// own: runway months carries them, relative to the cash at hand.
pub fn default_targets(kind: BusinessKind) -> Vec<MetricTarget> {
    use Category::*;
    let level = |h: f64, c: f64| Basis::Level {
        healthy: h,
        critical: c,
    };
    let trend = |h: f64, c: f64| Basis::Trend {
        healthy: h,
        critical: c,
    };
    let mut rows: Vec<(&str, Category, Basis, f64)> = vec![
        ("revenue", Financial, trend(5.0, -10.0), 0.0),
        ("expenses", Financial, trend(0.0, 20.0), 0.0),
        ("cash_balance", Financial, trend(0.0, -20.0), 0.0),
        ("profit_margin", Financial, level(15.0, -20.0), 0.0),
        ("customers", Customer, trend(3.0, -5.0), 0.0),
        ("new_customers", Customer, trend(5.0, -20.0), 0.0),
        ("churn_rate", Customer, level(3.0, 8.0), 0.25),
        ("cac", Customer, trend(-5.0, 25.0), 0.0),
        ("ltv", Customer, trend(3.0, -15.0), 0.0),
        ("nps", Customer, level(40.0, 0.0), 0.0),
        ("uptime", Operational, level(99.9, 99.0), 0.0),
        ("support_tickets", Operational, trend(0.0, 40.0), 0.0),
        ("resolution_time", Operational, level(8.0, 48.0), 0.0),
        ("fulfilment_rate", Operational, level(98.0, 90.0), 0.0),
        ("inventory_turnover", Operational, level(6.0, 2.0), 0.0),
        ("mrr", Growth, trend(5.0, -5.0), 0.0),
        ("mrr_growth", Growth, level(5.0, -2.0), 0.0),
        ("leads", Growth, trend(5.0, -20.0), 0.0),
        ("conversion_rate", Growth, level(3.0, 0.5), 0.0),
        ("traffic", Growth, trend(5.0, -20.0), 0.0),
        ("runway_months", Risk, level(18.0, 6.0), 0.0),
        ("overdue_receivables", Risk, trend(0.0, 50.0), 0.0),
        ("customer_concentration", Risk, level(10.0, 40.0), 0.0),
        ("failed_payments", Risk, trend(0.0, 50.0), 0.0),
    ];
    match kind {
        BusinessKind::Saas => {}
        BusinessKind::Ecommerce => {
            // Repeat purchase, not subscription: churn is looser, fulfilment tighter.
            for row in rows.iter_mut() {
                match row.0 {
                    "churn_rate" => row.2 = level(5.0, 12.0),
                    "fulfilment_rate" => row.2 = level(98.5, 93.0),
                    "conversion_rate" => row.2 = level(2.5, 0.5),
                    _ => {}
                }
            }
        }
        BusinessKind::Services => {
            for row in rows.iter_mut() {
                match row.0 {
                    "customer_concentration" => row.2 = level(20.0, 50.0),
                    "churn_rate" => row.2 = level(2.0, 6.0),
                    _ => {}
                }
            }
        }
    }
    rows.into_iter()
        .map(|(key, category, basis, trend_weight)| MetricTarget {
            key: key.to_string(),
            category,
            basis,
            trend_weight,
            weight: 1.0,
        })
        .collect()
}

/// What the engine knows of one metric: its level in the current period and the one before.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reading {
    pub key: String,
    pub current: Option<f64>,
    pub previous: Option<f64>,
    /// Data is older than the metric's expected cadence: it lowers coverage, not the score.
    pub stale: bool,
}

/// The logistic mapping of a position `t` (0 = critical, 1 = healthy) to 0–100.
pub fn logistic(t: f64) -> f64 {
    100.0 / (1.0 + 9f64.powf(1.0 - 2.0 * t))
}

/// Position of `value` between critical (0) and healthy (1); works for either direction.
pub fn position(value: f64, healthy: f64, critical: f64) -> f64 {
    if healthy == critical {
        return if value >= healthy { 1.0 } else { 0.0 };
    }
    (value - critical) / (healthy - critical)
}

/// Growth in percent from `previous` to `current`; `None` when it is undefined.
pub fn growth_pct(current: f64, previous: f64) -> Option<f64> {
    (previous != 0.0).then(|| (current - previous) / previous.abs() * 100.0)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricScore {
    pub key: String,
    pub category: Category,
    pub value: f64,
    pub growth_pct: Option<f64>,
    pub basis: Basis,
    pub sub_score: f64,
    /// Share of the overall score this metric carries after renormalisation (sums to 1).
    pub overall_weight: f64,
    /// Points of the overall score it adds, and the points it misses of its share.
    pub points: f64,
    pub points_lost: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CategoryScore {
    pub category: Category,
    /// For Risk this is risk (higher is worse); for the others, health.
    pub score: f64,
    /// The weight (percent) it has in the overall score after renormalisation.
    pub weight: f64,
    pub metrics: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Coverage {
    pub metrics_used: usize,
    pub metrics_total: usize,
    pub categories_used: usize,
    pub categories_total: usize,
    pub stale: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthScore {
    /// `None` when no metric has data.
    pub overall: Option<f64>,
    pub categories: Vec<CategoryScore>,
    pub metrics: Vec<MetricScore>,
    pub coverage: Coverage,
}

/// Scores one metric; `None` without a usable reading.
pub fn score_metric(target: &MetricTarget, reading: &Reading) -> Option<(f64, f64, Option<f64>)> {
    let current = reading.current?;
    let growth = reading.previous.and_then(|p| growth_pct(current, p));
    let sub = match target.basis {
        Basis::Level { healthy, critical } => {
            let level = logistic(position(current, healthy, critical));
            match (growth, target.trend_weight > 0.0) {
                (Some(_), true) => {
                    // Trend of a level metric: moving towards healthy by 10 % of the span
                    // scores 90, away by as much scores 10.
                    let span = (healthy - critical).abs().max(f64::EPSILON);
                    let previous = reading.previous.unwrap_or(current);
                    let toward = (current - previous) * (healthy - critical).signum() / span;
                    let trend = logistic(0.5 + 4.0 * toward);
                    (1.0 - target.trend_weight) * level + target.trend_weight * trend
                }
                _ => level,
            }
        }
        Basis::Trend { healthy, critical } => logistic(position(growth?, healthy, critical)),
    };
    Some((sub, current, growth))
}

/// Computes the score. `category_weights` may omit categories (weight 0).
pub fn compute(
    targets: &[MetricTarget],
    readings: &[Reading],
    category_weights: &[(Category, f64)],
) -> HealthScore {
    let reading = |key: &str| readings.iter().find(|r| r.key == key);
    let mut scored: Vec<(usize, f64, f64, Option<f64>)> = Vec::new();
    let mut stale = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let Some(r) = reading(&t.key) else { continue };
        if r.stale {
            stale.push(t.key.clone());
            continue;
        }
        if t.weight <= 0.0 {
            continue;
        }
        if let Some((sub, value, growth)) = score_metric(t, r) {
            scored.push((i, sub, value, growth));
        }
    }

    // Category means, then renormalised category weights over the categories with data.
    let mut categories = Vec::new();
    for (category, weight) in category_weights.iter().copied().filter(|(_, w)| *w > 0.0) {
        let members: Vec<&(usize, f64, f64, Option<f64>)> = scored
            .iter()
            .filter(|s| targets[s.0].category == category)
            .collect();
        let total_weight: f64 = members.iter().map(|s| targets[s.0].weight).sum();
        if members.is_empty() || total_weight <= 0.0 {
            continue;
        }
        let health = members
            .iter()
            .map(|s| targets[s.0].weight * s.1)
            .sum::<f64>()
            / total_weight;
        categories.push((category, weight, health, members.len()));
    }
    let weight_sum: f64 = categories.iter().map(|c| c.1).sum();
    let overall =
        (weight_sum > 0.0).then(|| categories.iter().map(|c| c.1 * c.2).sum::<f64>() / weight_sum);

    let mut metrics = Vec::new();
    for (i, sub, value, growth) in &scored {
        let t = &targets[*i];
        let Some(cat) = categories.iter().find(|c| c.0 == t.category) else {
            continue;
        };
        let in_category: f64 = scored
            .iter()
            .filter(|s| targets[s.0].category == t.category)
            .map(|s| targets[s.0].weight)
            .sum();
        let overall_weight = (cat.1 / weight_sum) * (t.weight / in_category);
        metrics.push(MetricScore {
            key: t.key.clone(),
            category: t.category,
            value: *value,
            growth_pct: *growth,
            basis: t.basis,
            sub_score: *sub,
            overall_weight,
            points: overall_weight * sub,
            points_lost: overall_weight * (100.0 - sub),
        });
    }
    let categories_total = category_weights.iter().filter(|(_, w)| *w > 0.0).count();
    HealthScore {
        overall,
        coverage: Coverage {
            metrics_used: metrics.len(),
            metrics_total: targets.iter().filter(|t| t.weight > 0.0).count(),
            categories_used: categories.len(),
            categories_total,
            stale,
        },
        categories: categories
            .into_iter()
            .map(|(category, weight, health, n)| CategoryScore {
                category,
                score: if category == Category::Risk {
                    100.0 - health
                } else {
                    health
                },
                weight: weight / weight_sum * 100.0,
                metrics: n,
            })
            .collect(),
        metrics,
    }
}

impl HealthScore {
    /// The metrics that cost the most points, worst first.
    pub fn top_drags(&self, n: usize) -> Vec<&MetricScore> {
        let mut m: Vec<&MetricScore> = self.metrics.iter().collect();
        m.sort_by(|a, b| b.points_lost.total_cmp(&a.points_lost));
        m.into_iter().take(n).collect()
    }

    /// The metrics that add the most points, best first.
    pub fn top_lifts(&self, n: usize) -> Vec<&MetricScore> {
        let mut m: Vec<&MetricScore> = self.metrics.iter().collect();
        m.sort_by(|a, b| b.points.total_cmp(&a.points));
        m.into_iter().take(n).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(key: &str, current: f64, previous: Option<f64>) -> Reading {
        Reading {
            key: key.into(),
            current: Some(current),
            previous,
            stale: false,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn the_mapping_hits_its_marks_and_is_monotone() {
        assert!(close(logistic(0.0), 10.0));
        assert!(close(logistic(0.5), 50.0));
        assert!(close(logistic(1.0), 90.0));
        let mut last = 0.0;
        for i in -400..=400 {
            let s = logistic(f64::from(i) / 100.0);
            assert!(s > last && s > 0.0 && s < 100.0);
            last = s;
        }
        // Lower-is-better: churn 3 % is healthy (90), 8 % critical (10), 5.5 % halfway.
        assert!(close(logistic(position(3.0, 3.0, 8.0)), 90.0));
        assert!(close(logistic(position(5.5, 3.0, 8.0)), 50.0));
    }

    /// Golden 1, a healthy SaaS business. Working:
    /// - Financial: revenue +5 % (healthy) → 90; profit margin 15 % (healthy) → 90. Mean 90.
    /// - Customer: churn 3 % (level 90), unchanged from 3 % (trend: toward = 0 → 50):
    ///   0.75·90 + 0.25·50 = 80; NPS 40 → 90. Mean 85.
    /// - Operational: uptime 99.9 → 90. Growth: MRR +5 % → 90. Risk: runway 12 months, halfway
    ///   between 6 and 18 → health 50, risk 50.
    /// - Overall = 0.25·90 + 0.25·85 + 0.2·90 + 0.2·90 + 0.1·(100 − 50) = 22.5 + 21.25 + 18 + 18 + 5 = 84.75.
    #[test]
    fn golden_healthy_saas() {
        let targets = default_targets(BusinessKind::Saas);
        let readings = vec![
            reading("revenue", 105_000.0, Some(100_000.0)),
            reading("profit_margin", 15.0, None),
            reading("churn_rate", 3.0, Some(3.0)),
            reading("nps", 40.0, None),
            reading("uptime", 99.9, None),
            reading("mrr", 42_000.0, Some(40_000.0)),
            reading("runway_months", 12.0, None),
        ];
        let s = compute(&targets, &readings, &DEFAULT_CATEGORY_WEIGHTS);
        assert!(close(s.overall.unwrap(), 84.75), "{:?}", s.overall);
        let cat = |c: Category| s.categories.iter().find(|x| x.category == c).unwrap().score;
        assert!(close(cat(Category::Customer), 85.0));
        assert!(close(cat(Category::Risk), 50.0));
        assert_eq!((s.coverage.metrics_used, s.coverage.metrics_total), (7, 24));
        assert_eq!(
            (s.coverage.categories_used, s.coverage.categories_total),
            (5, 5)
        );
        // Runway costs the most: 10 % weight × 50 points lost = 5 points.
        let drag = s.top_drags(1)[0];
        assert_eq!(drag.key, "runway_months");
        assert!(close(drag.points_lost, 5.0));
        let total: f64 = s.metrics.iter().map(|m| m.points).sum();
        assert!(close(total, 84.75), "points add up to the score");
    }

    /// Golden 2, a struggling e-commerce shop (e-commerce targets). Working:
    /// - Financial: revenue −10 % (critical) → 10. Customer: churn 12 % (critical for
    ///   e-commerce) with no previous → 10. Operational: fulfilment 93 % (critical) → 10.
    /// - Growth: traffic −7.5 %, halfway between −20 and +5 → 50.
    /// - Risk: customer concentration 25 %, halfway between 10 and 40 → health 50, risk 50.
    /// - Overall = 0.25·10 + 0.25·10 + 0.2·10 + 0.2·50 + 0.1·50 = 2.5 + 2.5 + 2 + 10 + 5 = 22.
    #[test]
    fn golden_struggling_ecommerce() {
        let targets = default_targets(BusinessKind::Ecommerce);
        let readings = vec![
            reading("revenue", 90.0, Some(100.0)),
            reading("churn_rate", 12.0, None),
            reading("fulfilment_rate", 93.0, None),
            reading("traffic", 9_250.0, Some(10_000.0)),
            reading("customer_concentration", 25.0, None),
        ];
        let s = compute(&targets, &readings, &DEFAULT_CATEGORY_WEIGHTS);
        assert!(close(s.overall.unwrap(), 22.0), "{:?}", s.overall);
        let drags: Vec<&str> = s.top_drags(3).iter().map(|m| m.key.as_str()).collect();
        // Revenue and churn each lose 0.25 × 90 = 22.5 points; fulfilment 0.2 × 90 = 18.
        assert_eq!(drags[2], "fulfilment_rate");
        assert!(drags[..2].contains(&"revenue") && drags[..2].contains(&"churn_rate"));
    }

    /// Golden 3, a services firm with no Growth data. Working:
    /// - Weights renormalise over Financial 25, Customer 25, Operational 20, Risk 10 (sum 80).
    /// - Financial: profit margin −2.5 %, halfway between −20 and 15 → 50. Customer: NPS 40 → 90.
    ///   Operational: resolution 28 h, halfway between 48 and 8 → 50. Risk: concentration 20 %
    ///   (services healthy) → health 90, risk 10.
    /// - Overall = (25·50 + 25·90 + 20·50 + 10·90) / 80 = (1250 + 2250 + 1000 + 900) / 80 = 67.5.
    #[test]
    fn golden_services_without_growth_data() {
        let targets = default_targets(BusinessKind::Services);
        let readings = vec![
            reading("profit_margin", -2.5, None),
            reading("nps", 40.0, None),
            reading("resolution_time", 28.0, None),
            reading("customer_concentration", 20.0, None),
            Reading {
                key: "mrr".into(),
                current: Some(1.0),
                previous: Some(1.0),
                stale: true,
            },
        ];
        let s = compute(&targets, &readings, &DEFAULT_CATEGORY_WEIGHTS);
        assert!(close(s.overall.unwrap(), 67.5), "{:?}", s.overall);
        assert_eq!(
            (s.coverage.categories_used, s.coverage.categories_total),
            (4, 5)
        );
        assert_eq!(s.coverage.stale, vec!["mrr".to_string()]);
        let weights: f64 = s.categories.iter().map(|c| c.weight).sum();
        assert!(close(weights, 100.0));
        assert!(close(
            s.categories
                .iter()
                .find(|c| c.category == Category::Financial)
                .unwrap()
                .weight,
            31.25
        ));
    }

    #[test]
    fn no_data_means_no_score() {
        let s = compute(
            &default_targets(BusinessKind::Saas),
            &[],
            &DEFAULT_CATEGORY_WEIGHTS,
        );
        assert_eq!(s.overall, None);
        assert_eq!(s.coverage.metrics_used, 0);
    }

    /// A small deterministic generator for the properties below.
    fn values(seed: u64, n: usize) -> Vec<f64> {
        let mut x = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((x >> 11) as f64 / (1u64 << 53) as f64) * 200.0 - 50.0
            })
            .collect()
    }

    fn readings_for(targets: &[MetricTarget], seed: u64) -> Vec<Reading> {
        let v = values(seed, targets.len() * 2);
        targets
            .iter()
            .enumerate()
            .map(|(i, t)| reading(&t.key, v[2 * i], Some(v[2 * i + 1].abs() + 1.0)))
            .collect()
    }

    #[test]
    fn property_scores_stay_in_range_and_weights_sum_to_100() {
        let targets = default_targets(BusinessKind::Saas);
        for seed in 0..300 {
            let mut rs = readings_for(&targets, seed);
            // Drop a seed-dependent subset to vary coverage.
            rs.retain(|r| !(r.key.len() as u64 + seed).is_multiple_of(3));
            let s = compute(&targets, &rs, &DEFAULT_CATEGORY_WEIGHTS);
            if let Some(o) = s.overall {
                assert!((0.0..=100.0).contains(&o));
                let w: f64 = s.categories.iter().map(|c| c.weight).sum();
                assert!(close(w, 100.0));
                let shares: f64 = s.metrics.iter().map(|m| m.overall_weight).sum();
                assert!(close(shares, 1.0));
            }
            assert!(
                s.categories
                    .iter()
                    .all(|c| (0.0..=100.0).contains(&c.score))
            );
            assert!(
                s.metrics
                    .iter()
                    .all(|m| (0.0..=100.0).contains(&m.sub_score))
            );
        }
    }

    #[test]
    fn property_better_values_never_lower_any_score() {
        let targets = default_targets(BusinessKind::Saas);
        for seed in 0..100 {
            let base = readings_for(&targets, seed);
            let before = compute(&targets, &base, &DEFAULT_CATEGORY_WEIGHTS);
            for t in &targets {
                // Move the metric in its better direction.
                let better_sign = match t.basis {
                    Basis::Level { healthy, critical } | Basis::Trend { healthy, critical } => {
                        (healthy - critical).signum()
                    }
                };
                let mut changed = base.clone();
                let r = changed.iter_mut().find(|r| r.key == t.key).unwrap();
                r.current = r.current.map(|c| c + better_sign * 3.0);
                let after = compute(&targets, &changed, &DEFAULT_CATEGORY_WEIGHTS);
                assert!(
                    after.overall.unwrap() >= before.overall.unwrap() - 1e-9,
                    "{} overall",
                    t.key
                );
                let sub = |s: &HealthScore| {
                    s.metrics
                        .iter()
                        .find(|m| m.key == t.key)
                        .map(|m| m.sub_score)
                };
                if let (Some(a), Some(b)) = (sub(&after), sub(&before)) {
                    assert!(a >= b - 1e-9, "{} sub-score", t.key);
                }
                for (ca, cb) in after.categories.iter().zip(&before.categories) {
                    let (a, b) = if ca.category == Category::Risk {
                        (-ca.score, -cb.score)
                    } else {
                        (ca.score, cb.score)
                    };
                    assert!(a >= b - 1e-9, "{} category {:?}", t.key, ca.category);
                }
            }
        }
    }

    #[test]
    fn property_removing_a_metric_leaves_other_categories_alone() {
        let targets = default_targets(BusinessKind::Saas);
        for seed in 0..100 {
            let base = readings_for(&targets, seed);
            let before = compute(&targets, &base, &DEFAULT_CATEGORY_WEIGHTS);
            for t in &targets {
                let without: Vec<Reading> =
                    base.iter().filter(|r| r.key != t.key).cloned().collect();
                let after = compute(&targets, &without, &DEFAULT_CATEGORY_WEIGHTS);
                for c in after.categories.iter().filter(|c| c.category != t.category) {
                    let b = before
                        .categories
                        .iter()
                        .find(|x| x.category == c.category)
                        .unwrap();
                    assert!(
                        close(c.score, b.score),
                        "{} changed {:?}",
                        t.key,
                        c.category
                    );
                }
            }
        }
    }
}

/// A recommendation rule: the metric it watches, the condition it fires on, and the advice it
/// gives. Every rule fires when its metric scores below 50 (past halfway from healthy to
/// critical) and costs at least two points of the overall score; `condition` states what that
/// means for the metric with the default SaaS targets.
pub struct Rule {
    pub metric: &'static str,
    pub condition: &'static str,
    pub advice: &'static str,
}

/// The rules, one per metric that has specific advice; other metrics get a generic sentence.
pub const RULES: &[Rule] = &[
    Rule {
        metric: "churn_rate",
        condition: "monthly churn above 5.5 %",
        advice: "Call the customers who left this month and check where new customers stall in onboarding.",
    },
    Rule {
        metric: "revenue",
        condition: "revenue growth below −2.5 % on the previous 30 days",
        advice: "Check which products or regions fell (open Revenue and group by a dimension).",
    },
    Rule {
        metric: "mrr",
        condition: "MRR flat or shrinking on the previous 30 days",
        advice: "Compare new, expansion and churned MRR to see which movement shrank.",
    },
    Rule {
        metric: "runway_months",
        condition: "runway under 12 months",
        advice: "Plan the next raise or cut the burn now: fundraising takes six months.",
    },
    Rule {
        metric: "uptime",
        condition: "uptime below 99.45 %",
        advice: "Review the incidents behind the downtime and add monitoring where they were found late.",
    },
    Rule {
        metric: "profit_margin",
        condition: "profit margin below −2.5 %",
        advice: "Look at the largest cost lines against the revenue they support.",
    },
    Rule {
        metric: "cac",
        condition: "acquisition cost up more than 10 % on the previous 30 days",
        advice: "Move budget from the most expensive channel to the one converting best.",
    },
    Rule {
        metric: "customer_concentration",
        condition: "largest customer above 25 % of revenue",
        advice: "Grow the next tier of customers so one loss cannot sink the quarter.",
    },
    Rule {
        metric: "failed_payments",
        condition: "failed payments up more than 25 % on the previous 30 days",
        advice: "Turn on card-updater and dunning emails; contact customers with repeated failures.",
    },
    Rule {
        metric: "resolution_time",
        condition: "resolution time above 28 hours",
        advice: "Triage the oldest open tickets and add answers for the most common questions.",
    },
    Rule {
        metric: "conversion_rate",
        condition: "conversion below 1.75 %",
        advice: "Test the signup and checkout steps where most visitors drop out.",
    },
    Rule {
        metric: "nps",
        condition: "NPS below 20",
        advice: "Read the detractors' comments and fix the most frequent complaint first.",
    },
];

/// One sentence per large drag, citing the numbers. `name_of` gives a metric's display name and
/// `format` formats a value in the metric's unit.
pub fn recommendations(
    score: &HealthScore,
    targets: &[MetricTarget],
    name_of: impl Fn(&str) -> String,
    format: impl Fn(&str, f64) -> String,
) -> Vec<String> {
    let mut out = Vec::new();
    for m in score.top_drags(score.metrics.len()) {
        if m.sub_score >= 50.0 || m.points_lost < 2.0 {
            continue;
        }
        let Some(target) = targets.iter().find(|t| t.key == m.key) else {
            continue;
        };
        let name = name_of(&m.key);
        let cost = m.points_lost.round();
        let mut sentence = match (target.basis, m.growth_pct) {
            (Basis::Level { healthy, critical }, _) => format!(
                "{name} is {} against a healthy {} (critical {}): it costs {cost:.0} points.",
                format(&m.key, m.value),
                format(&m.key, healthy),
                format(&m.key, critical)
            ),
            (Basis::Trend { healthy, .. }, Some(g)) => format!(
                "{name} {} {:.1}% against the previous 30 days (healthy: {healthy:+.0}%): it costs {cost:.0} points.",
                if g < 0.0 { "fell" } else { "rose" },
                g.abs()
            ),
            (Basis::Trend { .. }, None) => continue,
        };
        if let Some(rule) = RULES.iter().find(|r| r.metric == m.key) {
            sentence.push(' ');
            sentence.push_str(rule.advice);
        }
        out.push(sentence);
        if out.len() == 3 {
            break;
        }
    }
    out
}

/// How often a metric is expected to report; older data is stale.
pub fn expected_cadence_days(key: &str) -> i64 {
    match key {
        "nps" => 9,
        "inventory_turnover" | "customer_concentration" | "ltv" | "cac" => 35,
        _ => 3,
    }
}

#[cfg(test)]
mod advice_tests {
    use super::*;

    #[test]
    fn recommendations_cite_the_numbers() {
        let targets = default_targets(BusinessKind::Saas);
        let readings = vec![
            Reading {
                key: "churn_rate".into(),
                current: Some(6.8),
                previous: None,
                stale: false,
            },
            Reading {
                key: "revenue".into(),
                current: Some(100.0),
                previous: Some(100.0),
                stale: false,
            },
        ];
        let s = compute(&targets, &readings, &DEFAULT_CATEGORY_WEIGHTS);
        let recs = recommendations(
            &s,
            &targets,
            |k| k.replace('_', " "),
            |_, v| format!("{v:.1}%"),
        );
        assert_eq!(recs.len(), 1, "{recs:?}");
        // Churn 6.8 %: t = (6.8 - 8) / (3 - 8) = 0.24 → 100 / (1 + 9^0.52) ≈ 24.8 points;
        // Only Financial (25) and Customer (25) have data, so each weighs 50 %; churn is the
        // only Customer metric, its share is 0.5, and it loses 0.5 × 75.2 ≈ 38 points.
        assert!(
            recs[0].starts_with(
                "churn rate is 6.8% against a healthy 3.0% (critical 8.0%): it costs 38 points."
            ),
            "{}",
            recs[0]
        );
        assert!(recs[0].contains("Call the customers"));
    }
}

/// An organisation's scoring settings: business kind, category weights, per-metric overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthSettings {
    pub kind: BusinessKind,
    /// Weight (percent) per category, in `Category::ALL` order.
    pub weights: Vec<(Category, f64)>,
    pub overrides: Vec<TargetOverride>,
    /// The revenue the business aims for each calendar month (None: beat last month). Read by
    /// the "on track this month?" forecast.
    #[serde(default)]
    pub monthly_revenue_target: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetOverride {
    pub key: String,
    pub healthy: f64,
    pub critical: f64,
    pub weight: f64,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            kind: BusinessKind::Saas,
            weights: DEFAULT_CATEGORY_WEIGHTS.to_vec(),
            overrides: Vec::new(),
            monthly_revenue_target: None,
        }
    }
}

impl BusinessKind {
    pub const ALL: [BusinessKind; 3] = [
        BusinessKind::Saas,
        BusinessKind::Ecommerce,
        BusinessKind::Services,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BusinessKind::Saas => "saas",
            BusinessKind::Ecommerce => "ecommerce",
            BusinessKind::Services => "services",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            BusinessKind::Saas => "SaaS",
            BusinessKind::Ecommerce => "E-commerce",
            BusinessKind::Services => "Services",
        }
    }

    pub fn parse(s: &str) -> Option<BusinessKind> {
        BusinessKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl HealthSettings {
    /// The default targets for the kind with the overrides applied (a weight of 0 turns a
    /// metric off).
    pub fn targets(&self) -> Vec<MetricTarget> {
        let mut targets = default_targets(self.kind);
        for o in &self.overrides {
            if let Some(t) = targets.iter_mut().find(|t| t.key == o.key) {
                t.basis = match t.basis {
                    Basis::Level { .. } => Basis::Level {
                        healthy: o.healthy,
                        critical: o.critical,
                    },
                    Basis::Trend { .. } => Basis::Trend {
                        healthy: o.healthy,
                        critical: o.critical,
                    },
                };
                t.weight = o.weight;
            }
        }
        targets
    }

    /// Checks the settings; errors name the field (`weight.financial`, `revenue.healthy`, …).
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (c, w) in &self.weights {
            if !w.is_finite() || *w < 0.0 || *w > 100.0 {
                return Err((
                    format!("weight.{}", c.as_str()),
                    "must be a number from 0 to 100".into(),
                ));
            }
        }
        if self.weights.iter().map(|(_, w)| w).sum::<f64>() <= 0.0 {
            return Err((
                "weight.financial".into(),
                "at least one category needs a weight above 0".into(),
            ));
        }
        for o in &self.overrides {
            if !o.healthy.is_finite() {
                return Err((format!("{}.healthy", o.key), "must be a number".into()));
            }
            if !o.critical.is_finite() {
                return Err((format!("{}.critical", o.key), "must be a number".into()));
            }
            if o.healthy == o.critical {
                return Err((
                    format!("{}.critical", o.key),
                    "must differ from the healthy mark".into(),
                ));
            }
            if !o.weight.is_finite() || o.weight < 0.0 || o.weight > 10.0 {
                return Err((
                    format!("{}.weight", o.key),
                    "must be a number from 0 to 10".into(),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod settings_tests {
    use super::*;

    #[test]
    fn overrides_replace_targets_and_weights_renormalise() {
        let settings = HealthSettings {
            kind: BusinessKind::Saas,
            weights: vec![(Category::Financial, 50.0), (Category::Customer, 50.0)],
            overrides: vec![TargetOverride {
                key: "churn_rate".into(),
                healthy: 2.0,
                critical: 4.0,
                weight: 1.0,
            }],
            monthly_revenue_target: None,
        };
        settings.validate().unwrap();
        let targets = settings.targets();
        let churn = targets.iter().find(|t| t.key == "churn_rate").unwrap();
        assert_eq!(
            churn.basis,
            Basis::Level {
                healthy: 2.0,
                critical: 4.0
            }
        );
        // Churn 3 % is now halfway (50); NPS 40 healthy (90); revenue +5 % healthy (90).
        let readings = vec![
            Reading {
                key: "churn_rate".into(),
                current: Some(3.0),
                previous: None,
                stale: false,
            },
            Reading {
                key: "nps".into(),
                current: Some(40.0),
                previous: None,
                stale: false,
            },
            Reading {
                key: "revenue".into(),
                current: Some(105.0),
                previous: Some(100.0),
                stale: false,
            },
        ];
        let s = compute(&targets, &readings, &settings.weights);
        // Financial 90, Customer (50 + 90) / 2 = 70; 50/50 → 80.
        assert!((s.overall.unwrap() - 80.0).abs() < 1e-9);
        let bad = HealthSettings {
            weights: vec![(Category::Risk, 120.0)],
            ..HealthSettings::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "weight.risk");
        let same = HealthSettings {
            overrides: vec![TargetOverride {
                key: "nps".into(),
                healthy: 1.0,
                critical: 1.0,
                weight: 1.0,
            }],
            ..HealthSettings::default()
        };
        assert_eq!(same.validate().unwrap_err().0, "nps.critical");
    }
}
