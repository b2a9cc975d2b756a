//! Hit, miss, set and removal counters per database, for all sessions together: in shared memory
//! (only with the library preloaded), counted when a call runs, so a rolled-back call counts too.
//! Atomic adds, no lock on the hot path: a backend finds its database's slot once.

use pgrx::lwlock::PgLwLock;
use pgrx::pg_sys::{self, Oid, TimestampTz};
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};

/// Databases whose counters are kept at once; beyond that a database's calls go uncounted (its
/// statistics show NULL). A slot is reused once its database is dropped.
pub const MAX_DATABASES: usize = 1024;

/// What a call counts.
#[derive(Clone, Copy)]
pub enum Counter {
    Hits,
    Misses,
    Sets,
    Removes,
    Evicted,
}
const COUNTERS: usize = 5;

#[repr(C)]
struct Slot {
    database: AtomicU32,
    counters: [AtomicI64; COUNTERS],
    since: AtomicI64,
}

#[repr(C)]
pub struct Slots([Slot; MAX_DATABASES]);

impl Default for Slots {
    fn default() -> Self {
        Slots(std::array::from_fn(|_| Slot {
            database: AtomicU32::new(0),
            counters: Default::default(),
            since: AtomicI64::new(0),
        }))
    }
}

unsafe impl PGRXSharedMemory for Slots {}

static SLOTS: PgLwLock<Slots> = unsafe { PgLwLock::new(c"pg_cache_statistics") };
static PRELOADED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// This backend's slot in shared memory, once found. Shared memory stays mapped for the
    /// process's life, and a slot is only reused once its database is gone, so the pointer holds.
    static MY_SLOT: Cell<Option<*const Slot>> = const { Cell::new(None) };
}

/// Called from `_PG_init` while the library is being preloaded.
pub fn init() {
    pg_shmem_init!(SLOTS);
    PRELOADED.store(true, Ordering::Relaxed);
}

pub fn preloaded() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}

fn now() -> TimestampTz {
    unsafe { pg_sys::GetCurrentTimestamp() }
}

/// The slot of `database`, claimed if it has none (a slot whose database no longer exists is
/// taken over). Only the share lock is needed to use a slot; claiming takes the exclusive one.
fn slot_of(database: Oid) -> Option<usize> {
    let id = database.to_u32();
    if let Some(index) = SLOTS.share().0.iter().position(|slot| slot.database.load(Ordering::Relaxed) == id) {
        return Some(index);
    }
    let slots = SLOTS.exclusive();
    if let Some(index) = slots.0.iter().position(|slot| slot.database.load(Ordering::Relaxed) == id) {
        return Some(index);
    }
    let free = slots.0.iter().position(|slot| {
        let owner = slot.database.load(Ordering::Relaxed);
        owner == 0 || !database_exists(Oid::from(owner))
    })?;
    let slot = &slots.0[free];
    for counter in &slot.counters {
        counter.store(0, Ordering::Relaxed);
    }
    slot.since.store(now(), Ordering::Relaxed);
    slot.database.store(id, Ordering::Relaxed);
    Some(free)
}

fn database_exists(database: Oid) -> bool {
    unsafe {
        pg_sys::SearchSysCacheExists(
            pg_sys::SysCacheIdentifier::DATABASEOID as i32,
            database.into(),
            0.into(),
            0.into(),
            0.into(),
        )
    }
}

fn my_slot() -> Option<&'static Slot> {
    if !preloaded() {
        return None;
    }
    let slot = MY_SLOT.get().or_else(|| {
        let index = slot_of(unsafe { pg_sys::MyDatabaseId })?;
        let slot: *const Slot = &SLOTS.share().0[index];
        MY_SLOT.set(Some(slot));
        Some(slot)
    })?;
    Some(unsafe { &*slot })
}

/// Adds `amount` to this database's `counter`.
pub fn count(counter: Counter, amount: i64) {
    if amount != 0 {
        if let Some(slot) = my_slot() {
            slot.counters[counter as usize].fetch_add(amount, Ordering::Relaxed);
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
    let slot = my_slot()?;
    Some((
        std::array::from_fn(|i| slot.counters[i].load(Ordering::Relaxed)),
        slot.since.load(Ordering::Relaxed),
    ))
}

/// Zeroes this database's counters.
pub fn reset() {
    if let Some(slot) = my_slot() {
        for counter in &slot.counters {
            counter.store(0, Ordering::Relaxed);
        }
        slot.since.store(now(), Ordering::Relaxed);
    }
}

/// Counts rows the eviction worker of `database` deleted.
pub fn count_evicted(database: Oid, rows: i64) {
    if rows > 0 && preloaded() {
        if let Some(slot) = slot_of(database) {
            let slots = SLOTS.share();
            slots.0[slot].counters[Counter::Evicted as usize].fetch_add(rows, Ordering::Relaxed);
        }
    }
}
