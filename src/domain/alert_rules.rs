//! Alert rule definitions: the kinds, their validation (every problem named by field) and the
//! human description of a condition. Pure: the caller passes the metric catalog it knows.
//!
//! One input shape serves the JSON API and the HTML editor (whose form is turned into the same
//! JSON), so both give the same messages.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::alerts::{Condition, NoDataPolicy, Severity, Timing};
use super::catalog::{Aggregation, Category, MetricDef};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleKind {
    /// A metric aggregated over a window against a threshold or range.
    Threshold,
    /// Percent change of the window's value against the window before it.
    Change,
    /// The health score (overall or one category) below a level, or dropping by more than N points.
    Score,
    /// No points for longer than `stale_after`.
    NoData,
    /// Fires from stored anomalies with at least `min_anomaly_score` (needs anomaly detection).
    Anomaly,
    /// Integrations that need attention: a reconnect (refused or revoked credentials) or a
    /// failed last sync.
    Integration,
}

impl RuleKind {
    pub const ALL: [RuleKind; 6] = [
        RuleKind::Threshold,
        RuleKind::Change,
        RuleKind::Score,
        RuleKind::NoData,
        RuleKind::Anomaly,
        RuleKind::Integration,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleKind::Threshold => "threshold",
            RuleKind::Change => "change",
            RuleKind::Score => "score",
            RuleKind::NoData => "no_data",
            RuleKind::Anomaly => "anomaly",
            RuleKind::Integration => "integration",
        }
    }

    pub fn parse(s: &str) -> Option<RuleKind> {
        RuleKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl Severity {
    pub const ALL: [Severity; 4] = [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Severity> {
        Severity::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// What a score rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreMode {
    /// The score itself (condition on the level).
    Level,
    /// How many points it lost over the window (condition `above` on the drop).
    Drop,
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleSpec {
    pub name: String,
    pub kind: RuleKind,
    pub metric: Option<String>,
    pub aggregation: Aggregation,
    /// Seconds of data each evaluation looks at (threshold, change, score drop).
    pub window_secs: i64,
    pub condition: Condition,
    pub score_category: Option<Category>,
    pub score_mode: ScoreMode,
    pub stale_after_secs: i64,
    pub min_anomaly_score: f64,
    pub severity: Severity,
    pub interval_secs: i64,
    pub timing: Timing,
    pub labels: BTreeMap<String, String>,
    pub channels: Vec<i64>,
    pub escalation_channels: Vec<i64>,
    /// Only points with these dimension values count.
    pub filters: BTreeMap<String, String>,
    /// One alert series per value of this dimension.
    pub group_by: Option<String>,
    pub enabled: bool,
}

/// A field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldProblem {
    pub field: String,
    pub message: String,
}

const MIN_INTERVAL_SECS: i64 = 10;
const MAX_DURATION_SECS: i64 = 400 * 86_400;

/// Parses `90s`, `15m`, `2h`, `1d`, `1w` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err("is empty; use e.g. 90s, 15m, 2h, 1d or 1w".into());
    }
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&t[..i], t[i..].trim()),
        None => (t, "s"),
    };
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("{t:?} is not a duration; use e.g. 90s, 15m, 2h, 1d or 1w"))?;
    let unit_secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 604_800,
        _ => {
            return Err(format!(
                "{t:?} has an unknown unit {unit:?}; use s, m, h, d or w"
            ));
        }
    };
    let secs = n
        .checked_mul(unit_secs)
        .filter(|s| *s <= MAX_DURATION_SECS)
        .ok_or_else(|| format!("{t:?} is longer than 400 days"))?;
    Ok(secs)
}

/// The shortest exact spelling: 86400 → `1d`, 5400 → `90m`.
pub fn format_duration(secs: i64) -> String {
    for (unit, size) in [("w", 604_800), ("d", 86_400), ("h", 3_600), ("m", 60)] {
        if secs != 0 && secs % size == 0 {
            return format!("{}{unit}", secs / size);
        }
    }
    format!("{secs}s")
}

