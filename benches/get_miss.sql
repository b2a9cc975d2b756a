-- pg_cache: cache_get on keys that are not there.
\set k random(1, :keys)
SELECT cache_get('missing:' || :k);
