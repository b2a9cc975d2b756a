-- Every function of the API, on live entries.

-- cache_set / cache_get round trip; absent keys give NULL
SELECT cache_set('greeting', 'hello');
SELECT convert_from(cache_get('greeting'), 'UTF8') AS greeting;
SELECT cache_get('absent') IS NULL AS absent_is_null;

-- cache_set replaces the value and the expiry
SELECT cache_set('greeting', 'bonjour', ttl => '10 min');
SELECT convert_from(cache_get('greeting'), 'UTF8') AS greeting,
       cache_ttl('greeting') BETWEEN '9 min 58 s' AND '10 min' AS ttl_replaced;
SELECT count(*) AS one_row FROM pg_cache_entries WHERE key = 'greeting';

-- named arguments in any order
SELECT cache_set('named', 'v', sliding => '5 min', ttl => '30 min');
SELECT cache_set(value => 'v2', key => 'named2', expires_at => clock_timestamp() + interval '1 hour');
SELECT cache_get('named') = 'v' AS named, cache_get('named2') = 'v2' AS named2;

-- values are bytes: every byte value round-trips exactly, as does the empty value
SELECT cache_set('bytes', (SELECT string_agg(set_byte('\x00'::bytea, 0, b), ''::bytea ORDER BY b) FROM generate_series(0, 255) b));
SELECT length(cache_get('bytes')) AS len,
       cache_get('bytes') = (SELECT string_agg(set_byte('\x00'::bytea, 0, b), ''::bytea ORDER BY b) FROM generate_series(0, 255) b) AS exact;
SELECT cache_set('empty value', '');
SELECT cache_get('empty value') = ''::bytea AS empty_value;

-- a 64 MiB value round-trips byte-exact
SELECT cache_set('big', decode(repeat(md5('pg_cache'), 4 * 1024 * 1024), 'hex'));
SELECT length(cache_get('big')) AS big_len,
       sha256(cache_get('big')) = sha256(decode(repeat(md5('pg_cache'), 4 * 1024 * 1024), 'hex')) AS big_exact;
SELECT cache_remove('big');

-- keys are compared byte-wise and never truncated or normalised
SELECT cache_set('k', 'lower'), cache_set('K', 'upper'), cache_set('k ', 'trailing space'),
       cache_set(U&'\00E9', 'composed'), cache_set(U&'e\0301', 'decomposed');
SELECT convert_from(cache_get('k'), 'UTF8') AS k, convert_from(cache_get('K'), 'UTF8') AS "K",
       convert_from(cache_get('k '), 'UTF8') AS "k ", convert_from(cache_get(U&'\00E9'), 'UTF8') AS composed,
       convert_from(cache_get(U&'e\0301'), 'UTF8') AS decomposed;
SELECT cache_set(repeat('x', 2047) || 'a', 'a'), cache_set(repeat('x', 2047) || 'b', 'b');
SELECT cache_get(repeat('x', 2047) || 'a') = 'a' AS long_a, cache_get(repeat('x', 2047) || 'b') = 'b' AS long_b;
-- the maximum is in bytes: 1024 two-byte characters fit
SELECT cache_set(repeat(U&'\00E9', 1024), 'multibyte');
SELECT cache_get(repeat(U&'\00E9', 1024)) = 'multibyte' AS multibyte_max;

-- cache_refresh: true on a live entry, false on an absent one
SELECT cache_refresh('greeting') AS live, cache_refresh('absent') AS absent;

-- cache_ttl: time left, NULL when absent
SELECT cache_ttl('absent') IS NULL AS absent_ttl_is_null;

-- cache_remove: true when a live entry was removed
SELECT cache_remove('greeting') AS removed, cache_remove('greeting') AS again, cache_remove('absent') AS absent;
SELECT cache_get('greeting') IS NULL AS gone;

-- the default sliding window applies when no expiry is given, and follows the setting
SELECT cache_set('default', 'v');
SELECT sliding, absolute_expires_at FROM pg_cache_entries WHERE key = 'default';
SET pg_cache.default_sliding_expiration = '90s';
SELECT cache_set('default', 'v');
SELECT sliding, cache_ttl('default') BETWEEN '88 s' AND '90 s' AS ttl_follows FROM pg_cache_entries WHERE key = 'default';
RESET pg_cache.default_sliding_expiration;

-- cache_evict_expired: one batch of at most max_rows, live entries untouched
SELECT cache_set('expiring ' || i, 'v', ttl => '10 ms') FROM generate_series(1, 3) i;
SELECT pg_sleep(0.05);
SELECT cache_evict_expired(2) AS first_batch, cache_evict_expired() AS second_batch, cache_evict_expired() AS nothing_left;
SELECT count(*) AS expiring_left FROM pg_cache_entries WHERE key LIKE 'expiring %';
SELECT cache_get('named') = 'v' AS live_entry_kept;

-- the storage table: unlogged, not readable by PUBLIC
SELECT relpersistence FROM pg_class WHERE oid = 'pg_cache_entries'::regclass;
SELECT has_table_privilege('public', 'pg_cache_entries', 'SELECT') AS public_can_read;

-- a value set earlier in the same statement or transaction is read back
SELECT cache_set('same statement', 'v'), cache_get('same statement') = 'v' AS read_back;
BEGIN;
SELECT cache_set('same transaction', 'v');
SELECT cache_get('same transaction') = 'v' AS read_back_in_transaction;
ROLLBACK;
SELECT cache_get('same transaction') IS NULL AS rolled_back;
