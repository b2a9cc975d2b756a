//! The C symbols of released function definitions whose arguments have changed since. An
//! installed extension keeps calling them, with this library, until `ALTER EXTENSION pg_cache
//! UPDATE` binds its functions to the new symbols; each behaves exactly as its release did, on
//! the cache `default` (0.3.0 gave every function a `cache` argument).

use crate::access::caches::{self, DEFAULT};
use pgrx::datum::{Array, Interval, TimestampWithTimeZone};
use pgrx::prelude::*;

use super::json::Jsonb;
use super::{batch, conditional, entries, json, maintenance, statistics, tags};

const IN_DEFAULT: Option<&str> = Some(DEFAULT);

/// `cache_set` as 0.1.0 defined it, without tags: the entry it writes has none.
#[pg_extern(sql = false, volatile, parallel_unsafe)]
fn cache_set(
    key: Option<&str>,
    value: Option<&[u8]>,
    ttl: Option<Interval>,
    sliding: Option<Interval>,
    expires_at: Option<TimestampWithTimeZone>,
) {
    entries::cache_set_in_cache(key, value, ttl, sliding, expires_at, None, IN_DEFAULT);
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
    super::counters::cache_incr_counter(key, delta, ttl, sliding, expires_at, Some(true), IN_DEFAULT)
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
    let r = caches::with_named("cache_stats", IN_DEFAULT, statistics::report);
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

/// `cache_set` as 0.2.0 defined it.
#[pg_extern(sql = false, volatile, parallel_unsafe)]
fn cache_set_tagged(
    key: Option<&str>,
    value: Option<&[u8]>,
    ttl: Option<Interval>,
    sliding: Option<Interval>,
    expires_at: Option<TimestampWithTimeZone>,
    tags: Option<Array<&str>>,
) {
    entries::cache_set_in_cache(key, value, ttl, sliding, expires_at, tags, IN_DEFAULT);
}

#[pg_extern(sql = false, volatile, parallel_unsafe)]
fn cache_get(key: Option<&str>) -> Option<Vec<u8>> {
    entries::cache_get_in_cache(key, IN_DEFAULT)
}

#[pg_extern(sql = false, volatile, parallel_unsafe)]
fn cache_refresh(key: Option<&str>) -> bool {
    entries::cache_refresh_in_cache(key, IN_DEFAULT)
}

#[pg_extern(sql = false, volatile, parallel_unsafe)]
fn cache_remove(key: Option<&str>) -> bool {
    entries::cache_remove_in_cache(key, IN_DEFAULT)
}

#[pg_extern(sql = false, volatile, parallel_unsafe)]
fn cache_ttl(key: Option<&str>) -> Option<Interval> {
    entries::cache_ttl_in_cache(key, IN_DEFAULT)
}

#[pg_extern(sql = false, volatile, parallel_unsafe)]
fn cache_expire(
    key: Option<&str>,
    ttl: Option<Interval>,
    sliding: Option<Interval>,
    expires_at: Option<TimestampWithTimeZone>,
) -> bool {
    entries::cache_expire_in_cache(key, ttl, sliding, expires_at, IN_DEFAULT)
}

#[pg_extern(sql = false, volatile, parallel_unsafe)]
fn cache_add(
    key: Option<&str>,
    value: Option<&[u8]>,
    ttl: Option<Interval>,
    sliding: Option<Interval>,
    expires_at: Option<TimestampWithTimeZone>,
    tags: Option<Array<&str>>,
) -> bool {
    conditional::cache_add_in_cache(key, value, ttl, sliding, expires_at, tags, IN_DEFAULT)
}

#[pg_extern(sql = false, volatile, parallel_unsafe)]
fn cache_take(key: Option<&str>) -> Option<Vec<u8>> {
    conditional::cache_take_in_cache(key, IN_DEFAULT)
}

#[pg_extern(sql = false, volatile, parallel_unsafe)]
fn cache_tags(key: Option<&str>) -> Option<Vec<String>> {
    tags::cache_tags_in_cache(key, IN_DEFAULT)
}

#[pg_extern(sql = false, volatile, parallel_unsafe)]
fn cache_remove_by_tag(tags: Option<Array<&str>>, match_all: Option<bool>) -> i64 {
    tags::cache_remove_by_tag_in_cache(tags, match_all, IN_DEFAULT)
}

#[pg_extern(sql = false, volatile, parallel_unsafe)]
fn cache_set_json(
    key: Option<&str>,
    value: Option<Jsonb>,
    ttl: Option<Interval>,
    sliding: Option<Interval>,
    expires_at: Option<TimestampWithTimeZone>,
    tags: Option<Array<&str>>,
) {
    json::cache_set_json_in_cache(key, value, ttl, sliding, expires_at, tags, IN_DEFAULT);
}

#[pg_extern(sql = false, volatile, parallel_unsafe)]
fn cache_get_json(key: Option<&str>) -> Option<Jsonb> {
    json::cache_get_json_in_cache(key, IN_DEFAULT)
}

#[pg_extern(sql = false, volatile, parallel_unsafe)]
fn cache_get_many_json(
    keys: Option<Array<&str>>,
) -> TableIterator<'static, (name!(key, String), name!(value, Jsonb))> {
    json::cache_get_many_json_in_cache(keys, IN_DEFAULT)
}

#[pg_extern(sql = false, volatile, parallel_unsafe)]
fn cache_set_many(
    keys: Option<Array<&str>>,
    vals: Option<Array<&[u8]>>,
    ttl: Option<Interval>,
    sliding: Option<Interval>,
    expires_at: Option<TimestampWithTimeZone>,
    tags: Option<Array<&str>>,
) -> i64 {
    batch::cache_set_many_in_cache(keys, vals, ttl, sliding, expires_at, tags, IN_DEFAULT)
}

#[pg_extern(sql = false, volatile, parallel_unsafe)]
fn cache_remove_many(keys: Option<Array<&str>>) -> i64 {
    batch::cache_remove_many_in_cache(keys, IN_DEFAULT)
}

#[pg_extern(sql = false, volatile, parallel_unsafe)]
fn cache_evict_expired(max_rows: Option<i32>) -> i64 {
    maintenance::cache_evict_expired_in_cache(max_rows, IN_DEFAULT)
}

#[allow(clippy::type_complexity)]
#[pg_extern(sql = false, volatile, parallel_unsafe)]
fn cache_keys(
    prefix: Option<&str>,
    max_rows: Option<i32>,
) -> TableIterator<
    'static,
    (
        name!(key, String),
        name!(expires_at, TimestampWithTimeZone),
        name!(sliding, Option<Interval>),
        name!(absolute_expires_at, Option<TimestampWithTimeZone>),
        name!(value_bytes, i32),
    ),
> {
    maintenance::cache_keys_in_cache(prefix, max_rows, IN_DEFAULT)
}

#[pg_extern(sql = false, volatile, parallel_unsafe)]
fn cache_remove_prefix(prefix: Option<&str>) -> i64 {
    maintenance::cache_remove_prefix_in_cache(prefix, IN_DEFAULT)
}

#[pg_extern(sql = false, volatile, parallel_unsafe)]
fn cache_clear() -> i64 {
    maintenance::cache_clear_in_cache(IN_DEFAULT)
}

#[pg_extern(sql = false, volatile, parallel_unsafe)]
fn cache_stats_reset() {
    statistics::cache_stats_reset_in_cache(IN_DEFAULT);
}
