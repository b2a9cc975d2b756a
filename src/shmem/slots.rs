//! What the eviction launcher and workers share, per database, in shared memory (only with the
//! library preloaded): whether the database has pg_cache, when it is next due for a sweep, which
//! worker serves it, and what its sweeps did (`cache_worker_status()`, `cache_stats()`).
//!
//! A database is due when an entry stored there may have expired (`due_at`: sessions that write
//! an entry lower it to the entry's expiry; a sweep sets it to the earliest expiry it left), when
//! enough entries were written since its last sweep to have left dead rows worth a vacuum
//! (`writes`), or when the size cap may be passed (`pending_bytes`: bytes written since the last
//! measurement).
//! So a database with nothing to evict costs no process at all.

use pgrx::lwlock::PgLwLock;
use pgrx::pg_sys::{self, Oid, TimestampTz};
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, Ordering};

/// What a call counts.
#[derive(Clone, Copy)]
pub enum Counter {
    Hits,
    Misses,
    Sets,
    Removes,
    Evicted,
    LeasesGranted,
    StaleServed,
    Waits,
    FillsRejected,
    /// Sliding hits recorded as pending touches instead of written.
    TouchesRecorded,
    /// Pending touches the worker (or `cache_evict_expired`) wrote to the table.
    TouchesApplied,
    /// Sliding hits written directly because the touch table had no room for them.
    TouchFallbacks,
}
pub const COUNTERS: usize = 12;

/// Databases known at once; the launcher forgets dropped ones. More databases than this are
/// not swept (the launcher says so in the log, once).
pub const MAX_DATABASES: usize = 2048;
const MAX_ERROR_BYTES: usize = 160;

/// What the launcher knows of a database.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum State {
    /// Not looked at yet: a worker is started there once to find out.
    Unknown = 0,
    /// Has the extension.
    Present = 1,
    /// Has not (or not any more): nothing is started there until a session uses pg_cache in it.
    Absent = 2,
}

#[repr(C)]
pub struct Slot {
    database: AtomicU32,
    state: AtomicU32,
    /// The earliest time an entry stored here may expire; i64::MAX when none is known.
    due_at: AtomicI64,
    /// Entries written since the last sweep began: each may have left a dead row to vacuum.
    writes: AtomicI64,
    /// The worker serving the database, 0 when none.
    pid: AtomicI32,
    /// No worker is started before this (one just stepped aside for DROP DATABASE and the like).
    hold_off_until: AtomicI64,
    last_sweep_at: AtomicI64,
    evicted_total: AtomicI64,
    failing: AtomicBool,
    /// Touches of this database pending in `touches` (see `pg_cache.max_touches_per_database`).
    touches: AtomicI64,
    /// When the pending touches are to be written by; i64::MAX when none is pending.
    touches_due_at: AtomicI64,
    // Under the lock: the last error.
    last_error_at: TimestampTz,
    last_error_len: usize,
    last_error: [u8; MAX_ERROR_BYTES],
}

impl Slot {
    fn empty() -> Slot {
        Slot {
            database: AtomicU32::new(0),
            state: AtomicU32::new(State::Unknown as u32),
            due_at: AtomicI64::new(0),
            writes: AtomicI64::new(0),
            pid: AtomicI32::new(0),
            hold_off_until: AtomicI64::new(0),
            last_sweep_at: AtomicI64::new(0),
            evicted_total: AtomicI64::new(0),
            failing: AtomicBool::new(false),
            touches: AtomicI64::new(0),
            touches_due_at: AtomicI64::new(i64::MAX),
            last_error_at: 0,
            last_error_len: 0,
            last_error: [0; MAX_ERROR_BYTES],
        }
    }

    fn reset(&mut self, database: Oid) {
        *self = Slot::empty();
        self.database.store(database.to_u32(), Ordering::Relaxed);
    }

    pub fn database(&self) -> Oid {
        Oid::from(self.database.load(Ordering::Relaxed))
    }

    pub fn state(&self) -> State {
        match self.state.load(Ordering::Relaxed) {
            1 => State::Present,
            2 => State::Absent,
            _ => State::Unknown,
        }
    }

    pub fn set_state(&self, state: State) {
        self.state.store(state as u32, Ordering::Relaxed);
    }

    pub fn due_at(&self) -> TimestampTz {
        self.due_at.load(Ordering::Relaxed)
    }

    /// Starts a sweep: from now on only writes lower `due_at`, and the sweep's own finding is
    /// merged in by [`Slot::finish_sweep`] (so a write during the sweep is never lost).
    pub fn begin_sweep(&self) {
        self.due_at.store(i64::MAX, Ordering::Relaxed);
        self.writes.store(0, Ordering::Relaxed);
    }

