//! Tags: labels given to entries when they are set, and removal of every entry with a tag in one
//! statement, in the caller's transaction.

use super::{checked_key, checked_tags};
use crate::error;
use crate::shmem::stats::{self, Counter};
use crate::store;
use pgrx::datum::Array;
use pgrx::prelude::*;

/// A live entry's tags (an empty array when it has none); NULL when absent or expired.
#[pg_extern(name = "cache_tags", volatile, parallel_unsafe)]
pub(super) fn cache_tags_in_cache(
    key: Option<&str>,
    cache: default!(Option<&str>, "'default'"),
) -> Option<Vec<String>> {
    crate::access::caches::with_named("cache_tags", cache, || {
        let key = checked_key("cache_tags", "key", key);
        store::tags_of(key).map(Option::unwrap_or_default)
    })
}

/// Removes every entry, live or expired, that has any of `tags` (all of them when `match_all`);
/// returns how many live ones it removed.
#[pg_extern(name = "cache_remove_by_tag", volatile, parallel_unsafe)]
pub(super) fn cache_remove_by_tag_in_cache(
    tags: Option<Array<&str>>,
    match_all: default!(Option<bool>, "false"),
    cache: default!(Option<&str>, "'default'"),
) -> i64 {
    crate::access::caches::with_named("cache_remove_by_tag", cache, || {
        const FUNCTION: &str = "cache_remove_by_tag";
        let tags = error::required(FUNCTION, "tags", tags);
        let match_all = error::required(FUNCTION, "match_all", match_all);
        let tags = checked_tags(FUNCTION, &tags);
        if tags.is_empty() {
            error::invalid_argument(FUNCTION, "tags must name at least one tag");
        }
        let removed = store::remove_by_tag(&tags, match_all);
        stats::count(Counter::Removes, removed);
        removed
    })
}
