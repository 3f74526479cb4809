//! The metric catalog: built-in metric types of the health model, plus an org's custom metrics.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Financial,
    Customer,
    Operational,
    Growth,
    Risk,
}

impl Category {
    pub const ALL: [Category; 5] = [
        Category::Financial,
        Category::Customer,
        Category::Operational,
        Category::Growth,
        Category::Risk,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Financial => "financial",
            Category::Customer => "customer",
            Category::Operational => "operational",
            Category::Growth => "growth",
            Category::Risk => "risk",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Category::Financial => "Financial",
            Category::Customer => "Customer",
            Category::Operational => "Operational",
            Category::Growth => "Growth",
            Category::Risk => "Risk",
        }
    }

    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Currency,
    Percent,
    Count,
    Months,
    Hours,
    Ratio,
    Score,
}

impl Unit {
    pub const ALL: [Unit; 7] = [
        Unit::Currency,
        Unit::Percent,
        Unit::Count,
        Unit::Months,
        Unit::Hours,
        Unit::Ratio,
        Unit::Score,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Currency => "currency",
            Unit::Percent => "percent",
            Unit::Count => "count",
            Unit::Months => "months",
            Unit::Hours => "hours",
            Unit::Ratio => "ratio",
            Unit::Score => "score",
        }
    }

    pub fn parse(s: &str) -> Option<Unit> {
        Unit::ALL.into_iter().find(|u| u.as_str() == s)
    }
}

/// How points of a metric combine within a time bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Flows (revenue, tickets): add up.
    Sum,
    /// Rates and scores: mean of the points.
    Avg,
    /// Levels (cash balance, customers): the latest value of each series, summed over series.
    Last,
    Min,
    Max,
}

