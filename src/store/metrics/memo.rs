//! Read results memoised per org until the org's next committed write.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Most memoised read results kept.
const MAX_MEMO_ENTRIES: usize = 512;

/// A shared, type-erased read result.
pub(super) type MemoValue = Arc<dyn Any + Send + Sync>;

/// Read results kept until their org's next write (or their age limit). One cell per key and
/// generation: callers that miss together wait for one computation instead of each running it.
#[derive(Default)]
pub(super) struct Memo {
    entries: HashMap<(i64, String), MemoEntry>,
}

struct MemoEntry {
    generation: u64,
    made: Instant,
    cell: Arc<tokio::sync::OnceCell<MemoValue>>,
}

impl Memo {
    /// The cell holding (or about to hold) `key`'s result at `generation`, made no earlier than
    /// less than `max_age` ago; a new empty cell when there is none.
    pub(super) fn cell(
        &mut self,
        org_id: i64,
        key: String,
        generation: u64,
        max_age: Duration,
    ) -> Arc<tokio::sync::OnceCell<MemoValue>> {
        let now = Instant::now();
        let usable = |e: &MemoEntry| e.generation == generation && now - e.made < max_age;
        let key = (org_id, key);
        if let Some(entry) = self.entries.get(&key)
            && usable(entry)
        {
            return entry.cell.clone();
        }
        if self.entries.len() >= MAX_MEMO_ENTRIES {
            // Drop what has aged out; if that is not enough, the oldest half.
            self.entries.retain(|_, e| now - e.made < max_age);
            if self.entries.len() >= MAX_MEMO_ENTRIES {
                let mut made: Vec<Instant> = self.entries.values().map(|e| e.made).collect();
                made.sort();
                let cut = made[made.len() / 2];
                self.entries.retain(|_, e| e.made > cut);
            }
        }
        let cell = Arc::new(tokio::sync::OnceCell::new());
        self.entries.insert(
            key,
            MemoEntry {
                generation,
                made: now,
                cell: cell.clone(),
            },
        );
        cell
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The memo hands back the stored result while the generation stands, and a new cell once
    /// it moves or the entry ages out; at the size limit the oldest half goes.
    #[test]
    fn memo_cells_follow_the_generation_and_age() {
        let mut memo = Memo::default();
        let long = Duration::from_secs(60);
        let first = memo.cell(1, "q".into(), 0, long);
        assert!(Arc::ptr_eq(&first, &memo.cell(1, "q".into(), 0, long)));
        assert!(!Arc::ptr_eq(&first, &memo.cell(2, "q".into(), 0, long)));
        let moved = memo.cell(1, "q".into(), 1, long);
        assert!(!Arc::ptr_eq(&first, &moved));
        assert!(!Arc::ptr_eq(
            &moved,
            &memo.cell(1, "q".into(), 1, Duration::ZERO)
        ));
        for i in 0..MAX_MEMO_ENTRIES * 2 {
            memo.cell(1, format!("k{i}"), 0, long);
        }
        assert!(memo.entries.len() <= MAX_MEMO_ENTRIES);
    }
}
