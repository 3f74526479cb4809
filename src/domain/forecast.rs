//! Forecasts with prediction intervals, and the backtest that decides whether to show them.
//! Pure: values in, numbers out.
//!
//! The model is additive Holt-Winters with a damped trend (ETS(A,Ad,A)) when the series has a
//! season (the period comes from the caller, found by the anomaly detector's autocorrelation
//! test) and at least two full periods, otherwise Holt's damped trend (ETS(A,Ad,N)); its smoothing
//! parameters are picked by least one-step squared error over a small grid. Intervals come from
//! the one-step residual spread and the model's h-step variance multipliers.
//!
//! Accuracy is measured by rolling-origin backtests as MASE (mean absolute scaled error: the
//! forecast's mean absolute error divided by the in-sample mean absolute error of the one-season
//! naive forecast). A model whose backtest error is not below the seasonal-naive forecast's on the
//! same origins is not worth showing: [`Forecast::beats_naive`] says so.

/// z for a two-sided 95% interval under normal errors.
const Z95: f64 = 1.959_964;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
    pub phi: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// Too little history for a model: the last value.
    Naive,
    DampedTrend,
    HoltWinters,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Naive => "last value",
            Method::DampedTrend => "damped trend (ETS A,Ad,N)",
            Method::HoltWinters => "Holt-Winters, damped trend (ETS A,Ad,A)",
        }
    }
}

/// One forecast step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub mean: f64,
    /// 95% prediction interval.
    pub low: f64,
    pub high: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    pub method: Method,
    pub period: usize,
    pub steps: Vec<Step>,
    /// Backtest MASE of this model and of the seasonal-naive forecast on the same origins
    /// (`None` when the history is too short to backtest).
    pub mase: Option<f64>,
    pub naive_mase: Option<f64>,
}

impl Forecast {
    /// Whether the model did better than seasonal naive in the backtest (the condition for
    /// showing it). Without a backtest, no.
    pub fn beats_naive(&self) -> bool {
        matches!((self.mase, self.naive_mase), (Some(m), Some(n)) if m < n)
    }
}

/// The fitted state after running through the history.
struct Fit {
    level: f64,
    trend: f64,
    season: Vec<f64>,
    sse: f64,
    residual_sd: f64,
}

fn fit(values: &[f64], period: usize, p: Params) -> Fit {
    let m = period;
    let n = values.len();
    // Initial state: level = mean of the first season (or first value), trend = mean change
    // between the first two seasons (or first two values), seasonal indices = deviations.
    let (mut level, mut trend, mut season) = if m >= 2 && n >= 2 * m {
        let first: f64 = values[..m].iter().sum::<f64>() / m as f64;
        let second: f64 = values[m..2 * m].iter().sum::<f64>() / m as f64;
        let season: Vec<f64> = values[..m].iter().map(|v| v - first).collect();
        (first, (second - first) / m as f64, season)
    } else {
        let trend = if n >= 2 { values[1] - values[0] } else { 0.0 };
        (values[0], trend, Vec::new())
    };
    let start = if season.is_empty() { 1 } else { m };
    if season.is_empty() {
        level = values[0];
    } else {
        // The level at the end of the first season.
        level += trend * (m as f64 - 1.0) / 2.0;
    }
    let mut sse = 0.0;
    let mut count = 0usize;
    for (t, &y) in values.iter().enumerate().skip(start) {
        let s = if season.is_empty() {
            0.0
        } else {
            season[t % m]
        };
        let predicted = level + p.phi * trend + s;
        let error = y - predicted;
        sse += error * error;
        count += 1;
        let new_level = level + p.phi * trend + p.alpha * error;
        trend = p.phi * trend + p.alpha * p.beta * error;
        if !season.is_empty() {
            season[t % m] = s + p.gamma * error;
        }
        level = new_level;
    }
    let residual_sd = if count > 1 {
        (sse / (count - 1) as f64).sqrt()
    } else {
        0.0
    };
    // Rotate the seasonal indices so index 0 belongs to the first forecast step.
    if !season.is_empty() {
        season.rotate_left(n % m);
    }
    Fit {
        level,
        trend,
        season,
        sse,
        residual_sd,
    }
}

