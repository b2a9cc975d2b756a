//! Several keys in one round trip. Writes take their row locks in key order, so concurrent
//! batches never deadlock.

use super::{checked_keys, checked_values, entry_tags};
use crate::error;
use crate::expiry::Policy;
use crate::shmem::stats::{self, Counter};
use crate::store;
use pgrx::datum::{Array, Interval, TimestampWithTimeZone};
use pgrx::pg_sys;
use pgrx::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashSet};

// cache_get_many, one row per live key, in the order of first appearance in `keys`; misses are
// left out; each hit slides as `cache_get` does. Its rows go straight from the table into the
// result (a materialized set, filled in one call) instead of being copied out and returned one
// call per row, as a `#[pg_extern]` set-returning function would: so it is written by hand, under
// the symbol `cache_get_many_in_cache_wrapper` (0.3.0, with `cache`), and under the symbol 0.1.0
// and 0.2.0 defined it with (the cache `default`).
pgrx::extension_sql!(
    r#"
CREATE FUNCTION "cache_get_many"(
	"keys" TEXT[],
	"cache" TEXT DEFAULT 'default'
) RETURNS TABLE (
	"key" TEXT,
	"value" bytea
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_get_many_in_cache_wrapper';
"#,
    name = "cache_get_many",
);

const VERSION_1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };

#[unsafe(no_mangle)]
#[doc(hidden)]
pub extern "C" fn pg_finfo_cache_get_many_wrapper() -> &'static pg_sys::Pg_finfo_record {
    &VERSION_1
}

#[unsafe(no_mangle)]
#[doc(hidden)]
pub extern "C" fn pg_finfo_cache_get_many_in_cache_wrapper() -> &'static pg_sys::Pg_finfo_record {
    &VERSION_1
}

/// `cache_get_many(keys text[]) RETURNS TABLE (key text, value bytea)` of 0.1.0 and 0.2.0.
///
/// # Safety
/// Called by PostgreSQL's function manager with the function's call info.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn cache_get_many_wrapper(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: the caller's contract.
    unsafe { get_many_materialized(fcinfo, Some(crate::access::caches::DEFAULT)) }
}

/// `cache_get_many(keys text[], cache text DEFAULT 'default') RETURNS TABLE (key text, value bytea)`.
///
/// # Safety
/// Called by PostgreSQL's function manager with the function's call info.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn cache_get_many_in_cache_wrapper(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    // SAFETY: the function manager's call info for a call with a text[] and a text argument,
    // either NULL; the text is read while the call lasts.
    let cache = unsafe { pgrx::fcinfo::pg_getarg::<&str>(fcinfo, 1) };
    // SAFETY: the caller's contract.
    unsafe { get_many_materialized(fcinfo, cache) }
}

/// Fills the materialized result of a `cache_get_many` call.
///
/// # Safety
/// `fcinfo` is the call info of a `cache_get_many` call, its first argument a text[].
unsafe fn get_many_materialized(fcinfo: pg_sys::FunctionCallInfo, cache: Option<&str>) -> pg_sys::Datum {
    const FUNCTION: &str = "cache_get_many";
    // SAFETY: the function manager's call info for a call with a text[] first argument, which
    // may be NULL; the array is read while the call lasts.
    let keys = unsafe { pgrx::fcinfo::pg_getarg::<Array<&str>>(fcinfo, 0) };
    crate::access::caches::with_named(FUNCTION, cache, || {
        // SAFETY: the caller accepts a materialized set (or InitMaterializedSRF raises the
        // error); it makes the tuplestore and descriptor, which live for the query; each row's
        // datums are valid while tuplestore_putvalues copies them.
        unsafe {
            pg_sys::InitMaterializedSRF(fcinfo, pg_sys::MAT_SRF_USE_EXPECTED_DESC);
            let result = (*fcinfo).resultinfo.cast::<pg_sys::ReturnSetInfo>();
            let (store, descriptor) = ((*result).setResult, (*result).setDesc);
            hit_each(FUNCTION, keys, |_, key, value| {
                let mut values = [key, value];
                let mut nulls = [false, false];
                pg_sys::tuplestore_putvalues(store, descriptor, values.as_mut_ptr(), nulls.as_mut_ptr());
            });
        }
    });
    pg_sys::Datum::from(0)
}

