//! The lease table, in shared memory (only with the library preloaded): which key of which cache
//! table is being computed, by whom and until when, so that of all the sessions of all the app
//! servers that miss a key, one computes it and the others wait for its fill.
//!
//! A lease is not an entry: it never reaches the cache table, and a restart (or a crash, or a
//! failover) forgets it, which costs at most one extra computation per key. Once a lease ends
//! (filled, released, cancelled by a write, expired), its key keeps a *memo* here: when that
//! happened, and how long the last fill took to compute (XFetch's delta). A session that missed
//! the key before the memo was made reads it again instead of taking a second lease; memos are
//! dropped first when the table is full.
//!
//! Keys are stored as a 128-bit hash (two 64-bit hashes with different seeds), never as text: a
//! collision of two keys of one table, about one in 2^64 for a given pair, only makes them share
//! a lease. The table is open addressing with linear probing under one lock; misses, fills and
//! writes of keys that may have a lease take it, hits never do.

pub use super::probing::KeyId;
use super::probing::{Keyed, Probed};
use pgrx::atomics::PgAtomic;
use pgrx::lwlock::PgLwLock;
use pgrx::pg_sys::{self, Oid, TimestampTz};
use pgrx::{pg_guard, pg_shmem_init, PGRXSharedMemory};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

/// Leases and memos held at once across the server (80 bytes each: 640 kB of shared memory).
pub const CAPACITY: usize = 8192;
/// Above this many slots taken, memos and expired leases are dropped before a new lease is
/// granted, so probes stay short.
const CROWDED: usize = CAPACITY * 3 / 4;

/// Whether row-level security is enforced on `table` for the current role: then what the role
/// may see depends on the row, which a lease per key cannot follow.
pub fn row_security_enforced(table: Oid) -> bool {
    // SAFETY: a catalog lookup of the table's row-security flags and the role's attributes, in a
    // transaction; with noError, no error is raised.
    unsafe {
        pg_sys::check_enable_rls(table, pg_sys::InvalidOid, true)
            == pg_sys::CheckEnableRlsResult::RLS_ENABLED as i32
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum State {
    Free = 0,
    /// A lease: `lease` may fill the key until `deadline`.
    Held = 1,
    /// No lease; the key's lease ended at `ended_at`.
    Memo = 2,
}

#[derive(Clone, Copy)]
#[repr(C)]
struct Slot {
    key: KeyId,
    state: State,
    lease: [u8; 16],
    granted_at: TimestampTz,
    deadline: TimestampTz,
    ended_at: TimestampTz,
    /// Microseconds the last fill took from its lease to its commit; 0 when unknown.
    recompute: i64,
}

impl Keyed for Slot {
    const FREE: Slot = Slot {
        key: KeyId { database: 0, table: 0, hash: [0, 0] },
        state: State::Free,
        lease: [0; 16],
        granted_at: 0,
        deadline: 0,
        ended_at: 0,
        recompute: 0,
    };

    fn key(&self) -> Option<&KeyId> {
        (self.state != State::Free).then_some(&self.key)
    }
}

impl Slot {
    fn held_at(&self, now: TimestampTz) -> bool {
        self.state == State::Held && self.deadline > now
    }
}

pub struct Table {
    entries: Probed<Slot, CAPACITY>,
    /// Fills, releases and cancellations wake the sessions waiting for a key here.
    changed: pg_sys::ConditionVariable,
}

impl Default for Table {
    fn default() -> Self {
        let mut changed = std::mem::MaybeUninit::<pg_sys::ConditionVariable>::zeroed();
        // SAFETY: ConditionVariableInit only initialises the spinlock and wait list of the value
        // it is given; both are plain data, valid after the copy into shared memory.
        let changed = unsafe {
            pg_sys::ConditionVariableInit(changed.as_mut_ptr());
            changed.assume_init()
        };
        Table { entries: Probed::EMPTY, changed }
    }
}

// SAFETY: Table is plain data (the condition variable included), valid in shared memory once
// initialised; slots change only under the LWLock.
unsafe impl PGRXSharedMemory for Table {}

// SAFETY: the lock is named once and initialised by pg_shmem_init! while the library is preloaded.
static TABLE: PgLwLock<Table> = unsafe { PgLwLock::new(c"pg_cache_leases") };
static PRELOADED: AtomicBool = AtomicBool::new(false);
/// Leases granted and not yet ended (an expired one counts until it is replaced or dropped):
/// writes skip the lock while it is 0.
// SAFETY: named once and initialised by pg_shmem_init! while the library is preloaded.
static HELD: PgAtomic<AtomicI64> = unsafe { PgAtomic::new(c"pg_cache_leases_held") };

/// Called from `_PG_init` while the library is being preloaded.
pub fn init() {
    pg_shmem_init!(TABLE);
    pg_shmem_init!(HELD);
    PRELOADED.store(true, Ordering::Relaxed);
}

pub fn available() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}

/// Whether a write may have a lease to cancel (a cheap, racy check: see [`HELD`]).
pub fn any_held() -> bool {
    available() && held_count().load(Ordering::Relaxed) > 0
}

fn held_count() -> &'static AtomicI64 {
    HELD.get()
}

