//! What each cache of each database keeps in shared memory (only with the library preloaded):
//! its statistics counters, its live bytes as last measured and the bytes written since, its
//! size cap as last read, and what the evictor removed. One slot per cache, at most
//! `pg_cache.max_caches` across the server, taken on first use and freed by the database's
//! worker once the cache's table is gone.
//!
//! Slots hold only atomics and are taken without a lock: a slot is claimed by swapping its key
//! from 0, and a backend that then finds the same key in an earlier slot gives its own back.

use super::slots::{Counter, COUNTERS};
use pgrx::pg_guard;
use pgrx::pg_sys::{self, Oid, TimestampTz};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize, Ordering};

#[repr(C)]
pub struct CacheSlot {
    /// `database << 32 | table`; 0 when free.
    key: AtomicU64,
    counters: [AtomicI64; COUNTERS],
    counting_since: AtomicI64,
    /// Key + value bytes of the live entries at the last measurement.
    live_bytes: AtomicI64,
    /// Bytes (key + value) committed since the live bytes were last measured.
    pending_bytes: AtomicI64,
    /// The cap in bytes as the last write or sweep read it; 0: none.
    size_cap: AtomicI64,
    evicted_for_size: AtomicI64,
    /// The removal horizon at the evictor's last VACUUM of the table.
    vacuum_horizon: AtomicU32,
    /// The transaction that created the cache and took the slot for it (`cache_create`): until
    /// it ends, its table is not visible to others, and the slot is not freed for that.
    creator: AtomicU32,
}

fn key_of(database: Oid, table: Oid) -> u64 {
    (u64::from(database.to_u32()) << 32) | u64::from(table.to_u32())
}

impl CacheSlot {
    pub fn table(&self) -> Oid {
        Oid::from((self.key.load(Ordering::Relaxed) & 0xffff_ffff) as u32)
    }

    pub fn count(&self, counter: Counter, amount: i64) {
        self.counters[counter as usize].fetch_add(amount, Ordering::Relaxed);
    }

    /// The statistics counters, and since when they count.
    pub fn counters(&self) -> ([i64; COUNTERS], TimestampTz) {
        (
            std::array::from_fn(|i| self.counters[i].load(Ordering::Relaxed)),
            self.counting_since.load(Ordering::Relaxed),
        )
    }

    pub fn reset_counters(&self) {
        self.counters.iter().for_each(|counter| counter.store(0, Ordering::Relaxed));
        // SAFETY: reads the system clock.
        self.counting_since.store(unsafe { pg_sys::GetCurrentTimestamp() }, Ordering::Relaxed);
    }

