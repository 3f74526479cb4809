//! Request budgets per API key, inbound webhook and login session (governor's GCRA: a budget
//! may be spent at once, then refills evenly over the minute).
//!
//! The extractors that know who is asking ([`super::auth`]) charge the budget; the
//! [`rate_limit_headers`] middleware then writes the `RateLimit-*` headers (and `Retry-After`
//! on a 429) onto whatever response the request ends in. A request is charged once, however
//! many extractors look at it.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use super::error::ApiError;
use crate::config::RateLimitConfig;

/// Which budget a request draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteClass {
    /// The JSON API with an API key, ingest aside.
    Api,
    /// Writing points: `POST /api/v1/metrics`, CSV import, inbound webhooks.
    Ingest,
    /// Pages and their fragments with a login session.
    Pages,
}

impl RouteClass {
    /// The setting that sizes this budget, named in every refusal.
    pub fn setting(self) -> &'static str {
        match self {
            RouteClass::Api => "rate_limits.api_per_minute",
            RouteClass::Ingest => "rate_limits.ingest_per_minute",
            RouteClass::Pages => "rate_limits.pages_per_minute",
        }
    }
}

type Keyed =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// How a charge went, for the response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub class: RouteClass,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the whole budget is available again.
    pub reset_secs: u64,
    /// Set when the request was refused: seconds until one more request is allowed.
    pub retry_after_secs: Option<u64>,
}

/// Every budget of the server, one limiter per route class keyed by who is asking.
pub struct RateLimits {
    api: Option<Keyed>,
    ingest: Option<Keyed>,
    pages: Option<Keyed>,
    checks: AtomicU64,
}

/// Forget idle keys every so many checks, so the maps hold only recent callers.
const RETAIN_EVERY: u64 = 4_096;

impl RateLimits {
    pub fn new(config: &RateLimitConfig) -> Arc<RateLimits> {
        let limiter = |per_minute: u64| {
            let n = NonZeroU32::new(u32::try_from(per_minute).unwrap_or(u32::MAX))?;
            Some(RateLimiter::keyed(Quota::per_minute(n)).with_middleware())
        };
        Arc::new(RateLimits {
            api: limiter(config.api_per_minute),
            ingest: limiter(config.ingest_per_minute),
            pages: limiter(config.pages_per_minute),
            checks: AtomicU64::new(0),
        })
    }

    /// Charges one request of `class` to `who`. `None` when that budget is off.
    pub fn check(&self, class: RouteClass, who: &str) -> Option<Verdict> {
        let limiter = match class {
            RouteClass::Api => self.api.as_ref(),
            RouteClass::Ingest => self.ingest.as_ref(),
            RouteClass::Pages => self.pages.as_ref(),
        }?;
        if self.checks.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
            for l in [&self.api, &self.ingest, &self.pages].into_iter().flatten() {
                l.retain_recent();
            }
        }
        let key = who.to_string();
        Some(match limiter.check_key(&key) {
            Ok(snapshot) => {
                let quota = snapshot.quota();
                let limit = quota.burst_size().get();
                let remaining = snapshot.remaining_burst_capacity();
                Verdict {
                    class,
                    limit,
                    remaining,
                    reset_secs: refill_secs(
                        quota.replenish_interval(),
                        limit - remaining.min(limit),
                    ),
                    retry_after_secs: None,
                }
            }
            Err(not_until) => {
                let quota = not_until.quota();
                let limit = quota.burst_size().get();
                let wait = not_until.wait_time_from(limiter.clock().now());
                let retry = ceil_secs(wait).max(1);
                Verdict {
                    class,
                    limit,
                    remaining: 0,
                    reset_secs: retry
                        + refill_secs(quota.replenish_interval(), limit.saturating_sub(1)),
                    retry_after_secs: Some(retry),
                }
            }
        })
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

fn refill_secs(per_cell: Duration, cells: u32) -> u64 {
    ceil_secs(per_cell.saturating_mul(cells))
}

/// Where the charging extractor leaves its verdict for [`rate_limit_headers`].
#[derive(Clone, Default)]
pub struct VerdictSlot(Arc<Mutex<Option<Verdict>>>);

/// Charges the request behind `extensions` once: a second call for the same request (an
/// extractor built on another) is free. Refusals are an [`ApiError`] naming the setting.
pub fn charge(
    extensions: &axum::http::Extensions,
    class: RouteClass,
    who: &str,
) -> Result<(), ApiError> {
    let (Some(limits), Some(slot)) = (
        extensions.get::<Arc<RateLimits>>(),
        extensions.get::<VerdictSlot>(),
    ) else {
        return Ok(());
    };
    charge_with(limits, slot, class, who)
}

/// [`charge`] for handlers that identify the caller themselves (inbound webhooks).
pub fn charge_with(
    limits: &RateLimits,
    slot: &VerdictSlot,
    class: RouteClass,
    who: &str,
) -> Result<(), ApiError> {
    let Ok(mut held) = slot.0.lock() else {
        return Ok(());
    };
    if let Some(earlier) = *held {
        return refusal(&earlier);
    }
    let Some(verdict) = limits.check(class, who) else {
        return Ok(());
    };
    *held = Some(verdict);
    refusal(&verdict)
}

fn refusal(verdict: &Verdict) -> Result<(), ApiError> {
    match verdict.retry_after_secs {
        None => Ok(()),
        Some(secs) => Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!(
                "more than {} requests a minute ({}); retry in {secs} s",
                verdict.limit,
                verdict.class.setting()
            ),
        )
        .field(verdict.class.setting())),
    }
}

