-- pg_cache: cache_get hits on entries with an absolute expiry and three tags.
\set k random(1, :keys)
SELECT cache_get('t:' || :k);
