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
