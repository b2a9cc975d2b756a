-- tests/safety.sh: sets and reads of 60 keys that all exist (1 hour ttls), and sets, adds and
-- increments of keys never seen before, while REINDEX TABLE CONCURRENTLY runs. A read that
-- misses, or a value that is not whole, is an error.
\set k random(1, 60)
\set n random(1, 1000000000000)
\set op random(1, 10)
\if :op <= 4
SELECT cache_set('ri:' || :k, convert_to(repeat(chr(97 + :op), :k * 30), 'UTF8'), ttl => '1 hour');
\elif :op = 5
SELECT cache_set('new:' || :n, 'v', ttl => '1 hour'), cache_add('added:' || :n, 'v', ttl => '1 hour'),
       cache_incr('counted:' || :n, ttl => '1 hour');
\else
SELECT CASE WHEN length(v) = :k * 30 THEN 1 ELSE ('missing or torn: ' || coalesce(v, 'NULL'))::int END
FROM (SELECT convert_from(cache_get('ri:' || :k), 'UTF8') AS v) AS read;
\endif
