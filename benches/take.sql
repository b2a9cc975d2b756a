-- pg_cache: cache_take of a live entry: each call adds a new key and takes it in one statement
-- (compare with "add miss", which only adds: the difference is the take).
\set k random(1, 1000000000000)
SELECT cache_take('t:' || :k) FROM (SELECT cache_add('t:' || :k, :value, ttl => '1 min')) AS added;
