//! Atomic counters with expiry (rate limiting), stored as the ASCII decimal text of the number,
//! as Redis stores them.

use super::checked_key;
use crate::error;
use crate::expiry::Policy;
use crate::shmem::stats::{self, Counter as Stat};
use crate::store::{self, Counter};
use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;

/// Adds `delta` to a counter and returns the new value. An absent or expired counter starts at
/// `delta` with the given expiry (the default sliding window when none is given), or, with
/// `create_missing => false`, stays absent and the result is NULL; a live one keeps its expiry
/// exactly and the expiry arguments are ignored.
#[pg_extern(name = "cache_incr", volatile, parallel_unsafe)]
pub(super) fn cache_incr_counter(
    key: Option<&str>,
    delta: default!(Option<i64>, 1),
    ttl: default!(Option<Interval>, "NULL"),
    sliding: default!(Option<Interval>, "NULL"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
    create_missing: default!(Option<bool>, true),
    cache: default!(Option<&str>, "'default'"),
) -> Option<i64> {
    crate::access::caches::with_named("cache_incr", cache, || {
        incr(key, delta, ttl, sliding, expires_at, create_missing)
    })
}

/// `cache_incr`, its arguments checked in order.
pub(super) fn incr(
    key: Option<&str>,
    delta: Option<i64>,
    ttl: Option<Interval>,
    sliding: Option<Interval>,
    expires_at: Option<TimestampWithTimeZone>,
    create_missing: Option<bool>,
) -> Option<i64> {
    const FUNCTION: &str = "cache_incr";
    let key = checked_key(FUNCTION, "key", key);
    let delta = error::required(FUNCTION, "delta", delta);
    let create_missing = error::required(FUNCTION, "create_missing", create_missing);
    let now = store::now();
    // The expiry arguments are checked even when no counter is created, so a bad one is found
    // on the first call, not on the first miss.
    let policy = Policy::from_arguments(FUNCTION, now, ttl, sliding, expires_at, super::cache_defaults());
    match store::incr(key, delta, create_missing.then_some(policy), now) {
        Counter::Written(value) => {
            stats::count(Stat::Sets, 1);
            Some(value)
        }
        Counter::Absent => None,
        Counter::NotAnInteger => error::not_a_counter(FUNCTION, key),
        Counter::Overflow => error::numeric_overflow(
            FUNCTION,
            format!("adding {delta} to the counter of key \"{key}\" overflows bigint"),
        ),
    }
}