impl Aggregation {
    pub const ALL: [Aggregation; 5] = [
        Aggregation::Sum,
        Aggregation::Avg,
        Aggregation::Last,
        Aggregation::Min,
        Aggregation::Max,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Aggregation::Sum => "sum",
            Aggregation::Avg => "avg",
            Aggregation::Last => "last",
            Aggregation::Min => "min",
            Aggregation::Max => "max",
        }
    }

    pub fn parse(s: &str) -> Option<Aggregation> {
        Aggregation::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricDef {
    pub key: String,
    pub name: String,
    pub description: String,
    pub category: Category,
    pub unit: Unit,
    pub higher_is_better: bool,
    pub aggregation: Aggregation,
    pub custom: bool,
}

struct Builtin(
    &'static str,
    &'static str,
    Category,
    Unit,
    bool,
    Aggregation,
    &'static str,
);

const BUILTINS: &[Builtin] = {
    use Aggregation::*;
    use Category::*;
    use Unit::*;
    &[
        Builtin(
            "revenue",
            "Revenue",
            Financial,
            Currency,
            true,
            Sum,
            "Money earned from sales",
        ),
        Builtin(
            "expenses",
            "Expenses",
            Financial,
            Currency,
            false,
            Sum,
            "Money spent running the business",
        ),
        Builtin(
            "cash_balance",
            "Cash balance",
            Financial,
            Currency,
            true,
            Last,
            "Cash in the bank",
        ),
        Builtin(
            "cash_flow",
            "Cash flow",
            Financial,
            Currency,
            true,
            Sum,
            "Cash in minus cash out",
        ),
        Builtin(
            "burn_rate",
            "Burn rate",
            Financial,
            Currency,
            false,
            Last,
            "Net cash spent per month",
        ),
        Builtin(
            "profit_margin",
            "Profit margin",
            Financial,
            Percent,
            true,
            Avg,
            "Profit as a share of revenue",
        ),
        Builtin(
            "customers",
            "Customers",
            Customer,
            Count,
            true,
            Last,
            "Paying customers",
        ),
        Builtin(
            "new_customers",
            "New customers",
            Customer,
            Count,
            true,
            Sum,
            "Customers won",
        ),
        Builtin(
            "churn_rate",
            "Churn rate",
            Customer,
            Percent,
            false,
            Avg,
            "Share of customers lost per month",
        ),
        Builtin(
            "cac",
            "Customer acquisition cost",
            Customer,
            Currency,
            false,
            Avg,
            "Cost to win one customer",
        ),
        Builtin(
            "ltv",
            "Customer lifetime value",
            Customer,
            Currency,
            true,
            Last,
            "Revenue expected from one customer",
        ),
        Builtin(
            "nps",
            "Net promoter score",
            Customer,
            Score,
            true,
            Avg,
            "Promoters minus detractors, -100 to 100",
        ),
        Builtin(
            "uptime",
            "Uptime",
            Operational,
            Percent,
            true,
            Avg,
            "Share of time the service was available",
        ),
        Builtin(
            "support_tickets",
            "Support tickets",
            Operational,
            Count,
            false,
            Sum,
            "Tickets opened",
        ),
        Builtin(
            "resolution_time",
            "Resolution time",
            Operational,
            Hours,
            false,
            Avg,
            "Hours to resolve a ticket",
        ),
        Builtin(
            "fulfilment_rate",
            "Fulfilment rate",
            Operational,
            Percent,
            true,
            Avg,
            "Orders shipped complete and on time",
        ),
        Builtin(
            "inventory_turnover",
            "Inventory turnover",
            Operational,
            Ratio,
            true,
            Last,
            "Cost of goods sold over average inventory",
        ),
        Builtin(
            "mrr",
            "MRR",
            Growth,
            Currency,
            true,
            Last,
            "Monthly recurring revenue",
        ),
        Builtin(
            "mrr_growth",
            "MRR growth",
            Growth,
            Percent,
            true,
            Last,
            "Month-over-month MRR change",
        ),
        Builtin(
            "leads",
            "Leads",
            Growth,
            Count,
            true,
            Sum,
            "New qualified leads",
        ),
        Builtin(
            "conversion_rate",
            "Conversion rate",
            Growth,
            Percent,
            true,
            Avg,
            "Share of leads or visits that buy",
        ),
        Builtin(
            "traffic",
            "Traffic",
            Growth,
            Count,
            true,
            Sum,
            "Website visits",
        ),
        Builtin(
            "runway_months",
            "Runway",
            Risk,
            Months,
            true,
            Last,
            "Months until cash runs out at the current burn",
        ),
        Builtin(
            "overdue_receivables",
            "Overdue receivables",
            Risk,
            Currency,
            false,
            Last,
            "Unpaid invoices past due",
        ),
        Builtin(
            "customer_concentration",
            "Customer concentration",
            Risk,
            Percent,
            false,
            Last,
            "Revenue share of the largest customer",
        ),
        Builtin(
            "failed_payments",
            "Failed payments",
            Risk,
            Count,
            false,
            Sum,
            "Payments that failed",
        ),
    ]
};

/// Every built-in metric, in display order.
pub fn builtins() -> Vec<MetricDef> {
    BUILTINS
        .iter()
        .map(|b| MetricDef {
            key: b.0.to_string(),
            name: b.1.to_string(),
            category: b.2,
            unit: b.3,
            higher_is_better: b.4,
            aggregation: b.5,
            description: b.6.to_string(),
            custom: false,
        })
        .collect()
}

pub fn is_builtin(key: &str) -> bool {
    BUILTINS.iter().any(|b| b.0 == key)
}

/// A metric key: lowercase letter first, then lowercase letters, digits and underscores, at most 64.
pub fn validate_key(key: &str) -> Result<(), String> {
    let mut chars = key.chars();
    match chars.next() {
        None => return Err("must not be empty".into()),
        Some(c) if !c.is_ascii_lowercase() => {
            return Err("must start with a lowercase letter".into());
        }
        _ => {}
    }
    if key.len() > 64 {
        return Err("must be at most 64 characters".into());
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err("may contain only lowercase letters, digits and underscores".into());
    }
    Ok(())
}

/// A custom metric as typed in (API body or form); empty unit and aggregation take defaults.
pub struct CustomMetricInput<'a> {
    pub key: &'a str,
    pub name: &'a str,
    pub description: &'a str,
    pub category: &'a str,
    pub unit: &'a str,
    pub aggregation: &'a str,
    pub higher_is_better: bool,
}

