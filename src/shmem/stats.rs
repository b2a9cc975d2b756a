//! Hit, miss, set and removal counters per cache, for all sessions together, kept in the cache's
//! shared-memory slot (`shmem::caches`; only with the library preloaded). Counted when a call
//! runs, so a rolled-back call counts too; atomic adds, no lock on the hot path.

use super::caches;
use pgrx::pg_sys::TimestampTz;

pub use super::slots::{Counter, COUNTERS};

fn counting(amount: i64) -> bool {
    amount != 0 && crate::gucs::TRACK_STATS.get()
}

/// Adds `amount` to the running call's cache's `counter`.
pub fn count(counter: Counter, amount: i64) {
    if counting(amount) {
        if let Some(slot) = caches::mine() {
            slot.count(counter, amount);
        }
    }
}

/// Counts one lookup as a hit or a miss.
pub fn count_lookup(hit: bool) {
    count(if hit { Counter::Hits } else { Counter::Misses }, 1);
}

/// The running call's cache's counters and since when; `None` without preloading.
pub fn read() -> Option<([i64; COUNTERS], TimestampTz)> {
    caches::mine().map(|slot| slot.counters())
}

/// Zeroes the running call's cache's counters.
pub fn reset() {
    if let Some(slot) = caches::mine() {
        slot.reset_counters();
    }
}

/// Counts rows the eviction worker deleted from the cache it works on, as removed for size when
/// `for_size`.
pub fn count_evicted(rows: i64, for_size: bool) {
    if let Some(slot) = caches::mine() {
        if counting(rows) {
            slot.count(Counter::Evicted, rows);
        }
        if for_size {
            slot.add_evicted_for_size(rows);
        }
    }
}
