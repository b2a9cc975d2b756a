//! The C symbols of released function definitions whose arguments have changed since. An
//! installed extension keeps calling them, with this library, until `ALTER EXTENSION pg_cache
//! UPDATE` binds its functions to the new symbols; each behaves exactly as its release did.

use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;

/// `cache_set` as 0.1.0 defined it, without tags: the entry it writes has none.
#[pg_extern(sql = false, volatile, parallel_unsafe)]
fn cache_set(
    key: Option<&str>,
    value: Option<&[u8]>,
    ttl: Option<Interval>,
    sliding: Option<Interval>,
    expires_at: Option<TimestampWithTimeZone>,
) {
    super::entries::set("cache_set", key, value, ttl, sliding, expires_at, None);
}

/// `cache_incr` as 0.1.0 and 0.2.0 defined it, without `create_missing`: an absent counter is
/// always created.
#[pg_extern(sql = false, volatile, parallel_unsafe)]
fn cache_incr(
    key: Option<&str>,
    delta: Option<i64>,
    ttl: Option<Interval>,
    sliding: Option<Interval>,
    expires_at: Option<TimestampWithTimeZone>,
) -> i64 {
    super::counters::incr(key, delta, ttl, sliding, expires_at, Some(true))
        .expect("a created counter has a value")
}

/// `cache_stats` as 0.2.0 defined it, without the lease counters.
#[allow(clippy::type_complexity)]
#[pg_extern(sql = false, volatile, parallel_safe)]
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
    let r = super::statistics::report();
    let [hits, misses, sets, removes, evicted] = r.counters;
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
    ))
}
