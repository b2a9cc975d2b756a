//! Background eviction: a launcher started with the server starts one evictor per database that
//! has the extension; each evictor deletes expired entries in small batches, so no application
//! has to run cleanup jobs.
//!
//! The launcher scans pg_database (it is connected to no database, so it never blocks
//! `DROP DATABASE`) and starts an evictor for each connectable database that has none. An
//! evictor exits at once where the extension is absent; the launcher tries that database again a
//! few seconds later, which is how a new `CREATE EXTENSION` gets its evictor. An evictor also
//! exits when the extension is dropped, and when someone wants the database to themselves
//! (`DROP DATABASE`, `ALTER DATABASE … RENAME`, `CREATE DATABASE … TEMPLATE`), which otherwise
//! would wait for it and fail.

use crate::gucs::{EVICTION_BATCH_SIZE, EVICTION_ENABLED, EVICTION_INTERVAL};
use crate::{status, store};
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::pg_sys::panic::CaughtError;
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use pgrx::{log, PgTryBuilder};
use std::collections::HashMap;
use std::ffi::CStr;
use std::time::{Duration, Instant};

/// How often the launcher looks for databases without an evictor.
const LAUNCHER_NAP: Duration = Duration::from_secs(1);
/// How long the launcher leaves a database alone after its evictor stopped or was started. Longer
/// than the 5 s `DROP DATABASE` waits for other sessions to leave, so a returning evictor never
/// makes it fail.
const RESTART_DELAY: Duration = Duration::from_secs(6);
/// How often an evictor checks whether someone wants its database to themselves.
const DATABASE_CHECK_PERIOD: Duration = Duration::from_millis(250);
/// Key of the session advisory lock that keeps evictors to one per database.
const EVICTOR_LOCK_KEY: i64 = 0x7067_6361_6368_6501;

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

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_cache_launcher_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi(None, None);
    // Per database, the earliest time the launcher may start an evictor there.
    let mut quiet_until: HashMap<Oid, Instant> = HashMap::new();
    while BackgroundWorker::wait_latch(Some(LAUNCHER_NAP)) {
        let _ = reload_config_if_asked();
        if !EVICTION_ENABLED.get() {
            continue;
        }
        let databases = connectable_databases();
        quiet_until.retain(|database, _| databases.iter().any(|(oid, _)| oid == database));
        let now = Instant::now();
        for (database, name) in databases {
            // While an evictor runs, and for RESTART_DELAY after it stopped or was started.
            if status::is_served(database) {
                quiet_until.insert(database, now + RESTART_DELAY);
            } else if quiet_until.get(&database).is_none_or(|until| now >= *until) {
                quiet_until.insert(database, now + RESTART_DELAY);
                start_evictor(database, &name);
            }
        }
    }
}

/// SIGHUP only sets a flag in a background worker: re-read the configuration here. True when it did.
fn reload_config_if_asked() -> bool {
    let asked = BackgroundWorker::sighup_received();
    if asked {
        unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
    }
    asked
}

/// Databases an evictor can connect to: not templates, connections allowed.
fn connectable_databases() -> Vec<(Oid, String)> {
    let mut databases = Vec::new();
    unsafe {
        pg_sys::StartTransactionCommand();
        // The catalog scan needs a snapshot.
        pg_sys::GetTransactionSnapshot();
        let relation = pg_sys::table_open(pg_sys::DatabaseRelationId, pg_sys::AccessShareLock as _);
        let scan = pg_sys::table_beginscan_catalog(relation, 0, std::ptr::null_mut());
        loop {
            let tuple = pg_sys::heap_getnext(scan, pg_sys::ScanDirection::ForwardScanDirection);
            if tuple.is_null() {
                break;
            }
            let database = &*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_database>(tuple);
            if database.datallowconn && !database.datistemplate {
                let name = CStr::from_ptr(database.datname.data.as_ptr()).to_string_lossy().into_owned();
                databases.push((database.oid, name));
            }
        }
        pg_sys::table_endscan(scan);
        pg_sys::table_close(relation, pg_sys::AccessShareLock as _);
        pg_sys::CommitTransactionCommand();
    }
    databases
}

