-- Baseline: a plain upsert on a logged table.
\set k random(1, :keys)
INSERT INTO bench_plain_logged (id, value) VALUES ('a:' || :k, :value) ON CONFLICT (id) DO UPDATE SET value = EXCLUDED.value;
