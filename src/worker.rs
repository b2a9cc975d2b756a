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

use crate::gucs::{EVICTION_BATCH_SIZE, EVICTION_ENABLED, EVICTION_INTERVAL, MAX_SIZE, MAX_WORKERS};
use crate::registry::{self, Claim, Slot, State};
use crate::{bgw, heap_access, stats, store};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::pg_sys::panic::CaughtError;
use pgrx::pg_sys::{self, Oid, TimestampTz};
use pgrx::prelude::*;
use pgrx::{log, PgTryBuilder};
use std::collections::HashMap;
use std::ffi::CStr;
use std::time::{Duration, Instant};

/// How often the launcher looks at the registry.
const LAUNCHER_NAP: Duration = Duration::from_millis(200);
/// How often the launcher reads pg_database for new and dropped databases.
const CATALOG_PERIOD: Duration = Duration::from_secs(2);
/// How long no worker is started in a database after one stepped aside for a command that wants
/// it alone. Longer than the 5 s `DROP DATABASE` waits for other sessions to leave.
const HOLD_OFF_MICROS: i64 = 6_000_000;
/// How often a worker checks whether someone wants its database to themselves.
const DATABASE_CHECK_PERIOD: Duration = Duration::from_millis(250);
/// The longest a worker keeps sweeping its database before leaving the slot to the launcher's
/// next choice.
const MAX_WORKER_LIFE: Duration = Duration::from_secs(30);
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
fn is_due(slot: &Slot, clock: TimestampTz) -> bool {
    slot.due_at() <= clock
        || slot.writes() > VACUUM_MIN_DEAD_ROWS
        || over_size_cap(slot)
        || clock - slot.last_sweep_at() > SAFETY_SWEEP_MICROS
}

/// Whether the cap the database's last sweep read may be passed by what was written since.
fn over_size_cap(slot: &Slot) -> bool {
    let cap = slot.size_cap();
    cap > 0 && slot.estimated_live_bytes() > cap
}

