//! Several keys in one round trip. Writes take their row locks in key order, so concurrent
//! batches never deadlock.

use super::{checked_keys, checked_values, entry_tags};
use crate::error;
use crate::expiry::Policy;
use crate::shmem::stats::{self, Counter};
use crate::store;
use pgrx::datum::{Array, Interval, TimestampWithTimeZone};
use pgrx::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// One row per live key, in the order of first appearance in `keys`; misses are left out; each
/// hit slides as `cache_get` does.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_get_many(
    keys: Option<Array<&str>>,
) -> TableIterator<'static, (name!(key, String), name!(value, Vec<u8>))> {
    TableIterator::new(get_many("cache_get_many", keys, |_, value| value))
}

/// The live values of `keys` (checked, duplicates once, in order of first appearance), each
/// hit slid and counted, passed through `convert`.
pub(super) fn get_many<T>(
    function: &str,
    keys: Option<Array<&str>>,
    convert: impl Fn(&str, Vec<u8>) -> T,
) -> Vec<(String, T)> {
    let keys = checked_keys(function, keys);
    let mut seen = HashSet::with_capacity(keys.len());
    let unique: Vec<&str> = keys.iter().map(String::as_str).filter(|key| seen.insert(*key)).collect();
    let lookups = unique.len();
    let hits = store::hit_many(&unique);
    let found: Vec<(String, T)> = unique
        .into_iter()
        .zip(hits)
        .filter_map(|(key, hit)| {
            let value = hit?.value?;
            Some((key.to_owned(), convert(key, value)))
        })
        .collect();
    // Counted once per call: the counters are shared by every session of the database.
    stats::count(Counter::Hits, found.len() as i64);
    stats::count(Counter::Misses, (lookups - found.len()) as i64);
    found
}

/// Sets every pair with the same expiry and tags and returns the number of pairs given; of a key given
/// twice the last pair wins.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_set_many(
    keys: Option<Array<&str>>,
    vals: Option<Array<&[u8]>>,
    ttl: default!(Option<Interval>, "NULL"),
    sliding: default!(Option<Interval>, "NULL"),
    expires_at: default!(Option<TimestampWithTimeZone>, "NULL"),
    tags: default!(Option<Array<&str>>, "NULL"),
) -> i64 {
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
    let policy = Policy::from_arguments(FUNCTION, now, ttl, sliding, expires_at);
    // Key order (byte-wise, as the primary key sorts), the last value of a repeated key.
    let pairs: BTreeMap<&str, &[u8]> =
        keys.iter().map(String::as_str).zip(vals.iter().map(Vec::as_slice)).collect();
    let pairs: Vec<(&str, &[u8])> = pairs.into_iter().collect();
    store::set_many(&pairs, policy, now, tags.as_deref());
    stats::count(Counter::Sets, pairs.len() as i64);
    keys.len() as i64
}

/// Removes the keys; returns how many live entries were removed.
#[pg_extern(volatile, parallel_unsafe)]
fn cache_remove_many(keys: Option<Array<&str>>) -> i64 {
    let keys: BTreeSet<String> = checked_keys("cache_remove_many", keys).into_iter().collect();
    let removed = keys.iter().filter(|key| store::remove(key)).count() as i64;
    stats::count(Counter::Removes, removed);
    removed
}
