-- Baseline: a plain upsert on an UNLOGGED table.
\set k random(1, :keys)
INSERT INTO bench_plain (id, value) VALUES ('a:' || :k, :value) ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value;