struct Reader<'a> {
    input: &'a Value,
    problems: Vec<FieldProblem>,
}

impl Reader<'_> {
    fn problem(&mut self, field: &str, message: impl Into<String>) {
        self.problems.push(FieldProblem {
            field: field.into(),
            message: message.into(),
        });
    }

    fn get(&self, path: &str) -> Option<&Value> {
        let mut v = self.input;
        for part in path.split('.') {
            v = v.get(part)?;
        }
        (!v.is_null()).then_some(v)
    }

    fn string(&mut self, path: &str) -> Option<String> {
        match self.get(path) {
            None => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => Some(s.trim().to_string()),
            Some(_) => {
                self.problem(path, "must be a string");
                None
            }
        }
    }

    fn number(&mut self, path: &str) -> Option<f64> {
        match self.get(path) {
            None => None,
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(Value::String(s)) => match s.trim().parse::<f64>() {
                Ok(v) if v.is_finite() => Some(v),
                _ => {
                    self.problem(path, format!("{s:?} is not a number"));
                    None
                }
            },
            Some(_) => {
                self.problem(path, "must be a number");
                None
            }
        }
    }

    fn duration(&mut self, path: &str, default: i64) -> i64 {
        match self.get(path) {
            None => default,
            Some(Value::Number(n)) => match n.as_i64() {
                Some(s) if (0..=MAX_DURATION_SECS).contains(&s) => s,
                _ => {
                    self.problem(path, "must be a whole number of seconds up to 400 days");
                    default
                }
            },
            Some(Value::String(s)) if s.trim().is_empty() => default,
            Some(Value::String(s)) => match parse_duration(s) {
                Ok(v) => v,
                Err(m) => {
                    self.problem(path, m);
                    default
                }
            },
            Some(_) => {
                self.problem(path, "must be a duration such as \"15m\"");
                default
            }
        }
    }

    fn string_map(&mut self, path: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        match self.get(path).cloned() {
            None => {}
            Some(Value::Object(map)) => {
                for (k, v) in map {
                    let key = k.trim().to_string();
                    let value = match v {
                        Value::String(s) => s.trim().to_string(),
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        _ => {
                            self.problem(&format!("{path}.{k}"), "must be a string");
                            continue;
                        }
                    };
                    if !valid_label_key(&key) {
                        self.problem(
                            &format!("{path}.{k}"),
                            "keys are 1-64 letters, digits, `_`, `-` or `.`",
                        );
                    } else if value.is_empty() || value.len() > 200 {
                        self.problem(&format!("{path}.{k}"), "needs a value of 1-200 characters");
                    } else {
                        out.insert(key, value);
                    }
                }
            }
            Some(_) => self.problem(path, "must be an object of key/value strings"),
        }
        out
    }

    fn ids(&mut self, path: &str) -> Vec<i64> {
        match self.get(path).cloned() {
            None => Vec::new(),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for (i, item) in items.iter().enumerate() {
                    match item
                        .as_i64()
                        .or_else(|| item.as_str().and_then(|s| s.parse().ok()))
                    {
                        Some(id) if id > 0 => out.push(id),
                        _ => {
                            self.problem(&format!("{path}[{i}]"), "must be a channel id");
                        }
                    }
                }
                out.sort();
                out.dedup();
                out
            }
            Some(_) => {
                self.problem(path, "must be a list of channel ids");
                Vec::new()
            }
        }
    }
}