fn start_evictor(database: Oid, name: &str) {
    let builder = BackgroundWorkerBuilder::new(&format!("pg_cache evictor for database {name}"))
        .set_type("pg_cache evictor")
        .set_library("pg_cache")
        .set_function("pg_cache_evictor_main")
        .set_argument(Some(pg_sys::Datum::from(database.to_u32())))
        .enable_spi_access()
        .set_start_time(BgWorkerStartTime::RecoveryFinished)
        // The launcher restarts it; the postmaster must not.
        .set_restart_time(None);
    let mut worker: pg_sys::BackgroundWorker = (&builder).into();
    // No handle: the launcher learns whether an evictor runs from the status slots.
    let registered = unsafe { pg_sys::RegisterDynamicBackgroundWorker(&mut worker, std::ptr::null_mut()) };
    if !registered {
        log!("pg_cache: no background worker slot free for the evictor of database {name}; raise max_worker_processes");
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_cache_evictor_main(arg: pg_sys::Datum) {
    let database = Oid::from(arg.value() as u32);
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database), None);
    // pg_stat_activity.application_name says which database this evictor serves.
    let name = std::ffi::CString::new(BackgroundWorker::get_name()).unwrap_or_default();
    unsafe { pg_sys::pgstat_report_appname(name.as_ptr()) };

    // Exit quietly (the launcher tries again later) where the extension is absent or another
    // evictor already serves this database.
    let first_in_database = in_transaction(|| extension_exists() && take_evictor_lock()).unwrap_or(false);
    if !first_in_database {
        return;
    }
    let claim = status::claim(database);
    let mut next_sweep = Instant::now();
    let mut vacuum_horizon = None;
    loop {
        let nap = next_sweep.saturating_duration_since(Instant::now()).min(DATABASE_CHECK_PERIOD);
        if !BackgroundWorker::wait_latch(Some(nap)) {
            break;
        }
        if reload_config_if_asked() {
            // A shorter interval takes effect now, not after the old one.
            next_sweep = next_sweep.min(Instant::now() + interval());
        }
        if database_wanted_exclusively() {
            break;
        }
        if !EVICTION_ENABLED.get() {
            continue;
        }
        if Instant::now() >= next_sweep {
            next_sweep = Instant::now() + interval();
            match sweep(claim.as_ref()) {
                Ok(Sweep::Done) => {
                    if let Some(claim) = &claim {
                        claim.record_sweep(store::now());
                    }
                }
                Ok(Sweep::ExtensionGone) => break,
                Err(message) => report_error(claim.as_ref(), "eviction", &message),
            }
        }
        // Between sweeps too: sets replacing values leave dead rows without any entry expiring.
        if let Err(message) = vacuum_if_bloated(&mut vacuum_horizon) {
            report_error(claim.as_ref(), "vacuum of the cache table", &message);
        }
    }
}

/// An ERROR in a sweep or vacuum is logged and shown by cache_worker_status(); the evictor carries on.
fn report_error(claim: Option<&status::Claim>, what: &str, message: &str) {
    log!("pg_cache: {what} failed: {message}");
    if let Some(claim) = claim {
        claim.record_error(message, store::now());
    }
}

fn interval() -> Duration {
    Duration::from_millis(EVICTION_INTERVAL.get() as u64)
}

fn shutdown_requested() -> bool {
    unsafe { pg_sys::ShutdownRequestPending != 0 }
}

enum Sweep {
    Done,
    ExtensionGone,
}

