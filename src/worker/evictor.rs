//! The eviction worker of one database: sweeps (expired entries, then the size cap), vacuums
//! when that can make progress, and stays while its database is due.

use super::vacuum::{vacuum_if_bloated, Vacuum};
use super::vacuum::{VACUUM_PAUSE_WHILE_CAPPED, VACUUM_RETRY_MICROS};
use super::{
    interval_micros, is_due, over_size_cap, sweep_due, DATABASE_CHECK_PERIOD, HOLD_OFF_MICROS,
    MAX_WORKER_LIFE,
};
use crate::access::caches::{self, Cache};
use crate::bgw::{
    self, database_wanted_exclusively, extension_exists, in_transaction, reload_config_if_asked,
};
use crate::gucs::{EVICTION_BATCH_SIZE, EVICTION_ENABLED, MAX_SIZE};
use crate::shmem::caches as cache_slots;
use crate::shmem::slots::{self as registry, Claim, Slot, State};
use crate::shmem::stats;
use crate::{access, store};
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::log;
use pgrx::pg_sys::{self, Oid, TimestampTz};
use pgrx::prelude::*;
use std::ffi::CStr;
use std::rc::Rc;
use std::time::{Duration, Instant};

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_cache_evictor_main(arg: pg_sys::Datum) {
    let database = Oid::from(arg.value() as u32);
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    crate::bgw::connect(database);
    // pg_stat_activity.application_name says which database this worker serves.
    let name = std::ffi::CString::new(BackgroundWorker::get_name()).unwrap_or_default();
    // SAFETY: a NUL-terminated string that outlives the call; PostgreSQL copies it.
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
        let caches = match in_transaction(|| extension_exists().then(caches::all)) {
            Ok(Some(caches)) => caches,
            Ok(None) => {
                slot.set_state(State::Absent);
                break;
            }
            Err(message) => {
                report_error(&claim, &database_name, "reading the caches", &message);
                if !stay(slot, database, born, false) {
                    break;
                }
                continue;
            }
        };
        // Only touches to write: no sweep (it reads the whole table to measure it).
        if !sweep_due(slot, store::now()) {
            match apply_touches(slot, &caches) {
                Ok(false) => {}
                Ok(true) => {
                    slot.set_state(State::Absent);
                    break;
                }
                Err(message) => report_error(&claim, &database_name, "writing sliding hits", &message),
            }
            if !stay(slot, database, born, false) {
                break;
            }
            continue;
        }
        let capped = match sweep(&claim, &caches) {
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
        for cache in caches.iter().filter(|_| !vacuum_waits) {
            match caches::within(Rc::clone(cache), vacuum_if_bloated) {
                // Bloated, but an old snapshot holds the horizon: look again a little later.
                Ok(Vacuum::Blocked) => slot.retry_at(store::now() + VACUUM_RETRY_MICROS),
                Ok(Vacuum::Done) => last_vacuum = Some(Instant::now()),
                Ok(Vacuum::NotNeeded) => {}
                Err(message) => report_error(&claim, &database_name, "vacuum of a cache table", &message),
            }
        }
        // Stay while the database is due again within the interval and no other one waits;
        // over the size cap, or just brought under it, sweep again at once, other databases
        // waiting or not (the other workers serve them).
        if !stay(slot, database, born, capped || over_size_cap(slot)) {
            break;
        }
    }
}

/// Whether the worker stays for another round, having napped until it: while the database is
/// due again within the interval and no other one waits; `pressed` (over the size cap, or just
/// brought under it), at once, other databases waiting or not (the other workers serve them).
fn stay(slot: &Slot, database: Oid, born: Instant, pressed: bool) -> bool {
    let pause = if pressed { 0 } else { interval_micros() };
    let next_round = store::now() + pause;
    let due_again = slot.due_at().min(slot.touches_due_at()) <= next_round || pressed;
    due_again
        && born.elapsed() < MAX_WORKER_LIFE
        && (pressed || !another_database_waits(database))
        && nap_until(next_round)
}