fn best_params(values: &[f64], period: usize) -> Params {
    let mut best = (
        f64::INFINITY,
        Params {
            alpha: 0.3,
            beta: 0.1,
            gamma: 0.1,
            phi: 0.98,
        },
    );
    let gammas: &[f64] = if period >= 2 {
        &[0.05, 0.15, 0.3]
    } else {
        &[0.0]
    };
    for alpha in [0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9] {
        for beta in [0.01, 0.05, 0.15, 0.3] {
            for &gamma in gammas {
                for phi in [0.9, 0.95, 0.98] {
                    let p = Params {
                        alpha,
                        beta,
                        gamma,
                        phi,
                    };
                    let sse = fit(values, period, p).sse;
                    if sse < best.0 {
                        best = (sse, p);
                    }
                }
            }
        }
    }
    best.1
}

/// Forecasts without a backtest: the model, its parameters and `horizon` steps.
fn project(values: &[f64], period: usize, horizon: usize) -> (Method, Vec<Step>) {
    let n = values.len();
    if n < 4 {
        let last = values.last().copied().unwrap_or(0.0);
        let steps = (0..horizon)
            .map(|_| Step {
                mean: last,
                low: last,
                high: last,
            })
            .collect();
        return (Method::Naive, steps);
    }
    let period = if period >= 2 && n >= 2 * period {
        period
    } else {
        0
    };
    let p = best_params(values, period);
    let f = fit(values, period, p);
    let method = if period > 0 {
        Method::HoltWinters
    } else {
        Method::DampedTrend
    };
    let mut steps = Vec::with_capacity(horizon);
    let mut damped_sum = 0.0; // φ + φ² + … + φ^h
    let mut variance_multiplier: f64 = 1.0; // 1 + Σ c_j², j < h
    let mut phi_power = 1.0;
    for h in 1..=horizon {
        phi_power *= p.phi;
        damped_sum += phi_power;
        let s = if f.season.is_empty() {
            0.0
        } else {
            f.season[(h - 1) % period]
        };
        let mean = f.level + damped_sum * f.trend + s;
        let half = Z95 * f.residual_sd * variance_multiplier.sqrt();
        steps.push(Step {
            mean,
            low: mean - half,
            high: mean + half,
        });
        // c_h for the next step's variance: α(1 + βΣφ^i) (+ γ once per season).
        let seasonal = if period > 0 && h % period == 0 {
            p.gamma * (1.0 - p.alpha)
        } else {
            0.0
        };
        let c = p.alpha * (1.0 + p.beta * damped_sum) + seasonal;
        variance_multiplier += c * c;
    }
    (method, steps)
}

/// Mean absolute error of the one-season naive forecast inside `values` (the MASE scale).
fn naive_scale(values: &[f64], period: usize) -> Option<f64> {
    let lag = period.max(1);
    if values.len() <= lag {
        return None;
    }
    let mae = values
        .windows(lag + 1)
        .map(|w| (w[lag] - w[0]).abs())
        .sum::<f64>()
        / (values.len() - lag) as f64;
    (mae > 0.0).then_some(mae)
}

