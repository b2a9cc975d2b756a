//! Pending touches, in shared memory (only with the library preloaded): a sliding hit does not
//! write its new expiry in the reader's transaction; it records here that the key was read, and
//! the database's eviction worker writes the new expiries in batches of its own. Until then,
//! every decision on whether an entry is live looks here as well as at the stored expiry.
//!
//! A touch is keyed like a lease (database, table, 128-bit hash of the key) and guarded by the
//! expiry stored when it was read: a write that gives the entry another expiry (a set, an
//! expire, a removal and a new set) makes the touch moot, so the later write wins and a removed
//! entry is not brought back. The row's ctid only tells the worker where to look; the worker
//! checks the key and the guard there before it writes.
//!
//! A reader decides whether the entry is live, at the clock's time, under the lock of the key's
//! partition, and records its touch under it; the evictor checks for touches under the same
//! lock before it deletes. So a touch recorded before the evictor looks keeps the entry, and a
//! reader coming after it finds the entry expired: no touch is lost between the two.
//!
//! The table is split into partitions, each with its own lock, so that readers of different keys
//! seldom meet; a restart forgets every touch, as it empties the UNLOGGED table they are for.

use super::probing::{KeyId, Keyed, Probed};
use super::slots::{self as registry, Slot as DatabaseSlot};
use pgrx::pg_guard;
use pgrx::pg_sys::{self, ItemPointerData, Oid, TimestampTz};
use std::ffi::CStr;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

/// Partitions, each under its own lock.
const PARTITIONS: usize = 16;
/// Touches per partition (48 bytes each): 32,768 pending at once across the server, in 1.5 MB
/// of shared memory.
const PER_PARTITION: usize = 2048;
/// Above this many touches in a partition, moot ones are dropped before a new one goes in, and
/// none goes in above it: probes stay short.
const CROWDED: usize = PER_PARTITION * 7 / 8;

/// A sliding hit not yet written: `key`, read with the stored expiry `guard` in the row version
/// at (`block`, `offset`), is to expire at `next`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
struct Touch {
    key: KeyId,
    guard: TimestampTz,
    next: TimestampTz,
    block: u32,
    offset: u16,
}

impl Keyed for Touch {
    const FREE: Touch =
        Touch { key: KeyId { database: 0, table: 0, hash: [0, 0] }, guard: 0, next: 0, block: 0, offset: 0 };

    fn key(&self) -> Option<&KeyId> {
        // No database has OID 0.
        (self.key.database != 0).then_some(&self.key)
    }
}

impl Touch {
    fn ctid(&self) -> ItemPointerData {
        let mut ctid = ItemPointerData::default();
        pgrx::itemptr::item_pointer_set_all(&mut ctid, self.block, self.offset);
        ctid
    }

    fn set_ctid(&mut self, ctid: ItemPointerData) {
        (self.block, self.offset) = pgrx::itemptr::item_pointer_get_both(ctid);
    }

    /// The expiry of the entry whose stored expiry is `stored`, as this touch makes it.
    fn extends(&self, stored: TimestampTz) -> TimestampTz {
        if self.guard == stored {
            stored.max(self.next)
        } else {
            stored
        }
    }
}

#[derive(Clone, Copy)]
#[repr(C)]
struct Partition {
    touches: Probed<Touch, PER_PARTITION>,
}

/// Every partition, in one piece of shared memory; each partition is guarded by its own lock of
/// the `pg_cache_touches` tranche.
#[repr(C)]
struct Shared {
    partitions: [Partition; PARTITIONS],
}

const TRANCHE: &CStr = c"pg_cache_touches";

/// Where this process sees the shared partitions and their locks (set in the postmaster,
/// inherited by every backend it forks).
static SHARED: AtomicPtr<Shared> = AtomicPtr::new(std::ptr::null_mut());
static LOCKS: AtomicPtr<pg_sys::LWLockPadded> = AtomicPtr::new(std::ptr::null_mut());
static PRELOADED: AtomicBool = AtomicBool::new(false);

/// The request and startup hooks installed before ours.
static mut PREVIOUS_HOOKS: (super::Hook, super::Hook) = (None, None);

/// Called from `_PG_init` while the library is being preloaded. Not `pg_shmem_init!` with one
/// `PgLwLock` per partition: sixteen nested startup hooks, each with a partition on its stack,
/// overflow the postmaster's stack in a debug build.
pub fn init() {
    // SAFETY: in _PG_init, while preloading, before any other process exists: the hooks are
    // chained once, the previous ones kept to be called first.
    unsafe { PREVIOUS_HOOKS = super::install_hooks(request_shared_memory, attach_shared_memory) };
    PRELOADED.store(true, Ordering::Relaxed);
}

