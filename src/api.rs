//! The SQL functions. Arguments are nullable at the SQL level so that a NULL gets a clear
//! 22004 error naming it, instead of a silent NULL result.

use crate::error::{self, required};
use crate::expiry::Policy;
use crate::store::{self, Lookup};
use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;

/// Keys longer than this are rejected: the primary-key index cannot hold much larger ones.
const MAX_KEY_BYTES: usize = 2048;

/// Values larger than this are rejected: read back as text (bytea's hex output, what most clients
/// ask for), a larger value would pass PostgreSQL's 1 GB limit for one allocation.
const MAX_VALUE_BYTES: usize = 500 * 1024 * 1024;

fn checked_key<'a>(function: &str, key: Option<&'a str>) -> &'a str {
    let key = required(function, "key", key);
    if key.is_empty() {
        error::invalid_argument(function, "key must not be empty");
    }
    if key.len() > MAX_KEY_BYTES {
        error::limit_exceeded(
            function,
            format!("key is {} bytes long; the maximum is {MAX_KEY_BYTES} bytes", key.len()),
        );
    }
    key
}

/// Inserts or replaces an entry. With none of ttl, sliding and expires_at the entry gets a
/// sliding window of `pg_cache.default_sliding_expiration`.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_set(
    key: Option<&str>,
    value: Option<&[u8]>,
    ttl: default!(Option<Interval>, "NULL"),
    sliding: default!(Option<Interval>, "NULL"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
) {
    const FUNCTION: &str = "cache_set";
    let key = checked_key(FUNCTION, key);
    let value = required(FUNCTION, "value", value);
    if value.len() > MAX_VALUE_BYTES {
        error::limit_exceeded(
            FUNCTION,
            format!("value is {} bytes long; the maximum is {MAX_VALUE_BYTES} bytes", value.len()),
        );
    }
    let now = store::now();
    let policy = Policy::from_arguments(FUNCTION, now, ttl, sliding, expires_at);
    store::set(key, value, policy, now);
}

/// The value of a live entry, or NULL. A hit on a sliding entry slides its expiry.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_get(key: Option<&str>) -> Option<Vec<u8>> {
    let key = checked_key("cache_get", key);
    store::hit(key, Lookup::Get).and_then(|hit| hit.value)
}

/// Slides a live entry's expiry as `cache_get` does, without reading the value.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_refresh(key: Option<&str>) -> bool {
    let key = checked_key("cache_refresh", key);
    store::hit(key, Lookup::Refresh).is_some()
}

/// Removes an entry; true when a live entry was removed.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_remove(key: Option<&str>) -> bool {
    store::remove(checked_key("cache_remove", key))
}

/// Time left until a live entry expires, without sliding it; NULL when absent or expired.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_ttl(key: Option<&str>) -> Option<Interval> {
    let key = checked_key("cache_ttl", key);
    let hit = store::hit(key, Lookup::Peek)?;
    Some(Interval::from_micros(hit.expires_at - store::now()).max(Interval::from_micros(0)))
}

/// Deletes up to max_rows expired entries in one batch and returns how many; call it again
/// while it returns max_rows.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_evict_expired(max_rows: default!(Option<i32>, 10000)) -> i64 {
    const FUNCTION: &str = "cache_evict_expired";
    let max_rows = required(FUNCTION, "max_rows", max_rows);
    if max_rows < 1 {
        error::invalid_argument(FUNCTION, format!("max_rows must be at least 1, got {max_rows}"));
    }
    store::evict_expired(i64::from(max_rows))
}
