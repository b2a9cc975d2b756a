-- Bad input: a clear error with the right SQLSTATE, naming the argument, and no other entry touched.
SELECT cache_set('sentinel', 'untouched', ttl => '1 hour');
CREATE TEMP TABLE entries_before AS SELECT * FROM regress_long_lived_entries();

SELECT statement, regress_error(statement) FROM (VALUES
    -- NULL arguments: 22004
    ($$SELECT cache_set(NULL, 'v')$$),
    ($$SELECT cache_set('bad input', NULL)$$),
    ($$SELECT cache_get(NULL)$$),
    ($$SELECT cache_refresh(NULL)$$),
    ($$SELECT cache_remove(NULL)$$),
    ($$SELECT cache_ttl(NULL)$$),
    ($$SELECT cache_evict_expired(NULL)$$),
    -- the empty key: 22023
    ($$SELECT cache_set('', 'v')$$),
    ($$SELECT cache_get('')$$),
    -- a key over 2048 bytes: 54000
    ($$SELECT cache_set(repeat('x', 2049), 'v')$$),
    ($$SELECT cache_get(repeat('x', 2049))$$),
    ($$SELECT cache_set(repeat(U&'\00E9', 1024) || 'x', 'v')$$),
    -- expiry arguments: 22023
    ($$SELECT cache_set('bad input', 'v', ttl => '1 min', expires_at => clock_timestamp() + interval '1 hour')$$),
    ($$SELECT cache_set('bad input', 'v', ttl => '0')$$),
    ($$SELECT cache_set('bad input', 'v', ttl => '-1 s')$$),
    ($$SELECT cache_set('bad input', 'v', sliding => '0')$$),
    ($$SELECT cache_set('bad input', 'v', sliding => '-5 min')$$),
    ($$SELECT cache_set('bad input', 'v', sliding => '1 day -25 hours')$$),
    ($$SELECT cache_set('bad input', 'v', expires_at => '2000-01-01 00:00:00+00')$$),
    ($$SELECT cache_set('bad input', 'v', expires_at => '-infinity')$$),
    -- expiries past the end of timestamptz: 22008
    ($$SELECT cache_set('bad input', 'v', sliding => '1000000 years')$$),
    ($$SELECT cache_set('bad input', 'v', ttl => '1000000 years')$$),
    -- max_rows below 1: 22023
    ($$SELECT cache_evict_expired(0)$$),
    ($$SELECT cache_evict_expired(-1)$$)
) AS cases(statement);

-- a read-only transaction cannot write, whether the key exists or not: 25006
BEGIN READ ONLY;
SELECT regress_error($$SELECT cache_set('sentinel', 'overwritten')$$) AS existing_key,
       regress_error($$SELECT cache_set('new in read-only', 'v')$$) AS new_key;
ROLLBACK;
SELECT convert_from(cache_get('sentinel'), 'UTF8') AS sentinel;

SELECT count(*) AS changed_entries
FROM (SELECT * FROM entries_before EXCEPT SELECT key, value, expires_at FROM pg_cache_entries) AS changed;
SELECT cache_get('bad input') IS NULL AS nothing_stored;
