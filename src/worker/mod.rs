//! Background eviction, scheduled as autovacuum schedules its workers: a launcher started with
//! the server keeps, in shared memory (`registry`), which databases have pg_cache and when each
//! is next due (an entry may have expired, or the size cap may be passed), and starts a worker
//! for the most overdue ones, at most `pg_cache.max_workers` at once. A worker is bound to its
//! database for its life: it sweeps (deletes expired entries in batches, removes entries for the
//! size cap, vacuums when that can make progress), sweeps again while its database stays due and
//! no other database waits, and exits. A database with nothing to do holds no worker slot, and
//! one without the extension costs nothing after a single look when it first appears.
//!
//! The launcher is connected to no database, so it never blocks `DROP DATABASE`; a worker steps
//! aside within 250 ms when someone wants its database to themselves (`DROP DATABASE`,
//! `ALTER DATABASE … RENAME`, `CREATE DATABASE … TEMPLATE`), and none is started there for a
//! while after that.

use crate::bgw::reload_config_if_asked;
use crate::gucs::{EVICTION_ENABLED, EVICTION_INTERVAL, MAX_WORKERS};
use crate::shmem::slots::{self as registry, Slot, State};
use crate::store;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::log;
use pgrx::pg_sys::{self, Oid, TimestampTz};
use pgrx::prelude::*;
use std::collections::HashMap;
use std::ffi::CStr;
use std::time::{Duration, Instant};
use vacuum::VACUUM_MIN_DEAD_ROWS;

/// How often the launcher looks at the registry.
const LAUNCHER_NAP: Duration = Duration::from_millis(200);
/// How often the launcher reads pg_database for new and dropped databases.
const CATALOG_PERIOD: Duration = Duration::from_secs(2);
/// How long no worker is started in a database after one stepped aside for a command that wants
/// it alone. Longer than the 5 s `DROP DATABASE` waits for other sessions to leave.
pub(super) const HOLD_OFF_MICROS: i64 = 6_000_000;
/// How often a worker checks whether someone wants its database to themselves.
pub(super) const DATABASE_CHECK_PERIOD: Duration = Duration::from_millis(250);
/// The longest a worker keeps sweeping its database before leaving the slot to the launcher's
/// next choice.
pub(super) const MAX_WORKER_LIFE: Duration = Duration::from_secs(30);
/// A database with pg_cache is swept at least this often, due or not: entries written other
/// than through pg_cache's functions (an INSERT into the table) do not make it due.
const SAFETY_SWEEP_MICROS: i64 = 10 * 60 * 1_000_000;

/// Registers the launcher; only possible while the library is being preloaded.
pub fn register_launcher() {
    BackgroundWorkerBuilder::new("pg_cache launcher")
        .set_type("pg_cache launcher")
        .set_library("pg_cache")
        .set_function("pg_cache_launcher_main")
        .enable_spi_access()
        // Not on a standby (unlogged tables cannot be read there); starts after promotion.
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        .set_restart_time(Some(Duration::from_secs(5)))
        .load();
}

/// Logs a condition when it starts and when it ends, not on every retry.
struct Condition {
    active: bool,
}

