-- Baseline: a plain upsert of keys never seen before into an UNLOGGED table.
\set k random(1, 1000000000000000)
INSERT INTO bench_plain_new (id, value) VALUES ('n:' || :k, :value) ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value;