    pub fn add_written(&self, bytes: i64) {
        self.pending_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// A sweep measured `live_bytes` when [`CacheSlot::written_since_measured`] said
    /// `written_before`: what was written after that is still to be counted.
    pub fn measured(&self, live_bytes: i64, written_before: i64) {
        self.live_bytes.store(live_bytes, Ordering::Relaxed);
        self.pending_bytes.fetch_sub(written_before, Ordering::Relaxed);
    }

    pub fn written_since_measured(&self) -> i64 {
        self.pending_bytes.load(Ordering::Relaxed)
    }

    pub fn live_bytes(&self) -> i64 {
        self.live_bytes.load(Ordering::Relaxed)
    }

    /// Live bytes as far as known without a scan: the last measurement plus everything written
    /// since (replaced and removed values still counted: an upper bound).
    pub fn estimated_live_bytes(&self) -> i64 {
        self.live_bytes().saturating_add(self.written_since_measured())
    }

    pub fn size_cap(&self) -> i64 {
        self.size_cap.load(Ordering::Relaxed)
    }

    pub fn set_size_cap(&self, bytes: i64) {
        self.size_cap.store(bytes, Ordering::Relaxed);
    }

    /// Over its cap by what is known without a scan.
    pub fn over_size_cap(&self) -> bool {
        let cap = self.size_cap();
        cap > 0 && self.estimated_live_bytes() > cap
    }

    pub fn add_evicted_for_size(&self, rows: i64) {
        self.evicted_for_size.fetch_add(rows, Ordering::Relaxed);
    }

    pub fn evicted_for_size(&self) -> i64 {
        self.evicted_for_size.load(Ordering::Relaxed)
    }

    /// Records the removal horizon of a VACUUM about to run; returns the one of the last.
    pub fn swap_vacuum_horizon(&self, horizon: pg_sys::TransactionId) -> pg_sys::TransactionId {
        pg_sys::TransactionId::from(self.vacuum_horizon.swap(horizon.into_inner(), Ordering::Relaxed))
    }

    /// Frees the slot: zeroed, then its key given up.
    fn free(&self) {
        self.counters.iter().for_each(|counter| counter.store(0, Ordering::Relaxed));
        for field in [&self.live_bytes, &self.pending_bytes, &self.size_cap, &self.evicted_for_size] {
            field.store(0, Ordering::Relaxed);
        }
        self.vacuum_horizon.store(0, Ordering::Relaxed);
        self.creator.store(0, Ordering::Relaxed);
        self.key.store(0, Ordering::Release);
    }
}

const NAME: &std::ffi::CStr = c"pg_cache_caches";

static SLOTS: AtomicPtr<CacheSlot> = AtomicPtr::new(std::ptr::null_mut());
static COUNT: AtomicUsize = AtomicUsize::new(0);
static PRELOADED: AtomicBool = AtomicBool::new(false);
/// The request and startup hooks installed before ours.
static mut PREVIOUS_HOOKS: (super::Hook, super::Hook) = (None, None);

/// Called from `_PG_init` while the library is being preloaded.
pub fn init() {
    // SAFETY: in _PG_init, while preloading, before any other process exists: the hooks are
    // chained once, the previous ones kept to be called first.
    unsafe { PREVIOUS_HOOKS = super::install_hooks(request_shared_memory, attach_shared_memory) };
    PRELOADED.store(true, Ordering::Relaxed);
}

fn slot_count() -> usize {
    crate::gucs::MAX_CACHES.get().max(1) as usize
}

#[pg_guard]
unsafe extern "C-unwind" fn request_shared_memory() {
    // SAFETY: the shmem_request_hook, where this request belongs; the previous hook is a hook.
    unsafe {
        super::call_previous(PREVIOUS_HOOKS.0);
        pg_sys::RequestAddinShmemSpace(slot_count() * std::mem::size_of::<CacheSlot>());
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn attach_shared_memory() {
    // SAFETY: the shmem_startup_hook; the previous hook is a hook; `attach` zeroes the slots
    // (every one free) when it makes them.
    unsafe {
        super::call_previous(PREVIOUS_HOOKS.1);
        let count = slot_count();
        let slots = super::attach(NAME, count * std::mem::size_of::<CacheSlot>()).cast::<CacheSlot>();
        SLOTS.store(slots, Ordering::Relaxed);
        COUNT.store(count, Ordering::Relaxed);
    }
}

fn slots() -> &'static [CacheSlot] {
    let base = SLOTS.load(Ordering::Relaxed);
    if !PRELOADED.load(Ordering::Relaxed) || base.is_null() {
        return &[];
    }
    // SAFETY: `COUNT` slots of atomics in shared memory, mapped for the process's life.
    unsafe { std::slice::from_raw_parts(base, COUNT.load(Ordering::Relaxed)) }
}

/// The slot of `table` in `database` if it has one.
pub fn existing(database: Oid, table: Oid) -> Option<&'static CacheSlot> {
    let key = key_of(database, table);
    slots().iter().find(|slot| slot.key.load(Ordering::Acquire) == key)
}

/// The slot of `table` in `database`, taken for it when it has none; `None` without
/// preloading or when every slot is taken.
pub fn slot(database: Oid, table: Oid) -> Option<&'static CacheSlot> {
    if let Some(found) = existing(database, table) {
        return Some(found);
    }
    let key = key_of(database, table);
    let slots = slots();
    let (index, claimed) = slots
        .iter()
        .enumerate()
        .find(|(_, slot)| slot.key.compare_exchange(0, key, Ordering::AcqRel, Ordering::Relaxed).is_ok())?;
    // SAFETY: reads the system clock.
    claimed.counting_since.store(unsafe { pg_sys::GetCurrentTimestamp() }, Ordering::Relaxed);
    // Another backend may have claimed one for the same cache meanwhile: the first one wins.
    match slots[..index].iter().find(|slot| slot.key.load(Ordering::Acquire) == key) {
        Some(earlier) => {
            claimed.free();
            Some(earlier)
        }
        None => Some(claimed),
    }
}

