-- Named caches: each its own table, with its own options, entries, statistics and privileges;
-- every function takes `cache` (default 'default').
SELECT name, logged, max_size, default_sliding, default_ttl, table_name FROM cache_list();

-- Names and options: a bad one is refused with its SQLSTATE, naming it.
SELECT regress_error($$SELECT cache_create('Sessions')$$);
SELECT regress_error($$SELECT cache_create('')$$);
SELECT regress_error($$SELECT cache_create(NULL)$$);
SELECT regress_error($$SELECT cache_create('a-b')$$);
SELECT regress_error($$SELECT cache_create('1st')$$);
SELECT regress_error(format('SELECT cache_create(%L)', repeat('a', 64)));
SELECT regress_error($$SELECT cache_create('default')$$);
SELECT regress_error($$SELECT cache_create('x', logged => NULL)$$);
SELECT regress_error($$SELECT cache_create('x', max_size => '-1')$$);
SELECT regress_error($$SELECT cache_create('x', max_size => 'lots')$$);
SELECT regress_error($$SELECT cache_create('x', default_sliding => '-1 s')$$);
SELECT regress_error($$SELECT cache_create('x', default_ttl => '-1 day')$$);
SELECT regress_error($$SELECT cache_get('k', cache => 'nosuch')$$);
SELECT regress_error($$SELECT cache_get('k', cache => 'Bad Name')$$);
SELECT regress_error($$SELECT cache_get('k', cache => NULL)$$);
SELECT regress_error($$SELECT * FROM cache_get_many(ARRAY['k'], cache => 'nosuch')$$);
SELECT regress_error($$SELECT cache_drop('default')$$);
SELECT regress_error($$SELECT cache_drop('nosuch')$$);
SELECT regress_error($$SELECT cache_alter('nosuch', max_size => '1MB')$$);
SELECT count(*) AS caches_after_bad_input FROM cache_list();

-- Two caches: one logged with a sliding default, one capped with an absolute default.
SELECT cache_create('sessions', logged => true, default_sliding => '20 min');
SELECT cache_create('render', max_size => '64MB', default_ttl => '1 hour');
SELECT name, logged, max_size, default_sliding, default_ttl, table_name FROM cache_list();
SELECT regress_error($$SELECT cache_create('render')$$);
SELECT c.relname, c.relpersistence, c.reloptions, pg_get_userbyid(c.relowner) = e_owner.name AS owned_by_extension_owner
FROM pg_class c, (SELECT pg_get_userbyid(extowner) AS name FROM pg_extension WHERE extname = 'pg_cache') AS e_owner
WHERE c.relname ~ '^pg_cache_entries(_[0-9]+)?$' ORDER BY c.relname;
SELECT pg_describe_object(classid, objid, objsubid) AS member FROM pg_depend
WHERE refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_cache') AND deptype = 'e'
  AND classid = 'pg_class'::regclass ORDER BY 1;
SELECT indexrelid::regclass AS index FROM pg_index WHERE indrelid = 'pg_cache_entries_2'::regclass ORDER BY 1;

-- The same key in each cache is its own entry.
SELECT cache_set('k', 'in default'), cache_set('k', 'in sessions', cache => 'sessions');
SELECT convert_from(cache_get('k'), 'UTF8') AS in_default,
       convert_from(cache_get('k', cache => 'sessions'), 'UTF8') AS in_sessions,
       cache_get('k', cache => 'render') IS NULL AS absent_in_render;
SELECT key, convert_from(value, 'UTF8') FROM cache_get_many(ARRAY['k', 'absent'], cache => 'sessions');

-- Each cache's defaults, for entries written with no expiry.
SELECT cache_set('d', 'v', cache => 'sessions'), cache_set('d', 'v', cache => 'render');
SELECT 'sessions' AS cache, sliding, absolute_expires_at IS NULL AS no_cap FROM cache_keys('d', cache => 'sessions')
UNION ALL
SELECT 'render', sliding, absolute_expires_at - expires_at = '0' FROM cache_keys('d', cache => 'render');
SELECT cache_ttl('d', cache => 'render') BETWEEN interval '59 min' AND interval '1 hour' AS ttl_is_the_default;
-- Given expiries win over the defaults.
SELECT cache_set('given', 'v', ttl => '5 min', cache => 'sessions');
SELECT sliding IS NULL AS absolute FROM cache_keys('given', cache => 'sessions');