impl Condition {
    fn set(&mut self, active: bool, starts: impl FnOnce() -> String, ends: impl FnOnce() -> String) {
        if active != self.active {
            log!("pg_cache: {}", if active { starts() } else { ends() });
            self.active = active;
        }
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_cache_launcher_main(_arg: pg_sys::Datum) {
    // SIGINT (pg_cancel_backend) only wakes it: it runs no statement a cancel could stop, and the
    // default handler would end it until its restart.
    let signals = SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM | SignalWakeFlags::SIGINT;
    BackgroundWorker::attach_signal_handlers(signals);
    BackgroundWorker::connect_worker_to_spi(None, None);
    let mut names: HashMap<Oid, String> = HashMap::new();
    // The workers this launcher started that have not stopped yet, and when each database's last
    // one started.
    let mut workers: HashMap<Oid, Worker> = HashMap::new();
    let mut last_start: HashMap<Oid, Instant> = HashMap::new();
    let mut next_catalog_read = Instant::now();
    let mut no_slot = Condition { active: false };
    let mut registry_full = Condition { active: false };
    while BackgroundWorker::wait_latch(Some(LAUNCHER_NAP)) {
        reload_config_if_asked();
        if !EVICTION_ENABLED.get() {
            continue;
        }
        if Instant::now() >= next_catalog_read {
            let databases = databases();
            // Only a dropped database's slot is freed: one that merely stopped taking
            // connections (a template, ALLOW_CONNECTIONS false) may still have sessions using
            // its counters.
            registry::forget_dropped(|database| databases.iter().any(|known| known.oid == database));
            crate::shmem::caches::forget_dropped_databases(|database| {
                databases.iter().any(|known| known.oid == database)
            });
            names = databases
                .into_iter()
                .filter(|known| known.connectable)
                .map(|known| (known.oid, known.name))
                .collect();
            let untracked = names.keys().filter(|database| registry::slot(**database).is_none()).count();
            registry_full.set(
                untracked > 0,
                || {
                    format!(
                        "{untracked} databases are not swept: more than {} databases",
                        registry::MAX_DATABASES
                    )
                },
                || "every database is tracked again".to_owned(),
            );
            next_catalog_read = Instant::now() + CATALOG_PERIOD;
        }
        let now = Instant::now();
        let clock = store::now();
        let interval = interval();
        workers.retain(|_, worker| worker.running());
        let mut running = workers.len();
        let mut due: Vec<(TimestampTz, u32)> = Vec::new();
        registry::each(|slot| {
            let database = slot.database();
            if workers.contains_key(&database) {
                return;
            }
            // A worker this launcher did not start (it restarted): counts, and serves its database.
            if slot.pid() != 0 {
                running += 1;
                return;
            }
            if !names.contains_key(&database)
                || slot.hold_off_until() > clock
                || last_start.get(&database).is_some_and(|at| now.duration_since(*at) < interval)
            {
                return;
            }
            match slot.state() {
                // Never looked at: first, and only once.
                State::Unknown => due.push((TimestampTz::MIN, database.to_u32())),
                State::Present if is_due(slot, clock) => due.push((slot.due_at(), database.to_u32())),
                _ => {}
            }
        });
        // The most overdue first, so that no database starves when the workers cannot keep up.
        due.sort_unstable();
        for database in due.into_iter().map(|(_, database)| Oid::from(database)) {
            if running >= MAX_WORKERS.get() as usize {
                break;
            }
            let worker = Worker::start(database, &names[&database]);
            no_slot.set(
                worker.is_none(),
                || {
                    "no background worker slot free for an eviction worker; raise max_worker_processes"
                        .to_owned()
                },
                || "background worker slots are free again for eviction workers".to_owned(),
            );
            let Some(worker) = worker else {
                break;
            };
            workers.insert(database, worker);
            last_start.insert(database, now);
            running += 1;
        }
        last_start.retain(|database, _| names.contains_key(database));
    }
}

/// Whether a database with pg_cache needs a sweep at `clock`.
pub(super) fn is_due(slot: &Slot, clock: TimestampTz) -> bool {
    sweep_due(slot, clock) || slot.touches_due_at() <= clock
}

/// Whether the database is due for a sweep (not only for writing pending touches).
pub(super) fn sweep_due(slot: &Slot, clock: TimestampTz) -> bool {
    slot.due_at() <= clock
        || slot.writes() > VACUUM_MIN_DEAD_ROWS
        || over_size_cap(slot)
        || clock - slot.last_sweep_at() > SAFETY_SWEEP_MICROS
}

/// Whether a cap of one of the database's caches (as its last sweep or write read it) may be
/// passed by what was written since.
pub(super) fn over_size_cap(slot: &Slot) -> bool {
    let mut over = false;
    crate::shmem::caches::each_of(slot.database(), |cache| over |= cache.over_size_cap());
    over
}

/// A database of the cluster, as the launcher reads pg_database.
struct KnownDatabase {
    oid: Oid,
    name: String,
    /// A worker can connect to it: not a template, connections allowed.
    connectable: bool,
}

/// Every database of the cluster.
fn databases() -> Vec<KnownDatabase> {
    let mut databases = Vec::new();
    // SAFETY: a catalog scan inside a transaction of its own, with the snapshot it needs; the
    // tuples are read before the scan ends.
    unsafe {
        pg_sys::StartTransactionCommand();
        pg_sys::GetTransactionSnapshot();
        let relation = pg_sys::table_open(pg_sys::DatabaseRelationId, pg_sys::AccessShareLock as _);
        let scan = pg_sys::table_beginscan_catalog(relation, 0, std::ptr::null_mut());
        loop {
            let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tuple.is_null() {
                break;
            }
            let database = &*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tuple);
            databases.push(KnownDatabase {
                oid: database.oid,
                name: CStr::from_ptr(database.datname.data.as_ptr()).to_string_lossy().into_owned(),
                connectable: database.datallowconn && !database.datistemplate,
            });
        }
        pg_sys::table_endscan(scan);
        pg_sys::table_close(relation, pg_sys::AccessShareLock as _);
        pg_sys::CommitTransactionCommand();
    }
    databases
}

/// A worker the launcher started, followed through its handle until it stops.
struct Worker(*mut pg_sys::BackgroundWorkerHandle);

impl Worker {
    /// Starts a worker for `database`; `None` when no background worker slot is free.
    fn start(database: Oid, name: &str) -> Option<Worker> {
        let builder = BackgroundWorkerBuilder::new(&format!("pg_cache evictor for database {name}"))
            .set_type("pg_cache evictor")
            .set_library("pg_cache")
            .set_function("pg_cache_evictor_main")
            .set_argument(Some(pg_sys::Datum::from(database.to_u32())))
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            // The postmaster wakes the launcher when the worker starts and stops.
            // SAFETY: reads the process's own pid.
            .set_notify_pid(unsafe { pg_sys::MyProcPid })
            // The launcher starts it again when due; the postmaster must not.
            .set_restart_time(None);
        let mut worker: pg_sys::BackgroundWorker = (&builder).into();
        let mut handle = std::ptr::null_mut();
        // Built only once registered: a Worker frees its handle when dropped.
        // SAFETY: registers a worker from a fully built BackgroundWorker (PostgreSQL copies it); the handle
        // is freed when `Worker` is dropped.
        unsafe { pg_sys::RegisterDynamicBackgroundWorker(&mut worker, &mut handle) }.then(|| Worker(handle))
    }

    /// False once the worker has stopped (or never will start).
    fn running(&self) -> bool {
        let mut pid = 0;
        // SAFETY: `self.0` is the handle RegisterDynamicBackgroundWorker gave, not yet freed.
        let status = unsafe { pg_sys::GetBackgroundWorkerPid(self.0, &mut pid) };
        matches!(
            status,
            pg_sys::BgwHandleStatus::BGWH_STARTED | pg_sys::BgwHandleStatus::BGWH_NOT_YET_STARTED
        )
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // SAFETY: frees the handle once (Drop).
        unsafe { pg_sys::pfree(self.0.cast()) };
    }
}

fn interval() -> Duration {
    Duration::from_millis(EVICTION_INTERVAL.get() as u64)
}

pub(super) fn interval_micros() -> i64 {
    i64::from(EVICTION_INTERVAL.get()) * 1000
}

mod evictor;
mod vacuum;