thread_local! {
    static MINE: Cell<Option<(Oid, &'static CacheSlot)>> = const { Cell::new(None) };
}

/// The slot of the cache the running call works on (see `selected`).
pub fn mine() -> Option<&'static CacheSlot> {
    let table = crate::selected::table();
    if table == pg_sys::InvalidOid {
        return None;
    }
    // SAFETY: reads a backend global set at connection.
    let database = unsafe { pg_sys::MyDatabaseId };
    let key = key_of(database, table);
    if let Some((cached, slot)) = MINE.get() {
        if cached == table && slot.key.load(Ordering::Relaxed) == key {
            return Some(slot);
        }
    }
    let slot = slot(database, table)?;
    MINE.set(Some((table, slot)));
    Some(slot)
}

/// Slots in use across the server.
pub fn in_use() -> usize {
    slots().iter().filter(|slot| slot.key.load(Ordering::Relaxed) != 0).count()
}

/// Every slot of `database`.
pub fn each_of(database: Oid, mut visit: impl FnMut(&'static CacheSlot)) {
    for slot in slots() {
        if slot.key.load(Ordering::Relaxed) >> 32 == u64::from(database.to_u32()) {
            visit(slot);
        }
    }
}

thread_local! {
    /// Slots taken for caches this transaction created: freed again if it aborts.
    static CLAIMED: RefCell<Vec<(&'static CacheSlot, u64)>> = const { RefCell::new(Vec::new()) };
    static CALLBACKS_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// Takes the slot of `table`, just created by the current transaction (which must have an id).
pub fn claim_for_new_cache(database: Oid, table: Oid) {
    if let Some(slot) = slot(database, table) {
        // SAFETY: the current transaction has written (created the table): it has an id.
        let creator = unsafe { pg_sys::GetCurrentTransactionId() };
        slot.creator.store(creator.into_inner(), Ordering::Relaxed);
        crate::xact::register_callbacks_once(
            &CALLBACKS_REGISTERED,
            Some(at_transaction_end),
            Some(at_subtransaction_end),
        );
        CLAIMED.with_borrow_mut(|claimed| claimed.push((slot, key_of(database, table))));
    }
}

/// A transaction that took slots for new caches ended: rolled back, it gives them back at once
/// (its caches never existed); committed, they are its caches'.
#[pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    let aborted = match event {
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT | XACT_EVENT_PREPARE => false,
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => true,
        _ => return,
    };
    for (slot, key) in CLAIMED.with_borrow_mut(std::mem::take) {
        if aborted && slot.key.load(Ordering::Relaxed) == key {
            slot.free();
        }
    }
}

/// A rolled-back savepoint's caches are freed by the worker (their creator is no longer in
/// progress and their table does not exist).
#[pg_guard]
unsafe extern "C-unwind" fn at_subtransaction_end(
    _event: pg_sys::SubXactEvent::Type,
    _sub: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
}

/// Frees the slots of `database` whose table `keep` does not keep, but not those of a cache
/// whose creating transaction is still running (its table is not visible yet).
pub fn forget_where(database: Oid, keep: impl Fn(Oid) -> bool) {
    each_of(database, |slot| {
        let creator = pg_sys::TransactionId::from(slot.creator.load(Ordering::Relaxed));
        // SAFETY: a lookup in the proc array of a transaction id (0 is never in progress).
        let creating =
            creator != pg_sys::InvalidTransactionId && unsafe { pg_sys::TransactionIdIsInProgress(creator) };
        if !creating && !keep(slot.table()) {
            slot.free();
        }
    });
}

/// Frees the slots of databases that no longer exist (`exists` says which do).
pub fn forget_dropped_databases(exists: impl Fn(Oid) -> bool) {
    for slot in slots() {
        let key = slot.key.load(Ordering::Relaxed);
        if key != 0 && !exists(Oid::from((key >> 32) as u32)) {
            slot.free();
        }
    }
}
