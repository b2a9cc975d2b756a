-- The Redis-class operations of 0.2.0: conditional set, take, counters, expiry control, batches,
-- listing and removal by prefix, clearing, statistics. Keys start with 'ops:'.
SELECT cache_stats_reset();

-- cache_add: sets only when no live entry has the key.
SELECT cache_add('ops:lock', 'owner-1', ttl => '1 min') AS first,
       cache_add('ops:lock', 'owner-2', ttl => '1 min') AS second,
       convert_from(cache_get('ops:lock'), 'UTF8') AS holder;
-- an expired entry not yet evicted counts as absent and is replaced
SELECT cache_set('ops:stale', 'old', expires_at => clock_timestamp() + interval '100 ms');
SELECT pg_sleep(0.2);
SELECT cache_add('ops:stale', 'new', ttl => '1 hour') AS replaced_expired,
       convert_from(cache_get('ops:stale'), 'UTF8') AS value,
       cache_ttl('ops:stale') > interval '59 min' AS got_new_expiry;
-- rolled back: the key is free again
BEGIN;
SELECT cache_add('ops:tx', 'v');
ROLLBACK;
SELECT cache_add('ops:tx', 'v') AS free_after_rollback;

-- cache_take: returns a live value and removes it; NULL when absent or expired.
SELECT cache_set('ops:token', 'one-time', ttl => '1 min');
SELECT convert_from(cache_take('ops:token'), 'UTF8') AS taken,
       cache_take('ops:token') IS NULL AS second_take_gets_nothing,
       cache_get('ops:token') IS NULL AS gone;
SELECT cache_set('ops:expired token', 'x', expires_at => clock_timestamp() + interval '100 ms');
SELECT pg_sleep(0.2);
SELECT cache_take('ops:expired token') IS NULL AS expired_take;
SELECT count(*) AS rows_left FROM pg_cache_entries WHERE key = 'ops:expired token';

-- cache_incr: creates with delta, adds, keeps the expiry of a live counter.
SELECT cache_incr('ops:hits') AS created, cache_incr('ops:hits') AS incremented,
       cache_incr('ops:hits', 40) AS plus_40, cache_incr('ops:hits', -50) AS minus_50;
SELECT convert_from(cache_get('ops:hits'), 'UTF8') AS stored_as_text;
SELECT sliding = interval '20 min' AS default_window FROM pg_cache_entries WHERE key = 'ops:hits';
SELECT cache_incr('ops:window', 1, ttl => '1 min') AS first;
CREATE TEMP TABLE window_expiry AS SELECT expires_at FROM pg_cache_entries WHERE key = 'ops:window';
SELECT cache_incr('ops:window', 1, ttl => '1 hour') AS second;
SELECT p.expires_at = w.expires_at AS expiry_kept, p.sliding IS NULL AS still_absolute
FROM pg_cache_entries p, window_expiry w WHERE p.key = 'ops:window';
SELECT cache_set('ops:text', 'abc');
SELECT cache_set('ops:max', '9223372036854775807');
SELECT cache_set('ops:spaced', ' 5');
SELECT cache_set('ops:neg', '-7');
SELECT cache_incr('ops:neg', 2) AS negative_counter;
SELECT statement, regress_error(statement) FROM (VALUES
    ($$SELECT cache_incr('ops:text')$$),
    ($$SELECT cache_incr('ops:spaced')$$),
    ($$SELECT cache_incr('ops:max')$$),
    ($$SELECT cache_incr('ops:neg', -9223372036854775807)$$),
    ($$SELECT cache_incr('ops:hits', NULL)$$),
    ($$SELECT cache_incr(NULL)$$)
) AS cases(statement);
SELECT convert_from(cache_get('ops:text'), 'UTF8') AS text_untouched,
       convert_from(cache_get('ops:max'), 'UTF8') AS max_untouched;
-- create_missing => false (Django's incr, memcached's): only a live counter is counted; an absent
-- or expired one stays absent and the result is NULL
SELECT cache_incr('ops:live only', create_missing => false) IS NULL AS absent_stays_null,
       (SELECT count(*) FROM pg_cache_entries WHERE key = 'ops:live only') AS rows_created;