/// SIGHUP only sets a flag in a background worker: re-read the configuration here. True when it did.
fn reload_config_if_asked() -> bool {
    let asked = BackgroundWorker::sighup_received();
    if asked {
        unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
    }
    asked
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
            .set_notify_pid(unsafe { pg_sys::MyProcPid })
            // The launcher starts it again when due; the postmaster must not.
            .set_restart_time(None);
        let mut worker: pg_sys::BackgroundWorker = (&builder).into();
        let mut handle = std::ptr::null_mut();
        // Built only once registered: a Worker frees its handle when dropped.
        unsafe { pg_sys::RegisterDynamicBackgroundWorker(&mut worker, &mut handle) }.then(|| Worker(handle))
    }

    /// False once the worker has stopped (or never will start).
    fn running(&self) -> bool {
        let mut pid = 0;
        let status = unsafe { pg_sys::GetBackgroundWorkerPid(self.0, &mut pid) };
        matches!(
            status,
            pg_sys::BgwHandleStatus::BGWH_STARTED | pg_sys::BgwHandleStatus::BGWH_NOT_YET_STARTED
        )
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        unsafe { pg_sys::pfree(self.0.cast()) };
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_cache_evictor_main(arg: pg_sys::Datum) {
    let database = Oid::from(arg.value() as u32);
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    crate::bgw::connect(database);
    // pg_stat_activity.application_name says which database this worker serves.
    let name = std::ffi::CString::new(BackgroundWorker::get_name()).unwrap_or_default();
    unsafe { pg_sys::pgstat_report_appname(name.as_ptr()) };
    let Some(slot) = registry::slot(database) else {
        return;
    };
    // Names for the log, read while a transaction allows catalog access.
    let Ok((present, database_name)) = in_transaction(|| (extension_exists(), database_name())) else {
        return;
    };
    if !present {
        slot.set_state(State::Absent);
        return;
    }
    slot.set_state(State::Present);
    // Another worker may serve the database already (a restarted launcher started a second).
    let Some(claim) = registry::claim(database) else {
        pgrx::debug1!("pg_cache: database {database_name} is served by another worker");
        return;
    };
    let born = Instant::now();
    let mut last_vacuum = None;
    loop {
        if !EVICTION_ENABLED.get() {
            break;
        }
        if database_wanted_exclusively() {
            slot.hold_off(store::now() + HOLD_OFF_MICROS);
            break;
        }
        let capped = match sweep(&claim) {
            Ok(Sweep::Done { capped }) => {
                if slot.set_failing(false) {
                    log!("pg_cache: eviction in database {database_name} works again");
                }
                capped
            }
            Ok(Sweep::ExtensionGone) => {
                slot.set_state(State::Absent);
                break;
            }
            Err(message) => {
                report_error(&claim, &database_name, "eviction", &message);
                false
            }
        };
        // While writes press against the size cap, removing entries comes first: a vacuum (which
        // takes as long as a sweep) at most every VACUUM_PAUSE_WHILE_CAPPED (counted from the
        // worker's start), autovacuum meanwhile.
        let vacuum_waits = capped && last_vacuum.unwrap_or(born).elapsed() < VACUUM_PAUSE_WHILE_CAPPED;
        match if vacuum_waits { Ok(Vacuum::NotNeeded) } else { vacuum_if_bloated(slot) } {
            // Bloated, but an old snapshot holds the horizon: look again a little later.
            Ok(Vacuum::Blocked) => slot.retry_at(store::now() + VACUUM_RETRY_MICROS),
            Ok(Vacuum::Done) => last_vacuum = Some(Instant::now()),
            Ok(Vacuum::NotNeeded) => {}
            Err(message) => report_error(&claim, &database_name, "vacuum of the cache table", &message),
        }
        // Stay while the database is due again within the interval and no other one waits;
        // over the size cap, or just brought under it, sweep again at once, other databases
        // waiting or not (the other workers serve them).
        let pressed = capped || over_size_cap(slot);
        let pause = if pressed { 0 } else { interval_micros() };
        let next_sweep = store::now() + pause;
        let due_again = slot.due_at() <= next_sweep || pressed;
        if !due_again
            || born.elapsed() >= MAX_WORKER_LIFE
            || (!pressed && another_database_waits(database))
            || !nap_until(next_sweep)
        {
            break;
        }
    }
}

/// Sleeps until the clock reaches `until`, watching for shutdown and for someone wanting the
/// database alone; false when the worker should exit instead.
fn nap_until(until: TimestampTz) -> bool {
    loop {
        let left = until - store::now();
        if left <= 0 {
            return true;
        }
        let nap = Duration::from_micros(left as u64).min(DATABASE_CHECK_PERIOD);
        if !BackgroundWorker::wait_latch(Some(nap)) || database_wanted_exclusively() {
            return false;
        }
        reload_config_if_asked();
    }
}

fn another_database_waits(mine: Oid) -> bool {
    let clock = store::now();
    let mut waits = false;
    registry::each(|slot| {
        waits |= slot.database() != mine
            && slot.pid() == 0
            && (slot.state() == State::Unknown || (slot.state() == State::Present && is_due(slot, clock)));
    });
    waits
}

/// The current database's name; in a transaction.
fn database_name() -> String {
    let name = unsafe { pg_sys::get_database_name(pg_sys::MyDatabaseId) };
    if name.is_null() {
        String::new()
    } else {
        unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned()
    }
}

/// An ERROR in a sweep or vacuum is shown by cache_worker_status() and logged when the database
/// starts failing (not on every retry); the sweep is tried again an interval later.
fn report_error(claim: &Claim, database_name: &str, what: &str, message: &str) {
    if claim.slot().set_failing(true) {
        log!("pg_cache: {what} failed in database {database_name}: {message}");
    }
    claim.record_error(message, store::now());
    claim.slot().retry_at(store::now() + interval_micros());
}

fn interval() -> Duration {
    Duration::from_millis(EVICTION_INTERVAL.get() as u64)
}

fn interval_micros() -> i64 {
    i64::from(EVICTION_INTERVAL.get()) * 1000
}

fn shutdown_requested() -> bool {
    unsafe { pg_sys::ShutdownRequestPending != 0 }
}

enum Sweep {
    /// Done; `capped`: it removed entries for the size cap, so writes are outrunning the cap and
    /// the worker sweeps again at once instead of leaving.
    Done {
        capped: bool,
    },
    ExtensionGone,
}

/// Deletes expired entries batch by batch, one transaction each, while batches come back full;
/// then, over the size cap, the entries that expire soonest; then notes in the registry when the
/// database is next due and how many live bytes it holds.
fn sweep(claim: &Claim) -> Result<Sweep, String> {
    let slot = claim.slot();
    slot.begin_sweep();
    unsafe {
        pg_sys::pgstat_report_activity(
            pg_sys::BackendState::STATE_RUNNING,
            c"evicting expired entries".as_ptr(),
        )
    };
    let outcome = evict_up_to(slot, store::now(), false).and_then(|gone| {
        if gone {
            return Ok(Sweep::ExtensionGone);
        }
        let cap = MAX_SIZE.get() as i64 * 1024;
        slot.set_size_cap(cap);
        // Writes committed from here on may not be in the measure: they stay counted.
        let written_before = slot.written_since_measured();
        let mut measured = measure()?;
        // Over the cap: remove the entries that expire soonest until below 90% of it, less what
        // was written during the last sweep (as much will come in before the next one can act;
        // at most half the cap). The next sweep measures again; until then the live bytes are
        // what the sample says is left.
        let capped = cap > 0 && measured.live_bytes > cap;
        if capped {
            let incoming = slot.written_since_measured().clamp(0, cap / 2);
            let to_free = (measured.live_bytes - cap / 10 * 9 + incoming).min(measured.live_bytes);
            let cutoff = size_cutoff(to_free, measured.live_bytes)?;
            evict_up_to(slot, cutoff, true)?;
            measured.live_bytes -= to_free;
        }
        slot.finish_sweep(measured.next_expiry, Some(measured.live_bytes), written_before, store::now());
        pgrx::debug1!(
            "pg_cache: swept, next expiry in {} ms, {} live bytes, due in {} ms",
            measured.next_expiry.saturating_sub(store::now()) / 1000,
            measured.live_bytes,
            slot.due_at().saturating_sub(store::now()) / 1000
        );
        Ok(Sweep::Done { capped })
    });
    if outcome.is_err() {
        slot.retry_at(store::now() + interval_micros());
    }
    unsafe {
        // Report the deletes now, so autovacuum sees them.
        pg_sys::pgstat_report_stat(true);
        pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, std::ptr::null());
    }
    outcome
}

