//! Org-level results (a rendered overview body, for one) kept until the org's data changes: each
//! entry is tagged with the versions of the stores it was made from, the org's metric
//! generation and the meta store's write count, and is used only while both stand and it is
//! younger than a maximum age. Every member of the org shares an entry, and callers that miss
//! together wait for one computation: sixty-four people opening the overview at once, or right
//! after a write moved a version, render it once.
//!
//! [`Cells`] is the single-flight map under it, shared with the metric store's read memo.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most entries [`OrgCache`] keeps; past this the aged-out go, then the oldest half.
const MAX_ENTRIES: usize = 1024;

/// One result cell per org, key and tag (what the result was made from: a generation, store
/// versions). A cell is handed out empty and filled by whoever gets to it first; everyone
/// handed the same cell meanwhile waits for that one computation. If it fails or is cancelled,
/// the next waiter computes instead (`tokio::sync::OnceCell`), so an error is never kept.
pub struct Cells<T, V> {
    entries: HashMap<(i64, String), Slot<T, V>>,
    max_entries: usize,
}

struct Slot<T, V> {
    tag: T,
    made: Instant,
    cell: Arc<tokio::sync::OnceCell<V>>,
}

impl<T: PartialEq, V> Cells<T, V> {
    pub fn new(max_entries: usize) -> Self {
        Cells {
            entries: HashMap::new(),
            max_entries: max_entries.max(2),
        }
    }

