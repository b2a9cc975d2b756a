//! Conditional operations: set if absent (locks, de-duplication) and get-and-remove (one-time
//! tokens).

use super::{checked_key, checked_value, entry_tags};
use crate::expiry::Policy;
use crate::shmem::stats::{self, Counter};
use crate::store;
use pgrx::datum::{Array, Interval, TimestampWithTimeZone};
use pgrx::prelude::*;

/// Sets the entry (with `tags`, as `cache_set`) only when no live entry has the key (an expired
/// one counts as absent and is replaced); true when it set.
#[pg_extern(name = "cache_add", volatile, parallel_unsafe)]
pub(super) fn cache_add_in_cache(
    key: Option<&str>,
    value: Option<&[u8]>,
    ttl: default!(Option<Interval>, "NULL"),
    sliding: default!(Option<Interval>, "NULL"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
    tags: default!(Option<Array<&str>>, "NULL"),
    cache: default!(Option<&str>, "'default'"),
) -> bool {
    crate::access::caches::with_named("cache_add", cache, || {
        const FUNCTION: &str = "cache_add";
        let key = checked_key(FUNCTION, "key", key);
        let value = checked_value(FUNCTION, "value", value);
        let tags = entry_tags(FUNCTION, tags);
        let now = store::now();
        let policy = Policy::from_arguments(FUNCTION, now, ttl, sliding, expires_at, super::cache_defaults());
        let added = store::add(key, value, policy, now, tags.as_deref());
        stats::count(Counter::Sets, i64::from(added));
        added
    })
}

/// Returns a live entry's value and removes the entry, atomically; NULL when absent or expired.
#[pg_extern(name = "cache_take", volatile, parallel_unsafe)]
pub(super) fn cache_take_in_cache(
    key: Option<&str>,
    cache: default!(Option<&str>, "'default'"),
) -> Option<Vec<u8>> {
    crate::access::caches::with_named("cache_take", cache, || {
        let value = store::take(checked_key("cache_take", "key", key));
        stats::count_lookup(value.is_some());
        stats::count(Counter::Removes, i64::from(value.is_some()));
        value
    })
}