/// Validates a custom metric definition; errors name the field.
pub fn custom_metric(input: &CustomMetricInput) -> Result<MetricDef, (&'static str, String)> {
    let key = input.key.trim();
    validate_key(key).map_err(|m| ("key", m))?;
    if is_builtin(key) {
        return Err(("key", format!("`{key}` is a built-in metric")));
    }
    let name = input.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(("name", "must be 1 to 100 characters".into()));
    }
    if input.description.chars().count() > 500 {
        return Err(("description", "must be at most 500 characters".into()));
    }
    let category = Category::parse(input.category.trim()).ok_or((
        "category",
        "must be financial, customer, operational, growth or risk".to_string(),
    ))?;
    let unit = match input.unit.trim() {
        "" => Unit::Count,
        u => Unit::parse(u).ok_or((
            "unit",
            "must be currency, percent, count, months, hours, ratio or score".to_string(),
        ))?,
    };
    let aggregation = match input.aggregation.trim() {
        "" => Aggregation::Sum,
        a => Aggregation::parse(a).ok_or((
            "aggregation",
            "must be sum, avg, last, min or max".to_string(),
        ))?,
    };
    Ok(MetricDef {
        key: key.to_string(),
        name: name.to_string(),
        description: input.description.trim().to_string(),
        category,
        unit,
        higher_is_better: input.higher_is_better,
        aggregation,
        custom: true,
    })
}

/// Formats a value for display in its unit; `currency` is an ISO code such as `EUR`.
pub fn format_value(unit: Unit, value: f64, currency: &str) -> String {
    match unit {
        Unit::Currency => format!(
            "{} {}",
            currency,
            group_thousands(value, if value.abs() >= 100.0 { 0 } else { 2 })
        ),
        // Near 100 % (uptime, fulfilment) the second decimal is the news.
        Unit::Percent if value > 99.0 && value < 100.0 => format!("{value:.2}%"),
        Unit::Percent => format!("{value:.1}%"),
        Unit::Count => group_thousands(
            value,
            if value.fract() == 0.0 || value.abs() >= 100.0 {
                0
            } else {
                1
            },
        ),
        Unit::Months => format!("{value:.1} mo"),
        Unit::Hours => format!("{value:.1} h"),
        Unit::Ratio => format!("{value:.2}×"),
        Unit::Score => format!("{value:.0}"),
    }
}

fn group_thousands(value: f64, decimals: usize) -> String {
    let text = format!("{:.*}", decimals, value.abs());
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i.to_string(), Some(f.to_string())),
        None => (text.clone(), None),
    };
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if value < 0.0 && text.chars().any(|c| c != '0' && c != '.') {
        "-"
    } else {
        ""
    };
    match frac {
        Some(f) => format!("{sign}{grouped}.{f}"),
        None => format!("{sign}{grouped}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_covers_every_category_with_unique_valid_keys() {
        let all = builtins();
        assert_eq!(all.len(), 26);
        for c in Category::ALL {
            assert!(all.iter().filter(|m| m.category == c).count() >= 4, "{c:?}");
        }
        let mut keys: Vec<_> = all.iter().map(|m| m.key.clone()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), all.len());
        for m in &all {
            validate_key(&m.key).unwrap();
        }
        let churn = all.iter().find(|m| m.key == "churn_rate").unwrap();
        assert!(!churn.higher_is_better);
        assert_eq!(churn.unit, Unit::Percent);
    }

    #[test]
    fn keys_are_validated() {
        assert!(validate_key("signups_eu").is_ok());
        assert!(validate_key("").is_err());
        assert!(validate_key("9lives").is_err());
        assert!(validate_key("Revenue").is_err());
        assert!(validate_key("a-b").is_err());
        assert!(validate_key(&"a".repeat(65)).is_err());
    }

    #[test]
    fn values_format_in_their_unit() {
        assert_eq!(
            format_value(Unit::Currency, 1234567.4, "EUR"),
            "EUR 1,234,567"
        );
        assert_eq!(format_value(Unit::Currency, -12.5, "USD"), "USD -12.50");
        assert_eq!(format_value(Unit::Percent, 3.04159, "USD"), "3.0%");
        assert_eq!(format_value(Unit::Percent, 99.956, "USD"), "99.96%");
        assert_eq!(format_value(Unit::Count, 1000.0, "USD"), "1,000");
        assert_eq!(format_value(Unit::Count, 2.5, "USD"), "2.5");
        assert_eq!(format_value(Unit::Months, 14.26, "USD"), "14.3 mo");
    }
}