/// Deletes entries expiring by `cutoff` in batches while batches come back full, counting them
/// (as removed for size when `for_size`); true when the extension is gone.
fn evict_up_to(slot: &Slot, cutoff: TimestampTz, for_size: bool) -> Result<bool, String> {
    // For size, batches ten times larger: writes are outrunning the worker, and each batch is a
    // transaction and a scan of its own.
    let batch_size = i64::from(EVICTION_BATCH_SIZE.get()) * if for_size { 10 } else { 1 };
    let mut after = pg_sys::ItemPointerData::default();
    loop {
        let batch = || {
            let (evicted, last) =
                bgw::as_table_owner(heap_access::table(), || store::evict_until(cutoff, batch_size, after));
            // In the transaction: finding the statistics slot may read the catalog.
            stats::count_evicted(unsafe { pg_sys::MyDatabaseId }, evicted);
            (evicted, last)
        };
        let evicted = match in_transaction(|| extension_exists().then(batch))? {
            Some((evicted, last)) => {
                after = last;
                evicted
            }
            None => return Ok(true),
        };
        slot.add_evicted(evicted, for_size);
        if evicted < batch_size || shutdown_requested() || database_wanted_exclusively() {
            return Ok(false);
        }
    }
}

struct Measure {
    /// The earliest expiry of an entry left; i64::MAX when none is left.
    next_expiry: TimestampTz,
    /// Key + value bytes of the live entries.
    live_bytes: i64,
}

/// One pass over the table: when the next entry expires and how many bytes are live.
fn measure() -> Result<Measure, String> {
    in_transaction(|| {
        let (next, bytes) = bgw::as_table_owner(heap_access::table(), store::measure);
        Measure { next_expiry: next.unwrap_or(i64::MAX), live_bytes: bytes }
    })
}

