-- pg_cache: cache_set replacing entries with an absolute expiry.
\set k random(1, :keys)
SELECT cache_set('a:' || :k, :value, ttl => '1 hour');