-- Every kind of call works in a named cache and leaves the others alone.
SELECT cache_add('a', 'first', cache => 'render'), cache_add('a', 'second', cache => 'render'),
       cache_add('a', 'default', ttl => '1 min');
SELECT cache_incr('n', 5, cache => 'render'), cache_incr('n', 1, cache => 'render'), cache_incr('n');
SELECT cache_set_json('j', '{"x": 1}', cache => 'render'), cache_get_json('j', cache => 'render'),
       cache_get_json('j') IS NULL AS absent_in_default;
SELECT * FROM cache_get_many_json(ARRAY['j'], cache => 'render');
SELECT cache_set_many(ARRAY['m1', 'm2'], ARRAY['1', '2']::bytea[], cache => 'render');
SELECT cache_set('tagged', 'v', tags => '{t}', cache => 'render'), cache_set('tagged', 'v', tags => '{t}');
SELECT cache_tags('tagged', cache => 'render'), cache_remove_by_tag('{t}', cache => 'render'),
       cache_tags('tagged') AS still_tagged_in_default;
SELECT cache_expire('a', ttl => '2 hours', cache => 'render'), cache_refresh('d', cache => 'sessions'),
       convert_from(cache_take('a', cache => 'render'), 'UTF8') AS taken, cache_ttl('a') IS NOT NULL AS default_keeps_a;
SELECT cache_remove('m1', cache => 'render'), cache_remove_many(ARRAY['m2'], cache => 'render'),
       cache_remove_prefix('n', cache => 'render'), cache_get('n') IS NOT NULL AS default_keeps_n;
SELECT cache_evict_expired(cache => 'render');
SELECT cache_clear(cache => 'render') AS cleared_in_render, cache_get('k') IS NOT NULL AS default_keeps_k,
       cache_get('k', cache => 'sessions') IS NOT NULL AS sessions_keeps_k;

-- Leases are per cache: the same key leased in one is a miss of its own in another.
SELECT status FROM cache_get_or_lease('leased', cache => 'sessions');
SELECT status FROM cache_get_or_lease('leased');
SELECT status FROM cache_get_or_lease('leased', cache => 'sessions');

-- Statistics are per cache.
SELECT cache_stats_reset(cache => 'render');
SELECT cache_get('absent', cache => 'render'), cache_set('s', 'v', cache => 'render');
SELECT hits, misses, sets FROM cache_stats('render');

-- Privileges are per cache table: a new cache starts with those of the cache default; a role
-- can then be given one cache and not another.
CREATE ROLE regress_cache_tenant;
CREATE ROLE regress_cache_reader;
GRANT SELECT, INSERT, UPDATE, DELETE ON pg_cache_entries TO regress_cache_tenant;
GRANT SELECT ON pg_cache_entries TO regress_cache_reader WITH GRANT OPTION;
GRANT UPDATE (expires_at) ON pg_cache_entries TO regress_cache_reader;
SELECT cache_create('copied');
SELECT has_table_privilege('regress_cache_reader', 'pg_cache_entries_3', 'SELECT WITH GRANT OPTION') AS grant_option_copied,
       has_column_privilege('regress_cache_reader', 'pg_cache_entries_3', 'expires_at', 'UPDATE') AS column_grant_copied,
       has_column_privilege('regress_cache_reader', 'pg_cache_entries_3', 'value', 'UPDATE') AS no_more;
SET ROLE regress_cache_tenant;
SELECT cache_set('mine', 'v', cache => 'copied'), convert_from(cache_get('mine', cache => 'copied'), 'UTF8');
SELECT regress_error($$SELECT cache_get('k', cache => 'sessions')$$);
SELECT regress_error($$SELECT cache_create('tenants_own')$$);
SELECT regress_error($$SELECT cache_alter('copied', max_size => '1TB')$$);
SELECT regress_error($$SELECT cache_drop('copied')$$);
RESET ROLE;
REVOKE ALL ON pg_cache_entries_3 FROM regress_cache_tenant;
SET ROLE regress_cache_tenant;
SELECT regress_error($$SELECT cache_get('mine', cache => 'copied')$$);
SELECT cache_get('k') IS NOT NULL AS default_still_granted;
-- How full a cache is shows only to roles that may read it.
SELECT name, entries IS NOT NULL AS entries_shown FROM cache_list() ORDER BY name;
RESET ROLE;

