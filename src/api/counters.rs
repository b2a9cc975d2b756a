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
/// `delta` with the given expiry (the default sliding window when none is given); a live one
/// keeps its expiry exactly and the expiry arguments are ignored.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_incr(
    key: Option<&str>,
    delta: default!(Option<i64>, 1),
    ttl: default!(Option<Interval>, "NULL"),
    sliding: default!(Option<Interval>, "NULL"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
) -> i64 {
    const FUNCTION: &str = "cache_incr";
    let key = checked_key(FUNCTION, "key", key);
    let delta = error::required(FUNCTION, "delta", delta);
    let now = store::now();
    let policy = Policy::from_arguments(FUNCTION, now, ttl, sliding, expires_at);
    match store::incr(key, delta, policy, now) {
        Counter::Written(value) => {
            stats::count(Stat::Sets, 1);
            value
        }
        Counter::NotAnInteger => error::not_a_counter(FUNCTION, key),
        Counter::Overflow => error::numeric_overflow(
            FUNCTION,
            format!("adding {delta} to the counter of key \"{key}\" overflows bigint"),
        ),
    }
}
