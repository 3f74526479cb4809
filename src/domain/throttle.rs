//! Login throttling: a sliding window of failures per account and per client address. Pure; the
//! caller passes the clock.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

pub struct LoginThrottle {
    max_failures: usize,
    window: Duration,
    failures: HashMap<String, VecDeque<Instant>>,
}

impl LoginThrottle {
    pub fn new(max_failures: usize, window: Duration) -> Self {
        LoginThrottle {
            max_failures,
            window,
            failures: HashMap::new(),
        }
    }

    /// `Some(wait)` when any of `keys` has used up its failures within the window.
    pub fn blocked(&mut self, keys: &[String], now: Instant) -> Option<Duration> {
        let mut wait = None;
        for key in keys {
            self.prune(key, now);
            if let Some(q) = self.failures.get(key)
                && q.len() >= self.max_failures
            {
                let oldest = q.front().copied().unwrap_or(now);
                let w = (oldest + self.window).saturating_duration_since(now);
                wait = Some(wait.map_or(w, |x: Duration| x.max(w)));
            }
        }
        wait
    }

    /// Takes an attempt for `keys` before the password is checked: refused with the wait when any
    /// key has used up its failures, else counted as a failure at `now` straight away, so that
    /// parallel attempts cannot all pass the check before any of them is recorded. A successful
    /// attempt gives its count back with [`LoginThrottle::attempt_succeeded`].
    pub fn begin_attempt(&mut self, keys: &[String], now: Instant) -> Result<(), Duration> {
        if let Some(wait) = self.blocked(keys, now) {
            return Err(wait);
        }
        self.record_failure(keys, now);
        Ok(())
    }

    /// The attempt begun at `began` succeeded: the account's failures are forgotten and the
    /// attempt no longer counts against the other keys (the client address).
    pub fn attempt_succeeded(&mut self, keys: &[String], account_key: &str, began: Instant) {
        for key in keys.iter().filter(|k| k.as_str() != account_key) {
            if let Some(q) = self.failures.get_mut(key)
                && let Some(i) = q.iter().rposition(|t| *t == began)
            {
                q.remove(i);
            }
        }
        self.record_success(account_key);
    }

    pub fn record_failure(&mut self, keys: &[String], now: Instant) {
        for key in keys {
            self.failures.entry(key.clone()).or_default().push_back(now);
        }
        // Bound memory under a flood of distinct keys.
        if self.failures.len() > 100_000 {
            let window = self.window;
            self.failures
                .retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
        }
    }

    pub fn record_success(&mut self, account_key: &str) {
        self.failures.remove(account_key);
    }

    fn prune(&mut self, key: &str, now: Instant) {
        if let Some(q) = self.failures.get_mut(key) {
            while q
                .front()
                .is_some_and(|t| now.duration_since(*t) >= self.window)
            {
                q.pop_front();
            }
            if q.is_empty() {
                self.failures.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With 3 allowed, 10 attempts begun at once (none finished) admit exactly 3; a success
    /// gives the address its count back and clears the account, so the same address may try a
    /// fourth time for another account.
    #[test]
    fn attempts_are_reserved_before_the_check() {
        let mut t = LoginThrottle::new(3, Duration::from_secs(60));
        let keys = vec!["user:a@x".to_string(), "ip:1.2.3.4".to_string()];
        let now = Instant::now();
        let admitted = (0..10)
            .filter(|_| t.begin_attempt(&keys, now).is_ok())
            .count();
        assert_eq!(admitted, 3);
        t.attempt_succeeded(&keys, &keys[0], now);
        let other = vec!["user:b@x".to_string(), "ip:1.2.3.4".to_string()];
        assert!(
            t.begin_attempt(&other, now).is_ok(),
            "2 of 3 used by the address"
        );
        assert!(t.begin_attempt(&other, now).is_err(), "3 of 3");
    }

    #[test]
    fn blocks_after_max_failures_until_the_window_passes() {
        let mut t = LoginThrottle::new(3, Duration::from_secs(60));
        let keys = vec!["user:a@x".to_string(), "ip:1.2.3.4".to_string()];
        let start = Instant::now();
        for i in 0..3 {
            assert_eq!(t.blocked(&keys, start + Duration::from_secs(i)), None);
            t.record_failure(&keys, start + Duration::from_secs(i));
        }
        assert_eq!(
            t.blocked(&keys, start + Duration::from_secs(10)),
            Some(Duration::from_secs(50))
        );
        // Another account from the same address is blocked too; the same account elsewhere too.
        assert!(
            t.blocked(&["ip:1.2.3.4".to_string()], start + Duration::from_secs(10))
                .is_some()
        );
        assert!(
            t.blocked(
                &["user:a@x".to_string(), "ip:9.9.9.9".to_string()],
                start + Duration::from_secs(10)
            )
            .is_some()
        );
        assert_eq!(t.blocked(&keys, start + Duration::from_secs(61)), None);
    }

    #[test]
    fn success_clears_the_account() {
        let mut t = LoginThrottle::new(2, Duration::from_secs(60));
        let now = Instant::now();
        let k = vec!["user:a".to_string()];
        t.record_failure(&k, now);
        t.record_success("user:a");
        t.record_failure(&k, now);
        assert_eq!(t.blocked(&k, now), None);
    }
}
