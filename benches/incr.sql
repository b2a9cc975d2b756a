-- pg_cache: cache_incr on 1,000 counters.
\set k random(1, 1000)
SELECT cache_incr('c:' || :k, ttl => '1 hour');
