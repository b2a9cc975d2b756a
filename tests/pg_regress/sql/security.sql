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
-- Every function of the extension, taken from the catalog (so that a new one cannot be left out),
-- called with its required arguments (dummy values of their types; a ttl where the function has
-- one): each one that touches the table is refused with 42501, and those that create, alter and
-- drop caches are the extension owner's. cache_worker_status and cache_list are for anyone. The
-- trigger function that makes a cache's table cannot be called.
SELECT function, call, regress_error(call) FROM (
    SELECT p.proname AS function,
           format('SELECT * FROM %I(%s)', p.proname,
                  concat_ws(', ',
                      (SELECT string_agg(CASE format_type(p.proargtypes[i], NULL)
                                             WHEN 'text' THEN quote_literal('private')
                                             WHEN 'text[]' THEN $a$ARRAY['private']$a$
                                             WHEN 'bytea' THEN $a$'overwritten'::bytea$a$
                                             WHEN 'bytea[]' THEN $a$ARRAY['overwritten']::bytea[]$a$
                                             WHEN 'jsonb' THEN $a$'{"overwritten": true}'::jsonb$a$
                                             WHEN 'uuid' THEN $a$gen_random_uuid()$a$
                                             WHEN 'oid' THEN $a$'pg_cache_entries'::regclass::oid$a$
                                             WHEN 'timestamp with time zone' THEN $a$now()$a$
                                             ELSE format('NULL::%s', format_type(p.proargtypes[i], NULL)) END,
                                         ', ' ORDER BY i)
                       FROM generate_series(0, p.pronargs - p.pronargdefaults - 1) AS i),
                      CASE WHEN 'ttl' = ANY (p.proargnames[1:p.pronargs]) THEN $a$ttl => '1 s'$a$ END)) AS call
    FROM pg_extension e
    JOIN pg_depend d ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
                    AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
    JOIN pg_proc p ON p.oid = d.objid AND p.pronamespace = e.extnamespace
    WHERE e.extname = 'pg_cache' AND p.prorettype <> 'trigger'::regtype
) AS calls ORDER BY function;
-- The internal function the statements call to see pending touches lives in pg_catalog (where
-- no database owner can add an overload) and is refused too.
SELECT regress_error($$SELECT pg_catalog.pg_cache_pending_expiry('pg_cache_entries'::regclass, 'private', now())$$);
SELECT pronamespace = 'pg_catalog'::regnamespace AS in_pg_catalog FROM pg_proc WHERE proname = 'pg_cache_pending_expiry';
-- cache_worker_status shows the outsider its own database only (as pg_stat_activity shows other
-- sessions' queries only to roles with pg_read_all_stats).
SELECT count(*) FILTER (WHERE database IS DISTINCT FROM current_database()) AS other_databases_shown
FROM cache_worker_status();
-- The table itself.
SELECT statement, regress_error(statement) FROM (VALUES
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
