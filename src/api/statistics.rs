//! Statistics: this database's counters since the server started or the last reset.

use super::require_privileges;
use crate::access;
use crate::shmem::slots as registry;
use crate::shmem::stats::{self, Counter};
use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys;
use pgrx::prelude::*;

/// What `cache_stats` reports, in its column order.
pub(super) struct Report {
    pub counters: [Option<i64>; 5],
    pub evicted_for_size: Option<i64>,
    pub live_bytes: Option<i64>,
    pub entries: Option<i64>,
    pub total_bytes: Option<i64>,
    pub since: Option<TimestampWithTimeZone>,
    pub leases: [Option<i64>; 4],
    pub touches: [Option<i64>; 3],
}

pub(super) fn report() -> Report {
    require_privileges(pg_sys::ACL_SELECT);
    let table = access::table();
    // Read-only SPI: a read takes no transaction id (and so works on a standby).
    let (entries, total_bytes) = Spi::connect(|client| {
        client
            .select(
                "SELECT pg_catalog.pg_stat_get_live_tuples($1), pg_catalog.pg_total_relation_size($1)",
                Some(1),
                &[table.into()],
            )?
            .first()
            .get_two::<i64, i64>()
    })
    .unwrap_or((None, None));
    let counters = stats::read();
    let counter = |counter: Counter| counters.map(|(values, _)| values[counter as usize]);
    let since = counters.and_then(|(_, since)| TimestampWithTimeZone::try_from(since).ok());
    let size = crate::shmem::caches::mine().map(|slot| (slot.live_bytes(), slot.evicted_for_size()));
    Report {
        counters: [Counter::Hits, Counter::Misses, Counter::Sets, Counter::Removes, Counter::Evicted]
            .map(counter),
        evicted_for_size: size.map(|(_, evicted_for_size)| evicted_for_size),
        live_bytes: size.map(|(live_bytes, _)| live_bytes),
        entries,
        total_bytes,
        since,
        leases: [Counter::LeasesGranted, Counter::StaleServed, Counter::Waits, Counter::FillsRejected]
            .map(counter),
        touches: [Counter::TouchesRecorded, Counter::TouchesApplied, Counter::TouchFallbacks].map(counter),
    }
}

/// Hits, misses, sets and removals counted for all sessions of this database, rows the worker
/// evicted, and the table's size: `entries` is the statistics system's estimate of the rows
/// stored (expired ones not yet evicted included), `total_bytes` the table's exact size with
/// TOAST and index; then the leases granted (`miss` and `refresh`), the `stale` and `wait`
/// answers, and the fills refused; then the sliding hits recorded as touches, the touches the
/// worker wrote, and the hits that slid their row themselves because the touch table was full.
/// Without the library preloaded the counters are NULL.
#[allow(clippy::type_complexity)]
#[pg_extern(name = "cache_stats", volatile, parallel_safe)]
pub(super) fn cache_stats_with_leases_and_touches(
    cache: default!(Option<&str>, "'default'"),
) -> TableIterator<
    'static,
    (
        name!(hits, Option<i64>),
        name!(misses, Option<i64>),
        name!(sets, Option<i64>),
        name!(removes, Option<i64>),
        name!(evicted, Option<i64>),
        name!(evicted_for_size, Option<i64>),
        name!(live_bytes, Option<i64>),
        name!(entries, Option<i64>),
        name!(total_bytes, Option<i64>),
        name!(since, Option<TimestampWithTimeZone>),
        name!(leases_granted, Option<i64>),
        name!(stale_served, Option<i64>),
        name!(lease_waits, Option<i64>),
        name!(fills_rejected, Option<i64>),
        name!(touches_recorded, Option<i64>),
        name!(touches_applied, Option<i64>),
        name!(touch_fallbacks, Option<i64>),
    ),
> {
    crate::access::caches::with_named("cache_stats", cache, || {
        let r = report();
        let [hits, misses, sets, removes, evicted] = r.counters;
        let [granted, stale, waits, rejected] = r.leases;
        let [recorded, applied, fallbacks] = r.touches;
        TableIterator::once((
            hits,
            misses,
            sets,
            removes,
            evicted,
            r.evicted_for_size,
            r.live_bytes,
            r.entries,
            r.total_bytes,
            r.since,
            granted,
            stale,
            waits,
            rejected,
            recorded,
            applied,
            fallbacks,
        ))
    })
}

/// Zeroes this database's counters; needs the privilege `cache_clear` needs (DELETE).
#[pg_extern(name = "cache_stats_reset", volatile, parallel_unsafe)]
pub(super) fn cache_stats_reset_in_cache(cache: default!(Option<&str>, "'default'")) {
    crate::access::caches::with_named("cache_stats_reset", cache, || {
        require_privileges(pg_sys::ACL_DELETE);
        stats::reset();
    })
}

fn timestamp(micros: pg_sys::TimestampTz) -> Option<TimestampWithTimeZone> {
    (micros != 0).then(|| TimestampWithTimeZone::try_from(micros).ok()).flatten()
}

/// One row per database with pg_cache that the eviction workers know of: the current database
/// for any role, the others only for members of `pg_read_all_stats` (as `pg_stat_activity`
/// shows other sessions' queries only to them).
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
    if !registry::preloaded() {
        pgrx::ereport!(
            NOTICE,
            PgSqlErrorCode::ERRCODE_SUCCESSFUL_COMPLETION,
            "pg_cache is not in shared_preload_libraries: no eviction worker is running"
        );
        return TableIterator::new(Vec::new());
    }
    // SAFETY: a catalog lookup of role membership, in a transaction.
    let sees_all = unsafe {
        pg_sys::has_privs_of_role(pg_sys::GetUserId(), pg_sys::Oid::from(pg_sys::ROLE_PG_READ_ALL_STATS))
    };
    // SAFETY: reads a backend global set at connection.
    let mine = unsafe { pg_sys::MyDatabaseId };
    let rows: Vec<_> = registry::statuses()
        .into_iter()
        .filter(|status| sees_all || status.database == mine)
        .filter_map(|status| {
            // SAFETY: a catalog lookup by OID; NULL for a database dropped since.
            let name = unsafe { pg_sys::get_database_name(status.database) };
            // SAFETY: a NUL-terminated string palloc'd in the current context, read at once.
            let name = (!name.is_null())
                .then(|| unsafe { std::ffi::CStr::from_ptr(name) }.to_string_lossy().into_owned())?;
            Some((
                Some(name),
                (status.pid != 0).then_some(status.pid),
                timestamp(status.last_sweep_at),
                status.evicted_total,
                (!status.last_error.is_empty()).then_some(status.last_error),
                timestamp(status.last_error_at),
            ))
        })
        .collect();
    TableIterator::new(rows)
}
