-- pg_cache: cache_add of keys that are live (returns false, writes nothing).
\set k random(1, :keys)
SELECT cache_add('a:' || :k, :value, ttl => '1 hour');