fn valid_label_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 64
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Validates a rule from its input JSON. `catalog` is the org's metrics; `channel_exists` says
/// whether a channel id belongs to the org. Returns every problem, not only the first.
pub fn validate(
    input: &Value,
    catalog: &[MetricDef],
    channel_exists: impl Fn(i64) -> bool,
) -> Result<RuleSpec, Vec<FieldProblem>> {
    let mut r = Reader {
        input,
        problems: Vec::new(),
    };
    if !input.is_object() {
        r.problem("", "the rule must be a JSON object");
        return Err(r.problems);
    }
    let name = r.string("name").unwrap_or_default();
    if name.is_empty() {
        r.problem("name", "is required");
    } else if name.chars().count() > 120 {
        r.problem("name", "is longer than 120 characters");
    }
    let kind = match r.string("kind") {
        None => {
            r.problem(
                "kind",
                "is required: threshold, change, score, no_data or anomaly",
            );
            RuleKind::Threshold
        }
        Some(k) => RuleKind::parse(&k).unwrap_or_else(|| {
            r.problem(
                "kind",
                format!("{k:?} is not one of threshold, change, score, no_data, anomaly"),
            );
            RuleKind::Threshold
        }),
    };
    let severity = match r.string("severity") {
        None => Severity::Medium,
        Some(s) => Severity::parse(&s).unwrap_or_else(|| {
            r.problem(
                "severity",
                format!("{s:?} is not one of low, medium, high, critical"),
            );
            Severity::Medium
        }),
    };

    // The metric (every kind but score).
    let needs_metric = !matches!(kind, RuleKind::Score | RuleKind::Integration);
    let metric_key = r.string("metric");
    let metric_def = match (&metric_key, needs_metric) {
        (Some(k), true) => {
            let def = catalog.iter().find(|d| &d.key == k);
            if def.is_none() {
                r.problem(
                    "metric",
                    format!("unknown metric `{k}`; see GET /api/v1/metrics"),
                );
            }
            def
        }
        (None, true) => {
            r.problem("metric", "is required for this kind of rule");
            None
        }
        (Some(_), false) => {
            r.problem(
                "metric",
                "a score rule watches the health score, not a metric",
            );
            None
        }
        (None, false) => None,
    };
    let aggregation = match r.string("aggregation") {
        None => metric_def
            .map(|d| d.aggregation)
            .unwrap_or(Aggregation::Avg),
        Some(a) => Aggregation::parse(&a).unwrap_or_else(|| {
            r.problem(
                "aggregation",
                format!("{a:?} is not one of sum, avg, last, min, max"),
            );
            Aggregation::Avg
        }),
    };
    // Anomalies are found on complete days: by default look back over the last two.
    let window_secs = r.duration(
        "window",
        if kind == RuleKind::Anomaly {
            2 * 86_400
        } else {
            86_400
        },
    );
    if window_secs < 60 && matches!(kind, RuleKind::Threshold | RuleKind::Change) {
        r.problem("window", "must be at least 1m");
    }
    let interval_secs = r.duration("interval", 60);
    if interval_secs < MIN_INTERVAL_SECS {
        r.problem("interval", "must be at least 10s");
    }
    let pending_for = r.duration("for", 0);
    let recovery_for = r.duration("recovery_for", 0);
    let escalate_after = match r.get("escalate_after") {
        None => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(_) => Some(r.duration("escalate_after", 0)),
    };
    if escalate_after == Some(0) {
        r.problem("escalate_after", "must be longer than 0 (or left empty)");
    }
    let mut no_data = match r.string("no_data") {
        None => NoDataPolicy::Keep,
        Some(s) => match s.as_str() {
            "keep" => NoDataPolicy::Keep,
            "alert" => NoDataPolicy::Alert,
            "ok" => NoDataPolicy::Ok,
            _ => {
                r.problem("no_data", format!("{s:?} is not one of keep, alert, ok"));
                NoDataPolicy::Keep
            }
        },
    };

    // The condition.
    let op = r.string("condition.op");
    let threshold = r.number("condition.threshold");
    let recovery = r.number("condition.recovery");
    let mut score_mode = ScoreMode::Level;
    let mut stale_after_secs = 0;
    let mut min_anomaly_score = 0.0;
    let mut condition = Condition::Above {
        threshold: 0.0,
        recovery: 0.0,
    };
    let need_threshold = |r: &mut Reader, t: Option<f64>| -> f64 {
        t.unwrap_or_else(|| {
            r.problem("condition.threshold", "is required");
            0.0
        })
    };
    match kind {
        RuleKind::NoData => {
            stale_after_secs = r.duration("stale_after", 0);
            if stale_after_secs < 60 {
                r.problem("stale_after", "is required and must be at least 1m");
            }
            // Age of the newest point against the staleness limit; never any point = no data.
            condition = Condition::Above {
                threshold: stale_after_secs as f64,
                recovery: stale_after_secs as f64,
            };
            no_data = NoDataPolicy::Alert;
        }
        RuleKind::Anomaly => {
            min_anomaly_score = r.number("min_anomaly_score").unwrap_or(0.5);
            if !(0.0..=1.0).contains(&min_anomaly_score) || min_anomaly_score == 0.0 {
                r.problem("min_anomaly_score", "must be in (0, 1]");
            }
            if window_secs < 86_400 {
                r.problem(
                    "window",
                    "must be at least 1d: anomalies are found on complete days",
                );
            }
            // The watched value is the highest anomaly score in the window (0 without any):
            // it fires from `min_anomaly_score` on and clears when no anomaly is left in it.
            condition = Condition::Above {
                threshold: min_anomaly_score - 1e-9,
                recovery: min_anomaly_score - 1e-9,
            };
        }
        RuleKind::Integration => {
            // The watched value is how many of the org's integrations need attention.
            condition = Condition::Above {
                threshold: 0.5,
                recovery: 0.5,
            };
        }
        RuleKind::Threshold | RuleKind::Change | RuleKind::Score => {
            let op_name = op.clone().unwrap_or_default();
            match op_name.as_str() {
                "above" => {
                    let t = need_threshold(&mut r, threshold);
                    condition = Condition::Above {
                        threshold: t,
                        recovery: recovery.unwrap_or(t),
                    };
                }
                "below" => {
                    let t = need_threshold(&mut r, threshold);
                    condition = Condition::Below {
                        threshold: t,
                        recovery: recovery.unwrap_or(t),
                    };
                }
                "outside" => {
                    let low = r.number("condition.low");
                    let high = r.number("condition.high");
                    if low.is_none() {
                        r.problem("condition.low", "is required for `outside`");
                    }
                    if high.is_none() {
                        r.problem("condition.high", "is required for `outside`");
                    }
                    condition = Condition::Outside {
                        low: low.unwrap_or(0.0),
                        high: high.unwrap_or(0.0),
                        margin: r.number("condition.margin").unwrap_or(0.0),
                    };
                }
                "equals" if kind == RuleKind::Threshold => {
                    condition = Condition::Equals {
                        value: need_threshold(&mut r, threshold),
                    };
                }
                "drop" if kind == RuleKind::Score => {
                    let t = need_threshold(&mut r, threshold);
                    if t <= 0.0 {
                        r.problem(
                            "condition.threshold",
                            "a drop is a positive number of points",
                        );
                    }
                    score_mode = ScoreMode::Drop;
                    condition = Condition::Above {
                        threshold: t,
                        recovery: recovery.unwrap_or(t),
                    };
                }
                "" => r.problem("condition.op", "is required"),
                other => {
                    let allowed = match kind {
                        RuleKind::Threshold => "above, below, outside, equals",
                        RuleKind::Score => "below, above, outside, drop",
                        _ => "above, below, outside",
                    };
                    r.problem("condition.op", format!("{other:?} is not one of {allowed}"));
                }
            }
            if let Err((field, message)) = condition.validate() {
                r.problem(&format!("condition.{field}"), message);
            }
        }
    }
    let score_category = match (kind, r.string("category")) {
        (RuleKind::Score, Some(c)) if c != "overall" => Category::parse(&c).or_else(|| {
            r.problem(
                "category",
                format!(
                    "{c:?} is not one of overall, financial, customer, operational, growth, risk"
                ),
            );
            None
        }),
        _ => None,
    };

    let labels = r.string_map("labels");
    let filters = r.string_map("dimensions");
    // Dimension keys reach SQL: the ingest rule for keys applies, before anything else.
    for key in filters.keys() {
        if let Err(m) = crate::domain::ingest::validate_dimension_key(key) {
            r.problem(&format!("dimensions.{key}"), m);
        }
    }
    let group_by = r.string("group_by");
    if let Some(g) = &group_by {
        if let Err(m) = crate::domain::ingest::validate_dimension_key(g) {
            r.problem("group_by", format!("must be a dimension key: {m}"));
        } else if matches!(kind, RuleKind::Score | RuleKind::Integration) {
            r.problem("group_by", "a score or integration rule has no dimensions");
        } else if filters.contains_key(g) {
            r.problem("group_by", "is already fixed by a dimension filter");
        }
    }
    if matches!(kind, RuleKind::Score | RuleKind::Integration) && !filters.is_empty() {
        r.problem(
            "dimensions",
            "a score or integration rule has no dimensions",
        );
    }
    let channels = r.ids("channels");
    let escalation_channels = r.ids("escalation_channels");
    for (field, ids) in [
        ("channels", &channels),
        ("escalation_channels", &escalation_channels),
    ] {
        for (i, id) in ids.iter().enumerate() {
            if !channel_exists(*id) {
                r.problem(
                    &format!("{field}[{i}]"),
                    format!("no channel {id} in this organisation"),
                );
            }
        }
    }
    if !escalation_channels.is_empty() && escalate_after.is_none() {
        r.problem(
            "escalate_after",
            "is required when escalation channels are set",
        );
    }
    let enabled = match r.get("enabled") {
        None => true,
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => matches!(s.as_str(), "true" | "on" | "1"),
        Some(_) => {
            r.problem("enabled", "must be true or false");
            true
        }
    };

    if !r.problems.is_empty() {
        return Err(r.problems);
    }
    Ok(RuleSpec {
        name,
        kind,
        metric: metric_key.filter(|_| needs_metric),
        aggregation,
        window_secs,
        condition,
        score_category,
        score_mode,
        stale_after_secs,
        min_anomaly_score,
        severity,
        interval_secs,
        timing: Timing {
            pending_for,
            recovery_for,
            escalate_after,
            no_data,
        },
        labels,
        channels,
        escalation_channels,
        filters,
        group_by,
        enabled,
    })
}

