-- What `make run` shows: a set, a hit, a sliding refresh and an expiry.
\echo '--- cache_set(''greeting'', ''hello'', sliding => ''2 s'', ttl => ''1 hour'')'
SELECT cache_set('greeting', 'hello', sliding => '2 s', ttl => '1 hour');
\echo '--- a hit: the value, and the time left (at most the 2 s window)'
SELECT convert_from(cache_get('greeting'), 'UTF8') AS value, cache_ttl('greeting') AS ttl;
SELECT pg_sleep(1.5);
\echo '--- 1.5 s later, cache_refresh slides the expiry back to 2 s from now'
SELECT cache_ttl('greeting') AS ttl_before, cache_refresh('greeting') AS refreshed, cache_ttl('greeting') AS ttl_after;
SELECT pg_sleep(2.1);
\echo '--- 2.1 s without a read: expired'
SELECT cache_get('greeting') IS NULL AS expired;
