-- Baseline: a primary-key SELECT on a plain logged table.
\set k random(1, :keys)
SELECT value FROM bench_plain_logged WHERE id = 'a:' || :k;
