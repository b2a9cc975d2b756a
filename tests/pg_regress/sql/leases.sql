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
-- nor take a lease: a value computed from its snapshot could predate a write committed before it
SELECT regress_error($$SELECT * FROM cache_get_or_lease('lease:rr cold', beta => 0)$$) AS repeatable_read_miss;
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

-- a read-only transaction gets no lease: it could never fill it (25006); a hit is fine, and so
-- is a stale value while another caller recomputes
SELECT cache_set('lease:d', 'live', ttl => '1 hour');
SELECT cache_set('lease:ro stale', 'old', expires_at => clock_timestamp() + interval '1 ms');
SELECT pg_sleep(0.01);
SELECT status FROM cache_get_or_lease('lease:ro stale', lease_ttl => '1 hour', beta => 0);
BEGIN READ ONLY;
SELECT status FROM cache_get_or_lease('lease:d', beta => 0);
SELECT status, convert_from(value, 'UTF8') AS value FROM cache_get_or_lease('lease:ro stale', grace => '1 hour', beta => 0);
SELECT regress_error($$SELECT * FROM cache_get_or_lease('lease:read only', beta => 0)$$) AS read_only_miss;
ROLLBACK;

-- a fill whose write fails releases its lease at once (here a trigger refuses the row)
CREATE FUNCTION regress_refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$;
CREATE TRIGGER regress_refuse BEFORE INSERT OR UPDATE ON pg_cache_entries
    FOR EACH ROW WHEN (NEW.key LIKE 'lease:refused%') EXECUTE FUNCTION regress_refuse();
CREATE TEMP TABLE refused AS SELECT lease FROM cache_get_or_lease('lease:refused', lease_ttl => '1 hour', beta => 0);
SELECT regress_error($$SELECT cache_fill('lease:refused', 'v', (SELECT lease FROM refused))$$) AS failed_fill;
SELECT status FROM cache_get_or_lease('lease:refused', beta => 0) AS after_failed_fill;
-- ... also when an exception block catches the error (its rollback releases the lease), and the
-- work after it commits
DO $$
DECLARE granted uuid;
BEGIN
    SELECT lease INTO granted FROM cache_get_or_lease('lease:refused again', lease_ttl => '1 hour', beta => 0);
    BEGIN
        PERFORM cache_fill('lease:refused again', 'v', granted);
    EXCEPTION WHEN OTHERS THEN
        RAISE NOTICE 'caught: %', SQLERRM;
    END;
    PERFORM cache_set('lease:after the catch', 'kept');
END
$$;
SELECT convert_from(cache_get('lease:after the catch'), 'UTF8') AS work_after_the_catch;
SELECT status AS released_by_the_catch FROM cache_get_or_lease('lease:refused again', beta => 0);
DROP TRIGGER regress_refuse ON pg_cache_entries;
DROP FUNCTION regress_refuse();

-- a transaction that has written does not wait for another caller's fill (it may hold a lock
-- the fill needs): it answers wait at once
CREATE TEMP TABLE other_holder AS SELECT lease FROM cache_get_or_lease('lease:held', lease_ttl => '1 hour', beta => 0);
BEGIN;
SET LOCAL statement_timeout = '3s';
SELECT cache_remove('lease:held');
SELECT status FROM cache_get_or_lease('lease:held', wait => '1 hour', beta => 0) AS writer_does_not_wait;
ROLLBACK;

-- one key written 10,001 times in a transaction names one key: other keys' leases stay
CREATE TEMP TABLE unrelated AS SELECT lease FROM cache_get_or_lease('lease:unrelated', lease_ttl => '1 hour', beta => 0);
SELECT count(cache_incr('lease:counter')) AS increments FROM generate_series(1, 10001);
SELECT cache_fill('lease:unrelated', 'v', (SELECT lease FROM unrelated)) AS unrelated_fill;

SELECT cache_remove_prefix('lease:') >= 0 AS cleaned_up;
