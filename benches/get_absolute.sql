-- pg_cache: cache_get hits on entries with an absolute expiry.
\set k random(1, :keys)
SELECT cache_get('a:' || :k);