impl RuleSpec {
    /// The rule in its input shape (what `validate` accepts), durations spelled out.
    pub fn to_input(&self) -> Value {
        let condition = match self.condition {
            Condition::Above {
                threshold,
                recovery,
            } => {
                let op = if self.kind == RuleKind::Score && self.score_mode == ScoreMode::Drop {
                    "drop"
                } else {
                    "above"
                };
                json!({"op": op, "threshold": threshold, "recovery": recovery})
            }
            Condition::Below {
                threshold,
                recovery,
            } => json!({"op": "below", "threshold": threshold, "recovery": recovery}),
            Condition::Outside { low, high, margin } => {
                json!({"op": "outside", "low": low, "high": high, "margin": margin})
            }
            Condition::Equals { value } => json!({"op": "equals", "threshold": value}),
        };
        let mut v = json!({
            "name": self.name,
            "kind": self.kind.as_str(),
            "severity": self.severity.as_str(),
            "interval": format_duration(self.interval_secs),
            "for": format_duration(self.timing.pending_for),
            "recovery_for": format_duration(self.timing.recovery_for),
            "escalate_after": self.timing.escalate_after.map(format_duration),
            "no_data": match self.timing.no_data {
                NoDataPolicy::Keep => "keep",
                NoDataPolicy::Alert => "alert",
                NoDataPolicy::Ok => "ok",
            },
            "labels": self.labels,
            "channels": self.channels,
            "escalation_channels": self.escalation_channels,
            "enabled": self.enabled,
        });
        let obj = v.as_object_mut().expect("json! object literal");
        match self.kind {
            RuleKind::NoData => {
                obj.insert("metric".into(), json!(self.metric));
                obj.insert(
                    "stale_after".into(),
                    json!(format_duration(self.stale_after_secs)),
                );
            }
            RuleKind::Anomaly => {
                obj.insert("metric".into(), json!(self.metric));
                obj.insert("min_anomaly_score".into(), json!(self.min_anomaly_score));
                obj.insert("window".into(), json!(format_duration(self.window_secs)));
            }
            RuleKind::Integration => {}
            RuleKind::Score => {
                obj.insert(
                    "category".into(),
                    json!(self.score_category.map(|c| c.as_str()).unwrap_or("overall")),
                );
                obj.insert("window".into(), json!(format_duration(self.window_secs)));
                obj.insert("condition".into(), condition);
            }
            RuleKind::Threshold | RuleKind::Change => {
                obj.insert("metric".into(), json!(self.metric));
                obj.insert("aggregation".into(), json!(self.aggregation.as_str()));
                obj.insert("window".into(), json!(format_duration(self.window_secs)));
                obj.insert("condition".into(), condition);
            }
        }
        if !matches!(self.kind, RuleKind::Score | RuleKind::Integration) {
            obj.insert("dimensions".into(), json!(self.filters));
            obj.insert("group_by".into(), json!(self.group_by));
        }
        v
    }

