//! What every background worker of pg_cache shares: connecting to a database so that nothing in
//! it can run code with the worker's rights, and running its statements as the cache table's
//! owner.
//!
//! A worker connects as the bootstrap superuser and takes the database's and the role's settings
//! (`ALTER DATABASE … SET search_path`). Whoever owns a database could then put an operator or a
//! function of their own ahead of `pg_catalog`, or, owning the cache table, a trigger on it, and
//! have a worker run it as superuser. So a worker overrides `search_path` with
//! `pg_catalog, pg_temp` before it runs anything, every statement names its operators and
//! functions by schema, and what touches the table runs as the table's owner, in a
//! security-restricted operation (as VACUUM and autovacuum run index expressions).

use pgrx::bgworkers::BackgroundWorker;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::pg_sys::{self, Oid};
use pgrx::PgTryBuilder;

/// The `search_path` every worker runs with, whatever the database or role says.
const SAFE_SEARCH_PATH: &std::ffi::CStr = c"pg_catalog, pg_temp";

/// Settings a database owner may set for the database that would stall or stop a worker for
/// good: a vacuum that naps for minutes at a time (the cost settings) and sweeps that always fail
/// (read-only transactions, an isolation level the sweep is not written for). Each worker runs
/// with PostgreSQL's defaults for them instead. And a lock wait is bounded: a role that may lock
/// one cache's table (UPDATE is enough for `LOCK TABLE`) must not stall the sweeps of every
/// other cache, nor the worker slot; the sweep of that cache fails, is reported, and is retried.
const SAFE_SETTINGS: [(&std::ffi::CStr, &std::ffi::CStr); 9] = [
    (c"lock_timeout", c"2s"),
    (c"vacuum_cost_delay", c"0"),
    (c"vacuum_cost_limit", c"200"),
    (c"vacuum_cost_page_hit", c"1"),
    (c"vacuum_cost_page_miss", c"2"),
    (c"vacuum_cost_page_dirty", c"20"),
    (c"default_transaction_read_only", c"off"),
    (c"default_transaction_isolation", c"read committed"),
    (c"exit_on_error", c"off"),
];

/// Connects the worker to `database` as the bootstrap superuser and makes the connection safe
/// from the database's own settings (see the module's comment).
pub fn connect(database: Oid) {
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(database), None);
    set_override(c"search_path", SAFE_SEARCH_PATH);
    for (setting, value) in SAFE_SETTINGS {
        set_override(setting, value);
    }
}

/// Sets `setting` for the rest of the worker's life, over any database, role or file setting.
pub fn set_override(setting: &std::ffi::CStr, value: &std::ffi::CStr) {
    // SAFETY: both are NUL-terminated strings that outlive the call (GUC copies them); an
    // invalid value raises an ERROR, which a worker's top level turns into its exit.
    unsafe {
        pg_sys::SetConfigOption(
            setting.as_ptr(),
            value.as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
        )
    };
}

/// Runs `body` as the owner of the cache table `table`, in a security-restricted operation; in a
/// transaction. An ERROR in `body` aborts the transaction, which restores the user.
pub fn as_table_owner<R>(table: Oid, body: impl FnOnce() -> R) -> R {
    // The owner from the catalog cache, without locking the table: a lock taken here and then
    // upgraded by `body`'s statement (AccessShare, then RowExclusive) would deadlock with a
    // session's ALTER TABLE waiting in between.
    // SAFETY: a catalog-cache lookup by OID in a transaction; the tuple is read, then released.
    let owner = unsafe {
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::RELOID as i32, table.into());
        if tuple.is_null() {
            pgrx::error!("pg_cache: the cache table (OID {}) is gone", table.to_u32());
        }
        let owner = (*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_class>(tuple)).relowner;
        pg_sys::ReleaseSysCache(tuple);
        owner
    };
    let mut user = pg_sys::InvalidOid;
    let mut context = 0;
    // SAFETY: reads and sets the backend's current user; restored below, or by the abort.
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut user, &mut context);
        let restricted =
            (pg_sys::SECURITY_LOCAL_USERID_CHANGE | pg_sys::SECURITY_RESTRICTED_OPERATION) as i32;
        pg_sys::SetUserIdAndSecContext(owner, context | restricted);
    }
    let result = body();
    // SAFETY: as above.
    unsafe { pg_sys::SetUserIdAndSecContext(user, context) };
    result
}

/// SIGHUP only sets a flag in a background worker: re-read the configuration here. True when it did.
pub fn reload_config_if_asked() -> bool {
    let asked = BackgroundWorker::sighup_received();
    if asked {
        // SAFETY: re-reads the configuration files in the worker's own process, between transactions.
        unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
    }
    asked
}

/// Runs `body` in a transaction of its own, with a snapshot; a Postgres ERROR aborts it and comes
/// back as its message.
pub fn in_transaction<R>(body: impl FnOnce() -> R + std::panic::UnwindSafe) -> Result<R, String> {
    transaction(true, body)
}

/// As [`in_transaction`]; without a snapshot for commands that manage their own (VACUUM).
pub fn transaction<R>(
    with_snapshot: bool,
    body: impl FnOnce() -> R + std::panic::UnwindSafe,
) -> Result<R, String> {
    // SAFETY: starts the worker's transaction; it is committed or aborted below on every path.
    unsafe {
        pg_sys::SetCurrentStatementStartTimestamp();
        pg_sys::StartTransactionCommand();
        if with_snapshot {
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        }
    }
    PgTryBuilder::new(|| {
        let result = body();
        // SAFETY: pops the snapshot pushed above and commits the transaction started above.
        unsafe {
            if with_snapshot {
                pg_sys::PopActiveSnapshot();
            }
            pg_sys::CommitTransactionCommand();
        }
        Ok(result)
    })
    .catch_others(|error| {
        // SAFETY: aborts the transaction started above after an ERROR, as PostgreSQL's own error recovery
        // does.
        unsafe { pg_sys::AbortCurrentTransaction() };
        Err(match error {
            CaughtError::PostgresError(report)
            | CaughtError::ErrorReport(report)
            | CaughtError::RustPanic { ereport: report, .. } => report.message().to_string(),
        })
    })
    .execute()
}

/// Whether pg_cache is created in the connected database; in a transaction.
pub fn extension_exists() -> bool {
    // SAFETY: a catalog lookup by name, in a transaction.
    unsafe { pg_sys::get_extension_oid(c"pg_cache".as_ptr(), true) != pg_sys::InvalidOid }
}

/// True while another session holds or waits for a lock on this database that excludes
/// connections: `DROP DATABASE` and `ALTER DATABASE … RENAME` take AccessExclusiveLock,
/// `CREATE DATABASE … TEMPLATE` a ShareLock, then wait for other sessions to leave.
pub fn database_wanted_exclusively() -> bool {
    let tag = pg_sys::LOCKTAG {
        locktag_field1: pg_sys::InvalidOid.to_u32(),
        locktag_field2: pg_sys::DatabaseRelationId.to_u32(),
        // SAFETY: reads a backend global set at connection.
        locktag_field3: unsafe { pg_sys::MyDatabaseId }.to_u32(),
        locktag_field4: 0,
        locktag_type: pg_sys::LockTagType::LOCKTAG_OBJECT as u8,
        locktag_lockmethodid: pg_sys::DEFAULT_LOCKMETHOD as u8,
    };
    let mode = pg_sys::RowExclusiveLock as pg_sys::LOCKMODE;
    // SAFETY: a session lock taken without waiting and released at once; no transaction is needed.
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
