-- pg_cache: cache_get_many of 100 absolute entries, the rows returned to the client (keys/s =
-- calls/s x 100).
\set k random(1, :keys - 100)
SELECT key, value FROM cache_get_many(ARRAY(SELECT 'a:' || (:k + i) FROM generate_series(0, 99) i));
