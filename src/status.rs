//! What each database's eviction worker reports, in shared memory (only with the library
//! preloaded), shown by `cache_worker_status()`.

use pgrx::datum::TimestampWithTimeZone;
use pgrx::lwlock::PgLwLock;
use pgrx::pg_sys::{self, Oid, TimestampTz};
use pgrx::prelude::*;
use pgrx::{pg_shmem_init, PGRXSharedMemory};
use std::sync::atomic::{AtomicBool, Ordering};

/// Databases whose worker status is kept; a worker beyond that still evicts, unreported.
const MAX_DATABASES: usize = 256;
const MAX_ERROR_BYTES: usize = 256;

#[derive(Clone, Copy)]
#[repr(C)]
struct Slot {
    database: Oid,
    /// 0 while no worker serves the database.
    pid: i32,
    last_sweep_at: TimestampTz,
    evicted_total: i64,
    last_error_at: TimestampTz,
    last_error_len: usize,
    last_error: [u8; MAX_ERROR_BYTES],
}

impl Slot {
    const EMPTY: Slot = Slot {
        database: pg_sys::InvalidOid,
        pid: 0,
        last_sweep_at: 0,
        evicted_total: 0,
        last_error_at: 0,
        last_error_len: 0,
        last_error: [0; MAX_ERROR_BYTES],
    };
}

#[derive(Clone, Copy)]
pub struct Slots([Slot; MAX_DATABASES]);

impl Default for Slots {
    fn default() -> Self {
        Slots([Slot::EMPTY; MAX_DATABASES])
    }
}

unsafe impl PGRXSharedMemory for Slots {}

static SLOTS: PgLwLock<Slots> = unsafe { PgLwLock::new(c"pg_cache_worker_status") };
static PRELOADED: AtomicBool = AtomicBool::new(false);

/// Called from `_PG_init` while the library is being preloaded.
pub fn init() {
    pg_shmem_init!(SLOTS);
    PRELOADED.store(true, Ordering::Relaxed);
}

/// A worker's claim on its database's slot, released when the worker process exits.
pub struct Claim(usize);

/// Claims the slot of `database` for this process (keeping the totals of earlier workers).
pub fn claim(database: Oid) -> Option<Claim> {
    let pid = unsafe { pg_sys::MyProcPid };
    let mut slots = SLOTS.exclusive();
    let index = slots
        .0
        .iter()
        .position(|slot| slot.database == database)
        .or_else(|| slots.0.iter().position(|slot| slot.pid == 0))?;
    let slot = &mut slots.0[index];
    if slot.database != database {
        *slot = Slot { database, ..Slot::EMPTY };
    }
    slot.pid = pid;
    unsafe { pg_sys::before_shmem_exit(Some(release), pg_sys::Datum::from(index)) };
    Some(Claim(index))
}

#[pg_guard]
unsafe extern "C-unwind" fn release(_code: i32, index: pg_sys::Datum) {
    SLOTS.exclusive().0[index.value()].pid = 0;
}

impl Claim {
    /// Counts rows evicted by one batch.
    pub fn add_evicted(&self, evicted: i64) {
        SLOTS.exclusive().0[self.0].evicted_total += evicted;
    }

    pub fn record_sweep(&self, at: TimestampTz) {
        SLOTS.exclusive().0[self.0].last_sweep_at = at;
    }

    pub fn record_error(&self, message: &str, at: TimestampTz) {
        let slot = &mut SLOTS.exclusive().0[self.0];
        let mut len = message.len().min(MAX_ERROR_BYTES);
        while !message.is_char_boundary(len) {
            len -= 1;
        }
        slot.last_error[..len].copy_from_slice(&message.as_bytes()[..len]);
        slot.last_error_len = len;
        slot.last_error_at = at;
    }
}

/// Whether a worker currently serves `database`.
pub fn is_served(database: Oid) -> bool {
    SLOTS.share().0.iter().any(|slot| slot.database == database && slot.pid != 0)
}

fn timestamp(micros: TimestampTz) -> Option<TimestampWithTimeZone> {
    (micros != 0).then(|| TimestampWithTimeZone::try_from(micros).ok()).flatten()
}

/// One row per database that has had an eviction worker since the server started.
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
    if !PRELOADED.load(Ordering::Relaxed) {
        pgrx::ereport!(
            NOTICE,
            PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
            "pg_cache is not in shared_preload_libraries: no eviction worker is running"
        );
        return TableIterator::new(Vec::new());
    }
    let slots = *SLOTS.share();
    let rows: Vec<_> = slots
        .0
        .iter()
        .filter(|slot| slot.database != pg_sys::InvalidOid)
        .filter_map(|slot| {
            let name = unsafe { pg_sys::get_database_name(slot.database) };
            // A database dropped since: nothing to show.
            let name = (!name.is_null())
                .then(|| unsafe { std::ffi::CStr::from_ptr(name) }.to_string_lossy().into_owned())?;
            let error = String::from_utf8_lossy(&slot.last_error[..slot.last_error_len]).into_owned();
            Some((
                Some(name),
                (slot.pid != 0).then_some(slot.pid),
                timestamp(slot.last_sweep_at),
                slot.evicted_total,
                (!error.is_empty()).then_some(error),
                timestamp(slot.last_error_at),
            ))
        })
        .collect();
    TableIterator::new(rows)
}
