-- pg_cache: cache_get_many of 100 absolute entries (keys/s = calls/s x 100).
\set k random(1, :keys - 100)
SELECT count(*) FROM cache_get_many(ARRAY(SELECT 'a:' || (:k + i) FROM generate_series(0, 99) i));
