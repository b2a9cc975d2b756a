//! The eviction worker of one database: sweeps (expired entries, then the size cap), vacuums
//! when that can make progress, and stays while its database is due.

use super::vacuum::{vacuum_if_bloated, Vacuum};
use super::vacuum::{VACUUM_PAUSE_WHILE_CAPPED, VACUUM_RETRY_MICROS};
use super::{
    interval_micros, is_due, over_size_cap, sweep_due, DATABASE_CHECK_PERIOD, HOLD_OFF_MICROS,
    MAX_WORKER_LIFE,
};
use crate::bgw::{
    self, database_wanted_exclusively, extension_exists, in_transaction, reload_config_if_asked,
};
use crate::gucs::{EVICTION_BATCH_SIZE, EVICTION_ENABLED, MAX_SIZE};
use crate::shmem::slots::{self as registry, Claim, Slot, State};
use crate::shmem::stats;
use crate::{access, store};
use pgrx::bgworkers::{BackgroundWorker, SignalWakeFlags};
use pgrx::log;
use pgrx::pg_sys::{self, Oid, TimestampTz};
use pgrx::prelude::*;
use std::ffi::CStr;
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
        // Only touches to write: no sweep (it reads the whole table to measure it).
        if !sweep_due(slot, store::now()) {
            match apply_touches(slot) {
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

/// Writes the database's pending touches, batch by batch, one transaction each; touches whose
/// rows other sessions held are tried again an interval later. Whether the extension is gone.
fn apply_touches(slot: &Slot) -> Result<bool, String> {
    slot.begin_applying_touches();
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

/// Deletes expired entries batch by batch, one transaction each, while batches come back full;
/// then, over the size cap, the entries that expire soonest; then notes in the registry when the
/// database is next due and how many live bytes it holds.
fn sweep(claim: &Claim) -> Result<Sweep, String> {
    let slot = claim.slot();
    slot.begin_sweep();
    // SAFETY: reports the worker's activity with a NUL-terminated constant string.
    unsafe {
        pg_sys::pgstat_report_activity(
            pg_sys::BackendState::STATE_RUNNING,
            c"evicting expired entries".as_ptr(),
        )
    };
    // The stored expiries first, as readers see them: the size cap's sample goes by them.
    let applied = apply_touches(slot);
    // Expired entries stay for pg_cache.stale_retention, to be served stale (cache_get_or_lease).
    let retention = crate::gucs::stale_retention_micros();
    let outcome = applied
        .and_then(|gone| {
            if gone {
                Ok((true, 0))
            } else {
                evict_up_to(slot, store::now().saturating_sub(retention), false, None)
            }
        })
        .and_then(|(gone, _)| {
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
                // The entries that expire before the cutoff, then only as many of those expiring at
                // it as the bytes still to free need: entries that share one expiry (never-expiring
                // ones, a batch set together) would otherwise all go at once.
                let before =
                    if cutoff == crate::expiry::NEVER { crate::expiry::LAST_FINITE } else { cutoff - 1 };
                let (gone, freed) = evict_up_to(slot, before, true, None)?;
                if !gone && freed < to_free {
                    evict_up_to(slot, cutoff, true, Some(to_free - freed))?;
                }
                measured.live_bytes -= to_free;
            }
            let next_due = measured.next_expiry.saturating_add(retention);
            slot.finish_sweep(next_due, Some(measured.live_bytes), written_before, store::now());
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
    // SAFETY: flushes statistics and reports the worker idle, outside a transaction.
    unsafe {
        // Report the deletes now, so autovacuum sees them.
        pg_sys::pgstat_report_stat(true);
        pg_sys::pgstat_report_activity(pg_sys::BackendState::STATE_IDLE, std::ptr::null());
    }
    outcome
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
            // In the transaction: finding the statistics slot may read the catalog.
            // SAFETY: reads a backend global set at connection.
            stats::count_evicted(unsafe { pg_sys::MyDatabaseId }, evicted.rows);
            evicted
        };
        let Some(evicted) = in_transaction(|| extension_exists().then(batch))? else {
            return Ok((true, freed));
        };
        after = evicted.last;
        freed += evicted.bytes;
        slot.add_evicted(evicted.rows, for_size);
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
