//! Settings under the `pg_cache.` prefix.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

/// Sliding window given to an entry set with none of ttl, sliding and expires_at (seconds).
pub static DEFAULT_SLIDING_EXPIRATION: GucSetting<i32> = GucSetting::<i32>::new(20 * 60);

/// A sliding hit rewrites the row only when the expiry would move by more than this (ms).
pub static REFRESH_GRANULARITY: GucSetting<i32> = GucSetting::<i32>::new(1000);

/// Sleep between two sweeps of the eviction worker (ms).
pub static EVICTION_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(1000);

/// Rows the eviction worker deletes per transaction.
pub static EVICTION_BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(10_000);

/// Eviction workers running at once across the server.
pub static MAX_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(2);

/// Size cap of each database's cache (kB; 0: none).
pub static MAX_SIZE: GucSetting<i32> = GucSetting::<i32>::new(0);

/// Whether the eviction worker sweeps at all.
pub static EVICTION_ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);

/// Whether committed changes are announced on the invalidation channel (see `invalidation`).
pub static NOTIFY: GucSetting<bool> = GucSetting::<bool>::new(false);

/// Whether the statistics counters count.
pub static TRACK_STATS: GucSetting<bool> = GucSetting::<bool>::new(true);

/// Invalidation relays running at once across the server.
pub static MAX_RELAYS: GucSetting<i32> = GucSetting::<i32>::new(2);

/// Whether the feed's notifications go through the database's relay worker.
pub static NOTIFY_RELAY: GucSetting<bool> = GucSetting::<bool>::new(true);

/// How long the eviction worker keeps expired entries, so that `cache_get_or_lease(grace => …)`
/// can serve them stale while one caller recomputes (seconds; 0: none).
pub static STALE_RETENTION: GucSetting<i32> = GucSetting::<i32>::new(0);

/// Leases one database may hold at once (the lease table holds 8,191 across the server).
pub static MAX_LEASES_PER_DATABASE: GucSetting<i32> = GucSetting::<i32>::new(1024);

/// Pending touches (deferred slides) one database may have at once.
pub static MAX_TOUCHES_PER_DATABASE: GucSetting<i32> = GucSetting::<i32>::new(8192);

/// Caches across the server whose statistics and size accounting live in shared memory.
pub static MAX_CACHES: GucSetting<i32> = GucSetting::<i32>::new(1024);

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
    GucRegistry::define_int_guc(
        c"pg_cache.eviction_interval",
        c"Sleep between two sweeps of the eviction worker.",
        c"A sweep deletes expired entries in batches until a batch comes back short.",
        &EVICTION_INTERVAL,
        10,
        24 * 60 * 60 * 1000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_cache.eviction_batch_size",
        c"Expired entries the eviction worker deletes per transaction.",
        c"Locks are held for one batch at most.",
        &EVICTION_BATCH_SIZE,
        1,
        1_000_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_cache.eviction_enabled",
        c"Whether the eviction worker deletes expired entries.",
        c"Off: expired entries stay stored (never returned) until cache_evict_expired() or a set replaces them.",
        &EVICTION_ENABLED,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_cache.notify",
        c"Whether each committed transaction that changed entries sends a notification on pg_cache_invalidation.",
        c"One NOTIFY per transaction, with a JSON payload naming the keys, tags and prefixes changed, or {\"all\": true}. \
          Set it per database, role or session.",
        &NOTIFY,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_cache.track_stats",
        c"Whether calls are counted in cache_stats().",
        c"Off: the counters stay as they are (as track_counts does for the server's own statistics).",
        &TRACK_STATS,
        GucContext::Suset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_cache.max_relays",
        c"Invalidation relays running at once across the server.",
        c"Each takes a background worker slot (max_worker_processes). Databases beyond it have their \
          transactions send their own notifications.",
        &MAX_RELAYS,
        0,
        32,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_cache.notify_relay",
        c"Whether pg_cache.notify's changes are sent by the database's relay worker.",
        c"On (with pg_cache preloaded): a committing transaction hands its changes to the relay, which sends \
          what committed since its last notification as one NOTIFY. Off: each transaction sends its own NOTIFY \
          at commit, which serialises committing transactions.",
        &NOTIFY_RELAY,
        GucContext::Userset,
        GucFlags::default(),
    );
    // A postmaster setting can only be defined while the library is preloaded.
    // SAFETY: reads a flag PostgreSQL sets while it loads preloaded libraries.
    if unsafe { pgrx::pg_sys::process_shared_preload_libraries_in_progress } {
        define_postmaster_settings();
    }
    GucRegistry::define_int_guc(
        c"pg_cache.max_size",
        c"Cap on the key and value bytes of a database's live entries; 0 for none.",
        c"Over it, the eviction worker removes the entries that expire soonest until below 90% of it. \
          Set it per database with ALTER DATABASE … SET.",
        &MAX_SIZE,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_KB,
    );
    GucRegistry::define_int_guc(
        c"pg_cache.max_leases_per_database",
        c"Leases (cache_get_or_lease) one database may hold at once.",
        c"The lease table in shared memory holds 8,191 leases across the server; this keeps one \
          database from taking them all. A miss beyond it is refused with 53400.",
        &MAX_LEASES_PER_DATABASE,
        1,
        8191,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_cache.max_touches_per_database",
        c"Sliding hits one database may have pending at once, waiting for the worker to write them.",
        c"A sliding hit records its new expiry in shared memory (32,768 across the server) and the \
          eviction worker writes it; past this many in one database a hit slides the row itself.",
        &MAX_TOUCHES_PER_DATABASE,
        0,
        32_768,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_cache.stale_retention",
        c"How long the eviction worker keeps expired entries for cache_get_or_lease's grace.",
        c"An expired entry is never returned by the other functions; cache_get_or_lease(grace => …) \
          serves one that expired less than grace ago while another caller recomputes it. Over the \
          size cap, kept entries are removed first. Set it per database with ALTER DATABASE … SET.",
        &STALE_RETENTION,
        0,
        24 * 60 * 60,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    // A misspelled pg_cache.* setting is an error, not a silently ignored placeholder.
    // SAFETY: a NUL-terminated prefix, called from _PG_init.
    unsafe { pgrx::pg_sys::MarkGUCPrefixReserved(c"pg_cache".as_ptr()) };
}

pub fn stale_retention_micros() -> i64 {
    i64::from(STALE_RETENTION.get()) * 1_000_000
}

pub fn default_sliding_micros() -> i64 {
    i64::from(DEFAULT_SLIDING_EXPIRATION.get()) * 1_000_000
}

pub fn refresh_granularity_micros() -> i64 {
    i64::from(REFRESH_GRANULARITY.get()) * 1_000
}

fn define_postmaster_settings() {
    GucRegistry::define_int_guc(
        c"pg_cache.max_workers",
        c"Eviction workers running at once across the server.",
        c"Each takes a background worker slot (max_worker_processes) while it sweeps a database.",
        &MAX_WORKERS,
        1,
        64,
        GucContext::Postmaster,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_cache.max_caches",
        c"Caches (of all databases together) the server keeps statistics and size caps for.",
        c"Each cache takes one slot of shared memory (about 150 bytes) on first use; the worker \
          frees the slots of dropped caches. cache_create refuses a cache past it with 53400.",
        &MAX_CACHES,
        1,
        65_536,
        GucContext::Postmaster,
        GucFlags::default(),
    );
}
