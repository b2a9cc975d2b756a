-- Hostile and odd input: each gets its expected result or error, and no other entry changes.
SELECT cache_set('bystander', 'unchanged', ttl => '1 hour');
CREATE TEMP TABLE entries_before AS SELECT * FROM regress_long_lived_entries();

-- keys of 1 byte, 1024 bytes and the 2048-byte maximum
SELECT cache_set('x', '1 byte'), cache_set(repeat('k', 1024), '1024 bytes'), cache_set(repeat('m', 2048), '2048 bytes');
SELECT convert_from(cache_get('x'), 'UTF8') AS one, convert_from(cache_get(repeat('k', 1024)), 'UTF8') AS kib,
       convert_from(cache_get(repeat('m', 2048)), 'UTF8') AS max;
SELECT regress_error($$SELECT cache_set(repeat('m', 2049), 'v')$$) AS one_past_max;

-- every character text can hold (all but NUL), multibyte UTF-8 included, as one key
SELECT string_agg(chr(c), '' ORDER BY c) || U&'\00E9\4E2D\+01F600' AS all_chars
FROM generate_series(1, 255) c \gset
SELECT cache_set(:'all_chars', 'every character');
SELECT octet_length(:'all_chars') AS key_bytes, convert_from(cache_get(:'all_chars'), 'UTF8') AS all_chars_value;

-- keys that look like SQL or patterns are just keys
SELECT cache_set($$'; DROP TABLE pg_cache_entries; --$$, 'injection'), cache_set('a%', 'percent'),
       cache_set('a_', 'underscore'), cache_set(E'back\\slash', 'backslash'), cache_set(E'tab\there\nnewline', 'whitespace'),
       cache_set('"quoted"', 'quotes');
SELECT convert_from(cache_get($$'; DROP TABLE pg_cache_entries; --$$), 'UTF8') AS injection,
       cache_get('%') IS NULL AS no_like_match, cache_get('ab') IS NULL AS no_underscore_match,
       convert_from(cache_get('a%'), 'UTF8') AS percent, convert_from(cache_get('a_'), 'UTF8') AS underscore,
       convert_from(cache_get(E'back\\slash'), 'UTF8') AS backslash,
       convert_from(cache_get(E'tab\there\nnewline'), 'UTF8') AS whitespace, convert_from(cache_get('"quoted"'), 'UTF8') AS quotes;
SELECT to_regclass('pg_cache_entries') IS NOT NULL AS table_still_there;

-- intervals: months and years (calendar for ttl, 30-day months for sliding), microseconds
SELECT cache_set('month ttl', 'v', ttl => '1 mon'), cache_set('year ttl', 'v', ttl => '1 year'),
       cache_set('month window', 'v', sliding => '1 mon');
SELECT absolute_expires_at - expires_at = '0' AS month_is_absolute,
       (SELECT sliding FROM pg_cache_entries WHERE key = 'month window') = '720 hours' AS month_window_is_30_days
FROM pg_cache_entries WHERE key = 'month ttl';
SELECT cache_ttl('year ttl') > '364 days' AS year_ttl;
SELECT cache_set('microsecond ttl', 'v', ttl => '1 microsecond'), cache_set('microsecond window', 'v', sliding => '1 microsecond');
SELECT cache_get('microsecond ttl') IS NULL AS expired_at_once, cache_get('microsecond window') IS NULL AS slid_out_at_once;
-- an infinite ttl: before PostgreSQL 17 there is no infinite interval and the cast fails before
-- pg_cache sees it; from 17 on it is an entry that never expires (expiry.sql)
SELECT regress_error($$SELECT cache_set('k', 'v', ttl => 'infinity')$$)
       = CASE WHEN current_setting('server_version_num')::int < 170000
              THEN '22007: invalid input syntax for type interval: "infinity"' ELSE 'no error' END AS infinite_ttl;
SELECT regress_error($$SELECT cache_set('k', 'v', ttl => '-infinity')$$)
       = CASE WHEN current_setting('server_version_num')::int < 170000
              THEN '22007: invalid input syntax for type interval: "-infinity"'
              ELSE '22023: cache_set: ttl must be positive, got -infinity' END AS minus_infinite_ttl;
SELECT regress_error($$SELECT cache_set('k', 'v', sliding => 'infinity')$$)
       = CASE WHEN current_setting('server_version_num')::int < 170000
              THEN '22007: invalid input syntax for type interval: "infinity"'
              ELSE '22023: cache_set: sliding must be finite; for an entry that never expires give expires_at => ''infinity''' END AS infinite_sliding;
SELECT cache_remove('k') IS NOT NULL AS cleaned_up;

-- values: the 500 MiB maximum round-trips byte-exact; one byte more is refused
SELECT cache_set('largest value', decode(repeat(md5('pg_cache'), 500 * 1024 * 1024 / 16), 'hex'));
SELECT length(cache_get('largest value')) AS largest_len,
       sha256(cache_get('largest value')) = sha256(decode(repeat(md5('pg_cache'), 500 * 1024 * 1024 / 16), 'hex')) AS largest_exact;
SELECT cache_remove('largest value');
SELECT regress_error($$SELECT cache_set('k', decode(repeat('00', 500 * 1024 * 1024 + 1), 'hex'))$$) AS one_byte_too_many;

-- max_rows at the edges
SELECT regress_error($$SELECT cache_evict_expired(0)$$) AS zero, regress_error($$SELECT cache_evict_expired(-1)$$) AS negative;
SELECT cache_evict_expired(2147483647) >= 0 AS int_max_works;
SELECT regress_error($$SELECT cache_evict_expired(2147483648)$$) AS past_int_max;

-- nothing above touched the bystander or any entry set before this file
SELECT count(*) AS changed_entries
FROM (SELECT * FROM entries_before EXCEPT SELECT key, value, expires_at FROM pg_cache_entries) AS changed;
SELECT convert_from(cache_get('bystander'), 'UTF8') AS bystander;