/// Deletes expired entries batch by batch, one transaction each, while batches come back full,
/// counting each batch in the status.
fn sweep(claim: Option<&status::Claim>) -> Result<Sweep, String> {
    let batch_size = i64::from(EVICTION_BATCH_SIZE.get());
    unsafe {
        pg_sys::pgstat_report_activity(
            pg_sys::BackendState::STATE_RUNNING,
            c"evicting expired entries".as_ptr(),
        )
    };
    let outcome = loop {
        let evicted = match in_transaction(|| extension_exists().then(|| store::evict_expired(batch_size))) {
            Ok(Some(evicted)) => evicted,
            Ok(None) => break Ok(Sweep::ExtensionGone),
            Err(message) => break Err(message),
        };
        if let Some(claim) = claim {
            claim.add_evicted(evicted);
        }
        crate::stats::count_evicted(unsafe { pg_sys::MyDatabaseId }, evicted);
        if evicted < batch_size || shutdown_requested() || database_wanted_exclusively() {
            break Ok(Sweep::Done);
        }
    };
    unsafe {
        // Report the deletes now, so autovacuum sees them.
        pg_sys::pgstat_report_stat(true);
        pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, std::ptr::null());
    }
    outcome
}

/// Dead rows (in the table or its TOAST table) beyond which an evictor vacuums the table itself:
/// more than this many, and more than a fifth of the live rows. Autovacuum wakes once a minute
/// at best; a cache under churn leaves dead rows much faster than that.
const VACUUM_MIN_DEAD_ROWS: i64 = 1000;

/// Vacuums the cache table when the deletes of sweeps and the updates of sets left it with many
/// dead rows, so that their space is reused instead of the table growing; but only when it can
/// make progress: while an old snapshot holds the removal horizon where it was at the last
/// vacuum, another would remove nothing the last one could not (`horizon` remembers it).
fn vacuum_if_bloated(horizon: &mut Option<pg_sys::TransactionId>) -> Result<(), String> {
    let bloated = in_transaction(|| {
        let table = Spi::get_one_with_args::<Oid>(
            "SELECT c.oid FROM pg_catalog.pg_class c \
             JOIN pg_catalog.pg_extension e ON e.extname = 'pg_cache' AND c.relnamespace = e.extnamespace \
             WHERE c.relname = 'pg_cache_entries' AND EXISTS ( \
                 SELECT FROM pg_catalog.pg_stat_all_tables s WHERE s.relid IN (c.oid, c.reltoastrelid) \
                 AND s.n_dead_tup > $1 AND s.n_dead_tup > s.n_live_tup / 5)",
            &[VACUUM_MIN_DEAD_ROWS.into()],
        )
        .ok()
        .flatten()?;
        // Never wait here for a session holding the table (VACUUM would skip it anyway).
        let locked = unsafe { pg_sys::ConditionalLockRelationOid(table, pg_sys::AccessShareLock as _) };
        locked.then(|| unsafe {
            let relation = pg_sys::table_open(table, pg_sys::NoLock as _);
            let horizon = pg_sys::GetOldestNonRemovableTransactionId(relation);
            pg_sys::table_close(relation, pg_sys::NoLock as _);
            (crate::heap_access::qualified_table_name(table), horizon)
        })
    })?;
    match bloated {
        Some((table, now)) if *horizon != Some(now) => {
            *horizon = Some(now);
            vacuum(&table)
        }
        _ => Ok(()),
    }
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
fn in_transaction<R>(body: impl FnOnce() -> R + std::panic::UnwindSafe) -> Result<R, String> {
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

/// A session-level advisory lock: one evictor per database, even when a restarted launcher
/// starts a second one.
fn take_evictor_lock() -> bool {
    Spi::get_one_with_args::<bool>("SELECT pg_catalog.pg_try_advisory_lock($1)", &[EVICTOR_LOCK_KEY.into()])
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// True while another session holds or waits for a lock on this database that excludes
/// connections: `DROP DATABASE` and `ALTER DATABASE … RENAME` take AccessExclusiveLock,
/// `CREATE DATABASE … TEMPLATE` a ShareLock, then wait for other sessions to leave.
fn database_wanted_exclusively() -> bool {
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