    /// A transaction committed `entries` writes, the earliest expiring at
    /// `earliest_expiry`.
    pub fn add_committed(&self, earliest_expiry: TimestampTz, entries: i64) {
        self.due_at.fetch_min(earliest_expiry, Ordering::Relaxed);
        self.writes.fetch_add(entries, Ordering::Relaxed);
    }

    /// A touch is pending, to be written by `at`.
    pub fn due_by_touches(&self, at: TimestampTz) {
        self.touches_due_at.fetch_min(at, Ordering::Relaxed);
    }

    pub fn touches_due_at(&self) -> TimestampTz {
        self.touches_due_at.load(Ordering::Relaxed)
    }

    /// The worker is about to write the pending touches: touches recorded from now on make the
    /// database due again.
    pub fn begin_applying_touches(&self) {
        self.touches_due_at.store(i64::MAX, Ordering::Relaxed);
    }

    /// Touches of this database pending in the touch table.
    pub fn touches(&self) -> i64 {
        self.touches.load(Ordering::Relaxed)
    }

    /// `change` more (or fewer) touches pending.
    pub fn add_touches(&self, change: i64) {
        self.touches.fetch_add(change, Ordering::Relaxed);
    }

    /// Entries written since the last sweep began.
    pub fn writes(&self) -> i64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Ends a sweep that found `next_expiry` the earliest expiry left (of all the database's
    /// caches).
    pub fn finish_sweep(&self, next_expiry: TimestampTz, at: TimestampTz) {
        self.due_at.fetch_min(next_expiry, Ordering::Relaxed);
        self.last_sweep_at.store(at, Ordering::Relaxed);
    }

    /// After a failed sweep: due again at `at` at the latest.
    pub fn retry_at(&self, at: TimestampTz) {
        self.due_at.fetch_min(at, Ordering::Relaxed);
    }

    pub fn last_sweep_at(&self) -> TimestampTz {
        self.last_sweep_at.load(Ordering::Relaxed)
    }

    pub fn pid(&self) -> i32 {
        self.pid.load(Ordering::Relaxed)
    }

    pub fn hold_off_until(&self) -> TimestampTz {
        self.hold_off_until.load(Ordering::Relaxed)
    }

    pub fn hold_off(&self, until: TimestampTz) {
        self.hold_off_until.store(until, Ordering::Relaxed);
    }

    pub fn add_evicted(&self, rows: i64) {
        self.evicted_total.fetch_add(rows, Ordering::Relaxed);
    }

    /// Whether the last sweep failed; [`Slot::set_failing`] returns whether that changed, so a
    /// condition is logged when it starts and when it ends, not on every retry.
    pub fn set_failing(&self, failing: bool) -> bool {
        self.failing.swap(failing, Ordering::Relaxed) != failing
    }
}

pub struct Slots([Slot; MAX_DATABASES]);

impl Default for Slots {
    fn default() -> Self {
        Slots(std::array::from_fn(|_| Slot::empty()))
    }
}

// SAFETY: Slots holds only atomics and plain data, valid in shared memory when zeroed or copied; the error
// fields change only under the LWLock.
unsafe impl PGRXSharedMemory for Slots {}

// SAFETY: the lock is named once and initialised by pg_shmem_init! while the library is preloaded.
static SLOTS: PgLwLock<Slots> = unsafe { PgLwLock::new(c"pg_cache_databases") };
static PRELOADED: AtomicBool = AtomicBool::new(false);

thread_local! {
    /// This backend's database's slot, once found (shared memory stays mapped for the process's
    /// life, and a slot is only reused once its database is dropped).
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

/// The slot of `database` if it has one (none is taken for it).
pub fn existing_slot(database: Oid) -> Option<&'static Slot> {
    if !preloaded() {
        return None;
    }
    let id = database.to_u32();
    let index = SLOTS.share().0.iter().position(|slot| slot.database.load(Ordering::Relaxed) == id)?;
    // SAFETY: as in `slot`: slots live in shared memory for the server's life, and their fields
    // are atomics.
    Some(unsafe { &*(&SLOTS.share().0[index] as *const Slot) })
}

/// The slot of `database`, taken for it when it has none; `None` when every slot is taken.
pub fn slot(database: Oid) -> Option<&'static Slot> {
    if !preloaded() {
        return None;
    }
    let id = database.to_u32();
    let found = |slots: &Slots| slots.0.iter().position(|slot| slot.database.load(Ordering::Relaxed) == id);
    // The share lock is released before the exclusive one is taken.
    let shared = found(&SLOTS.share());
    let index = match shared {
        Some(index) => index,
        None => {
            let mut slots = SLOTS.exclusive();
            match found(&slots) {
                Some(index) => index,
                None => {
                    let free = slots.0.iter().position(|slot| slot.database.load(Ordering::Relaxed) == 0)?;
                    slots.0[free].reset(database);
                    free
                }
            }
        }
    };
    // The slots live in shared memory for the life of the server.
    // SAFETY: slots live in shared memory for the server's life and a slot is reused only once its database
    // is dropped (no backend is connected to it then); its fields are atomics, and the error fields are read
    // and written only under the lock.
    Some(unsafe { &*(&SLOTS.share().0[index] as *const Slot) })
}

