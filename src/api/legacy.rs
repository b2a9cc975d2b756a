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
