#!/usr/bin/env bash
# The upgrade paths: a database on 0.1.0 (its frozen install script) keeps working with the new
# library loaded, through the 0.1.0 definitions, in a session that used it before; then
# ALTER EXTENSION pg_cache UPDATE keeps every entry, every new function works, and the upgraded
# extension's objects equal a fresh install's. From 0.2.0 the same, with the update run while
# pgbench clients (prepared statements) call the 0.2.0 definitions. Expects pg_cache installed
# (make install).
set -uo pipefail
cd "$(dirname "$0")/.."

source tests/lib.sh
DATADIR=$PG_CACHE_DATA_ROOT/upgrade
export PGPORT
PGPORT=$(port_for upgrade)
CURRENT=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml)

start_cluster "$DATADIR" "$PGPORT"
q postgres "CREATE DATABASE upgraded" && q postgres "CREATE DATABASE fresh"
q upgraded "CREATE EXTENSION pg_cache VERSION '0.1.0'"
check "CREATE EXTENSION pg_cache VERSION '0.1.0' installs 0.1.0" \
    test "$(q upgraded "SELECT extversion FROM pg_extension WHERE extname = 'pg_cache'")" = 0.1.0

# Every 0.1.0 function through its 0.1.0 definition, against the new library.
old_api=$(q upgraded "SELECT cache_set('absolute', 'a', ttl => '1 hour'),
                             cache_set('sliding', 'b', sliding => '10 min', ttl => '1 hour'),
                             cache_set('at', 'c', expires_at => clock_timestamp() + interval '1 day'),
                             cache_set('default', 'd'), cache_set('removed', 'e');
                      SELECT string_agg(convert_from(cache_get(k), 'UTF8'), ',' ORDER BY k) FROM unnest(ARRAY['absolute', 'at', 'default', 'sliding']) k;" | tail -1)
check "0.1.0: cache_set and cache_get work through the 0.1.0 definitions" test "$old_api" = a,c,d,b
check "0.1.0: cache_refresh, cache_ttl, cache_remove, cache_evict_expired work" \
    test "$(q upgraded "SELECT cache_refresh('sliding') AND cache_ttl('absolute') > interval '59 min' AND cache_remove('removed') AND cache_evict_expired() = 0")" = t
check "0.1.0: cache_worker_status works" q upgraded "SELECT FROM cache_worker_status()"

# A session that used 0.1.0 goes on across the update (psql reads its commands from a pipe).
session_in=$(mktemp -u) && mkfifo "$session_in"
session_out=$(mktemp)
"$PGBIN/psql" -X -A -t -q -d upgraded <"$session_in" >"$session_out" 2>&1 &
session=$!
exec 3>"$session_in"
# It prepares its statements for the 0.1.0 table (a new key goes through the upsert).
echo "SELECT 'before ' || convert_from(cache_get('absolute'), 'UTF8'), cache_set('session key', 'v');" >&3

q upgraded "ALTER EXTENSION pg_cache UPDATE"
check "ALTER EXTENSION pg_cache UPDATE reaches $CURRENT" \
    test "$(q upgraded "SELECT extversion FROM pg_extension WHERE extname = 'pg_cache'")" = "$CURRENT"
# After the update: the table has tags, and a new key with tags goes through the upsert again.
echo "SELECT 'after ' || convert_from(cache_get('absolute'), 'UTF8') || ' ' || cache_incr('session counter');
      SELECT cache_set('session tagged', 'v', tags => '{t}'); SELECT cache_tags('session tagged');" >&3
exec 3>&-
wait "$session"
rm -f "$session_in"
check "a session that used 0.1.0 keeps working after the update (got: $(tr '\n' ' ' <"$session_out"))" \
    test "$(tr '\n' ' ' <"$session_out")" = "before a| after a 1  {t} "
rm -f "$session_out"

check "after the update, every entry is still there" \
    test "$(q upgraded "SELECT count(*) FROM cache_keys()")" = 7
check "after the update, the new functions work" \
    test "$(q upgraded "SELECT cache_add('lock', 'x') AND NOT cache_add('lock', 'y')
                        AND convert_from(cache_take('lock'), 'UTF8') = 'x'
                        AND cache_incr('n', 5) = 5 AND cache_expire('absolute', ttl => '2 hours')
                        AND cache_set_many(ARRAY['m1', 'm2'], ARRAY['1', '2']::bytea[]) = 2
                        AND (SELECT count(*) FROM cache_get_many(ARRAY['m1', 'm2', 'absent'])) = 2
                        AND cache_remove_many(ARRAY['m1']) = 1 AND cache_remove_prefix('m') = 1
                        AND (SELECT sets > 0 FROM cache_stats())
                        AND cache_set_json('doc', '{\"n\": 1.000}')::text = ''
                        AND cache_get_json('doc')::text = '{\"n\": 1.000}'
                        AND (SELECT count(*) FROM cache_get_many_json(ARRAY['doc'])) = 1
                        AND cache_set('tagged', 'v', tags => '{a, b}')::text = ''
                        AND cache_tags('tagged') = '{a,b}' AND cache_remove_by_tag('{b}') = 1")" = t

# The upgraded extension's objects against a fresh install: functions (arguments with names
# and defaults, results, volatility, parallel safety, strictness, symbol), the table (columns,
# options, privileges) and the extension's members.
q fresh "CREATE EXTENSION pg_cache"
catalog() {
    q "$1" "SELECT p.proname || '(' || pg_get_function_arguments(p.oid) || ') -> ' || pg_get_function_result(p.oid)
                   || ' ' || p.provolatile::text || p.proparallel::text || p.proisstrict || p.prosecdef || ' ' || p.prosrc
            FROM pg_proc p JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
            JOIN pg_extension e ON e.oid = d.refobjid AND e.extname = 'pg_cache'
            UNION ALL
            SELECT 'column ' || attname || ' ' || format_type(atttypid, atttypmod) || ' ' || attnotnull || ' ' || coalesce(attcollation::regcollation::text, '') || ' ' || attcompression::text
            FROM pg_attribute WHERE attrelid = 'pg_cache_entries'::regclass AND attnum > 0 AND NOT attisdropped
            UNION ALL
            SELECT 'table ' || c.relpersistence::text || ' ' || coalesce(c.reloptions::text, '') || ' ' || coalesce(c.relacl::text, '')
                   || ' ' || (SELECT string_agg(pg_get_indexdef(indexrelid), '; ') FROM pg_index WHERE indrelid = c.oid)
            FROM pg_class c WHERE c.oid = 'pg_cache_entries'::regclass
            UNION ALL
            SELECT 'caches column ' || attname || ' ' || format_type(atttypid, atttypmod) || ' ' || attnotnull || ' ' || coalesce(attcollation::regcollation::text, '')
                   || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '')
            FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
            WHERE attrelid = 'pg_cache_caches'::regclass AND attnum > 0 AND NOT attisdropped
            UNION ALL
            SELECT 'caches constraint ' || conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'pg_cache_caches'::regclass
            UNION ALL
            SELECT 'caches trigger ' || pg_get_triggerdef(oid) FROM pg_trigger WHERE tgrelid = 'pg_cache_caches'::regclass
            UNION ALL
            SELECT 'caches ' || coalesce(relacl::text, '') || ' ' || obj_description(oid, 'pg_class') FROM pg_class WHERE oid = 'pg_cache_caches'::regclass
            UNION ALL
            SELECT 'cache ' || name || ' ' || id || ' ' || logged || ' ' || coalesce(max_size::text, '') || ' ' || coalesce(default_sliding::text, '') || ' ' || coalesce(default_ttl::text, '')
            FROM pg_cache_caches
            UNION ALL
            SELECT 'trigger function acl ' || coalesce(proacl::text, '') FROM pg_proc WHERE proname = 'pg_cache_caches_made'
            UNION ALL
            SELECT 'config ' || extconfig::regclass[]::text || ' ' || extcondition::text FROM pg_extension WHERE extname = 'pg_cache'
            UNION ALL
            SELECT 'member ' || pg_describe_object(classid, objid, objsubid)
            FROM pg_depend WHERE refclassid = 'pg_extension'::regclass AND deptype = 'e'
              AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'pg_cache')
            ORDER BY 1"
}
fresh_catalog=$(catalog fresh)
compare_catalog() {
    local from=$1 upgraded_catalog differences
    upgraded_catalog=$(catalog "$2")
    differences=$(diff <(echo "$upgraded_catalog") <(echo "$fresh_catalog"))
    [ -z "$differences" ] || echo "$differences"
    check "the extension upgraded from $from equals a fresh $CURRENT install ($(wc -l <<<"$fresh_catalog") lines compared)" \
        test -n "$fresh_catalog" -a -z "$differences"
}
compare_catalog 0.1.0 upgraded

