//! Stampede protection: of all the callers that miss a key, on every app server, one gets a lease
//! and computes the value; the others wait for its fill (or get `wait`), and XFetch picks one
//! caller to refresh a hot entry shortly before it expires. See docs/leases.md.

use super::{checked_key, checked_value, entry_tags, require_privileges};
use crate::error;
use crate::expiry::Policy;
use crate::shmem::stats::{self, Counter};
use crate::store;
use crate::store::leases::{self, Answer, Asking};
use pgrx::datum::{Array, Interval, TimestampWithTimeZone, Uuid};
use pgrx::pg_sys;
use pgrx::prelude::*;
use pgrx::{ereport, PgSqlErrorCode};

/// Leases and waits last at most this long.
const MAX_INTERVAL_MICROS: i64 = 24 * 60 * 60 * 1_000_000;

/// A live entry's value (`hit`), or, for exactly one caller at a time, a lease to compute it
/// (`miss`); the others get `wait`, after waiting up to `wait` for the fill, or at once `stale`
/// with the value of an entry that expired less than `grace` ago (kept for
/// `pg_cache.stale_retention`). With XFetch (`beta` above 0), a hit shortly before the expiry may
/// come with a lease too (`refresh`): that caller computes the next value while everyone else
/// keeps hitting.
#[allow(clippy::type_complexity)]
#[pg_extern(name = "cache_get_or_lease", volatile, parallel_unsafe)]
pub(super) fn cache_get_or_lease(
    key: Option<&str>,
    lease_ttl: default!(Option<Interval>, "'10 s'"),
    wait: default!(Option<Interval>, "'0'"),
    beta: default!(Option<f64>, 1.0),
    grace: default!(Option<Interval>, "'0'"),
    cache: default!(Option<&str>, "'default'"),
) -> TableIterator<
    'static,
    (
        name!(status, String),
        name!(value, Option<Vec<u8>>),
        name!(lease, Option<Uuid>),
        name!(ttl, Option<Interval>),
    ),
> {
    crate::access::caches::with_named("cache_get_or_lease", cache, || {
        const FUNCTION: &str = "cache_get_or_lease";
        let key = checked_key(FUNCTION, "key", key);
        let lease_ttl = duration(FUNCTION, "lease_ttl", lease_ttl, false);
        let wait = duration(FUNCTION, "wait", wait, true);
        let beta = error::required(FUNCTION, "beta", beta);
        if !beta.is_finite() || beta < 0.0 {
            error::invalid_argument(
                FUNCTION,
                format!("beta must be a finite number of at least 0, got {beta}"),
            );
        }
        let grace = duration(FUNCTION, "grace", grace, true);
        require_leases(FUNCTION);
        // Only a role that may write the entry may be given a lease; checked before anything counts.
        require_privileges(pg_sys::ACL_INSERT | pg_sys::ACL_UPDATE);
        let asking = Asking {
            lease_ttl,
            wait,
            beta,
            grace,
            full: lease_table_full,
            cannot_wait,
            read_only,
            cannot_lease,
        };
        let row = match leases::get_or_lease(key, &asking) {
            Answer::Hit(hit, refresh) => {
                stats::count_lookup(true);
                let ttl = Interval::from_micros((hit.expires_at.saturating_sub(store::now())).max(0));
                let ttl = if hit.expires_at == crate::expiry::NEVER {
                    crate::expiry::infinite_interval()
                } else {
                    ttl
                };
                if refresh.is_some() {
                    stats::count(Counter::LeasesGranted, 1);
                }
                let status = if refresh.is_some() { "refresh" } else { "hit" };
                (status.to_owned(), hit.value, refresh.map(Uuid::from_bytes), Some(ttl))
            }
            Answer::Miss(lease, stale) => {
                stats::count_lookup(false);
                stats::count(Counter::LeasesGranted, 1);
                ("miss".to_owned(), stale, Some(Uuid::from_bytes(lease)), None)
            }
            Answer::Stale(value) => {
                stats::count_lookup(false);
                stats::count(Counter::StaleServed, 1);
                ("stale".to_owned(), Some(value), None, None)
            }
            Answer::Wait => {
                stats::count_lookup(false);
                stats::count(Counter::Waits, 1);
                ("wait".to_owned(), None, None, None)
            }
        };
        TableIterator::once(row)
    })
}

