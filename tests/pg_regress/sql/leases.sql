-- Leases (cache_get_or_lease, cache_fill, cache_release): answers, and every bad input with its
-- SQLSTATE. Orderings between sessions are in tests/isolation/specs/leases.spec; waiting, the
-- stampede, a killed holder and XFetch in tests/leases.sh.
SET pg_cache.refresh_granularity = 0;

-- a miss grants a lease (a version 4 UUID), the next caller waits; a fill stores, then hits
SELECT status, value IS NULL AS no_value, lease IS NOT NULL AS leased, ttl IS NULL AS no_ttl
FROM cache_get_or_lease('lease:a', beta => 0);
SELECT status, lease IS NULL AS not_leased FROM cache_get_or_lease('lease:a', beta => 0);
CREATE TEMP TABLE held AS SELECT 'lease:b'::text AS key, lease FROM cache_get_or_lease('lease:b', beta => 0);
SELECT substr(lease::text, 15, 1) = '4' AS version_4 FROM held;
SELECT cache_fill('lease:b', 'computed', (SELECT lease FROM held), ttl => '1 hour', tags => ARRAY['t']) AS stored;
SELECT status, convert_from(value, 'UTF8') AS value, lease IS NULL AS not_leased,
       ttl BETWEEN '59 min' AND '1 hour' AS ttl_of_fill
FROM cache_get_or_lease('lease:b', beta => 0);
SELECT cache_tags('lease:b') AS tags_of_fill;
-- the same lease cannot fill twice, nor can a lease of another key, nor one never granted
SELECT cache_fill('lease:b', 'again', (SELECT lease FROM held)) AS second_fill;
SELECT cache_fill('lease:a', 'other key', (SELECT lease FROM held)) AS other_key;
SELECT cache_fill('lease:a', 'made up', gen_random_uuid()) AS unknown_lease;
-- a released lease lets the next caller lease at once; releasing twice says false
CREATE TEMP TABLE released AS SELECT lease FROM cache_get_or_lease('lease:c', beta => 0);
SELECT cache_release('lease:c', (SELECT lease FROM released)) AS released,
       cache_release('lease:c', (SELECT lease FROM released)) AS released_again;
SELECT status FROM cache_get_or_lease('lease:c', beta => 0);
-- a live entry never needs a lease; an expired one does
SELECT cache_set('lease:d', 'live', ttl => '1 hour');
SELECT status, convert_from(value, 'UTF8') AS value FROM cache_get_or_lease('lease:d', beta => 0);
SELECT cache_set('lease:e', 'gone', expires_at => clock_timestamp() + interval '1 ms');
SELECT pg_sleep(0.01);
SELECT status FROM cache_get_or_lease('lease:e', beta => 0);
-- an entry that never expires has an infinite ttl and is never refreshed early
SELECT cache_set('lease:f', 'forever', expires_at => 'infinity');
SELECT status, ttl > interval '1000000 years' AS unbounded FROM cache_get_or_lease('lease:f', beta => 100);
-- the lease counters
SELECT leases_granted >= 4 AS granted, lease_waits >= 1 AS waits, fills_rejected >= 3 AS rejected FROM cache_stats();

-- under REPEATABLE READ a caller may not wait (it could never see the fill); without wait it may
BEGIN ISOLATION LEVEL REPEATABLE READ;
SELECT status FROM cache_get_or_lease('lease:a', beta => 0);
SELECT regress_error($$SELECT * FROM cache_get_or_lease('lease:a', wait => '1 s', beta => 0)$$) AS repeatable_read_wait;
ROLLBACK;

-- bad input: 22004 for NULLs, 22023 for intervals out of range or a bad beta
SELECT statement, regress_error(statement) FROM (VALUES
    ($$SELECT * FROM cache_get_or_lease(NULL)$$),
    ($$SELECT * FROM cache_get_or_lease('')$$),
    ($$SELECT * FROM cache_get_or_lease('k', lease_ttl => NULL)$$),
    ($$SELECT * FROM cache_get_or_lease('k', lease_ttl => '0')$$),
    ($$SELECT * FROM cache_get_or_lease('k', lease_ttl => '-1 s')$$),
    ($$SELECT * FROM cache_get_or_lease('k', lease_ttl => '2 days')$$),
    ($$SELECT * FROM cache_get_or_lease('k', wait => '-1 s')$$),
    ($$SELECT * FROM cache_get_or_lease('k', wait => NULL)$$),
    ($$SELECT * FROM cache_get_or_lease('k', wait => '25 hours')$$),
    ($$SELECT * FROM cache_get_or_lease('k', beta => -1)$$),
    ($$SELECT * FROM cache_get_or_lease('k', beta => 'NaN')$$),
    ($$SELECT * FROM cache_get_or_lease('k', beta => 'Infinity')$$),
    ($$SELECT * FROM cache_get_or_lease('k', beta => NULL)$$),
    ($$SELECT cache_fill('k', 'v', NULL)$$),
    ($$SELECT cache_fill(NULL, 'v', gen_random_uuid())$$),
    ($$SELECT cache_fill('k', NULL, gen_random_uuid())$$),
    ($$SELECT cache_fill('k', 'v', 'not a uuid')$$),
    ($$SELECT cache_fill('k', 'v', gen_random_uuid(), ttl => '-1 s')$$),
    ($$SELECT cache_release('k', NULL)$$),
    ($$SELECT cache_release(NULL, gen_random_uuid())$$)
) AS cases(statement);

SELECT cache_remove_prefix('lease:') >= 0 AS cleaned_up;
RESET pg_cache.refresh_granularity;
