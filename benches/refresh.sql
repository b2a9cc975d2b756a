-- pg_cache: cache_refresh of sliding entries.
\set k random(1, :keys)
SELECT cache_refresh('s:' || :k);