    /// The cell holding (or about to hold) `key`'s result at `tag`, made less than `max_age`
    /// ago; a new empty cell when there is none. At the size limit, the aged-out entries go
    /// first, then the oldest half.
    pub fn cell(
        &mut self,
        org_id: i64,
        key: &str,
        tag: T,
        max_age: Duration,
    ) -> Arc<tokio::sync::OnceCell<V>> {
        let now = Instant::now();
        let usable = |s: &Slot<T, V>| s.tag == tag && now - s.made < max_age;
        let id = (org_id, key.to_string());
        if let Some(slot) = self.entries.get(&id)
            && usable(slot)
        {
            return slot.cell.clone();
        }
        if self.entries.len() >= self.max_entries {
            self.entries.retain(|_, s| now - s.made < max_age);
            if self.entries.len() >= self.max_entries {
                let mut made: Vec<Instant> = self.entries.values().map(|s| s.made).collect();
                made.sort();
                let cut = made[made.len() / 2];
                self.entries.retain(|_, s| s.made > cut);
            }
        }
        let cell = Arc::new(tokio::sync::OnceCell::new());
        self.entries.insert(
            id,
            Slot {
                tag,
                made: now,
                cell: cell.clone(),
            },
        );
        cell
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// The store versions an entry was made from: the org's metric generation and the meta store's
/// write count. Read them before computing, so a write during the computation leaves the entry
/// already outdated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Versions {
    pub metrics: u64,
    pub meta: u64,
}

pub struct OrgCache<V> {
    cells: Arc<Mutex<Cells<Versions, V>>>,
}

impl<V> Clone for OrgCache<V> {
    fn clone(&self) -> Self {
        OrgCache {
            cells: self.cells.clone(),
        }
    }
}

impl<V> Default for OrgCache<V> {
    fn default() -> Self {
        OrgCache {
            cells: Arc::new(Mutex::new(Cells::new(MAX_ENTRIES))),
        }
    }
}

impl<V: Clone> OrgCache<V> {
    /// The value kept under `key` for `org_id` if it was made at `versions` less than `max_age`
    /// ago, else `make`'s (kept for the next callers). Callers missing together await one
    /// `make`; the others' futures are dropped unpolled. An error is returned to the caller
    /// whose `make` failed and is not kept.
    pub async fn get_or_make<E>(
        &self,
        org_id: i64,
        key: &str,
        versions: Versions,
        max_age: Duration,
        make: impl Future<Output = Result<V, E>>,
    ) -> Result<V, E> {
        // The guard ends with this statement: it must not be held across an await.
        let cell = self
            .cells
            .lock()
            .ok()
            .map(|mut cells| cells.cell(org_id, key, versions, max_age));
        match cell {
            Some(cell) => cell.get_or_try_init(|| make).await.cloned(),
            // A panic elsewhere while holding the lock: compute without keeping.
            None => make.await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const LONG: Duration = Duration::from_secs(60);

    fn v(metrics: u64, meta: u64) -> Versions {
        Versions { metrics, meta }
    }

    async fn kept(
        cache: &OrgCache<Arc<str>>,
        org: i64,
        key: &str,
        at: Versions,
        age: Duration,
    ) -> String {
        cache
            .get_or_make(org, key, at, age, async { Ok::<_, ()>(Arc::from("new")) })
            .await
            .map(|s| s.to_string())
            .unwrap_or_default()
    }

    /// An entry is handed back only for its own org and key, while both versions stand and it is
    /// young enough; anything else makes anew ("new").
    #[tokio::test]
    async fn entries_follow_both_versions_the_org_and_the_age() {
        let cache: OrgCache<Arc<str>> = OrgCache::default();
        let body = cache
            .get_or_make(1, "overview 30d", v(3, 9), LONG, async {
                Ok::<_, ()>(Arc::from("body"))
            })
            .await;
        assert_eq!(body.as_deref(), Ok("body"));
        assert_eq!(kept(&cache, 1, "overview 30d", v(3, 9), LONG).await, "body");
        assert_eq!(kept(&cache, 2, "overview 30d", v(3, 9), LONG).await, "new");
        assert_eq!(kept(&cache, 1, "overview 7d", v(3, 9), LONG).await, "new");
        assert_eq!(kept(&cache, 1, "overview 30d", v(4, 9), LONG).await, "new");
        assert_eq!(kept(&cache, 1, "overview 30d", v(3, 10), LONG).await, "new");
        assert_eq!(
            kept(&cache, 1, "overview 30d", v(3, 10), Duration::ZERO).await,
            "new"
        );
    }

    /// Sixty-four callers missing at once run `make` once and all get its value; a failed
    /// `make` is not kept, so the next caller makes again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_missing_together_make_once_and_errors_are_not_kept() {
        let cache: OrgCache<Arc<str>> = OrgCache::default();
        let makes = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (cache, makes) = (cache.clone(), makes.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_make(7, "overview", v(1, 1), LONG, async {
                        makes.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok::<_, ()>(Arc::from("body"))
                    })
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.ok().and_then(Result::ok).as_deref(), Some("body"));
        }
        assert_eq!(makes.load(Ordering::SeqCst), 1);

        let failed = cache
            .get_or_make(7, "grid", v(1, 1), LONG, async {
                Err::<Arc<str>, _>("boom")
            })
            .await;
        assert_eq!(failed, Err("boom"));
        assert_eq!(kept(&cache, 7, "grid", v(1, 1), LONG).await, "new");
    }

    #[test]
    fn the_cells_stay_bounded() {
        let mut cells: Cells<u64, u32> = Cells::new(MAX_ENTRIES);
        for i in 0..MAX_ENTRIES * 3 {
            cells.cell(1, &format!("k{i}"), 0, LONG);
        }
        assert!(cells.len() <= MAX_ENTRIES, "{} entries kept", cells.len());
    }

    /// The same cell while the tag stands and it is young; a new one once the tag moves, for
    /// another org, or when it has aged out.
    #[test]
    fn cells_follow_the_tag_the_org_and_the_age() {
        let mut cells: Cells<u64, u32> = Cells::new(8);
        let first = cells.cell(1, "q", 0, LONG);
        assert!(Arc::ptr_eq(&first, &cells.cell(1, "q", 0, LONG)));
        assert!(!Arc::ptr_eq(&first, &cells.cell(2, "q", 0, LONG)));
        let moved = cells.cell(1, "q", 1, LONG);
        assert!(!Arc::ptr_eq(&first, &moved));
        assert!(!Arc::ptr_eq(&moved, &cells.cell(1, "q", 1, Duration::ZERO)));
    }
}