/// Writes the pending touches of every cache of the database. Whether the extension is gone.
fn apply_touches(slot: &Slot, caches: &[Rc<Cache>]) -> Result<bool, String> {
    slot.begin_applying_touches();
    for cache in caches {
        if caches::within(Rc::clone(cache), || apply_touches_of_cache(slot))? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Writes the pending touches of the cache worked on, batch by batch, one transaction each;
/// touches whose rows other sessions held are tried again an interval later. Whether the
/// extension is gone.
fn apply_touches_of_cache(slot: &Slot) -> Result<bool, String> {
    loop {
        let batch = || bgw::as_table_owner(access::table(), store::apply_touches);
        let Some(applied) = in_transaction(|| extension_exists().then(batch))? else {
            return Ok(true);
        };
        if applied.busy {
            slot.due_by_touches(store::now() + interval_micros());
        }
        if !applied.full || applied.written == 0 || shutdown_requested() || database_wanted_exclusively() {
            if applied.full {
                slot.due_by_touches(store::now() + interval_micros());
            }
            return Ok(false);
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
    // SAFETY: a catalog lookup by OID, in a transaction.
    let name = unsafe { pg_sys::get_database_name(pg_sys::MyDatabaseId) };
    if name.is_null() {
        String::new()
    } else {
        // SAFETY: `name` is a NUL-terminated string palloc'd by get_database_name, read at once.
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

fn shutdown_requested() -> bool {
    // SAFETY: reads a flag the signal handler sets.
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

/// Sweeps every cache of the database (see [`sweep_cache`]), then notes in the registry when the
/// database is next due; frees what shared memory kept for caches dropped since.
fn sweep(claim: &Claim, caches: &[Rc<Cache>]) -> Result<Sweep, String> {
    let slot = claim.slot();
    slot.begin_sweep();
    // SAFETY: reports the worker's activity with a NUL-terminated constant string.
    unsafe {
        pg_sys::pgstat_report_activity(
            pg_sys::BackendState::STATE_RUNNING,
            c"evicting expired entries".as_ptr(),
        )
    };
    let forgotten = in_transaction(store::forget_dropped_caches);
    let mut outcome = forgotten.map(|()| Sweep::Done { capped: false });
    let mut next_due = i64::MAX;
    for cache in caches {
        match caches::within(Rc::clone(cache), || sweep_cache(slot, cache)) {
            Ok(CacheSwept::Done { next_expiry, capped }) => {
                next_due = next_due.min(next_expiry);
                if let Ok(Sweep::Done { capped: any }) = &mut outcome {
                    *any |= capped;
                }
            }
            Ok(CacheSwept::ExtensionGone) => {
                outcome = Ok(Sweep::ExtensionGone);
                break;
            }
            // The others are swept all the same; this one is tried again an interval later.
            Err(message) => outcome = Err(format!("cache {}: {message}", cache.name)),
        }
    }
    slot.finish_sweep(next_due, store::now());
    if outcome.is_err() {
        slot.retry_at(store::now() + interval_micros());
    }
    // SAFETY: flushes statistics and reports the worker idle, outside a transaction.
    unsafe {
        // Report the deletes now, so autovacuum sees them.
        pg_sys::pgstat_report_stat(true);
        pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, std::ptr::null());
    }
    outcome
}

enum CacheSwept {
    /// Done: its earliest expiry left (with the stale retention), and whether it removed entries
    /// for the size cap.
    Done {
        next_expiry: TimestampTz,
        capped: bool,
    },
    ExtensionGone,
}

/// Deletes the expired entries of the cache worked on, batch by batch, one transaction each,
/// while batches come back full; then, over its size cap, the entries that expire soonest; then
/// notes how many live bytes it holds.
fn sweep_cache(slot: &Slot, cache: &Cache) -> Result<CacheSwept, String> {
    // The stored expiries first, as readers see them: the size cap's sample goes by them.
    if apply_touches_of_cache(slot)? {
        return Ok(CacheSwept::ExtensionGone);
    }
    // Expired entries stay for pg_cache.stale_retention, to be served stale (cache_get_or_lease).
    let retention = crate::gucs::stale_retention_micros();
    let (gone, _) = evict_up_to(slot, store::now().saturating_sub(retention), false, None)?;
    if gone {
        return Ok(CacheSwept::ExtensionGone);
    }
    // SAFETY: reads a backend global set at connection.
    let database = unsafe { pg_sys::MyDatabaseId };
    let cap = cache.size_cap(i64::from(MAX_SIZE.get()) * 1024);
    let accounts = cache_slots::slot(database, cache.table);
    let written_since_measured = || accounts.map_or(0, |accounts| accounts.written_since_measured());
    if let Some(accounts) = accounts {
        accounts.set_size_cap(cap);
    }
    // Writes committed from here on may not be in the measure: they stay counted.
    let written_before = written_since_measured();
    let mut measured = measure()?;
    // Over the cap: remove the entries that expire soonest until below 90% of it, less what was
    // written during the last sweep (as much will come in before the next one can act; at most
    // half the cap). The next sweep measures again; until then the live bytes are what the
    // sample says is left.
    let capped = cap > 0 && measured.live_bytes > cap;
    if capped {
        let incoming = written_since_measured().clamp(0, cap / 2);
        let to_free = (measured.live_bytes - cap / 10 * 9 + incoming).min(measured.live_bytes);
        let cutoff = size_cutoff(to_free, measured.live_bytes)?;
        // The entries that expire before the cutoff, then only as many of those expiring at it
        // as the bytes still to free need: entries that share one expiry (never-expiring ones,
        // a batch set together) would otherwise all go at once.
        let before = if cutoff == crate::expiry::NEVER { crate::expiry::LAST_FINITE } else { cutoff - 1 };
        let (gone, freed) = evict_up_to(slot, before, true, None)?;
        if !gone && freed < to_free {
            evict_up_to(slot, cutoff, true, Some(to_free - freed))?;
        }
        measured.live_bytes -= to_free;
    }
    if let Some(accounts) = accounts {
        accounts.measured(measured.live_bytes, written_before);
    }
    pgrx::debug1!(
        "pg_cache: swept cache {}, next expiry in {} ms, {} live bytes",
        cache.name,
        measured.next_expiry.saturating_sub(store::now()) / 1000,
        measured.live_bytes,
    );
    Ok(CacheSwept::Done { next_expiry: measured.next_expiry.saturating_add(retention), capped })
}

/// Deletes entries expiring by `cutoff` in batches while batches come back full, counting them
/// (as removed for size when `for_size`); with a `budget`, only until that many live key + value
/// bytes are freed. Whether the extension is gone, and the live bytes freed.
fn evict_up_to(
    slot: &Slot,
    cutoff: TimestampTz,
    for_size: bool,
    budget: Option<i64>,
) -> Result<(bool, i64), String> {
    // For size, batches up to ten times larger: writes are outrunning the worker, and each batch
    // is a transaction and a scan of its own. With a budget they start small and grow with what
    // a row frees.
    let most = i64::from(EVICTION_BATCH_SIZE.get()) * if for_size { 10 } else { 1 };
    let mut batch_size = if budget.is_some() { most.min(100) } else { most };
    let mut after = pg_sys::ItemPointerData::default();
    let mut freed = 0;
    loop {
        let batch = || {
            let evicted =
                bgw::as_table_owner(access::table(), || store::evict_until(cutoff, batch_size, after));
            stats::count_evicted(evicted.rows, for_size);
            evicted
        };
        let Some(evicted) = in_transaction(|| extension_exists().then(batch))? else {
            return Ok((true, freed));
        };
        after = evicted.last;
        freed += evicted.bytes;
        slot.add_evicted(evicted.rows);
        if evicted.rows < batch_size || shutdown_requested() || database_wanted_exclusively() {
            return Ok((false, freed));
        }
        if let Some(to_free) = budget {
            if freed >= to_free {
                return Ok((false, freed));
            }
            let per_row = (evicted.bytes / evicted.rows.max(1)).max(1);
            batch_size = ((to_free - freed) / per_row + 1).clamp(1, (batch_size * 10).min(most));
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
        let (next, bytes) = bgw::as_table_owner(access::table(), store::measure);
        Measure { next_expiry: next.unwrap_or(i64::MAX), live_bytes: bytes }
    })
}

/// The expiry up to which removing entries frees about `to_free` of the `live` bytes, judged
/// from a sample of the table's pages (so no index on the expiry is needed).
fn size_cutoff(to_free: i64, live: i64) -> Result<TimestampTz, String> {
    in_transaction(|| bgw::as_table_owner(access::table(), || store::size_cutoff(to_free, live)))
}