impl Table {
    fn held_in_database(&self, database: u32, now: TimestampTz) -> usize {
        self.entries.slots.iter().filter(|slot| slot.key.database == database && slot.held_at(now)).count()
    }
}

/// What a miss found in the lease table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Grant {
    /// This caller holds the new lease.
    Granted([u8; 16]),
    /// Another caller holds a lease until `deadline`.
    Held { deadline: TimestampTz },
    /// The key's last lease ended at or after `since`: the caller's read may predate that
    /// fill or write, so it should read again.
    ChangedSince,
    /// `limit` leases are held already: in the database (`per_database`), or across the server.
    Full { limit: usize, per_database: bool },
}

/// After a miss that began reading at `read_at`: a new lease on `key` until `deadline`, unless
/// another is held or the key changed since `read_at`.
pub fn grant(
    key: &KeyId,
    now: TimestampTz,
    read_at: TimestampTz,
    deadline: TimestampTz,
    per_database: usize,
) -> Grant {
    let mut table = TABLE.exclusive();
    let (mut index, found) = table.entries.find(key);
    if found {
        let slot = table.entries.slots[index];
        if slot.held_at(now) {
            return Grant::Held { deadline: slot.deadline };
        }
        if slot.state == State::Memo && slot.ended_at >= read_at {
            return Grant::ChangedSince;
        }
    } else {
        if table.entries.taken >= CROWDED {
            table.entries.remove_where(
                |slot| !slot.held_at(now),
                |removed| {
                    if removed.state == State::Held {
                        held_count().fetch_sub(1, Ordering::Relaxed);
                    }
                },
            );
            index = table.entries.find(key).0;
        }
        if table.entries.taken >= CAPACITY - 1 {
            return Grant::Full { limit: CAPACITY - 1, per_database: false };
        }
    }
    if table.held_in_database(key.database, now) >= per_database {
        return Grant::Full { limit: per_database, per_database: true };
    }
    let lease = new_lease();
    let was = table.entries.slots[index];
    if was.state == State::Held {
        // An expired lease of the same key, replaced: its holder's fill will be refused.
        held_count().fetch_sub(1, Ordering::Relaxed);
    }
    if was.state == State::Free {
        table.entries.taken += 1;
    }
    table.entries.slots[index] = Slot {
        key: *key,
        state: State::Held,
        lease,
        granted_at: now,
        deadline,
        ended_at: 0,
        recompute: was.recompute,
    };
    held_count().fetch_add(1, Ordering::Relaxed);
    Grant::Granted(lease)
}

fn new_lease() -> [u8; 16] {
    let mut lease = [0u8; 16];
    // SAFETY: writes 16 bytes into a 16-byte buffer.
    let random = unsafe { pg_sys::pg_strong_random(lease.as_mut_ptr().cast(), lease.len()) };
    if !random {
        pgrx::error!("pg_cache: could not generate a random lease");
    }
    // A version 4 UUID, as gen_random_uuid() makes.
    lease[6] = (lease[6] & 0x0f) | 0x40;
    lease[8] = (lease[8] & 0x3f) | 0x80;
    lease
}

/// Whether `lease` is the current lease of `key`, unexpired at `now`.
pub fn is_current(key: &KeyId, lease: &[u8; 16], now: TimestampTz) -> bool {
    let table = TABLE.share();
    let (index, found) = table.entries.find(key);
    found && table.entries.slots[index].held_at(now) && table.entries.slots[index].lease == *lease
}

/// The deadline of the lease held on `key` at `now`, if one is.
pub fn held_until(key: &KeyId, now: TimestampTz) -> Option<TimestampTz> {
    let table = TABLE.share();
    let (index, found) = table.entries.find(key);
    (found && table.entries.slots[index].held_at(now)).then(|| table.entries.slots[index].deadline)
}