/// Rolling-origin backtest: up to `origins` forecasts of `horizon` steps, each from a prefix of
/// the history, scored as MASE; returns (model MASE, seasonal-naive MASE).
pub fn backtest(
    values: &[f64],
    period: usize,
    horizon: usize,
    origins: usize,
) -> Option<(f64, f64)> {
    let n = values.len();
    let min_train = (2 * period).max(8);
    if horizon == 0 || n < min_train + horizon {
        return None;
    }
    let lag = period.max(1);
    let (mut model_sum, mut naive_sum, mut count) = (0.0, 0.0, 0usize);
    let last_origin = n - horizon;
    let step = ((last_origin - min_train) / origins.max(1)).max(1);
    let mut origin = last_origin;
    for _ in 0..origins {
        if origin < min_train {
            break;
        }
        let train = &values[..origin];
        let Some(scale) = naive_scale(train, period) else {
            origin = origin.saturating_sub(step);
            continue;
        };
        let (_, steps) = project(train, period, horizon);
        for (h, s) in steps.iter().enumerate() {
            let actual = values[origin + h];
            // The seasonal-naive forecast repeats the last season of the training data.
            let naive = train[train.len() - lag + (h % lag)];
            model_sum += (actual - s.mean).abs() / scale;
            naive_sum += (actual - naive).abs() / scale;
            count += 1;
        }
        if origin < step {
            break;
        }
        origin -= step;
    }
    (count > 0).then(|| (model_sum / count as f64, naive_sum / count as f64))
}

/// A forecast of `horizon` steps with its backtest (five origins).
pub fn forecast(values: &[f64], period: usize, horizon: usize) -> Forecast {
    let (method, steps) = project(values, period, horizon);
    let (mase, naive_mase) = match backtest(values, period, horizon.min(values.len() / 4).max(1), 5)
    {
        Some((m, n)) => (Some(m), Some(n)),
        None => (None, None),
    };
    Forecast {
        method,
        period: if method == Method::HoltWinters {
            period
        } else {
            0
        },
        steps,
        mase,
        naive_mase,
    }
}

/// Months until cash reaches 0 at the given monthly net burn (positive = losing money), with a
/// band from the burn's spread; `None` when the business is not burning cash.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Runway {
    pub months: f64,
    /// Runway at a burn one standard deviation higher / lower.
    pub low: f64,
    pub high: f64,
}

pub fn runway(cash: f64, monthly_burns: &[f64]) -> Option<Runway> {
    if monthly_burns.is_empty() || cash <= 0.0 {
        return None;
    }
    let n = monthly_burns.len() as f64;
    let mean = monthly_burns.iter().sum::<f64>() / n;
    if mean <= 0.0 {
        return None;
    }
    let sd = if monthly_burns.len() > 1 {
        (monthly_burns
            .iter()
            .map(|b| (b - mean).powi(2))
            .sum::<f64>()
            / (n - 1.0))
            .sqrt()
    } else {
        0.0
    };
    let months = cash / mean;
    let high_burn = mean + sd;
    let low_burn = mean - sd;
    Some(Runway {
        months,
        low: cash / high_burn,
        high: if low_burn > 0.0 {
            cash / low_burn
        } else {
            f64::INFINITY
        },
    })
}

/// Where a month-to-date total is heading: the total so far plus the forecast of the remaining
/// days, against the target.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TargetOutlook {
    pub projected: f64,
    pub low: f64,
    pub high: f64,
    pub target: f64,
    pub on_track: bool,
}

