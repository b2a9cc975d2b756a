-- Baseline: a primary-key SELECT on an UNLOGGED table, nothing else.
\set k random(1, :keys)
SELECT value FROM bench_plain WHERE id = 'a:' || :k;