#[pg_guard]
unsafe extern "C-unwind" fn request_shared_memory() {
    // SAFETY: the shmem_request_hook, where these requests belong; the previous hook is a hook.
    unsafe {
        super::call_previous(PREVIOUS_HOOKS.0);
        pg_sys::RequestAddinShmemSpace(std::mem::size_of::<Shared>());
        pg_sys::RequestNamedLWLockTranche(TRANCHE.as_ptr(), PARTITIONS as i32);
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn attach_shared_memory() {
    // SAFETY: the shmem_startup_hook, under AddinShmemInitLock (MainLWLockArray[21], as pgrx's
    // PgLwLock takes it): the memory is made (zeroed: every touch free) once, and found by name
    // after that; the tranche was requested by `request_shared_memory`.
    unsafe {
        super::call_previous(PREVIOUS_HOOKS.1);
        let shared = super::attach(TRANCHE, std::mem::size_of::<Shared>()).cast::<Shared>();
        SHARED.store(shared, Ordering::Relaxed);
        LOCKS.store(pg_sys::GetNamedLWLockTranche(TRANCHE.as_ptr()), Ordering::Relaxed);
    }
}

pub fn available() -> bool {
    PRELOADED.load(Ordering::Relaxed)
}

/// Runs `body` on partition `index` under its lock (exclusive or shared). No Drop guard: an ERROR
/// or panic in `body` (none is expected) leaves the lock to the transaction's abort, which
/// releases every LWLock.
fn with_partition<R>(index: usize, exclusive: bool, body: impl FnOnce(&mut Partition) -> R) -> R {
    let mode = if exclusive { pg_sys::LWLockMode::LW_EXCLUSIVE } else { pg_sys::LWLockMode::LW_SHARED };
    // SAFETY: only called when `available()` (preloaded), so the startup hook set both pointers
    // in the postmaster before this process was forked; `index` < PARTITIONS; the partition is
    // only touched while its lock is held, and only read under a shared lock (callers passing
    // `exclusive = false` do not write).
    unsafe {
        let lock = &raw mut (*LOCKS.load(Ordering::Relaxed).add(index)).lock;
        pg_sys::LWLockAcquire(lock, mode);
        let result = body(&mut (*SHARED.load(Ordering::Relaxed)).partitions[index]);
        pg_sys::LWLockRelease(lock);
        result
    }
}

/// The partition of `key`.
fn partition_of(key: &KeyId) -> usize {
    // The other half of the hash picks the slot inside the partition.
    (key.hash[1] % PARTITIONS as u64) as usize
}

fn clock() -> TimestampTz {
    // SAFETY: reads the system clock.
    unsafe { pg_sys::GetCurrentTimestamp() }
}

/// `count` fewer touches pending in `database` (one dropped since keeps no slot).
fn forget(database: u32, count: i64) {
    if let Some(slot) = registry::existing_slot(Oid::from(database)) {
        slot.add_touches(-count);
    }
}

/// Drops the touches of `partition` that `pick` picks; each database's count is looked up once.
fn drop_where(partition: &mut Partition, pick: impl Fn(&Touch) -> bool) {
    let mut dropped: Vec<(u32, i64)> = Vec::new();
    partition.touches.remove_where(pick, |touch| {
        match dropped.iter_mut().find(|(d, _)| *d == touch.key.database) {
            Some((_, count)) => *count += 1,
            None => dropped.push((touch.key.database, 1)),
        }
    });
    for (database, count) in dropped {
        forget(database, count);
    }
}

/// Drops the touches of `partition` that no longer extend anything: their new expiry has passed.
fn drop_moot(partition: &mut Partition, now: TimestampTz) {
    drop_where(partition, |touch| touch.next <= now);
}

/// What a sliding hit found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hit {
    /// The entry has expired, pending touches included.
    Expired,
    /// The entry is live until `expires_at` (a touch recorded now included).
    Live { expires_at: TimestampTz, recorded: bool },
    /// The entry is live until `expires_at` and its expiry is due to move to `next`, but the
    /// touch table has no room for the touch: the caller slides it.
    NotRecorded { expires_at: TimestampTz, next: TimestampTz },
    /// The entry is live until `expires_at`; a touch of another row version is pending, and the
    /// read (with the snapshot of an earlier statement) may be the older one: no touch.
    Superseded { expires_at: TimestampTz },
}

/// A hit of `key`, read in the row version at `ctid` with the stored expiry `stored`: at the
/// clock's time, under the partition's lock, whether the entry is live, and, when `next_for`
/// (given the time and the expiry) says the expiry is due to move, a touch recorded for it.
/// `newest_read`: the read took a snapshot of its own (READ COMMITTED), so a pending touch of
/// another row version is older and is replaced. At most `limit` touches of the database.
pub fn hit(
    key: &KeyId,
    ctid: ItemPointerData,
    stored: TimestampTz,
    newest_read: bool,
    database: &DatabaseSlot,
    limit: i64,
    next_for: impl FnOnce(TimestampTz, TimestampTz) -> Option<TimestampTz>,
) -> Hit {
    with_partition(partition_of(key), true, |partition| {
        let now = clock();
        let (mut index, found) = partition.touches.find(key);
        let pending = found.then(|| partition.touches.slots[index]);
        let expires_at = pending.map_or(stored, |touch| touch.extends(stored));
        if expires_at <= now {
            return Hit::Expired;
        }
        let Some(next) = next_for(now, expires_at) else {
            return Hit::Live { expires_at, recorded: false };
        };
        let mut touch = Touch { key: *key, guard: stored, next, ..Touch::FREE };
        touch.set_ctid(ctid);
        match pending {
            Some(old) if old.guard == stored || newest_read => {
                partition.touches.slots[index] = touch;
                Hit::Live { expires_at: next, recorded: true }
            }
            Some(_) => Hit::Superseded { expires_at },
            None => {
                if partition.touches.taken >= CROWDED {
                    drop_moot(partition, now);
                    index = partition.touches.find(key).0;
                }
                if partition.touches.taken >= CROWDED || database.touches() >= limit {
                    return Hit::NotRecorded { expires_at, next };
                }
                partition.touches.insert_at(index, touch);
                database.add_touches(1);
                Hit::Live { expires_at: next, recorded: true }
            }
        }
    })
}

/// The expiry of `key`'s entry, stored as `stored`, with its pending touch.
pub fn expiry(key: &KeyId, stored: TimestampTz) -> TimestampTz {
    with_partition(partition_of(key), false, |partition| {
        let (index, found) = partition.touches.find(key);
        if found {
            partition.touches.slots[index].extends(stored)
        } else {
            stored
        }
    })
}

/// A touch waiting to be written.
#[derive(Clone, Copy, Debug)]
pub struct Pending {
    pub key: KeyId,
    pub ctid: ItemPointerData,
    pub guard: TimestampTz,
    pub next: TimestampTz,
}

/// Up to `max` touches pending for `table` in `database` (moot ones are dropped on the way).
pub fn pending(database: Oid, table: Oid, max: usize) -> Vec<Pending> {
    let mut found = Vec::new();
    let now = clock();
    for index in 0..PARTITIONS {
        if found.len() >= max {
            break;
        }
        with_partition(index, true, |partition| {
            drop_moot(partition, now);
            let wanted =
                |touch: &&Touch| touch.key.database == database.to_u32() && touch.key.table == table.to_u32();
            found.extend(partition.touches.slots.iter().filter(wanted).take(max - found.len()).map(
                |touch| Pending { key: touch.key, ctid: touch.ctid(), guard: touch.guard, next: touch.next },
            ));
        });
    }
    found
}

/// Drops every touch in `database` of a table `keep` does not keep (dropped since: `cache_drop`,
/// `DROP EXTENSION`).
pub fn forget_tables(database: Oid, keep: impl Fn(Oid) -> bool) {
    for index in 0..PARTITIONS {
        with_partition(index, true, |partition| {
            drop_where(partition, |touch| {
                touch.key.database == database.to_u32() && !keep(Oid::from(touch.key.table))
            });
        });
    }
}

/// After `touch` was written as the expiry `written` in the row version now at `ctid`, or could
/// not be (`None`: the row is gone, or holds another key or expiry): the touch ends, unless a
/// later hit of the same version moved it further, which then stays pending for the new version.
pub fn settle(touch: &Pending, written: Option<(TimestampTz, ItemPointerData)>) {
    with_partition(partition_of(&touch.key), true, |partition| {
        let (index, found) = partition.touches.find(&touch.key);
        if !found || partition.touches.slots[index].guard != touch.guard {
            // A hit of a newer version replaced it: that one stays.
            return;
        }
        match written {
            Some((expires_at, ctid)) if partition.touches.slots[index].next > expires_at => {
                let left = &mut partition.touches.slots[index];
                left.guard = expires_at;
                left.set_ctid(ctid);
            }
            _ => {
                partition.touches.remove_at(index);
                forget(touch.key.database, 1);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_touch_takes_48_bytes() {
        assert_eq!(std::mem::size_of::<Touch>(), 48);
    }

    #[test]
    fn a_touch_extends_only_the_expiry_it_was_read_with() {
        let touch = Touch { guard: 100, next: 500, ..Touch::FREE };
        assert_eq!(touch.extends(100), 500);
        // Another write gave the entry another expiry: the later write wins.
        assert_eq!(touch.extends(200), 200);
        assert_eq!(touch.extends(900), 900);
    }

    #[test]
    fn ctids_round_trip() {
        let mut touch = Touch::FREE;
        let mut ctid = ItemPointerData::default();
        pgrx::itemptr::item_pointer_set_all(&mut ctid, 4_000_000_000, 291);
        touch.set_ctid(ctid);
        assert_eq!(pgrx::itemptr::item_pointer_get_both(touch.ctid()), (4_000_000_000, 291));
    }
}
