-- pg_cache: cache_set of keys never seen before (1 s ttls: the evictor keeps the table bounded).
\set k random(1, 1000000000000000)
SELECT cache_set('n:' || :k, :value, ttl => '1 s');
