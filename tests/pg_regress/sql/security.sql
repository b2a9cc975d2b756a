-- Access: entries belong to the extension's owner. Other roles can neither read nor write them,
-- through the functions or the table, until granted with one statement.
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_cache_outsider;
DROP ROLE IF EXISTS regress_cache_app;
RESET client_min_messages;
CREATE ROLE regress_cache_outsider;
CREATE ROLE regress_cache_app;
SELECT cache_set('private', 'owner only', ttl => '1 hour');

SET ROLE regress_cache_outsider;
SELECT statement, regress_error(statement) FROM (VALUES
    ($$SELECT cache_get('private')$$),
    ($$SELECT cache_set('private', 'overwritten')$$),
    ($$SELECT cache_refresh('private')$$),
    ($$SELECT cache_remove('private')$$),
    ($$SELECT cache_ttl('private')$$),
    ($$SELECT cache_evict_expired()$$),
    ($$SELECT cache_add('private', 'overwritten')$$),
    ($$SELECT cache_take('private')$$),
    ($$SELECT cache_incr('private counter')$$),
    ($$SELECT cache_expire('private', ttl => '1 s')$$),
    ($$SELECT * FROM cache_get_many(ARRAY['private'])$$),
    ($$SELECT cache_set_many(ARRAY['private'], ARRAY['overwritten']::bytea[])$$),
    ($$SELECT cache_remove_many(ARRAY['private'])$$),
    ($$SELECT * FROM cache_keys()$$),
    ($$SELECT cache_remove_prefix('priv')$$),
    ($$SELECT cache_clear()$$),
    ($$SELECT * FROM cache_stats()$$),
    ($$SELECT cache_stats_reset()$$),
    ($$SELECT cache_set_json('private', '{"overwritten": true}')$$),
    ($$SELECT cache_get_json('private')$$),
    ($$SELECT * FROM cache_get_many_json(ARRAY['private'])$$),
    ($$SELECT value FROM pg_cache_entries$$),
    ($$DELETE FROM pg_cache_entries$$),
    ($$TRUNCATE pg_cache_entries$$)
) AS cases(statement);
RESET ROLE;

-- granting access: one statement
GRANT SELECT, INSERT, UPDATE, DELETE ON pg_cache_entries TO regress_cache_app;
SET ROLE regress_cache_app;
SELECT cache_set('granted', 'v');
SELECT convert_from(cache_get('private'), 'UTF8') AS granted_read, cache_refresh('granted') AS granted_refresh, cache_remove('granted') AS granted_remove, cache_evict_expired() >= 0 AS granted_evict;
RESET ROLE;
SELECT convert_from(cache_get('private'), 'UTF8') AS still_private_value;
REVOKE ALL ON pg_cache_entries FROM regress_cache_app;
DROP ROLE regress_cache_outsider;
DROP ROLE regress_cache_app;

-- Hijacking: names in the session's search_path cannot stand in for pg_cache's own. A temporary
-- table named like the cache table (temporary tables come first in the search_path), an equality
-- operator that matches everything, and a now() that lies are all ignored.
CREATE TEMP TABLE pg_cache_entries (key text, value bytea, expires_at timestamptz, sliding interval, absolute_expires_at timestamptz);
INSERT INTO pg_temp.pg_cache_entries VALUES ('decoy', 'decoy', 'infinity', NULL, 'infinity');
CREATE FUNCTION public.regress_always_equal(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.regress_always_equal);
CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql AS $$ SELECT '2000-01-01 00:00+00'::timestamptz $$;
SET search_path = public, pg_catalog;
SELECT cache_set('shadowed', 'real', ttl => '1 hour');
SELECT convert_from(cache_get('shadowed'), 'UTF8') AS real_value, cache_get('decoy') IS NULL AS decoy_not_seen,
       cache_get('no such key') IS NULL AS equality_not_hijacked, cache_ttl('shadowed') > '59 min' AS clock_not_hijacked;
SELECT count(*) AS decoy_table_untouched FROM pg_temp.pg_cache_entries;
RESET search_path;
DROP OPERATOR public.= (text, text);
DROP FUNCTION public.regress_always_equal(text, text);
DROP FUNCTION public.now();
DROP TABLE pg_temp.pg_cache_entries;
