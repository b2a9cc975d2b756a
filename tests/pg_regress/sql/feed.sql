-- The invalidation feed: with pg_cache.notify on, committed changes are announced on
-- pg_cache_invalidation; nothing for rollbacks, eviction or sliding hits. First with
-- pg_cache.notify_relay off: each transaction sends its own notification, so each payload is
-- exactly its transaction's; then through the database's relay. A second session listens
-- through dblink (psql would print the listener's PID).
CREATE EXTENSION dblink;
SELECT dblink_connect('listener', format('dbname=%s port=%s host=%s', current_database(),
       current_setting('port'), split_part(current_setting('unix_socket_directories'), ',', 1)));
SELECT dblink_exec('listener', 'LISTEN pg_cache_invalidation');

-- The payloads the listener received, waiting up to 5 s for `expected` of them.
CREATE FUNCTION heard(expected int) RETURNS SETOF text LANGUAGE plpgsql AS $$
DECLARE
    payloads text[] := '{}';
    deadline timestamptz := clock_timestamp() + interval '5 s';
BEGIN
    LOOP
        payloads := payloads || ARRAY(SELECT extra FROM dblink_get_notify('listener'));
        EXIT WHEN cardinality(payloads) >= expected OR clock_timestamp() > deadline;
        PERFORM pg_sleep(0.01);
    END LOOP;
    RETURN QUERY SELECT unnest(payloads);
END
$$;

-- Off (the default): nothing is sent.
SHOW pg_cache.notify;
SELECT cache_set('feed:off', 'v');
SET pg_cache.notify = on;
SET pg_cache.notify_relay = off;
SELECT cache_set('feed:marker', 'v');
SELECT * FROM heard(1);

-- One notification per transaction, with every kind of change merged; a savepoint rolled back
-- takes its changes with it; removals of absent keys and failed adds change nothing.
SELECT cache_set('feed:a', '1'), cache_set('feed:b', '1', tags => '{t}'), cache_set('feed:c', '1');
SELECT * FROM heard(1);
BEGIN;
SELECT cache_set('feed:a', '2');
SELECT cache_add('feed:a', 'x') AS not_added, cache_add('feed:new', 'x') AS added;
SELECT cache_remove('feed:absent') AS absent;
SAVEPOINT s;
SELECT cache_set('feed:undone', 'v');
ROLLBACK TO s;
SAVEPOINT t;
SELECT cache_incr('feed:n');
RELEASE t;
SELECT cache_expire('feed:c', ttl => '1 hour');
SELECT convert_from(cache_take('feed:a'), 'UTF8') AS taken;
SELECT cache_remove_by_tag('{t}');
SELECT cache_remove_prefix('feed:n');
SELECT cache_set('feed:"quoted"\', 'v');
COMMIT;
SELECT * FROM heard(1);

-- A rolled-back transaction sends nothing; reads and slides send nothing.
BEGIN;
SELECT cache_set('feed:rolled back', 'v');
ROLLBACK;
SELECT cache_set('feed:slides', 'v', sliding => '1 hour');
SET pg_cache.refresh_granularity = 0;
SELECT cache_get('feed:slides') IS NOT NULL AS hit, cache_refresh('feed:slides') AS refreshed,
       cache_ttl('feed:slides') IS NOT NULL AS ttl;
SELECT cache_set('feed:marker', 'v');
SELECT * FROM heard(2);

-- Batches name each key once; a clear says all.
SELECT cache_set_many(ARRAY['feed:m2', 'feed:m1', 'feed:m2'], ARRAY['1', '2', '3']::bytea[]);
SELECT cache_remove_many(ARRAY['feed:m1', 'feed:gone']);
SELECT cache_clear() > 0 AS cleared;
SELECT * FROM heard(3);

-- More changes than a payload can name: {"all": true}.
SELECT cache_set_many(ARRAY(SELECT 'feed:many ' || i FROM generate_series(1, 1000) AS i),
                      ARRAY(SELECT 'v'::bytea FROM generate_series(1, 1000)));
SELECT * FROM heard(1);

-- Eviction sends nothing.
SELECT cache_set('feed:evicted', 'v', expires_at => clock_timestamp() + interval '100 ms');
SELECT * FROM heard(1);
SELECT pg_sleep(0.2);
SELECT cache_evict_expired() > 0 AS evicted;
SELECT cache_set('feed:marker', 'v');
SELECT * FROM heard(1);

-- Through the relay: once it runs, transactions hand their changes over and it sends what
-- committed since its last notification; every committed change is heard, nothing rolled back.
SET pg_cache.notify_relay = on;
SELECT cache_set('feed:asks for the relay', 'v');
DO $$
BEGIN
    FOR i IN 1..100 LOOP
        EXIT WHEN EXISTS (SELECT FROM pg_stat_activity WHERE backend_type = 'pg_cache invalidation relay'
                                                        AND datname = current_database());
        PERFORM pg_sleep(0.05);
    END LOOP;
END
$$;
SELECT count(*) AS relays FROM pg_stat_activity
WHERE backend_type = 'pg_cache invalidation relay' AND datname = current_database();
-- The keys the listener heard, until it hears `last`.
CREATE FUNCTION heard_keys(last text) RETURNS text[] LANGUAGE plpgsql AS $$
DECLARE
    payloads text[] := '{}';
    deadline timestamptz := clock_timestamp() + interval '5 s';
BEGIN
    LOOP
        payloads := payloads || ARRAY(SELECT extra FROM dblink_get_notify('listener'));
        EXIT WHEN clock_timestamp() > deadline OR EXISTS (
            SELECT FROM unnest(payloads) AS p, jsonb_array_elements_text(p::jsonb -> 'keys') AS k WHERE k = last);
        PERFORM pg_sleep(0.01);
    END LOOP;
    RETURN ARRAY(SELECT DISTINCT k FROM unnest(payloads) AS p, jsonb_array_elements_text(p::jsonb -> 'keys') AS k
                 ORDER BY k);
END
$$;
SELECT heard_keys('feed:asks for the relay');
SELECT cache_set('feed:relayed 1', 'v');
SELECT cache_set('feed:relayed 2', 'v');
SELECT cache_set('feed:relayed 3', 'v');
BEGIN;
SELECT cache_set('feed:relayed but rolled back', 'v');
ROLLBACK;
BEGIN;
SELECT cache_remove('feed:relayed 1');
SELECT cache_set('feed:relayed last', 'v');
COMMIT;
SELECT heard_keys('feed:relayed last');

-- A named cache's changes are named with it, in notifications of their own (not through the
-- relay); the cache default's payloads stay as they were.
SELECT cache_create('feed_named');
BEGIN;
SELECT cache_set('feed:named', 'v', cache => 'feed_named');
SELECT cache_set('feed:named in default', 'v');
COMMIT;
SELECT cache_clear(cache => 'feed_named');
SELECT p FROM heard(3) AS p WHERE p LIKE '%"cache"%' OR p LIKE '%named in default%' ORDER BY p;
SELECT cache_drop('feed_named');

SELECT dblink_disconnect('listener');
RESET pg_cache.notify;
RESET pg_cache.notify_relay;
RESET pg_cache.refresh_granularity;
DROP FUNCTION heard(int);
DROP FUNCTION heard_keys(text);
DROP EXTENSION dblink;
SELECT cache_clear() >= 0;
