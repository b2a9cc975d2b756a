//! Hit, miss, set and removal counters per database, for all sessions together, kept in the
//! database's shared-memory slot (`shmem::slots`; only with the library preloaded). Counted when a
//! call runs, so a rolled-back call counts too; atomic adds, no lock on the hot path.

use super::slots as registry;
use pgrx::pg_sys::{Oid, TimestampTz};

pub use super::slots::{Counter, COUNTERS};

fn counting(amount: i64) -> bool {
    amount != 0 && crate::gucs::TRACK_STATS.get()
}

/// Adds `amount` to this database's `counter`.
pub fn count(counter: Counter, amount: i64) {
    if counting(amount) {
        if let Some(slot) = registry::my_slot() {
            slot.count(counter as usize, amount);
        }
    }
}

/// Counts one lookup as a hit or a miss.
pub fn count_lookup(hit: bool) {
    count(if hit { Counter::Hits } else { Counter::Misses }, 1);
}

/// This database's counters (hits, misses, sets, removes, evicted) and since when; `None`
/// without preloading.
pub fn read() -> Option<([i64; COUNTERS], TimestampTz)> {
    registry::my_slot().map(|slot| slot.counters())
}

/// Zeroes this database's counters.
pub fn reset() {
    if let Some(slot) = registry::my_slot() {
        slot.reset_counters();
    }
}

/// Counts rows the eviction worker of `database` deleted.
pub fn count_evicted(database: Oid, rows: i64) {
    if counting(rows) {
        if let Some(slot) = registry::slot(database) {
            slot.count(Counter::Evicted as usize, rows);
        }
    }
}