    /// The category an alert of this rule is filed under.
    pub fn category(&self, catalog: &[MetricDef]) -> Option<Category> {
        match self.kind {
            RuleKind::Score => self.score_category,
            RuleKind::Integration => Some(Category::Risk),
            _ => self
                .metric
                .as_ref()
                .and_then(|m| catalog.iter().find(|d| &d.key == m))
                .map(|d| d.category),
        }
    }

    /// What is watched, in words: "Revenue (sum over 1d)", "percent change of …", "health score".
    pub fn subject(&self, metric_name: &str) -> String {
        let window = format_duration(self.window_secs);
        match self.kind {
            RuleKind::Threshold => format!(
                "{metric_name} ({} over {window})",
                self.aggregation.as_str()
            ),
            RuleKind::Change => format!(
                "change of {metric_name} ({} over {window}) against the {window} before, in %",
                self.aggregation.as_str()
            ),
            RuleKind::Score => {
                let what = match self.score_category {
                    Some(c) => format!("{} health score", c.title()),
                    None => "Health score".to_string(),
                };
                match self.score_mode {
                    ScoreMode::Level => what,
                    ScoreMode::Drop => format!("drop of the {what} over {window}, in points"),
                }
            }
            RuleKind::NoData => format!("age of the newest {metric_name} point"),
            RuleKind::Anomaly => {
                format!("highest anomaly score of {metric_name} over the last {window}")
            }
            RuleKind::Integration => "integrations needing attention".to_string(),
        }
    }