/// Stores the value computed under `lease` as `cache_set` would, only while `lease` is still the
/// key's lease; true when it stored. A write of the key since the lease (`cache_set`,
/// `cache_remove`, a removal by tag or prefix, `cache_clear`), or the lease's expiry and a new
/// lease, refuses it. The lease ends, and waiters wake, when the fill commits.
#[pg_extern(name = "cache_fill", volatile, parallel_unsafe)]
#[allow(clippy::too_many_arguments)]
pub(super) fn cache_fill(
    key: Option<&str>,
    value: Option<&[u8]>,
    lease: Option<Uuid>,
    ttl: default!(Option<Interval>, "NULL"),
    sliding: default!(Option<Interval>, "NULL"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
    tags: default!(Option<Array<&str>>, "NULL"),
    cache: default!(Option<&str>, "'default'"),
) -> bool {
    crate::access::caches::with_named("cache_fill", cache, || {
        const FUNCTION: &str = "cache_fill";
        let key = checked_key(FUNCTION, "key", key);
        let value = checked_value(FUNCTION, "value", value);
        let lease = checked_lease(FUNCTION, lease);
        let tags = entry_tags(FUNCTION, tags);
        let now = store::now();
        let policy = Policy::from_arguments(FUNCTION, now, ttl, sliding, expires_at, super::cache_defaults());
        require_leases(FUNCTION);
        require_privileges(pg_sys::ACL_INSERT | pg_sys::ACL_UPDATE);
        let stored = leases::fill(key, value, lease, policy, tags.as_deref());
        stats::count(if stored { Counter::Sets } else { Counter::FillsRejected }, 1);
        stored
    })
}

/// Gives up a lease (its computation failed), so that the next caller gets one at once instead
/// of after `lease_ttl`; true when it was the key's lease. Not undone by a rollback.
#[pg_extern(name = "cache_release", volatile, parallel_unsafe)]
pub(super) fn cache_release(
    key: Option<&str>,
    lease: Option<Uuid>,
    cache: default!(Option<&str>, "'default'"),
) -> bool {
    crate::access::caches::with_named("cache_release", cache, || {
        const FUNCTION: &str = "cache_release";
        let key = checked_key(FUNCTION, "key", key);
        let lease = checked_lease(FUNCTION, lease);
        require_leases(FUNCTION);
        require_privileges(pg_sys::ACL_INSERT | pg_sys::ACL_UPDATE);
        leases::release(key, &lease)
    })
}

fn checked_lease(function: &str, lease: Option<Uuid>) -> [u8; 16] {
    let lease = error::required(function, "lease", lease);
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(lease.as_bytes());
    bytes
}

/// An interval argument as microseconds: positive (or, with `zero_ok`, zero), at most a day.
fn duration(function: &str, argument: &str, interval: Option<Interval>, zero_ok: bool) -> i64 {
    let interval = error::required(function, argument, interval);
    let micros = interval.as_micros();
    if micros < 0 || (micros == 0 && !zero_ok) {
        let least = if zero_ok { "at least 0" } else { "positive" };
        error::invalid_argument(function, format!("{argument} must be {least}, got {interval}"));
    }
    if micros > i128::from(MAX_INTERVAL_MICROS) {
        error::invalid_argument(function, format!("{argument} must be at most 1 day, got {interval}"));
    }
    micros as i64
}

fn require_leases(function: &str) {
    if !leases::available() {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
            format!("{function}: leases need pg_cache in shared_preload_libraries"),
            "The lease table lives in shared memory, which only a preloaded library can have."
        );
    }
    if crate::shmem::leases::row_security_enforced(crate::access::table()) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("{function}: leases are not available to a role under row-level security"),
            "Row security decides per row what a role sees; a lease is per key and shared by every role."
        );
    }
}

fn lease_table_full(limit: usize, per_database: bool) -> ! {
    let held = if per_database {
        format!("this database holds {limit} leases, its share (pg_cache.max_leases_per_database)")
    } else {
        format!("the lease table holds {limit} leases, all it can")
    };
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_CONFIGURATION_LIMIT_EXCEEDED,
        format!("cache_get_or_lease: {held}; no lease can be granted"),
        "Leases end when filled, released or expired (lease_ttl)."
    );
}

fn cannot_wait() -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        "cache_get_or_lease: wait needs READ COMMITTED; this transaction's snapshot could never see the fill",
        "Call it with wait => '0' under REPEATABLE READ or SERIALIZABLE, or in a READ COMMITTED transaction."
    );
}

fn read_only() -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
        "cache_get_or_lease: a read-only transaction cannot take a lease; it could never fill it",
        "A hit is answered in a read-only transaction too; a miss needs one that may write."
    );
}

fn cannot_lease() -> ! {
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
        "cache_get_or_lease: a lease needs READ COMMITTED; a value computed from this transaction's snapshot could predate a write committed before the lease",
        "Hits, stale values and waits are answered under REPEATABLE READ and SERIALIZABLE; take the lease in a READ COMMITTED transaction."
    );
}
