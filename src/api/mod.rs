//! The SQL functions, grouped as the README groups them. Each checks its arguments and counts
//! its statistics; the work is done by `store`. Arguments are nullable at the SQL level so that a
//! NULL gets a clear 22004 error naming it, instead of a silent NULL result. The Rust names are
//! the SQL names: pgrx binds each function to the symbol `<name>_wrapper`, which installed SQL
//! refers to, so a released name and signature never change. A released function whose arguments
//! change gets a new Rust name (`#[pg_extern(name = …)]`), and its old symbol stays in `legacy`.

mod batch;
mod caches;
mod conditional;
mod counters;
mod entries;
mod json;
mod leases;
mod legacy;
mod maintenance;
mod statistics;
mod tags;

use crate::error::{self, required};
use pgrx::datum::Array;
use std::collections::HashSet;

/// Keys longer than this are rejected: the primary-key index cannot hold much larger ones.
const MAX_KEY_BYTES: usize = 2048;

/// Values larger than this are rejected: read back as text (bytea's hex output, what most clients
/// ask for), a larger value would pass PostgreSQL's 1 GB limit for one allocation.
const MAX_VALUE_BYTES: usize = 500 * 1024 * 1024;

/// Keys (or pairs) one batch call takes at most: a batch holds its row locks to the end of the
/// transaction, and its result is built in memory.
const MAX_BATCH_KEYS: usize = 10_000;

/// Tags one entry has at most, and the bytes of one tag.
const MAX_TAGS: usize = 64;
const MAX_TAG_BYTES: usize = 256;

/// Checks a key as every function does; `argument` names it in errors (`key`, `keys[3]`).
fn checked_key<'a>(function: &str, argument: impl std::fmt::Display, key: Option<&'a str>) -> &'a str {
    let Some(key) = key else {
        error::null_argument(function, &argument.to_string());
    };
    if key.is_empty() {
        error::invalid_argument(function, format!("{argument} must not be empty"));
    }
    if key.len() > MAX_KEY_BYTES {
        error::limit_exceeded(
            function,
            format!("{argument} is {} bytes long; the maximum is {MAX_KEY_BYTES} bytes", key.len()),
        );
    }
    key
}

fn checked_value<'a>(function: &str, argument: impl std::fmt::Display, value: Option<&'a [u8]>) -> &'a [u8] {
    let Some(value) = value else {
        error::null_argument(function, &argument.to_string());
    };
    if value.len() > MAX_VALUE_BYTES {
        error::limit_exceeded(
            function,
            format!("{argument} is {} bytes long; the maximum is {MAX_VALUE_BYTES} bytes", value.len()),
        );
    }
    value
}

/// The elements of an array argument, none NULL, at most [`MAX_BATCH_KEYS`], each passed to
/// `check` with its name in errors (`keys[1]` for the first).
fn checked_elements<T, R>(
    function: &str,
    argument: &str,
    elements: Option<impl ExactSizeIterator<Item = Option<T>>>,
    check: impl Fn(Element, Option<T>) -> R,
) -> Vec<R> {
    let elements = required(function, argument, elements);
    if elements.len() > MAX_BATCH_KEYS {
        error::limit_exceeded(
            function,
            format!("{argument} has {} elements; the maximum is {MAX_BATCH_KEYS}", elements.len()),
        );
    }
    elements.enumerate().map(|(i, element)| check(Element { argument, index: i + 1 }, element)).collect()
}

/// The name of an array element in error messages (`keys[3]`), formatted only for an error.
struct Element<'a> {
    argument: &'a str,
    index: usize,
}

impl std::fmt::Display for Element<'_> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}[{}]", self.argument, self.index)
    }
}

/// The keys of a `keys text[]` argument, each checked as `cache_get` checks its key.
fn checked_keys(function: &str, keys: Option<Array<&str>>) -> Vec<String> {
    let keys = keys.as_ref().map(|keys| keys.iter());
    checked_elements(function, "keys", keys, |name, key| checked_key(function, name, key).to_owned())
}

/// The values of a `vals bytea[]` argument, each checked as `cache_set` checks its value.
fn checked_values(function: &str, vals: Option<Array<&[u8]>>) -> Vec<Vec<u8>> {
    let vals = vals.as_ref().map(|vals| vals.iter());
    checked_elements(function, "vals", vals, |name, value| checked_value(function, name, value).to_vec())
}

/// The tags of a `tags text[]` argument: each non-empty and at most [`MAX_TAG_BYTES`], no NULL
/// element, duplicates collapsed (the first kept), at most [`MAX_TAGS`] distinct ones.
fn checked_tags(function: &str, tags: &Array<&str>) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut distinct = Vec::new();
    for (i, tag) in tags.iter().enumerate() {
        let name = || format!("tags[{}]", i + 1);
        let tag = tag.unwrap_or_else(|| error::null_argument(function, &name()));
        if tag.is_empty() {
            error::invalid_argument(function, format!("{} must not be empty", name()));
        }
        if tag.len() > MAX_TAG_BYTES {
            error::limit_exceeded(
                function,
                format!("{} is {} bytes long; the maximum is {MAX_TAG_BYTES} bytes", name(), tag.len()),
            );
        }
        if seen.insert(tag) {
            distinct.push(tag.to_owned());
        }
    }
    if distinct.len() > MAX_TAGS {
        error::limit_exceeded(
            function,
            format!("tags has {} distinct tags; the maximum is {MAX_TAGS}", distinct.len()),
        );
    }
    distinct
}

/// The tags to give an entry: none for NULL or an empty array.
fn entry_tags(function: &str, tags: Option<Array<&str>>) -> Option<Vec<String>> {
    let tags = checked_tags(function, &tags?);
    (!tags.is_empty()).then_some(tags)
}

/// The expiry defaults of the running call's cache.
fn cache_defaults() -> crate::expiry::Defaults {
    let cache = crate::access::caches::current();
    crate::expiry::Defaults { sliding: cache.default_sliding, ttl: cache.default_ttl }
}

/// 42501 naming the table unless the current role holds every privilege in `modes` on it.
fn require_privileges(modes: u32) {
    let table = crate::access::table();
    if !crate::access::has_privileges(table, modes) {
        crate::access::refuse_privilege(table);
    }
}
