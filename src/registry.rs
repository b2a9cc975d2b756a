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

use crate::stats::COUNTERS;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::lwlock::PgLwLock;
use pgrx::pg_sys::{self, Oid, TimestampTz};
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory};
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicI64, AtomicU32, Ordering};

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
    /// Bytes (key + value) written since live_bytes was last measured.
    pending_bytes: AtomicI64,
    /// Entries written since the last sweep began: each may have left a dead row to vacuum.
    writes: AtomicI64,
    /// Key + value bytes of the live entries at the last measurement.
    live_bytes: AtomicI64,
    /// The worker serving the database, 0 when none.
    pid: AtomicI32,
    /// `pg_cache.max_size` in the database as its last sweep read it, in bytes; 0: no cap.
    size_cap: AtomicI64,
    /// The removal horizon at the evictor's last VACUUM of the table.
    vacuum_horizon: AtomicU32,
    /// No worker is started before this (one just stepped aside for DROP DATABASE and the like).
    hold_off_until: AtomicI64,
    last_sweep_at: AtomicI64,
    evicted_total: AtomicI64,
    evicted_for_size: AtomicI64,
    failing: AtomicBool,
    /// The statistics counters of `stats`, and since when they count.
    counters: [AtomicI64; COUNTERS],
    counting_since: AtomicI64,
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
            pending_bytes: AtomicI64::new(0),
            writes: AtomicI64::new(0),
            live_bytes: AtomicI64::new(0),
            pid: AtomicI32::new(0),
            size_cap: AtomicI64::new(0),
            vacuum_horizon: AtomicU32::new(0),
            hold_off_until: AtomicI64::new(0),
            last_sweep_at: AtomicI64::new(0),
            evicted_total: AtomicI64::new(0),
            evicted_for_size: AtomicI64::new(0),
            failing: AtomicBool::new(false),
            counters: Default::default(),
            counting_since: AtomicI64::new(0),
            last_error_at: 0,
            last_error_len: 0,
            last_error: [0; MAX_ERROR_BYTES],
        }
    }

    fn reset(&mut self, database: Oid) {
        *self = Slot::empty();
        self.database.store(database.to_u32(), Ordering::Relaxed);
        self.counting_since.store(unsafe { pg_sys::GetCurrentTimestamp() }, Ordering::Relaxed);
    }

    /// Adds `amount` to statistics counter `counter`.
    pub fn count(&self, counter: usize, amount: i64) {
        self.counters[counter].fetch_add(amount, Ordering::Relaxed);
    }

    /// The statistics counters, and since when they count.
    pub fn counters(&self) -> ([i64; COUNTERS], TimestampTz) {
        (
            std::array::from_fn(|i| self.counters[i].load(Ordering::Relaxed)),
            self.counting_since.load(Ordering::Relaxed),
        )
    }

    pub fn reset_counters(&self) {
        for counter in &self.counters {
            counter.store(0, Ordering::Relaxed);
        }
        self.counting_since.store(unsafe { pg_sys::GetCurrentTimestamp() }, Ordering::Relaxed);
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

    /// Entries written since the last sweep began.
    pub fn writes(&self) -> i64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// Ends a sweep that found `next_expiry` the earliest expiry left and measured `live_bytes`
    /// (None: not measured) when [`Slot::written_since_measured`] said `written_before`: what
    /// was written after that is still to be counted.
    pub fn finish_sweep(
        &self,
        next_expiry: TimestampTz,
        live_bytes: Option<i64>,
        written_before: i64,
        at: TimestampTz,
    ) {
        self.due_at.fetch_min(next_expiry, Ordering::Relaxed);
        if let Some(bytes) = live_bytes {
            self.live_bytes.store(bytes, Ordering::Relaxed);
            self.pending_bytes.fetch_sub(written_before, Ordering::Relaxed);
        }
        self.last_sweep_at.store(at, Ordering::Relaxed);
    }

    /// After a failed sweep: due again at `at` at the latest.
    pub fn retry_at(&self, at: TimestampTz) {
        self.due_at.fetch_min(at, Ordering::Relaxed);
    }

    pub fn size_cap(&self) -> i64 {
        self.size_cap.load(Ordering::Relaxed)
    }

    pub fn set_size_cap(&self, bytes: i64) {
        self.size_cap.store(bytes, Ordering::Relaxed);
    }

    /// Records the removal horizon of a VACUUM about to run; returns the one of the last.
    pub fn swap_vacuum_horizon(&self, horizon: pg_sys::TransactionId) -> pg_sys::TransactionId {
        pg_sys::TransactionId::from(self.vacuum_horizon.swap(horizon.into_inner(), Ordering::Relaxed))
    }

    /// Live bytes as far as known without a scan: the last measurement plus everything written
    /// since (replaced and removed values still counted: an upper bound).
    pub fn estimated_live_bytes(&self) -> i64 {
        self.live_bytes.load(Ordering::Relaxed).saturating_add(self.pending_bytes.load(Ordering::Relaxed))
    }

    /// Bytes (key + value) committed since the live bytes were last measured.
    pub fn written_since_measured(&self) -> i64 {
        self.pending_bytes.load(Ordering::Relaxed)
    }

    pub fn live_bytes(&self) -> i64 {
        self.live_bytes.load(Ordering::Relaxed)
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

    pub fn add_evicted(&self, rows: i64, for_size: bool) {
        self.evicted_total.fetch_add(rows, Ordering::Relaxed);
        if for_size {
            self.evicted_for_size.fetch_add(rows, Ordering::Relaxed);
        }
    }

    pub fn evicted_for_size(&self) -> i64 {
        self.evicted_for_size.load(Ordering::Relaxed)
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

unsafe impl PGRXSharedMemory for Slots {}

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
    Some(unsafe { &*(&SLOTS.share().0[index] as *const Slot) })
}

/// The slot of the current database.
pub fn my_slot() -> Option<&'static Slot> {
    let slot = MY_SLOT.get().or_else(|| {
        let slot: *const Slot = slot(unsafe { pg_sys::MyDatabaseId })?;
        MY_SLOT.set(Some(slot));
        Some(slot)
    })?;
    Some(unsafe { &*slot })
}

/// What a transaction (or one of its subtransactions) wrote, told to the launcher when it
/// commits: before, a sweep could not see the rows yet, and would forget them.
#[derive(Clone, Copy)]
struct Written {
    earliest_expiry: TimestampTz,
    bytes: i64,
    entries: i64,
}

impl Written {
    const NONE: Written = Written { earliest_expiry: i64::MAX, bytes: 0, entries: 0 };

    fn merge(self, other: Written) -> Written {
        Written {
            earliest_expiry: self.earliest_expiry.min(other.earliest_expiry),
            bytes: self.bytes.saturating_add(other.bytes),
            entries: self.entries.saturating_add(other.entries),
        }
    }
}

/// Over the size cap by this share (a quarter), a write waits for the evictor to make room.
const WAIT_OVER_CAP_DIVISOR: i64 = 4;
/// The longest one write waits for room: the evictor may be stopped (`eviction_enabled = off`)
/// or have no worker slot, and then writes go on (the cap is then passed, as the log says).
const MAX_WAIT_FOR_ROOM: std::time::Duration = std::time::Duration::from_secs(2);
/// How long a write naps between two looks at the live bytes while it waits for room.
const ROOM_NAP_MICROS: std::ffi::c_long = 1000;

thread_local! {
    /// What each open (sub)transaction level wrote, innermost last: a subtransaction rolled
    /// back takes its writes with it, one committed hands them to its parent.
    static WRITTEN: RefCell<Vec<(i32, Written)>> = const { RefCell::new(Vec::new()) };
    static CALLBACKS_REGISTERED: Cell<bool> = const { Cell::new(false) };
}

/// A session wrote an entry of `bytes` bytes (key + value) that expires at `expires_at`: its
/// database has pg_cache, and once the transaction commits it is due for a sweep then. Called
/// after the write succeeded, so a role refused the write counts nothing and waits for nothing.
/// Over the size cap (as this session's `pg_cache.max_size` says, so known from the first
/// write), the write waits until the evictor has made room.
pub fn note_write(expires_at: TimestampTz, bytes: usize) {
    let Some(slot) = my_slot() else {
        return;
    };
    if slot.state() != State::Present {
        slot.set_state(State::Present);
    }
    if !CALLBACKS_REGISTERED.get() {
        // SAFETY: plain functions with no argument, registered once per backend for its life.
        unsafe {
            pg_sys::RegisterXactCallback(Some(at_transaction_end), std::ptr::null_mut());
            pg_sys::RegisterSubXactCallback(Some(at_subtransaction_end), std::ptr::null_mut());
        }
        CALLBACKS_REGISTERED.set(true);
    }
    // SAFETY: reads the backend's transaction state.
    let level = unsafe { pg_sys::GetCurrentTransactionNestLevel() };
    let write = Written { earliest_expiry: expires_at, bytes: bytes as i64, entries: 1 };
    WRITTEN.with_borrow_mut(|written| match written.last_mut() {
        Some((top, pending)) if *top == level => *pending = pending.merge(write),
        _ => written.push((level, write)),
    });
    let cap = crate::gucs::MAX_SIZE.get() as i64 * 1024;
    if cap > 0 {
        slot.set_size_cap(cap);
        wait_for_room(slot, cap);
    }
}

/// Waits while the committed live bytes of the database are over its cap by more than a
/// quarter: the evictor, told by the launcher, removes the entries that expire soonest and
/// measures again. So writers cannot outrun it whatever the size of their values (a 1 MiB value
/// waits as a 1 KiB one does, and adds a thousand times more). Cancellable.
fn wait_for_room(slot: &Slot, cap: i64) {
    let limit = cap.saturating_add(cap / WAIT_OVER_CAP_DIVISOR);
    let started = std::time::Instant::now();
    while slot.estimated_live_bytes() > limit && started.elapsed() < MAX_WAIT_FOR_ROOM {
        pgrx::check_for_interrupts!();
        // SAFETY: a plain sleep; interrupts are checked before each.
        unsafe { pg_sys::pg_usleep(ROOM_NAP_MICROS) };
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn at_transaction_end(event: pg_sys::XactEvent::Type, _arg: *mut std::ffi::c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_COMMIT | XACT_EVENT_PARALLEL_COMMIT | XACT_EVENT_PREPARE => {
            let written = WRITTEN.with_borrow_mut(std::mem::take);
            let total = written.into_iter().fold(Written::NONE, |total, (_, level)| total.merge(level));
            if let (true, Some(slot)) = (total.entries > 0, MY_SLOT.get()) {
                // SAFETY: MY_SLOT points into shared memory, mapped for the process's life.
                let slot = &*slot;
                slot.due_at.fetch_min(total.earliest_expiry, Ordering::Relaxed);
                slot.pending_bytes.fetch_add(total.bytes, Ordering::Relaxed);
                slot.writes.fetch_add(total.entries, Ordering::Relaxed);
            }
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => WRITTEN.with_borrow_mut(Vec::clear),
        _ => {}
    }
}

/// A subtransaction rolled back forgets what it wrote; one committed leaves it to its parent.
#[pg_guard]
unsafe extern "C-unwind" fn at_subtransaction_end(
    event: pg_sys::SubXactEvent::Type,
    _sub: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::SubXactEvent::*;
    // During the event the ending subtransaction is still the current one.
    let level = pg_sys::GetCurrentTransactionNestLevel();
    match event {
        SUBXACT_EVENT_ABORT_SUB => {
            WRITTEN.with_borrow_mut(|written| written.retain(|(at, _)| *at < level));
        }
        SUBXACT_EVENT_COMMIT_SUB => WRITTEN.with_borrow_mut(|written| {
            let inner = written
                .iter()
                .filter(|(at, _)| *at >= level)
                .fold(Written::NONE, |sum, (_, w)| sum.merge(*w));
            written.retain(|(at, _)| *at < level);
            if inner.entries > 0 {
                match written.last_mut() {
                    Some((top, pending)) if *top == level - 1 => *pending = pending.merge(inner),
                    _ => written.push((level - 1, inner)),
                }
            }
        }),
        _ => {}
    }
}

/// The measured live bytes and rows evicted for size of the current database.
pub fn my_size() -> Option<(i64, i64)> {
    my_slot().map(|slot| (slot.live_bytes(), slot.evicted_for_size()))
}

/// Every database in use, with its slot.
pub fn each(mut visit: impl FnMut(&'static Slot)) {
    if !preloaded() {
        return;
    }
    let slots = SLOTS.share();
    for slot in slots.0.iter().filter(|slot| slot.database.load(Ordering::Relaxed) != 0) {
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
    let pid = unsafe { pg_sys::MyProcPid };
    slot.pid.compare_exchange(0, pid, Ordering::AcqRel, Ordering::Relaxed).ok()?;
    unsafe { pg_sys::before_shmem_exit(Some(release), pg_sys::Datum::from(slot as *const Slot as usize)) };
    Some(Claim(slot))
}

#[pg_guard]
unsafe extern "C-unwind" fn release(_code: i32, slot: pg_sys::Datum) {
    (*(slot.value() as *const Slot)).pid.store(0, Ordering::Release);
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

fn timestamp(micros: TimestampTz) -> Option<TimestampWithTimeZone> {
    (micros != 0).then(|| TimestampWithTimeZone::try_from(micros).ok()).flatten()
}

/// One row per database with pg_cache that the eviction workers know of.
// The row type stays spelled out: pgrx takes the column names from it.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_safe)]
fn cache_worker_status() -> TableIterator<
    'static,
    (
        name!(database, Option<String>),
        name!(pid, Option<i32>),
        name!(last_sweep_at, Option<TimestampWithTimeZone>),
        name!(evicted_total, i64),
        name!(last_error, Option<String>),
        name!(last_error_at, Option<TimestampWithTimeZone>),
    ),
> {
    if !preloaded() {
        pgrx::ereport!(
            NOTICE,
            PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
            "pg_cache is not in shared_preload_libraries: no eviction worker is running"
        );
        return TableIterator::new(Vec::new());
    }
    // Other databases only for roles that may read every statistic, as pg_stat_activity shows
    // other sessions' queries only to them.
    // SAFETY: catalog lookups of role membership, in a transaction.
    let sees_all = unsafe {
        pg_sys::has_privs_of_role(pg_sys::GetUserId(), pg_sys::Oid::from(pg_sys::ROLE_PG_READ_ALL_STATS))
    };
    // SAFETY: reads a backend global.
    let mine = unsafe { pg_sys::MyDatabaseId };
    let slots = SLOTS.share();
    let rows: Vec<_> = slots
        .0
        .iter()
        .filter(|slot| slot.database.load(Ordering::Relaxed) != 0 && slot.state() == State::Present)
        .filter(|slot| sees_all || slot.database() == mine)
        .filter_map(|slot| {
            let name = unsafe { pg_sys::get_database_name(slot.database()) };
            // A database dropped since: nothing to show.
            let name = (!name.is_null())
                .then(|| unsafe { std::ffi::CStr::from_ptr(name) }.to_string_lossy().into_owned())?;
            let error = String::from_utf8_lossy(&slot.last_error[..slot.last_error_len]).into_owned();
            let pid = slot.pid();
            Some((
                Some(name),
                (pid != 0).then_some(pid),
                timestamp(slot.last_sweep_at.load(Ordering::Relaxed)),
                slot.evicted_total.load(Ordering::Relaxed),
                (!error.is_empty()).then_some(error),
                timestamp(slot.last_error_at),
            ))
        })
        .collect();
    TableIterator::new(rows)
}

/// Bytes this transaction has written so far that would be counted at commit.
#[cfg(any(test, feature = "pg_test"))]
fn pending_bytes_in_transaction() -> i64 {
    WRITTEN.with_borrow(|written| written.iter().map(|(_, level)| level.bytes).sum())
}

#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
mod tests {
    use super::pending_bytes_in_transaction;
    use pgrx::prelude::*;
    use pgrx::PgTryBuilder;

    /// Runs `sql` in a subtransaction, then rolls it back (`commit` false) or releases it; the
    /// bytes pending just before the subtransaction ends, and whether `sql` failed.
    fn in_subtransaction(sql: &str, commit: bool) -> (i64, bool) {
        // SAFETY: a subtransaction of the test's transaction, ended below on every path.
        unsafe { pg_sys::BeginInternalSubTransaction(std::ptr::null()) };
        let failed = PgTryBuilder::new(|| {
            Spi::run(sql).expect("statement");
            false
        })
        .catch_others(|_| true)
        .execute();
        let pending = pending_bytes_in_transaction();
        // SAFETY: ends the subtransaction begun above.
        unsafe {
            if commit && !failed {
                pg_sys::ReleaseCurrentSubTransaction();
            } else {
                pg_sys::RollbackAndReleaseCurrentSubTransaction();
            }
        }
        (pending, failed)
    }

    #[pg_test]
    fn a_write_rolled_back_to_a_savepoint_is_not_counted() {
        let before = pending_bytes_in_transaction();
        assert_eq!(in_subtransaction("SELECT cache_set('undone', 'vvvv')", false), (before + 10, false));
        assert_eq!(pending_bytes_in_transaction(), before);
        assert_eq!(in_subtransaction("SELECT cache_set('kept', 'vvvv')", true), (before + 8, false));
        assert_eq!(pending_bytes_in_transaction(), before + 8);
    }

    #[pg_test]
    fn a_write_refused_for_privileges_counts_nothing() {
        Spi::run("CREATE ROLE cache_test_outsider").expect("role");
        let before = pending_bytes_in_transaction();
        let (pending, failed) = in_subtransaction(
            "SET LOCAL ROLE cache_test_outsider; SELECT cache_set('refused', 'vvvv')",
            false,
        );
        assert!(failed, "the write is refused");
        assert_eq!(pending, before, "nothing counted before the refusal");
    }
}