pub fn month_outlook(so_far: f64, remaining: &[Step], target: f64) -> TargetOutlook {
    let mean: f64 = remaining.iter().map(|s| s.mean).sum();
    // Daily errors are positively correlated in practice; adding the half-widths (not their
    // squares) gives an honest, wide band.
    let low: f64 = remaining.iter().map(|s| s.low).sum();
    let high: f64 = remaining.iter().map(|s| s.high).sum();
    let projected = so_far + mean;
    TargetOutlook {
        projected,
        low: so_far + low,
        high: so_far + high,
        target,
        on_track: projected >= target,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(i: usize) -> f64 {
        let x = (i as f64 * 12.9898).sin() * 43_758.545_3;
        2.0 * (x - x.floor()) - 1.0
    }

    #[test]
    fn a_straight_line_is_continued() {
        let v: Vec<f64> = (0..60).map(|i| 100.0 + 2.0 * i as f64).collect();
        let f = forecast(&v, 0, 10);
        assert_eq!(f.method, Method::DampedTrend);
        // Damping bends the line slightly down; the first steps stay on it.
        assert!((f.steps[0].mean - 220.0).abs() < 1.0, "{:?}", f.steps[0]);
        assert!(f.steps[9].mean > 225.0 && f.steps[9].mean <= 238.0 + 1e-9);
    }

    #[test]
    fn a_weekly_pattern_is_forecast_with_its_season_and_beats_naive() {
        let v: Vec<f64> = (0..140)
            .map(|i| {
                let weekend = matches!(i % 7, 5 | 6);
                (if weekend { 400.0 } else { 1000.0 }) + 2.0 * i as f64 + 20.0 * noise(i)
            })
            .collect();
        let f = forecast(&v, 7, 14);
        assert_eq!(f.method, Method::HoltWinters);
        // Day 140 is a weekday (140 % 7 == 0): 1000 + 2 × 140 = 1280 ± noise; day 145 is a
        // weekend day: 400 + 290 = 690.
        assert!((f.steps[0].mean - 1280.0).abs() < 30.0, "{:?}", f.steps[0]);
        assert!((f.steps[5].mean - 690.0).abs() < 30.0, "{:?}", f.steps[5]);
        assert!(f.beats_naive(), "{:?} vs {:?}", f.mase, f.naive_mase);
    }

    #[test]
    fn intervals_contain_the_mean_and_widen_with_the_horizon() {
        let v: Vec<f64> = (0..100).map(|i| 50.0 + 5.0 * noise(i)).collect();
        let f = forecast(&v, 0, 30);
        for s in &f.steps {
            assert!(s.low <= s.mean && s.mean <= s.high);
        }
        let width = |s: &Step| s.high - s.low;
        assert!(width(&f.steps[29]) > width(&f.steps[0]));
    }

    #[test]
    fn pure_noise_does_not_beat_naive_by_much_and_short_series_fall_back() {
        let f = forecast(&[5.0, 6.0], 7, 3);
        assert_eq!(f.method, Method::Naive);
        assert_eq!(f.steps[2].mean, 6.0);
        assert!(!f.beats_naive());
    }

    #[test]
    fn backtest_of_a_line_is_far_better_than_naive() {
        let v: Vec<f64> = (0..80).map(|i| 10.0 + 3.0 * i as f64).collect();
        let (model, naive) = backtest(&v, 0, 5, 3).expect("long enough");
        // Naive one-step error is 3 per step: the naive forecast of h steps is off by 3h.
        assert!((naive - 3.0).abs() < 1e-9, "{naive}");
        // Damping (φ ≤ 0.98) costs a little on a perfect line, but not a fifth of naive's error.
        assert!(model < naive / 5.0, "{model}");
    }

    #[test]
    fn runway_is_cash_over_burn_with_a_band_and_undefined_without_burn() {
        let r = runway(120_000.0, &[10_000.0, 12_000.0, 8_000.0]).expect("burning");
        assert!((r.months - 12.0).abs() < 1e-9);
        // sd = 2000: 120000/12000 = 10, 120000/8000 = 15.
        assert!((r.low - 10.0).abs() < 1e-9 && (r.high - 15.0).abs() < 1e-9);
        assert_eq!(runway(50_000.0, &[-1_000.0, -2_000.0]), None);
    }

    #[test]
    fn the_month_outlook_adds_the_forecast_to_the_total_so_far() {
        let steps = vec![
            Step {
                mean: 100.0,
                low: 80.0,
                high: 120.0
            };
            10
        ];
        let o = month_outlook(2_000.0, &steps, 3_100.0);
        assert_eq!(o.projected, 3_000.0);
        assert_eq!((o.low, o.high), (2_800.0, 3_200.0));
        assert!(!o.on_track);
    }
}