SELECT cache_incr('ops:hits', 5, create_missing => false) AS live_counted;
SELECT cache_set('ops:gone counter', '7', ttl => '1 ms');
SELECT pg_sleep(0.01);
SELECT cache_incr('ops:gone counter', create_missing => false) IS NULL AS expired_stays_null,
       (SELECT convert_from(value, 'UTF8') FROM pg_cache_entries WHERE key = 'ops:gone counter') AS expired_row_untouched;
SELECT regress_error($$SELECT cache_incr('ops:text', create_missing => false)$$) AS live_text_refused;
SELECT regress_error($$SELECT cache_incr('ops:live only', create_missing => NULL)$$) AS null_create_missing;
SELECT regress_error($$SELECT cache_incr('ops:live only', ttl => '-1 s', create_missing => false)$$) AS bad_expiry_checked_first;

-- an expired counter starts again at delta
SELECT cache_set('ops:old counter', '41', expires_at => clock_timestamp() + interval '100 ms');
SELECT pg_sleep(0.2);
SELECT cache_incr('ops:old counter', 5, ttl => '1 min') AS restarted;

-- cache_expire: a new expiry policy without rewriting the value.
SELECT cache_set('ops:expire', 'kept', ttl => '1 min');
SELECT cache_expire('ops:expire', sliding => '10 min') AS changed,
       convert_from(cache_get('ops:expire'), 'UTF8') AS value;
SELECT sliding = interval '10 min' AS now_sliding, absolute_expires_at IS NULL AS no_cap
FROM pg_cache_entries WHERE key = 'ops:expire';
SELECT cache_expire('ops:expire', ttl => '2 hours') AS changed_again,
       cache_ttl('ops:expire') > interval '119 min' AS two_hours;
SELECT cache_expire('ops:absent', ttl => '1 min') AS absent;
SELECT regress_error($$SELECT cache_expire('ops:expire')$$) AS no_expiry_given;

-- Batches.
SELECT cache_set_many(ARRAY['ops:b1', 'ops:b2', 'ops:b3', 'ops:b2'],
                      ARRAY['one', 'two', 'three', 'two again']::bytea[], ttl => '1 hour') AS pairs_given;
SELECT key, convert_from(value, 'UTF8') AS value
FROM cache_get_many(ARRAY['ops:b3', 'ops:missing', 'ops:b1', 'ops:b3', 'ops:b2']);
SELECT count(*) AS empty_batch FROM cache_get_many('{}');
SELECT cache_remove_many(ARRAY['ops:b1', 'ops:b2', 'ops:missing', 'ops:b1']) AS removed,
       cache_get('ops:b3') IS NOT NULL AS b3_kept;

-- Listing and removing by prefix (in a transaction: the eviction worker cannot see, and so
-- cannot remove, the expired entry before cache_remove_prefix counts it).
BEGIN;
SELECT cache_set_many(ARRAY['ops:p:a', 'ops:p:b', 'ops:p:c', 'ops:pz', 'ops:q'],
                      ARRAY['1', '22', '333', '4', '5']::bytea[], ttl => '1 hour');
SELECT cache_set('ops:p:expired', 'x', expires_at => clock_timestamp() + interval '100 ms');
SELECT pg_sleep(0.2);
SELECT key, value_bytes, sliding, absolute_expires_at = expires_at AS absolute FROM cache_keys('ops:p:');
SELECT key FROM cache_keys('ops:p', max_rows => 2);
SELECT count(*) AS everything_listed FROM cache_keys() WHERE key LIKE 'ops:p%';
SELECT cache_remove_prefix('ops:p:') AS removed_with_expired;
SELECT key FROM cache_keys('ops:p');
COMMIT;
-- a prefix ending in the last byte values still finds its range
SELECT cache_set(U&'ops:\00FF', 'a'), cache_set(U&'ops:\00FF\00FF', 'b'), cache_set(U&'ops:\0100', 'c');
SELECT key = U&'ops:\00FF\00FF' AS found FROM cache_keys(U&'ops:\00FF\00FF');
SELECT count(*) AS two FROM cache_keys(U&'ops:\00FF');

