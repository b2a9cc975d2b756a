//! Whole-cache operations: listing and removing by prefix, clearing, evicting expired entries.

use crate::access;
use crate::error::{self, required};
use crate::shmem::stats::{self, Counter};
use crate::store;
use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::pg_sys;
use pgrx::prelude::*;

/// Writes the pending touches of sliding hits (when the role may update the table), then
/// deletes up to max_rows expired entries in one batch and returns how many; call it again
/// while it returns max_rows.
#[pg_extern(name = "cache_evict_expired", volatile, parallel_unsafe)]
pub(super) fn cache_evict_expired_in_cache(
    max_rows: default!(Option<i32>, 10000),
    cache: default!(Option<&str>, "'default'"),
) -> i64 {
    crate::access::caches::with_named("cache_evict_expired", cache, || {
        let max_rows = checked_max_rows("cache_evict_expired", max_rows);
        if access::may_update_expiry(access::table()) {
            // What dropped caches left in shared memory goes; pending touches are written: not
            // needed for the deletes (they look at pending touches), but they make the stored
            // expiries what a reader sees.
            store::forget_dropped_caches();
            store::apply_touches();
        }
        store::evict_expired(i64::from(max_rows))
    })
}

pgrx::extension_sql!(
    r#"
CREATE FUNCTION pg_catalog."pg_cache_pending_expiry"(
	"cache_table" oid,
	"key" TEXT,
	"expires_at" timestamp with time zone
) RETURNS timestamp with time zone
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pg_cache_pending_expiry_wrapper';
"#,
    name = "pg_cache_pending_expiry",
);

/// The expiry of the entry of `cache_table` stored under `key` with the expiry `expires_at`,
/// moved by its pending touch (a sliding hit not yet written), if any: what the kept
/// statements compare with the time. Internal; it reads shared memory only. In pg_catalog, where
/// only a superuser can create functions: in the extension's schema a database owner could add an
/// overload that makes every call of it ambiguous.
#[pg_extern(sql = false, volatile, parallel_safe, strict)]
fn pg_cache_pending_expiry(
    cache_table: pg_sys::Oid,
    key: &str,
    expires_at: TimestampWithTimeZone,
) -> TimestampWithTimeZone {
    // A touch says a key was read: only for roles that may read the table.
    if !access::has_privileges(cache_table, pg_sys::ACL_SELECT) {
        access::refuse_privilege(cache_table);
    }
    let stored: pg_sys::TimestampTz = expires_at.into();
    let pending = store::pending_expiry(cache_table, key, stored);
    TimestampWithTimeZone::try_from(pending).unwrap_or(expires_at)
}

fn checked_max_rows(function: &str, max_rows: Option<i32>) -> i32 {
    let max_rows = required(function, "max_rows", max_rows);
    if max_rows < 1 {
        error::invalid_argument(function, format!("max_rows must be at least 1, got {max_rows}"));
    }
    max_rows
}

/// Live entries whose key starts with `prefix` (byte-wise), in key order, at most `max_rows`;
/// never slides. A selective prefix reads only its range of the primary key.
#[allow(clippy::type_complexity)]
#[pg_extern(name = "cache_keys", volatile, parallel_unsafe)]
pub(super) fn cache_keys_in_cache(
    prefix: default!(Option<&str>, "''"),
    max_rows: default!(Option<i32>, 1000),
    cache: default!(Option<&str>, "'default'"),
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
    crate::access::caches::with_named("cache_keys", cache, || {
        const FUNCTION: &str = "cache_keys";
        let prefix = required(FUNCTION, "prefix", prefix);
        let max_rows = checked_max_rows(FUNCTION, max_rows);
        let rows = store::list(prefix, i64::from(max_rows)).into_iter().map(|entry| {
            (entry.key, entry.expires_at, entry.sliding, entry.absolute_expires_at, entry.value_bytes)
        });
        TableIterator::new(rows.collect::<Vec<_>>())
    })
}

/// Removes every entry whose key starts with `prefix`, live or expired, and returns how many.
#[pg_extern(name = "cache_remove_prefix", volatile, parallel_unsafe)]
pub(super) fn cache_remove_prefix_in_cache(
    prefix: Option<&str>,
    cache: default!(Option<&str>, "'default'"),
) -> i64 {
    crate::access::caches::with_named("cache_remove_prefix", cache, || {
        const FUNCTION: &str = "cache_remove_prefix";
        let prefix = required(FUNCTION, "prefix", prefix);
        if prefix.is_empty() {
            error::invalid_argument(
                FUNCTION,
                "prefix must not be empty; use cache_clear() to remove every entry",
            );
        }
        remove_counted(prefix)
    })
}

/// Removes every entry, live or expired, and returns how many. Rows are deleted, not truncated:
/// readers in other sessions are not blocked.
#[pg_extern(name = "cache_clear", volatile, parallel_unsafe)]
pub(super) fn cache_clear_in_cache(cache: default!(Option<&str>, "'default'")) -> i64 {
    crate::access::caches::with_named("cache_clear", cache, || remove_counted(""))
}

fn remove_counted(prefix: &str) -> i64 {
    let (removed, live) = store::remove_prefix(prefix);
    stats::count(Counter::Removes, live);
    removed
}