/// The expiry up to which removing entries frees about `to_free` of the `live` bytes, judged
/// from a sample of the table's pages (so no index on the expiry is needed).
fn size_cutoff(to_free: i64, live: i64) -> Result<TimestampTz, String> {
    in_transaction(|| bgw::as_table_owner(heap_access::table(), || store::size_cutoff(to_free, live)))
}

/// What [`vacuum_if_bloated`] did.
enum Vacuum {
    NotNeeded,
    Done,
    /// Dead rows piled up, but the removal horizon has not moved since the last vacuum.
    Blocked,
}

/// How often a worker vacuums while writes keep the database at its size cap.
const VACUUM_PAUSE_WHILE_CAPPED: Duration = Duration::from_secs(10);

/// How soon a worker looks again at a table whose vacuum an old snapshot holds back.
const VACUUM_RETRY_MICROS: i64 = 5_000_000;

/// Dead rows (in the table or its TOAST table) beyond which an evictor vacuums the table itself:
/// more than this many, and more than a fifth of the live rows. Autovacuum wakes once a minute
/// at best; a cache under churn leaves dead rows much faster than that.
const VACUUM_MIN_DEAD_ROWS: i64 = 1000;

/// Vacuums the cache table when the deletes of sweeps and the updates of sets left it with many
/// dead rows, so that their space is reused instead of the table growing; but only when it can
/// make progress: while an old snapshot holds the removal horizon where it was at the last
/// vacuum, another would remove nothing the last one could not (the slot remembers it).
fn vacuum_if_bloated(slot: &Slot) -> Result<Vacuum, String> {
    let bloated = in_transaction(|| {
        let table = heap_access::lookup_table()?;
        // Never wait here for a session holding the table (VACUUM would skip it anyway).
        // SAFETY: a lock request that does not wait, held to the end of the transaction.
        let locked = unsafe { pg_sys::ConditionalLockRelationOid(table, pg_sys::AccessShareLock as _) };
        (locked && is_bloated(table)).then(|| unsafe {
            let relation = pg_sys::table_open(table, pg_sys::NoLock as _);
            let horizon = pg_sys::GetOldestNonRemovableTransactionId(relation);
            pg_sys::table_close(relation, pg_sys::NoLock as _);
            (heap_access::qualified_table_name(table), horizon)
        })
    })?;
    match bloated {
        Some((table, horizon)) if slot.swap_vacuum_horizon(horizon) != horizon => {
            vacuum(&table).map(|()| Vacuum::Done)
        }
        Some(_) => Ok(Vacuum::Blocked),
        None => Ok(Vacuum::NotNeeded),
    }
}

/// Whether the table or its TOAST table holds more than [`VACUUM_MIN_DEAD_ROWS`] dead rows, and
/// more than a fifth of its live ones. The caller holds a lock on the table.
fn is_bloated(table: Oid) -> bool {
    // SAFETY: in a transaction, the table locked by the caller; it is open while its TOAST
    // table's OID is read.
    let toast = unsafe {
        let relation = pg_sys::table_open(table, pg_sys::NoLock as _);
        let toast = (*(*relation).rd_rel).reltoastrelid;
        pg_sys::table_close(relation, pg_sys::NoLock as _);
        toast
    };
    [table, toast].into_iter().filter(|relation| *relation != pg_sys::InvalidOid).any(|relation| {
        let counts = Spi::get_two_with_args::<i64, i64>(
            "SELECT pg_catalog.pg_stat_get_dead_tuples($1), pg_catalog.pg_stat_get_live_tuples($1)",
            &[relation.into()],
        );
        let Ok((Some(dead), Some(live))) = counts else {
            return false;
        };
        dead > VACUUM_MIN_DEAD_ROWS && dead > live / 5
    })
}