/// Gives every request a [`VerdictSlot`] and writes what was charged onto the response.
pub async fn rate_limit_headers(mut req: Request, next: Next) -> Response {
    let slot = VerdictSlot::default();
    req.extensions_mut().insert(slot.clone());
    let mut response = next.run(req).await;
    let verdict = slot.0.lock().ok().and_then(|v| *v);
    if let Some(v) = verdict {
        write_headers(response.headers_mut(), &v);
    }
    response
}

fn write_headers(headers: &mut HeaderMap, v: &Verdict) {
    let mut put = |name: &'static str, value: u64| {
        if let Ok(value) = HeaderValue::from_str(&value.to_string()) {
            headers.insert(name, value);
        }
    };
    put("ratelimit-limit", u64::from(v.limit));
    put("ratelimit-remaining", u64::from(v.remaining));
    put("ratelimit-reset", v.reset_secs);
    if let Some(secs) = v.retry_after_secs {
        put("retry-after", secs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(api: u64) -> Arc<RateLimits> {
        RateLimits::new(&RateLimitConfig {
            api_per_minute: api,
            ingest_per_minute: 0,
            pages_per_minute: 0,
        })
    }

    /// With 3 a minute a key gets 3 requests at once (remaining 2, 1, 0), the fourth is
    /// refused with a wait of at most one cell (60 s / 3 = 20 s); another key has its own 3.
    #[test]
    fn a_budget_is_spent_then_refused_per_key() {
        let l = limits(3);
        let remaining: Vec<u32> = (0..3)
            .map(|_| {
                l.check(RouteClass::Api, "a")
                    .map(|v| v.remaining)
                    .unwrap_or(99)
            })
            .collect();
        assert_eq!(remaining, vec![2, 1, 0]);
        let refused = l.check(RouteClass::Api, "a").expect("limited");
        let retry = refused.retry_after_secs.expect("refused");
        assert!((1..=20).contains(&retry), "retry after {retry}");
        assert_eq!(refused.remaining, 0);
        assert!(
            refused.reset_secs >= retry + 40,
            "reset {}",
            refused.reset_secs
        );
        let other = l.check(RouteClass::Api, "b").expect("limited");
        assert_eq!((other.remaining, other.retry_after_secs), (2, None));
    }

    /// A budget of 0 is off: no verdict, no headers.
    #[test]
    fn zero_turns_a_budget_off() {
        let l = limits(3);
        assert!(l.check(RouteClass::Ingest, "a").is_none());
        assert!(l.check(RouteClass::Pages, "a").is_none());
    }

    /// Two extractors on one request charge it once: the second sees the first verdict.
    #[test]
    fn a_request_is_charged_once() {
        let l = limits(2);
        let slot = VerdictSlot::default();
        assert!(charge_with(&l, &slot, RouteClass::Api, "a").is_ok());
        assert!(charge_with(&l, &slot, RouteClass::Api, "a").is_ok());
        let next = l.check(RouteClass::Api, "a").expect("limited");
        assert_eq!(next.remaining, 0, "only one of the two calls was charged");
    }

    /// After the first spent cell, `reset` says how long until the budget is whole: one cell
    /// of 60 s / 4 = 15 s.
    #[test]
    fn reset_counts_the_cells_to_refill() {
        let l = limits(4);
        let v = l.check(RouteClass::Api, "a").expect("limited");
        assert_eq!((v.limit, v.remaining, v.reset_secs), (4, 3, 15));
    }
}
