-- Baseline: a plain SELECT of 100 keys with = ANY on an UNLOGGED table, the rows returned to the
-- client (as cache_get_many's are: a count(*) would let the planner skip the values with an
-- index-only scan, which no cache read can do).
\set k random(1, :keys - 100)
SELECT id, value FROM bench_plain WHERE id = ANY (ARRAY(SELECT 'a:' || (:k + i) FROM generate_series(0, 99) i));