-- Altering: options, and logged rewrites the table and says so.
SELECT cache_alter('render', logged => true);
SELECT cache_alter('render', max_size => 'default', default_ttl => '0', default_sliding => '5 min');
SELECT cache_alter('sessions', max_size => '0');
SELECT name, logged, max_size, default_sliding, default_ttl FROM cache_list();
SELECT relpersistence FROM pg_class WHERE oid = 'pg_cache_entries_2'::regclass;
SELECT regress_error($$SELECT cache_alter('render', default_ttl => '-5 min')$$);
SELECT cache_set('after alter', 'v', cache => 'render');
SELECT sliding FROM cache_keys('after alter', cache => 'render');

-- A cache recorded in the catalog without its table (as a restore of a dump records it) gets
-- one.
INSERT INTO pg_cache_caches (name, id, logged) VALUES ('restored', 42, true);
SELECT relpersistence FROM pg_class WHERE oid = 'pg_cache_entries_42'::regclass;
SELECT cache_set('r', 'v', cache => 'restored'), convert_from(cache_get('r', cache => 'restored'), 'UTF8');

-- Dropping: the table goes with its entries; later calls get 42704.
SELECT cache_drop('render');
SELECT regress_error($$SELECT cache_get('k', cache => 'render')$$);
SELECT to_regclass('pg_cache_entries_2') IS NULL AS table_dropped;
SELECT cache_create('render');
SELECT cache_get('s', cache => 'render') IS NULL AS new_cache_is_empty;
SELECT table_name FROM cache_list() WHERE name = 'render';

-- A table someone else made under a cache table's name (a database owner may create tables in
-- the extension's schema) is never taken for the cache: cache_create passes its number by, a
-- catalog row for it is refused, and a cache whose table was replaced by one is absent.
CREATE TABLE pg_cache_entries_44 (LIKE pg_cache_entries);
SELECT cache_create('next');
SELECT table_name FROM cache_list() WHERE name = 'next';
SELECT regress_error($$INSERT INTO pg_cache_caches (name, id) VALUES ('squatted', 44)$$);
-- A type of such a name (an enum, a domain) is passed by too.
CREATE TYPE pg_cache_entries_46 AS ENUM ('squatting');
SELECT cache_create('typed');
SELECT table_name FROM cache_list() WHERE name = 'typed';
SELECT cache_drop('typed');
DROP TYPE pg_cache_entries_46;
SELECT cache_create('victim');
ALTER EXTENSION pg_cache DROP TABLE pg_cache_entries_46;
DROP TABLE pg_cache_entries_46;
CREATE TABLE pg_cache_entries_46 (LIKE pg_cache_entries INCLUDING ALL);
SELECT regress_error($$SELECT cache_set('k', 'v', cache => 'victim')$$);
DELETE FROM pg_cache_caches WHERE name = 'victim';
DROP TABLE pg_cache_entries_44, pg_cache_entries_46;
-- The trigger function that makes a cache's table works for the catalog only, and nobody may
-- attach it elsewhere.
SELECT has_function_privilege('regress_cache_tenant', 'pg_cache_caches_made()', 'EXECUTE') AS tenant_may_attach;
CREATE TABLE regress_fake_catalog (name text, id int, logged bool);
CREATE TRIGGER fake AFTER INSERT ON regress_fake_catalog FOR EACH ROW EXECUTE FUNCTION pg_cache_caches_made();
SELECT regress_error($$INSERT INTO regress_fake_catalog VALUES ('x', 50, false)$$);
DROP TABLE regress_fake_catalog;

-- What this file wrote to the cache default goes, for the files after it.
SELECT cache_remove_many(ARRAY['k', 'a', 'n', 'tagged']);
SELECT cache_release('leased', lease) FROM cache_get_or_lease('leased') WHERE lease IS NOT NULL;
SELECT cache_drop(name) FROM cache_list() WHERE name <> 'default';
SELECT name FROM cache_list();
REVOKE ALL ON pg_cache_entries FROM regress_cache_reader;
DROP ROLE regress_cache_tenant, regress_cache_reader;
