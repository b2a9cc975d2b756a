-- Baseline: a plain SELECT of 100 keys with = ANY on an UNLOGGED table.
\set k random(1, :keys - 100)
SELECT count(*) FROM (SELECT id, value FROM bench_plain WHERE id = ANY (ARRAY(SELECT 'a:' || (:k + i) FROM generate_series(0, 99) i))) AS hits;