/// The slot of the current database.
pub fn my_slot() -> Option<&'static Slot> {
    let slot = MY_SLOT.get().or_else(|| {
        // SAFETY: reads a backend global set at connection.
        let slot: *const Slot = slot(unsafe { pg_sys::MyDatabaseId })?;
        MY_SLOT.set(Some(slot));
        Some(slot)
    })?;
    // SAFETY: `slot` points into shared memory, mapped for the process's life (see `slot`).
    Some(unsafe { &*slot })
}

/// Every database in use, with its slot.
pub fn each(mut visit: impl FnMut(&'static Slot)) {
    if !preloaded() {
        return;
    }
    let slots = SLOTS.share();
    for slot in slots.0.iter().filter(|slot| slot.database.load(Ordering::Relaxed) != 0) {
        // SAFETY: as in `slot`: shared memory outlives the reference, and a slot is reused only after its
        // database is gone.
        visit(unsafe { &*(slot as *const Slot) });
    }
}

/// Frees the slots of databases that no longer exist (`exists` says which do).
pub fn forget_dropped(exists: impl Fn(Oid) -> bool) {
    if !preloaded() {
        return;
    }
    let mut slots = SLOTS.exclusive();
    for slot in slots.0.iter_mut() {
        let database = slot.database();
        if database != pg_sys::InvalidOid && !exists(database) && slot.pid() == 0 {
            *slot = Slot::empty();
        }
    }
}

/// A worker's claim on its database, released when the worker process exits. `None` when
/// another worker serves the database already.
pub struct Claim(&'static Slot);

pub fn claim(database: Oid) -> Option<Claim> {
    let slot = slot(database)?;
    // SAFETY: reads the process's own pid.
    let pid = unsafe { pg_sys::MyProcPid };
    slot.pid.compare_exchange(0, pid, Ordering::AcqRel, Ordering::Relaxed).ok()?;
    // SAFETY: `release` is a plain function; the datum is the address of a Slot in shared memory.
    unsafe { pg_sys::before_shmem_exit(Some(release), pg_sys::Datum::from(slot as *const Slot as usize)) };
    Some(Claim(slot))
}

#[pg_guard]
unsafe extern "C-unwind" fn release(_code: i32, slot: pg_sys::Datum) {
    // SAFETY: `slot` is the address of a Slot in shared memory, passed by `claim`; shared memory is still
    // mapped while exit callbacks run.
    unsafe {
        (*(slot.value() as *const Slot)).pid.store(0, Ordering::Release);
    }
}

impl Claim {
    pub fn slot(&self) -> &'static Slot {
        self.0
    }

    pub fn record_error(&self, message: &str, at: TimestampTz) {
        // The error fields change only under the lock.
        let mut slots = SLOTS.exclusive();
        let Some(slot) = slots.0.iter_mut().find(|slot| std::ptr::eq(*slot, self.0)) else {
            return;
        };
        let mut len = message.len().min(MAX_ERROR_BYTES);
        while !message.is_char_boundary(len) {
            len -= 1;
        }
        slot.last_error[..len].copy_from_slice(&message.as_bytes()[..len]);
        slot.last_error_len = len;
        slot.last_error_at = at;
    }
}

/// What `cache_worker_status()` shows of a database.
pub struct Status {
    pub database: Oid,
    pub pid: i32,
    pub last_sweep_at: TimestampTz,
    pub evicted_total: i64,
    pub last_error: String,
    pub last_error_at: TimestampTz,
}

/// The status of every database known to have pg_cache, read under the lock (the error fields
/// change only under it).
pub fn statuses() -> Vec<Status> {
    if !preloaded() {
        return Vec::new();
    }
    let slots = SLOTS.share();
    slots
        .0
        .iter()
        .filter(|slot| slot.database.load(Ordering::Relaxed) != 0 && slot.state() == State::Present)
        .map(|slot| Status {
            database: slot.database(),
            pid: slot.pid(),
            last_sweep_at: slot.last_sweep_at.load(Ordering::Relaxed),
            evicted_total: slot.evicted_total.load(Ordering::Relaxed),
            last_error: String::from_utf8_lossy(&slot.last_error[..slot.last_error_len]).into_owned(),
            last_error_at: slot.last_error_at,
        })
        .collect()
}
