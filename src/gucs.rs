//! Settings under the `pg_cache.` prefix.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// Sliding window given to an entry set with none of ttl, sliding and expires_at (seconds).
pub static DEFAULT_SLIDING_EXPIRATION: GucSetting<i32> = GucSetting::<i32>::new(20 * 60);

/// A sliding hit rewrites the row only when the expiry would move by more than this (ms).
pub static REFRESH_GRANULARITY: GucSetting<i32> = GucSetting::<i32>::new(1000);

pub fn init() {
    GucRegistry::define_int_guc(
        c"pg_cache.default_sliding_expiration",
        c"Sliding window of entries set without ttl, sliding or expires_at.",
        c"The .NET distributed caches use 20 minutes; so does pg_cache.",
        &DEFAULT_SLIDING_EXPIRATION,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pg_cache.refresh_granularity",
        c"Smallest move of a sliding entry's expiry that is written back on a hit.",
        c"Hits that would move the expiry by less leave the row untouched, so hot keys are not \
          rewritten on every read. Never more than a tenth of the entry's sliding window. 0 writes on every hit.",
        &REFRESH_GRANULARITY,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
}

pub fn default_sliding_micros() -> i64 {
    i64::from(DEFAULT_SLIDING_EXPIRATION.get()) * 1_000_000
}

pub fn refresh_granularity_micros() -> i64 {
    i64::from(REFRESH_GRANULARITY.get()) * 1_000
}