/// The microseconds the last fill of `key` took, when known, and whether a lease on it is held.
pub fn recompute_time(key: &KeyId, now: TimestampTz) -> (Option<i64>, bool) {
    let table = TABLE.share();
    let (index, found) = table.entries.find(key);
    if !found {
        return (None, false);
    }
    let slot = &table.entries.slots[index];
    ((slot.recompute > 0).then_some(slot.recompute), slot.held_at(now))
}

/// How a lease ends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum End {
    /// Its fill committed: the memo keeps how long the computation took.
    Filled,
    /// Its holder gave it up, or its fill was rolled back.
    Released,
}

/// Ends `lease` on `key` if it is still the key's lease; true when it was. Wakes the waiters.
pub fn end(key: &KeyId, lease: &[u8; 16], how: End, now: TimestampTz) -> bool {
    let ended = {
        let mut table = TABLE.exclusive();
        let (index, found) = table.entries.find(key);
        let slot = &mut table.entries.slots[index];
        if found && slot.state == State::Held && slot.lease == *lease {
            slot.state = State::Memo;
            slot.lease = [0; 16];
            slot.ended_at = now;
            if how == End::Filled {
                slot.recompute = (now - slot.granted_at).max(1);
            }
            held_count().fetch_sub(1, Ordering::Relaxed);
            true
        } else {
            false
        }
    };
    if ended {
        wake_waiters();
    }
    ended
}

/// A committed write of `keys` (all keys of `table_oid` when `keys` is `None`): their leases
/// end, and their fills will be refused. Wakes the waiters.
pub fn cancel<'a>(
    database: u32,
    table_oid: u32,
    keys: Option<impl Iterator<Item = &'a KeyId>>,
    now: TimestampTz,
) {
    let mut cancelled = false;
    {
        let mut table = TABLE.exclusive();
        let mut cancel_at = |table: &mut Table, index: usize| {
            let slot = &mut table.entries.slots[index];
            if slot.state == State::Held {
                held_count().fetch_sub(1, Ordering::Relaxed);
                cancelled = true;
            }
            slot.state = State::Memo;
            slot.lease = [0; 16];
            slot.ended_at = now;
        };
        match keys {
            Some(keys) => {
                for key in keys {
                    let (index, found) = table.entries.find(key);
                    if found {
                        cancel_at(&mut table, index);
                    }
                }
            }
            None => {
                for index in 0..CAPACITY {
                    let slot = &table.entries.slots[index];
                    if slot.state != State::Free
                        && slot.key.database == database
                        && slot.key.table == table_oid
                    {
                        cancel_at(&mut table, index);
                    }
                }
            }
        }
    }
    if cancelled {
        wake_waiters();
    }
}

fn wake_waiters() {
    // SAFETY: the condition variable lives in shared memory for the server's life.
    unsafe { pg_sys::ConditionVariableBroadcast(condition_variable()) }
}

fn condition_variable() -> *mut pg_sys::ConditionVariable {
    // The pointer outlives the guard: the table is in shared memory for the server's life, and
    // the condition variable has its own spinlock.
    (&raw const TABLE.share().changed).cast_mut()
}

/// Sleeps until a lease ends somewhere (or `until`, or an interrupt). Call
/// [`prepare_to_wait`] before checking the condition, and [`stop_waiting`] after.
pub fn wait_until(until: TimestampTz, now: TimestampTz) {
    let millis = ((until - now) / 1000).clamp(1, i64::from(i32::MAX / 2));
    // SAFETY: sleeps on the shared condition variable; interrupts are processed inside.
    unsafe {
        pg_sys::ConditionVariableTimedSleep(condition_variable(), millis, pg_sys::PG_WAIT_EXTENSION);
    }
}

pub fn prepare_to_wait() {
    // SAFETY: the condition variable lives in shared memory for the server's life.
    unsafe { pg_sys::ConditionVariablePrepareToSleep(condition_variable()) }
}

pub fn stop_waiting() {
    // SAFETY: cancels this backend's sleep, if any; always safe.
    unsafe {
        pg_sys::ConditionVariableCancelSleep();
    }
}

#[cfg(test)]
mod layout {
    use super::Slot;

    #[test]
    fn a_slot_takes_80_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 80);
    }
}