# --- From 0.2.0: its frozen script, its API against the new library, the update under load.
q postgres "CREATE DATABASE from020"
q from020 "CREATE EXTENSION pg_cache VERSION '0.2.0'"
check "CREATE EXTENSION pg_cache VERSION '0.2.0' installs 0.2.0" \
    test "$(q from020 "SELECT extversion FROM pg_extension WHERE extname = 'pg_cache'")" = 0.2.0
check "0.2.0: its functions work through the 0.2.0 definitions" \
    test "$(q from020 "SELECT cache_set('absolute', 'a', ttl => '1 hour', tags => '{t}')::text = ''
                       AND cache_add('added', 'b') AND cache_incr('counter', 2) = 2
                       AND cache_set_json('doc', '{\"n\": 1.000}')::text = '' AND cache_get_json('doc')::text = '{\"n\": 1.000}'
                       AND (SELECT count(*) FROM cache_get_many(ARRAY['absolute', 'added'])) = 2
                       AND cache_tags('absolute') = '{t}' AND (SELECT sets > 0 FROM cache_stats())")" = t
# Privileges a 0.2.0 install changed on its functions are carried over to their successors.
# (A role whose name needs quoting.)
q from020 "DROP ROLE IF EXISTS \"Upgrade Reader\"; CREATE ROLE \"Upgrade Reader\";
           REVOKE EXECUTE ON FUNCTION cache_clear() FROM PUBLIC;
           GRANT EXECUTE ON FUNCTION cache_clear() TO \"Upgrade Reader\" WITH GRANT OPTION" >/dev/null
