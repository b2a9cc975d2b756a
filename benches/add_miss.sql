-- pg_cache: cache_add of new keys (1 s ttls keep the table bounded).
\set k random(1, 1000000000000)
SELECT cache_add('n:' || :k, :value, ttl => '1 s');
