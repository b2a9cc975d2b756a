//! The evictor's VACUUM of the cache table, when dead rows pile up and a vacuum can make
//! progress.

use crate::access;
use crate::bgw::in_transaction;
use crate::bgw::transaction;
use pgrx::pg_sys::{self, Oid};
use pgrx::prelude::*;
use std::time::Duration;

/// What [`vacuum_if_bloated`] did.
pub(super) enum Vacuum {
    NotNeeded,
    Done,
    /// Dead rows piled up, but the removal horizon has not moved since the last vacuum.
    Blocked,
}

/// How often a worker vacuums while writes keep the database at its size cap.
pub(super) const VACUUM_PAUSE_WHILE_CAPPED: Duration = Duration::from_secs(10);

/// How soon a worker looks again at a table whose vacuum an old snapshot holds back.
pub(super) const VACUUM_RETRY_MICROS: i64 = 5_000_000;

/// Dead rows (in the table or its TOAST table) beyond which an evictor vacuums the table itself:
/// more than this many, and more than a fifth of the live rows. Autovacuum wakes once a minute
/// at best; a cache under churn leaves dead rows much faster than that.
pub(super) const VACUUM_MIN_DEAD_ROWS: i64 = 1000;

/// Vacuums the cache table when the deletes of sweeps and the updates of sets left it with many
/// dead rows, so that their space is reused instead of the table growing; but only when it can
/// make progress: while an old snapshot holds the removal horizon where it was at the last
/// vacuum, another would remove nothing the last one could not (the slot remembers it).
pub(super) fn vacuum_if_bloated() -> Result<Vacuum, String> {
    let bloated = in_transaction(|| {
        let table = access::table();
        if !access::relation_exists(table) {
            return None;
        }
        // Never wait here for a session holding the table (VACUUM would skip it anyway).
        // SAFETY: a lock request that does not wait, held to the end of the transaction.
        let locked = unsafe { pg_sys::ConditionalLockRelationOid(table, pg_sys::AccessShareLock as _) };
        // SAFETY: the table is locked above; it is opened without another lock and closed at once, and the
        // horizon read while it is open.
        (locked && is_bloated(table)).then(|| unsafe {
            let relation = pg_sys::table_open(table, pg_sys::NoLock as _);
            let horizon = pg_sys::GetOldestNonRemovableTransactionId(relation);
            pg_sys::table_close(relation, pg_sys::NoLock as _);
            (access::qualified_table_name(table), table, horizon)
        })
    })?;
    match bloated {
        Some((table, oid, horizon)) if swap_vacuum_horizon(oid, horizon) != Some(horizon) => {
            vacuum(&table).map(|()| Vacuum::Done)
        }
        Some(_) => Ok(Vacuum::Blocked),
        None => Ok(Vacuum::NotNeeded),
    }
}

/// Records the horizon of a vacuum of `table` about to run in the cache's slot; returns the one
/// of its last vacuum (`None` without a slot: then every bloated table is vacuumed).
fn swap_vacuum_horizon(table: Oid, horizon: pg_sys::TransactionId) -> Option<pg_sys::TransactionId> {
    // SAFETY: reads a backend global set at connection.
    let database = unsafe { pg_sys::MyDatabaseId };
    crate::shmem::caches::slot(database, table).map(|slot| slot.swap_vacuum_horizon(horizon))
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
    // SAFETY: VACUUM runs as the top-level command it must be: outside SPI, with PortalContext set to a
    // context of ours that outlives its transactions and is deleted afterwards, whatever the outcome.
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
