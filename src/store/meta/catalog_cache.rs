//! Each org's metric catalogue (built-ins and custom metrics) kept in memory: pages and API reads
//! look it up several times per request (the overview four times), and custom metrics change
//! only when one is created. Whoever creates one calls [`CatalogCache::changed`] after the
//! commit.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::domain::catalog::MetricDef;

pub type Catalog = Arc<Vec<MetricDef>>;

#[derive(Default)]
struct Entries {
    /// Bumped by every change, so a catalogue read from the database before a change is not
    /// kept after it (a load races a create: the load may have seen the old rows).
    epoch: u64,
    by_org: HashMap<i64, Catalog>,
}

#[derive(Clone, Default)]
pub struct CatalogCache {
    entries: Arc<Mutex<Entries>>,
}

impl CatalogCache {
    /// The kept catalogue of `org_id`, and the epoch to hand to [`CatalogCache::keep`] when it
    /// has to be loaded.
    pub fn get(&self, org_id: i64) -> (Option<Catalog>, u64) {
        match self.entries.lock() {
            Ok(e) => (e.by_org.get(&org_id).cloned(), e.epoch),
            Err(_) => (None, u64::MAX),
        }
    }

    /// Keeps a catalogue loaded at `epoch`, unless something changed since.
    pub fn keep(&self, org_id: i64, epoch: u64, catalog: Catalog) {
        if let Ok(mut e) = self.entries.lock()
            && e.epoch == epoch
        {
            e.by_org.insert(org_id, catalog);
        }
    }

    /// Forgets `org_id`'s catalogue (after its custom metrics changed).
    pub fn changed(&self, org_id: i64) {
        if let Ok(mut e) = self.entries.lock() {
            e.epoch += 1;
            e.by_org.remove(&org_id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::catalog;

    /// A load that started before a change is not kept; one after it is.
    #[test]
    fn a_load_older_than_a_change_is_not_kept() {
        let cache = CatalogCache::default();
        let (none, epoch) = cache.get(7);
        assert!(none.is_none());
        cache.changed(7);
        cache.keep(7, epoch, Arc::new(catalog::builtins()));
        assert!(cache.get(7).0.is_none());
        let (_, epoch) = cache.get(7);
        cache.keep(7, epoch, Arc::new(catalog::builtins()));
        assert_eq!(
            cache.get(7).0.map(|c| c.len()),
            Some(catalog::builtins().len())
        );
        assert!(cache.get(8).0.is_none());
        cache.changed(7);
        assert!(cache.get(7).0.is_none());
    }
}