/// `VACUUM (SKIP_LOCKED, PARALLEL 0) table`, run as the top-level command it must be, which SPI
/// cannot do: vacuum commits the transaction it is called in and starts its own. What the
/// command needs across those transactions (the parse tree, whose table name vacuum's messages
/// print, and vacuum's own "Vacuum" context, made under `PortalContext`) lives in a context of
/// ours, as it lives in the portal's for a client's VACUUM, and goes when the command ends,
/// error or not. No parallel workers: they would take the slots parallel queries need.
fn vacuum(table: &str) -> Result<(), String> {
    let command = std::ffi::CString::new(format!("VACUUM (SKIP_LOCKED, PARALLEL 0) {table}"))
        .map_err(|e| e.to_string())?;
    unsafe {
        pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_RUNNING, command.as_ptr());
        let caller_context = pg_sys::CurrentMemoryContext;
        let command_context = pg_sys::AllocSetContextCreateInternal(
            pg_sys::TopMemoryContext,
            c"pg_cache vacuum".as_ptr(),
            0,
            8 * 1024,
            8 * 1024 * 1024,
        );
        pg_sys::PortalContext = command_context;
        let outcome = transaction(false, || {
            pg_sys::MemoryContextSwitchTo(command_context);
            let statements = pg_sys::raw_parser(command.as_ptr(), pg_sys::RawParseMode::RAW_PARSE_DEFAULT);
            let raw = (*(*statements).elements).ptr_value as *mut pg_sys::RawStmt;
            pg_sys::ExecVacuum(pg_sys::make_parsestate(std::ptr::null_mut()), (*raw).stmt.cast(), true);
        });
        pg_sys::PortalContext = std::ptr::null_mut();
        pg_sys::MemoryContextSwitchTo(caller_context);
        pg_sys::MemoryContextDelete(command_context);
        pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, std::ptr::null());
        outcome
    }
}

/// Runs `body` in a transaction of its own, with a snapshot; a Postgres ERROR aborts it and comes
/// back as its message.
pub(crate) fn in_transaction<R>(body: impl FnOnce() -> R + std::panic::UnwindSafe) -> Result<R, String> {
    transaction(true, body)
}

/// As [`in_transaction`]; without a snapshot for commands that manage their own (VACUUM).
fn transaction<R>(
    with_snapshot: bool,
    body: impl FnOnce() -> R + std::panic::UnwindSafe,
) -> Result<R, String> {
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        if with_snapshot {
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        }
    }
    PgTryBuilder::new(|| {
        let result = body();
        unsafe {
            if with_snapshot {
                pg_sys::PopActiveSnapshot();
            }
            pg_sys::CommitTransactionCommand();
        }
        Ok(result)
    })
    .catch_others(|error| {
        unsafe { pg_sys::AbortCurrentTransaction() };
        Err(match error {
            CaughtError::PostgresError(report)
            | CaughtError::ErrorReport(report)
            | CaughtError::RustPanic { ereport: report, .. } => report.message().to_string(),
        })
    })
    .execute()
}

fn extension_exists() -> bool {
    unsafe { pg_sys::get_extension_oid(c"pg_cache".as_ptr(), true) != pg_sys::InvalidOid }
}

/// True while another session holds or waits for a lock on this database that excludes
/// connections: `DROP DATABASE` and `ALTER DATABASE … RENAME` take AccessExclusiveLock,
/// `CREATE DATABASE … TEMPLATE` a ShareLock, then wait for other sessions to leave.
pub(crate) fn database_wanted_exclusively() -> bool {
    let tag = pg_sys::LOCKTAG {
        locktag_field1: pg_sys::InvalidOid.to_u32(),
        locktag_field2: pg_sys::DatabaseRelationId.to_u32(),
        locktag_field3: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field4: 0,
        locktag_type: pg_sys::LockTagType::LOCKTAG_OBJECT as u8,
        locktag_lockmethodid: pg_sys::DEFAULT_LOCKMETHOD as u8,
    };
    let mode = pg_sys::RowExclusiveLock as pg_sys::LOCKMODE;
    unsafe {
        // A session lock, so no transaction is needed; taken and released at once.
        let acquired = pg_sys::LockAcquire(&tag, mode, true, true);
        if acquired == pg_sys::LockAcquireResult::LOCKACQUIRE_NOT_AVAIL {
            return true;
        }
        pg_sys::LockRelease(&tag, mode, true);
    }
    false
}
