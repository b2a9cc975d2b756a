//! Whole-cache operations: listing and removing by prefix, clearing, evicting expired entries.

use crate::error::{self, required};
use crate::shmem::stats::{self, Counter};
use crate::store;
use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;

/// Deletes up to max_rows expired entries in one batch and returns how many; call it again
/// while it returns max_rows.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_evict_expired(max_rows: default!(Option<i32>, 10000)) -> i64 {
    let max_rows = checked_max_rows("cache_evict_expired", max_rows);
    store::evict_expired(i64::from(max_rows))
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
#[pg_extern(volatile, parallel_unsafe)]
fn cache_keys(
    prefix: default!(Option<&str>, "''"),
    max_rows: default!(Option<i32>, 1000),
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
    const FUNCTION: &str = "cache_keys";
    let prefix = required(FUNCTION, "prefix", prefix);
    let max_rows = checked_max_rows(FUNCTION, max_rows);
    let rows = store::list(prefix, i64::from(max_rows)).into_iter().map(|entry| {
        (entry.key, entry.expires_at, entry.sliding, entry.absolute_expires_at, entry.value_bytes)
    });
    TableIterator::new(rows.collect::<Vec<_>>())
}

/// Removes every entry whose key starts with `prefix`, live or expired, and returns how many.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_remove_prefix(prefix: Option<&str>) -> i64 {
    const FUNCTION: &str = "cache_remove_prefix";
    let prefix = required(FUNCTION, "prefix", prefix);
    if prefix.is_empty() {
        error::invalid_argument(
            FUNCTION,
            "prefix must not be empty; use cache_clear() to remove every entry",
        );
    }
    remove_counted(prefix)
}

/// Removes every entry, live or expired, and returns how many. Rows are deleted, not truncated:
/// readers in other sessions are not blocked.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_clear() -> i64 {
    remove_counted("")
}

fn remove_counted(prefix: &str) -> i64 {
    let (removed, live) = store::remove_prefix(prefix);
    stats::count(Counter::Removes, live);
    removed
}
