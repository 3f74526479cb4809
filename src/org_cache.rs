//! Org-level results (a rendered overview body, for one) kept until the org's data changes: each
//! entry is tagged with the versions of the stores it was made from, the org's metric
//! generation and the meta store's write count, and is used only while both stand and it is
//! younger than a maximum age. Every member of the org shares an entry, so sixty-four people
//! opening the overview at once render it once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most entries kept; past this the aged-out go, then the oldest half.
const MAX_ENTRIES: usize = 1024;

/// The store versions an entry was made from: the org's metric generation and the meta store's
/// write count. Read them before computing, so a write during the computation leaves the entry
/// already outdated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    pub metrics: u64,
    pub meta: u64,
}

struct Entry<V> {
    versions: Versions,
    made: Instant,
    value: V,
}

/// Entries by org and key.
type Entries<V> = HashMap<(i64, String), Entry<V>>;

pub struct OrgCache<V> {
    entries: Arc<Mutex<Entries<V>>>,
}

impl<V> Clone for OrgCache<V> {
    fn clone(&self) -> Self {
        OrgCache {
            entries: self.entries.clone(),
        }
    }
}

impl<V> Default for OrgCache<V> {
    fn default() -> Self {
        OrgCache {
            entries: Arc::default(),
        }
    }
}

impl<V: Clone> OrgCache<V> {
    /// The value kept under `key` for `org_id` if it was made at `versions` less than `max_age`
    /// ago.
    pub fn get(&self, org_id: i64, key: &str, versions: Versions, max_age: Duration) -> Option<V> {
        let entries = self.entries.lock().ok()?;
        let entry = entries.get(&(org_id, key.to_string()))?;
        (entry.versions == versions && entry.made.elapsed() < max_age).then(|| entry.value.clone())
    }

    /// Keeps `value`, made at `versions`, under `key` for `org_id`.
    pub fn put(&self, org_id: i64, key: &str, versions: Versions, max_age: Duration, value: V) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| e.made.elapsed() < max_age);
            if entries.len() >= MAX_ENTRIES {
                let mut made: Vec<Instant> = entries.values().map(|e| e.made).collect();
                made.sort();
                let cut = made[made.len() / 2];
                entries.retain(|_, e| e.made > cut);
            }
        }
        entries.insert(
            (org_id, key.to_string()),
            Entry {
                versions,
                made: Instant::now(),
                value,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: Duration = Duration::from_secs(60);

    fn v(metrics: u64, meta: u64) -> Versions {
        Versions { metrics, meta }
    }

    /// An entry is handed back only for its own org and key, while both versions stand and it is
    /// young enough.
    #[test]
    fn entries_follow_both_versions_the_org_and_the_age() {
        let cache: OrgCache<Arc<str>> = OrgCache::default();
        cache.put(1, "overview 30d", v(3, 9), LONG, Arc::from("body"));
        assert_eq!(
            cache.get(1, "overview 30d", v(3, 9), LONG).as_deref(),
            Some("body")
        );
        assert!(cache.get(2, "overview 30d", v(3, 9), LONG).is_none());
        assert!(cache.get(1, "overview 7d", v(3, 9), LONG).is_none());
        assert!(cache.get(1, "overview 30d", v(4, 9), LONG).is_none());
        assert!(cache.get(1, "overview 30d", v(3, 10), LONG).is_none());
        assert!(
            cache
                .get(1, "overview 30d", v(3, 9), Duration::ZERO)
                .is_none()
        );
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache: OrgCache<u32> = OrgCache::default();
        for i in 0..(MAX_ENTRIES * 3) as u32 {
            cache.put(1, &format!("k{i}"), v(0, 0), LONG, i);
        }
        let kept = cache.entries.lock().map(|e| e.len()).unwrap_or(usize::MAX);
        assert!(kept <= MAX_ENTRIES, "{kept} entries kept");
    }
}
