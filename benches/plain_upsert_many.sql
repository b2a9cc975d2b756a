-- Baseline for cache_set_many: one upsert of 100 rows (INSERT … SELECT unnest … ON CONFLICT DO
-- UPDATE) on an UNLOGGED table, the keys of set_many.sql.
\set k random(1, :keys - 100)
INSERT INTO bench_plain (id, value)
SELECT id, value FROM unnest(ARRAY(SELECT 'a:' || (:k + i) FROM generate_series(0, 99) i),
                             array_fill(:value::bytea, ARRAY[100])) AS batch (id, value)
ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value;