/// The live entries of `keys` (checked, duplicates once, in order of first appearance), each hit
/// slid, handed to `emit` with the key, and the key and value as datums (valid only during the
/// call); hits and misses counted.
fn hit_each(
    function: &str,
    keys: Option<Array<&str>>,
    mut emit: impl FnMut(&str, pg_sys::Datum, pg_sys::Datum),
) {
    let keys = checked_keys(function, keys);
    let mut seen = HashSet::with_capacity(keys.len());
    let unique: Vec<&str> = keys.iter().map(String::as_str).filter(|key| seen.insert(*key)).collect();
    let mut found = 0;
    store::hit_each(&unique, |i, key, value| {
        emit(unique[i], key, value);
        found += 1;
    });
    // Counted once per call: the counters are shared by every session of the database.
    stats::count(Counter::Hits, found);
    stats::count(Counter::Misses, unique.len() as i64 - found);
}

/// The live values of `keys` (checked, duplicates once, in order of first appearance), each
/// hit slid and counted, passed through `convert`.
pub(super) fn get_many<T>(
    function: &str,
    keys: Option<Array<&str>>,
    convert: impl Fn(&str, Vec<u8>) -> T,
) -> Vec<(String, T)> {
    let mut found = Vec::new();
    hit_each(function, keys, |key, _, value| {
        // SAFETY: a bytea datum of the cache table's row, valid during this call; copied out.
        let value = unsafe { <&[u8]>::from_polymorphic_datum(value, false, pg_sys::BYTEAOID) };
        found.push((key.to_owned(), value.unwrap_or_default().to_vec()));
    });
    // Converted once every value is copied out: a conversion's result must outlive the read.
    found
        .into_iter()
        .map(|(key, value)| {
            let converted = convert(&key, value);
            (key, converted)
        })
        .collect()
}

/// Sets every pair with the same expiry and tags and returns the number of pairs given; of a key given
/// twice the last pair wins.
#[pg_extern(name = "cache_set_many", volatile, parallel_unsafe)]
pub(super) fn cache_set_many_in_cache(
    keys: Option<Array<&str>>,
    vals: Option<Array<&[u8]>>,
    ttl: default!(Option<Interval>, "NULL"),
    sliding: default!(Option<Interval>, "NULL"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
    tags: default!(Option<Array<&str>>, "NULL"),
    cache: default!(Option<&str>, "'default'"),
) -> i64 {
    crate::access::caches::with_named("cache_set_many", cache, || {
        const FUNCTION: &str = "cache_set_many";
        let keys = checked_keys(FUNCTION, keys);
        let vals = checked_values(FUNCTION, vals);
        if keys.len() != vals.len() {
            error::invalid_argument(
                FUNCTION,
                format!(
                    "keys and vals must have the same length, got {} keys and {} vals",
                    keys.len(),
                    vals.len()
                ),
            );
        }
        let tags = entry_tags(FUNCTION, tags);
        let now = store::now();
        let policy = Policy::from_arguments(FUNCTION, now, ttl, sliding, expires_at, super::cache_defaults());
        // Key order (byte-wise, as the primary key sorts), the last value of a repeated key.
        let pairs: BTreeMap<&str, &[u8]> =
            keys.iter().map(String::as_str).zip(vals.iter().map(Vec::as_slice)).collect();
        let pairs: Vec<(&str, &[u8])> = pairs.into_iter().collect();
        store::set_many(&pairs, policy, now, tags.as_deref());
        stats::count(Counter::Sets, pairs.len() as i64);
        keys.len() as i64
    })
}

/// Removes the keys; returns how many live entries were removed.
#[pg_extern(name = "cache_remove_many", volatile, parallel_unsafe)]
pub(super) fn cache_remove_many_in_cache(
    keys: Option<Array<&str>>,
    cache: default!(Option<&str>, "'default'"),
) -> i64 {
    crate::access::caches::with_named("cache_remove_many", cache, || {
        let keys: BTreeSet<String> = checked_keys("cache_remove_many", keys).into_iter().collect();
        let removed = keys.iter().filter(|key| store::remove(key)).count() as i64;
        stats::count(Counter::Removes, removed);
        removed
    })
}
