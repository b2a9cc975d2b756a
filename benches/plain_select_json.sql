-- Baseline: a primary-key SELECT of a jsonb column on an UNLOGGED table.
\set k random(1, :keys)
SELECT doc FROM bench_json WHERE id = 'j:' || :k;
