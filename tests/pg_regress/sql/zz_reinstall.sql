-- Runs last: dropping and creating the extension again in a session that has used it. What the
-- session remembered of the old table (its kept plans, its OIDs) must not leak into the new one.
SELECT cache_set('before reinstall', 'old'), cache_get('before reinstall') = 'old' AS used;
DROP EXTENSION pg_cache;
CREATE EXTENSION pg_cache;
SELECT cache_get('before reinstall') IS NULL AS new_table_is_empty;
SELECT cache_set('after reinstall', 'new');
SELECT convert_from(cache_get('after reinstall'), 'UTF8') AS read_from_new_table, cache_refresh('after reinstall') AS refreshed,
       cache_remove('after reinstall') AS removed, cache_evict_expired() AS evicted;
