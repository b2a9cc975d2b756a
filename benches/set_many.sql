-- pg_cache: cache_set_many of 100 pairs replacing absolute entries (keys/s = calls/s x 100).
\set k random(1, :keys - 100)
SELECT cache_set_many(ARRAY(SELECT 'a:' || (:k + i) FROM generate_series(0, 99) i),
                      array_fill(:value::bytea, ARRAY[100]), ttl => '1 hour');