-- Statistics: hits and misses per key looked up, sets per entry written, removes per live
-- entry removed.
SELECT cache_stats_reset();
SELECT cache_set('ops:s', 'v'), cache_get('ops:s'), cache_get('ops:absent'), cache_refresh('ops:s');
SELECT count(*) FROM cache_get_many(ARRAY['ops:s', 'ops:absent', 'ops:absent 2']);
SELECT cache_set_many(ARRAY['ops:s1', 'ops:s2'], ARRAY['1', '2']::bytea[]);
SELECT cache_add('ops:s', 'v') AS not_added, cache_take('ops:s1') IS NOT NULL AS taken;
SELECT cache_remove('ops:s2'), cache_remove('ops:s2');
SELECT hits, misses, sets, removes, since <= clock_timestamp() AS since_ok FROM cache_stats();
BEGIN;
SELECT cache_get('ops:s') IS NOT NULL AS hit_in_rolled_back_transaction;
ROLLBACK;
SELECT hits AS rolled_back_calls_count FROM cache_stats();
SELECT entries >= 0 AS has_entries, total_bytes > 0 AS has_size FROM cache_stats();
-- pg_cache.track_stats = off: calls are not counted
SELECT cache_stats_reset();
SET pg_cache.track_stats = off;
SELECT cache_get('ops:absent'), cache_set('ops:uncounted', 'v');
SELECT hits, misses, sets FROM cache_stats();
RESET pg_cache.track_stats;

-- cache_clear removes everything, live or expired.
SELECT cache_clear() > 0 AS cleared;
SELECT count(*) AS left_over FROM pg_cache_entries;
SELECT cache_clear() AS nothing_left;

-- Bad input: the SQLSTATE and a message naming the argument.
SELECT statement, regress_error(statement) FROM (VALUES
    ($$SELECT cache_add(NULL, 'v')$$),
    ($$SELECT cache_add('k', NULL)$$),
    ($$SELECT cache_add('', 'v')$$),
    ($$SELECT cache_add('k', 'v', ttl => '0')$$),
    ($$SELECT cache_take(NULL)$$),
    ($$SELECT cache_take(repeat('x', 2049))$$),
    ($$SELECT cache_expire(NULL, ttl => '1 min')$$),
    ($$SELECT cache_expire('k', ttl => '1 min', expires_at => clock_timestamp() + interval '1 hour')$$),
    ($$SELECT * FROM cache_get_many(NULL)$$),
    ($$SELECT * FROM cache_get_many(ARRAY['a', NULL, 'c'])$$),
    ($$SELECT * FROM cache_get_many(ARRAY['a', ''])$$),
    ($$SELECT * FROM cache_get_many(ARRAY['a', repeat('x', 2049)])$$),
    ($$SELECT * FROM cache_get_many(array_fill('k'::text, ARRAY[10001]))$$),
    ($$SELECT cache_set_many(NULL, ARRAY['v']::bytea[])$$),
    ($$SELECT cache_set_many(ARRAY['k'], NULL)$$),
    ($$SELECT cache_set_many(ARRAY['k', 'l'], ARRAY['v']::bytea[])$$),
    ($$SELECT cache_set_many(ARRAY['k', 'l'], ARRAY['v', NULL]::bytea[])$$),
    ($$SELECT cache_set_many(ARRAY['k'], ARRAY['v']::bytea[], sliding => '-1 s')$$),
    ($$SELECT cache_remove_many(NULL)$$),
    ($$SELECT cache_remove_many(ARRAY[NULL]::text[])$$),
    ($$SELECT * FROM cache_keys(NULL)$$),
    ($$SELECT * FROM cache_keys('', 0)$$),
    ($$SELECT * FROM cache_keys('', NULL)$$),
    ($$SELECT cache_remove_prefix('')$$),
    ($$SELECT cache_remove_prefix(NULL)$$)
) AS cases(statement);

-- Read-only transactions: reads work, writes fail with 25006.
SELECT cache_set('ops:ro', 'v');
BEGIN READ ONLY;
SELECT count(*) AS readable FROM cache_get_many(ARRAY['ops:ro']);
SELECT regress_error($$SELECT cache_add('ops:ro2', 'v')$$) AS add,
       regress_error($$SELECT cache_take('ops:ro')$$) AS take,
       regress_error($$SELECT cache_incr('ops:ro3')$$) AS incr,
       regress_error($$SELECT cache_clear()$$) AS clear;
ROLLBACK;