table_before=$(q from020 "SELECT 'pg_cache_entries'::regclass::oid")
load=$(mktemp)
cat >"$load" <<'SQL'
SELECT cache_set('load-' || (random() * 100)::int, 'v', ttl => '1 hour', tags => '{load}');
SELECT cache_get('load-' || (random() * 100)::int);
SELECT cache_incr('load-counter');
SELECT count(*) FROM cache_get_many(ARRAY['load-' || (random() * 100)::int, 'absolute']);
SQL
"$PGBIN/pgbench" -n -M prepared -c 4 -j 4 -T 6 -f "$load" from020 >"$load.out" 2>&1 &
bench=$!
sleep 2
q from020 "ALTER EXTENSION pg_cache UPDATE"
wait "$bench"; bench_status=$?
check "ALTER EXTENSION pg_cache UPDATE from 0.2.0 reaches $CURRENT" \
    test "$(q from020 "SELECT extversion FROM pg_extension WHERE extname = 'pg_cache'")" = "$CURRENT"
check "pgbench clients calling the 0.2.0 definitions through prepared statements ran through the update without an error ($(grep -E 'failed|aborted|ERROR' "$load.out" | head -2 | tr '\n' ' '))" \
    test "$bench_status" = 0 -a "$(grep -c ERROR "$load.out")" = 0
rm -f "$load" "$load.out"
check "after the update from 0.2.0, every entry is there and the counter counted every call" \
    test "$(q from020 "SELECT cache_get_json('doc')::text = '{\"n\": 1.000}' AND cache_tags('absolute') = '{t}'
                       AND convert_from(cache_get('load-counter'), 'UTF8')::int > 0")" = t
q from020 "SELECT cache_set('forever', 'v', expires_at => 'infinity'); SELECT cache_set_json('doc2', '[1]')" >/dev/null
check "after the update from 0.2.0, cache_incr has create_missing and entries can never expire" \
    test "$(q from020 "SELECT cache_incr('absent counter', create_missing => false) IS NULL
                       AND cache_ttl('forever') > interval '1000 years'")" = t
check "after the update from 0.2.0, leases work and cache_stats counts them" \
    test "$(q from020 "SELECT status FROM cache_get_or_lease('leased after the update')")/$(q from020 "SELECT leases_granted >= 1 FROM cache_stats()")" = miss/t
check "after the update, cache_set_json writes untagged CBOR (the 0.3.0 library does, through either definition)" \
    test "$(q from020 "SELECT cache_get('doc2') = '\\x8101'::bytea")" = t
check "after the update from 0.2.0, its table is the cache default, not moved (OID $table_before)" \
    test "$(q from020 "SELECT table_name::regclass::oid FROM cache_list() WHERE name = 'default'")" = "$table_before"
check "after the update from 0.2.0, cache_clear's privileges are those granted on the 0.2.0 one" \
    test "$(q from020 "SELECT has_function_privilege('public', 'cache_clear(text)', 'EXECUTE')::text || '/'
                       || has_function_privilege('Upgrade Reader', 'cache_clear(text)', 'EXECUTE WITH GRANT OPTION')::text
                       || '/' || has_function_privilege('public', 'cache_get(text, text)', 'EXECUTE')::text")" = false/true/true
q from020 "SELECT cache_create('after_update', logged => true)" >/dev/null
q from020 "SELECT cache_set('k', 'named', cache => 'after_update')" >/dev/null
check "after the update from 0.2.0, named caches work" \
    test "$(q from020 "SELECT convert_from(cache_get('k', cache => 'after_update'), 'UTF8') || '/' || (cache_get('k') IS NULL)::text")" = named/true
q from020 "SELECT cache_drop('after_update'); REVOKE ALL ON FUNCTION cache_clear(text) FROM \"Upgrade Reader\" CASCADE;
           GRANT EXECUTE ON FUNCTION cache_clear(text) TO PUBLIC" >/dev/null
compare_catalog 0.2.0 from020

summary upgrade
