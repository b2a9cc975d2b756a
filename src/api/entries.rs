//! Single entries: set, get, refresh, remove, ttl, and changing an expiry.

use super::{cache_defaults, checked_key, checked_value, entry_tags};
use crate::access::caches;
use crate::error;
use crate::expiry::{self, Policy};
use crate::shmem::stats::{self, Counter};
use crate::store::{self, Lookup};
use pgrx::datum::{Array, Interval, TimestampWithTimeZone};
use pgrx::prelude::*;

/// Inserts or replaces an entry, with `tags` (none when not given: a replaced entry's old tags
/// go). With none of ttl, sliding and expires_at the entry gets a sliding window of
/// `pg_cache.default_sliding_expiration`.
#[pg_extern(name = "cache_set", volatile, parallel_unsafe)]
#[allow(clippy::too_many_arguments)]
pub(super) fn cache_set_in_cache(
    key: Option<&str>,
    value: Option<&[u8]>,
    ttl: default!(Option<Interval>, "NULL"),
    sliding: default!(Option<Interval>, "NULL"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
    tags: default!(Option<Array<&str>>, "NULL"),
    cache: default!(Option<&str>, "'default'"),
) {
    caches::with_named("cache_set", cache, || set("cache_set", key, value, ttl, sliding, expires_at, tags));
}

/// `cache_set` of one entry, its arguments checked in order; `function` names it in errors.
pub(super) fn set(
    function: &str,
    key: Option<&str>,
    value: Option<&[u8]>,
    ttl: Option<Interval>,
    sliding: Option<Interval>,
    expires_at: Option<TimestampWithTimeZone>,
    tags: Option<Array<&str>>,
) {
    let key = checked_key(function, "key", key);
    let value = checked_value(function, "value", value);
    let tags = entry_tags(function, tags);
    let now = store::now();
    let policy = Policy::from_arguments(function, now, ttl, sliding, expires_at, cache_defaults());
    store::set(key, value, policy, now, tags.as_deref());
    stats::count(Counter::Sets, 1);
}

/// The value of a live entry, or NULL. A hit on a sliding entry slides its expiry.
#[pg_extern(name = "cache_get", volatile, parallel_unsafe)]
pub(super) fn cache_get_in_cache(
    key: Option<&str>,
    cache: default!(Option<&str>, "'default'"),
) -> Option<Vec<u8>> {
    caches::with_named("cache_get", cache, || {
        let key = checked_key("cache_get", "key", key);
        let hit = store::hit(key, Lookup::Get);
        stats::count_lookup(hit.is_some());
        hit.and_then(|hit| hit.value)
    })
}

/// Slides a live entry's expiry as `cache_get` does, without reading the value.
#[pg_extern(name = "cache_refresh", volatile, parallel_unsafe)]
pub(super) fn cache_refresh_in_cache(key: Option<&str>, cache: default!(Option<&str>, "'default'")) -> bool {
    caches::with_named("cache_refresh", cache, || {
        let key = checked_key("cache_refresh", "key", key);
        let hit = store::hit(key, Lookup::Refresh).is_some();
        stats::count_lookup(hit);
        hit
    })
}

/// Removes an entry; true when a live entry was removed.
#[pg_extern(name = "cache_remove", volatile, parallel_unsafe)]
pub(super) fn cache_remove_in_cache(key: Option<&str>, cache: default!(Option<&str>, "'default'")) -> bool {
    caches::with_named("cache_remove", cache, || {
        let removed = store::remove(checked_key("cache_remove", "key", key));
        stats::count(Counter::Removes, i64::from(removed));
        removed
    })
}

/// Time left until a live entry expires, without sliding it; NULL when absent or expired, and
/// `'infinity'` (on 17 and later; the largest interval before) when it never expires.
#[pg_extern(name = "cache_ttl", volatile, parallel_unsafe)]
pub(super) fn cache_ttl_in_cache(
    key: Option<&str>,
    cache: default!(Option<&str>, "'default'"),
) -> Option<Interval> {
    caches::with_named("cache_ttl", cache, || {
        let key = checked_key("cache_ttl", "key", key);
        let hit = store::hit(key, Lookup::Peek)?;
        if hit.expires_at == expiry::NEVER {
            return Some(expiry::infinite_interval());
        }
        Some(Interval::from_micros(hit.expires_at - store::now()).max(Interval::from_micros(0)))
    })
}

/// Gives a live entry the expiry `cache_set` would give it now with these arguments, keeping its
/// value; false when absent or expired.
#[pg_extern(name = "cache_expire", volatile, parallel_unsafe)]
pub(super) fn cache_expire_in_cache(
    key: Option<&str>,
    ttl: default!(Option<Interval>, "NULL"),
    sliding: default!(Option<Interval>, "NULL"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
    cache: default!(Option<&str>, "'default'"),
) -> bool {
    caches::with_named("cache_expire", cache, || expire(key, ttl, sliding, expires_at))
}

fn expire(
    key: Option<&str>,
    ttl: Option<Interval>,
    sliding: Option<Interval>,
    expires_at: Option<TimestampWithTimeZone>,
) -> bool {
    const FUNCTION: &str = "cache_expire";
    let key = checked_key(FUNCTION, "key", key);
    if ttl.is_none() && sliding.is_none() && expires_at.is_none() {
        error::invalid_argument(FUNCTION, "give at least one of ttl, sliding and expires_at");
    }
    let now = store::now();
    let policy = Policy::from_arguments(FUNCTION, now, ttl, sliding, expires_at, cache_defaults());
    store::expire(key, policy, now)
}