    /// The condition in words, with `fmt` rendering values in the watched unit.
    pub fn describe_condition(&self, fmt: &dyn Fn(f64) -> String) -> String {
        if self.kind == RuleKind::Anomaly {
            return format!("an anomaly scoring {:.2} or more", self.min_anomaly_score);
        }
        if self.kind == RuleKind::Integration {
            return "an integration needs reconnecting or its last sync failed".into();
        }
        if self.kind == RuleKind::NoData {
            return format!(
                "no new point for more than {}",
                format_duration(self.stale_after_secs)
            );
        }
        match self.condition {
            Condition::Above {
                threshold,
                recovery,
            } => {
                let mut s = format!("above {}", fmt(threshold));
                if recovery != threshold {
                    s.push_str(&format!(" (recovers at or below {})", fmt(recovery)));
                }
                s
            }
            Condition::Below {
                threshold,
                recovery,
            } => {
                let mut s = format!("below {}", fmt(threshold));
                if recovery != threshold {
                    s.push_str(&format!(" (recovers at or above {})", fmt(recovery)));
                }
                s
            }
            Condition::Outside { low, high, margin } => {
                let mut s = format!("outside {} to {}", fmt(low), fmt(high));
                if margin > 0.0 {
                    s.push_str(&format!(
                        " (recovers inside {} to {})",
                        fmt(low + margin),
                        fmt(high - margin)
                    ));
                }
                s
            }
            Condition::Equals { value } => format!("equal to {}", fmt(value)),
        }
    }

