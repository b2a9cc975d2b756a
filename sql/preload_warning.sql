-- Without shared_preload_libraries the cache works, but nothing evicts expired entries in the
-- background: say so, and how to fix it. A WARNING, because CREATE EXTENSION runs its script with
-- client_min_messages raised to WARNING, which would swallow a NOTICE.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1
        FROM pg_catalog.unnest(pg_catalog.string_to_array(pg_catalog.current_setting('shared_preload_libraries'), ',')) AS library
        WHERE pg_catalog.btrim(library, ' "') IN ('pg_cache', '$libdir/pg_cache')
    ) THEN
        RAISE WARNING 'pg_cache: the background eviction worker is not running, because pg_cache is not in shared_preload_libraries'
            USING HINT = 'Add pg_cache to shared_preload_libraries and restart the server, or call cache_evict_expired() on a schedule (for example with pg_cron). Expired entries are never returned either way.';
    END IF;
END
$$;
