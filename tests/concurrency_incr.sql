-- tests/reliability.sh: 8 clients increment 10 counters; the sum must come out exact.
\set k random(1, 10)
SELECT cache_incr('incr:' || :k);
