//! Statistics: this database's counters since the server started or the last reset.

use crate::heap_access;
use crate::registry;
use crate::stats;
use pgrx::datum::TimestampWithTimeZone;
use pgrx::pg_sys;
use pgrx::prelude::*;

/// Hits, misses, sets and removals counted for all sessions of this database, rows the worker
/// evicted, and the table's size: `entries` is the statistics system's estimate of the rows
/// stored (expired ones not yet evicted included), `total_bytes` the table's exact size with
/// TOAST and index. Without the library preloaded the counters are NULL.
#[allow(clippy::type_complexity)]
#[pg_extern(volatile, parallel_safe)]
fn cache_stats() -> TableIterator<
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
    ),
> {
    let table = heap_access::table();
    require_privilege(table, pg_sys::ACL_SELECT);
    let (entries, total_bytes) = Spi::get_two_with_args::<i64, i64>(
        "SELECT pg_catalog.pg_stat_get_live_tuples($1), pg_catalog.pg_total_relation_size($1)",
        &[table.into()],
    )
    .unwrap_or((None, None));
    let counters = stats::read();
    let counter = |i: usize| counters.map(|(values, _)| values[i]);
    let since = counters.and_then(|(_, since)| TimestampWithTimeZone::try_from(since).ok());
    let size = registry::my_size();
    TableIterator::once((
        counter(0),
        counter(1),
        counter(2),
        counter(3),
        counter(4),
        size.map(|(_, evicted_for_size)| evicted_for_size),
        size.map(|(live_bytes, _)| live_bytes),
        entries,
        total_bytes,
        since,
    ))
}

/// Zeroes this database's counters; needs the privilege `cache_clear` needs (DELETE).
#[pg_extern(volatile, parallel_unsafe)]
fn cache_stats_reset() {
    require_privilege(heap_access::table(), pg_sys::ACL_DELETE);
    stats::reset();
}

fn require_privilege(table: pg_sys::Oid, mode: u32) {
    unsafe {
        let result = pg_sys::pg_class_aclcheck(table, pg_sys::GetUserId(), mode as pg_sys::AclMode);
        if result != pg_sys::AclResult::ACLCHECK_OK {
            pg_sys::aclcheck_error(result, pg_sys::ObjectType::OBJECT_TABLE, pg_sys::get_rel_name(table));
        }
    }
}