    /// The levels to draw on a chart of the watched metric (threshold kinds only).
    pub fn chart_levels(&self) -> Vec<f64> {
        if self.kind != RuleKind::Threshold {
            return Vec::new();
        }
        match self.condition {
            Condition::Above { threshold, .. } | Condition::Below { threshold, .. } => {
                vec![threshold]
            }
            Condition::Outside { low, high, .. } => vec![low, high],
            Condition::Equals { value } => vec![value],
        }
    }
}

/// Percent change from `previous` to `current`; undefined when the previous value is 0.
pub fn percent_change(previous: f64, current: f64) -> Option<f64> {
    (previous != 0.0).then(|| (current - previous) / previous.abs() * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::alerts::Observation;
    use crate::domain::catalog;

    fn cat() -> Vec<MetricDef> {
        catalog::builtins()
    }

    #[test]
    fn durations_round_trip() {
        assert_eq!(parse_duration("90s"), Ok(90));
        assert_eq!(parse_duration("15m"), Ok(900));
        assert_eq!(parse_duration("2h"), Ok(7200));
        assert_eq!(parse_duration("1d"), Ok(86_400));
        assert_eq!(parse_duration("1w"), Ok(604_800));
        assert_eq!(parse_duration("45"), Ok(45));
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-5m").is_err());
        assert!(parse_duration("500d").is_err());
        assert_eq!(format_duration(86_400), "1d");
        assert_eq!(format_duration(5_400), "90m");
        assert_eq!(format_duration(0), "0s");
        assert_eq!(format_duration(61), "61s");
    }

    /// `group_by` and dimension filter keys follow the ingest key rule (1-32 lowercase letters,
    /// digits, underscores) before they can reach SQL: `Region-X` and `a.b` are refused by
    /// field, `region` passes.
    #[test]
    fn dimension_keys_of_rules_follow_the_ingest_rule() {
        let rule = |group_by: &str, dims: serde_json::Value| {
            json!({
                "name": "Revenue low", "kind": "threshold", "metric": "revenue",
                "window": "1d", "condition": {"op": "below", "threshold": 1000},
                "group_by": group_by, "dimensions": dims
            })
        };
        let fields = |input: serde_json::Value| -> Vec<String> {
            match validate(&input, &cat(), |_| true) {
                Ok(_) => Vec::new(),
                Err(problems) => problems.into_iter().map(|p| p.field).collect(),
            }
        };
        assert_eq!(fields(rule("region", json!({}))), Vec::<String>::new());
        assert_eq!(fields(rule("Region-X", json!({}))), vec!["group_by"]);
        assert_eq!(
            fields(rule("region", json!({"a.b": "x"}))),
            vec!["dimensions.a.b"]
        );
    }

    #[test]
    fn a_threshold_rule_validates_and_round_trips() {
        let input = json!({
            "name": "Revenue low", "kind": "threshold", "metric": "revenue",
            "window": "1d", "condition": {"op": "below", "threshold": 1000, "recovery": 1200},
            "severity": "high", "for": "5m", "recovery_for": "10m",
            "labels": {"team": "finance"}, "channels": [3], "dimensions": {"product": "pro"}
        });
        let spec = validate(&input, &cat(), |id| id == 3).unwrap();
        assert_eq!(spec.aggregation, Aggregation::Sum); // the metric's own aggregation
        assert_eq!(
            spec.condition,
            Condition::Below {
                threshold: 1000.0,
                recovery: 1200.0
            }
        );
        assert_eq!(spec.timing.pending_for, 300);
        assert_eq!(spec.timing.recovery_for, 600);
        assert_eq!(spec.interval_secs, 60);
        assert_eq!(
            validate(&spec.to_input(), &cat(), |id| id == 3).unwrap(),
            spec
        );
    }

    #[test]
    fn every_problem_is_named_by_field() {
        let input = json!({
            "kind": "threshold", "metric": "nope", "window": "5y",
            "condition": {"op": "above", "threshold": 10, "recovery": 20},
            "severity": "urgent", "channels": [9], "interval": "1s"
        });
        let problems = validate(&input, &cat(), |_| false).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        for f in [
            "name",
            "metric",
            "window",
            "severity",
            "condition.recovery",
            "channels[0]",
            "interval",
        ] {
            assert!(fields.contains(&f), "{f} missing from {fields:?}");
        }
    }

    #[test]
    fn kind_specific_rules() {
        let no_data = validate(
            &json!({"name": "stale", "kind": "no_data", "metric": "revenue", "stale_after": "2d"}),
            &cat(),
            |_| true,
        )
        .unwrap();
        assert_eq!(no_data.timing.no_data, NoDataPolicy::Alert);
        assert_eq!(no_data.stale_after_secs, 172_800);
        let drop = validate(
            &json!({"name": "drop", "kind": "score", "category": "financial", "window": "1d",
                    "condition": {"op": "drop", "threshold": 10}}),
            &cat(),
            |_| true,
        )
        .unwrap();
        assert_eq!(drop.score_mode, ScoreMode::Drop);
        assert_eq!(drop.score_category, Some(Category::Financial));
        assert_eq!(validate(&drop.to_input(), &cat(), |_| true).unwrap(), drop);
        let anomaly = validate(
            &json!({"name": "a", "kind": "anomaly", "metric": "revenue", "min_anomaly_score": 0.6}),
            &cat(),
            |_| true,
        )
        .unwrap();
        assert_eq!(
            (anomaly.window_secs, anomaly.min_anomaly_score),
            (2 * 86_400, 0.6)
        );
        assert_eq!(
            validate(&anomaly.to_input(), &cat(), |_| true).unwrap(),
            anomaly
        );
        // Fires from the minimum score on, clears below it.
        assert!(matches!(
            anomaly.condition.observe(Some(0.6)),
            Observation::Breach(_)
        ));
        assert!(matches!(
            anomaly.condition.observe(Some(0.0)),
            Observation::Recovered(_)
        ));
        let bad = validate(
            &json!({"name": "a", "kind": "anomaly", "metric": "revenue", "min_anomaly_score": 2, "window": "1h"}),
            &cat(),
            |_| true,
        )
        .unwrap_err();
        let fields: Vec<&str> = bad.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, vec!["min_anomaly_score", "window"]);
        let esc = validate(
            &json!({"name": "e", "kind": "threshold", "metric": "revenue",
                    "condition": {"op": "above", "threshold": 1}, "escalation_channels": [1]}),
            &cat(),
            |_| true,
        )
        .unwrap_err();
        assert_eq!(esc[0].field, "escalate_after");
    }

    #[test]
    fn percent_change_is_undefined_from_zero() {
        assert_eq!(percent_change(200.0, 150.0), Some(-25.0));
        assert_eq!(percent_change(-100.0, -50.0), Some(50.0));
        assert_eq!(percent_change(0.0, 5.0), None);
    }
}
