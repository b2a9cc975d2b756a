#!/usr/bin/env bash
# Named caches on a live server: a cache dropped while 8 clients use it (clear errors only, no
# crash, its shared memory freed by the worker); pg_cache.max_caches across databases (53400
# past it, room again after a drop); 8 clients on a logged cache and amcheck after; eviction in
# named caches; pg_dump and pg_restore of a database with named caches (the caches come back,
# empty). Expects pg_cache (and amcheck, from postgresql-contrib) to be installed.
set -uo pipefail
cd "$(dirname "$0")/.."

source tests/lib.sh
DATADIR=$PG_CACHE_DATA_ROOT/caches
export PGPORT
PGPORT=$(port_for caches)
WORK=$(mktemp -d)
chmod 755 "$WORK"
# pg_dump and pg_restore run as the cluster's owner: the dump goes where they can write.
[ "$(id -u)" = 0 ] && chown postgres: "$WORK"
at_exit 'rm -rf "$WORK"'

start_cluster "$DATADIR" "$PGPORT" "pg_cache.eviction_interval = 200" "pg_cache.max_caches = 12" || exit 1
q postgres "CREATE DATABASE one" && q postgres "CREATE DATABASE two" || exit 1
q one "CREATE EXTENSION pg_cache; CREATE EXTENSION amcheck" >/dev/null || exit 1
q two "CREATE EXTENSION pg_cache" >/dev/null || exit 1

# --- Dropped while 8 clients set and get in it: the clients see only "does not exist" errors.
q one "SELECT cache_create('busy')" >/dev/null
cat >"$WORK/busy.sql" <<'SQL'
\set k random(1, 1000)
SELECT cache_set('k' || :k, 'v', ttl => '1 hour', cache => 'busy');
SELECT cache_get('k' || :k, cache => 'busy');
SQL
"$PGBIN/pgbench" -n -c 8 -j 8 -T 6 -f "$WORK/busy.sql" one >"$WORK/busy.out" 2>&1 &
bench=$!
sleep 2
q one "SELECT cache_drop('busy')" >/dev/null
dropped_at=$SECONDS
wait "$bench"
errors=$(grep -E "ERROR" "$WORK/busy.out" | grep -vE 'cache "busy" (does not exist|was dropped)|relation ".*" does not exist' | sort | uniq -c | head -3)
echo "pgbench errors after the drop: $(grep -c ERROR "$WORK/busy.out") (other than a missing cache: ${errors:-none})"
check "a cache dropped under 8 clients: each failing call says the cache does not exist (42704/42P01), nothing else" \
    test -z "$errors" -a "$(grep -c ERROR "$WORK/busy.out")" -gt 0
check "after the drop the server did not restart" not_restarted
check "after the drop a new call gets 42704" \
    sqlstate_is 42704 one "SELECT cache_get('k1', cache => 'busy')"

# --- pg_cache.max_caches (12 here) counts the caches of every database. Caches made in a
# transaction that rolls back give their room back at once (9 of them, then 9 more, fit in the 12
# only so); past it, 53400; the worker frees a dropped cache's slot, and there is room again.
"$PGBIN/psql" -X -q -d two -c "BEGIN" -c "SELECT count(cache_create('rolled' || i)) FROM generate_series(1, 9) i" \
    -c "ROLLBACK" >/dev/null 2>&1
check "caches made in a rolled-back transaction leave their room at once" \
    q two "SELECT count(cache_create('kept' || i)) FROM generate_series(1, 9) i"
for i in $(seq 1 9); do q two "SELECT cache_drop('kept$i')" >/dev/null; done
# The worker frees the dropped caches' slots at its next sweeps: each creation may wait for that
# (5 s); the first that still finds no room after 5 s is past the limit.
made=0
for i in $(seq 1 12); do
    wait_for 5 two "SELECT pg_catalog.count(*) = 1 FROM (SELECT cache_create('c$i')) AS made" \
        && made=$((made + 1)) || break
done
echo "caches made in database two before the server's 12 slots ran out: $made"
check "the slots of the 9 dropped caches were freed: 9 or more caches made ($made)" test "$made" -ge 9
check "past pg_cache.max_caches, cache_create refuses with 53400" \
    sqlstate_is 53400 two "SELECT cache_create('one_too_many')"
q two "SELECT cache_drop('c1')" >/dev/null
check "after a drop the worker frees its slot and cache_create succeeds again within 5 s" \
    wait_for 5 two "SELECT pg_catalog.count(*) = 1 FROM (SELECT cache_create('again')) AS made"
for i in $(seq 2 "$made"); do q two "SELECT cache_drop('c$i')" >/dev/null; done
q two "SELECT cache_drop('again')" >/dev/null

# --- 8 clients on a logged cache: no error; amcheck finds its heap and indexes clean.
wait_for 10 one "SELECT pg_catalog.count(*) = 1 FROM (SELECT cache_create('durable', logged => true)) AS made" >/dev/null
cat >"$WORK/durable.sql" <<'SQL'
\set k random(1, 500)
SELECT cache_set('k' || :k, convert_to(repeat('v', 200), 'UTF8'), sliding => '1 hour', tags => '{t}', cache => 'durable');
SELECT cache_get('k' || :k, cache => 'durable');
SELECT cache_incr('n' || (:k % 10), cache => 'durable');
SELECT cache_remove('k' || (:k + 1), cache => 'durable');
SQL
"$PGBIN/pgbench" -n -c 8 -j 8 -T 8 -f "$WORK/durable.sql" one >"$WORK/durable.out" 2>&1
echo "logged cache, 8 clients: $(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$WORK/durable.out") transactions/s"
check "8 clients set, get, incr and remove in a logged cache without an error" \
    test "$(grep -c ERROR "$WORK/durable.out")" = 0
processed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$WORK/durable.out")
counted=$(q one "SELECT sum(convert_from(value, 'UTF8')::bigint) FROM cache_get_many(ARRAY(SELECT 'n' || i FROM generate_series(0, 9) i), cache => 'durable')")
check "the logged cache's counters add up to the transactions run ($counted of $processed)" \
    test -n "$processed" -a "$counted" = "$processed"
durable_table=$(q one "SELECT table_name FROM cache_list() WHERE name = 'durable'")
check "amcheck finds the logged cache's heap and every B-tree index clean" \
    test "$(q one "SELECT count(bt_index_check(indexrelid, true)) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                   WHERE indrelid = '$durable_table'::regclass AND c.relam = (SELECT oid FROM pg_am WHERE amname = 'btree')")/$(q one "SELECT count(*) FROM verify_heapam('$durable_table')")" = 1/0

# --- Eviction in named caches: entries with a 1 s ttl leave a logged and an UNLOGGED cache.
q one "SELECT cache_create('brief')" >/dev/null
brief_table=$(q one "SELECT table_name FROM cache_list() WHERE name = 'brief'")
q one "SELECT count(cache_set('e' || i, 'v', ttl => '1 s', cache => c)) FROM generate_series(1, 1000) i, unnest(ARRAY['durable', 'brief']) c" >/dev/null
check "the worker evicts expired entries from a logged and an UNLOGGED named cache within 5 s" \
    wait_for 6 one "SELECT (SELECT count(*) FROM cache_keys('e', 10000, cache => 'durable')) = 0
                    AND (SELECT count(*) FROM $durable_table WHERE key LIKE 'e%') = 0
                    AND (SELECT count(*) FROM $brief_table WHERE key LIKE 'e%') = 0"

# --- pg_dump and pg_restore: the caches come back (from the dumped catalog), empty.
q one "SELECT cache_set('dumped', 'v', cache => 'durable')" >/dev/null
q one "SELECT cache_alter('brief', max_size => '5MB', default_ttl => '10 min')" >/dev/null
# Privileges granted on a cache's table come back with it, and do not spread to another cache's
# table from the cache default's (whose grants a cache made at restore could copy).
q postgres "CREATE ROLE dump_reader" >/dev/null
q one "GRANT SELECT ON pg_cache_entries TO dump_reader; GRANT SELECT ON $durable_table TO dump_reader" >/dev/null
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
as_owner "$PGBIN/pg_dump" -h "$PGHOST" -p "$PGPORT" -U postgres -Fc -f "$WORK/one.dump" one
q postgres "CREATE DATABASE restored" >/dev/null
as_owner "$PGBIN/pg_restore" -h "$PGHOST" -p "$PGPORT" -U postgres -d restored "$WORK/one.dump" >"$WORK/restore.out" 2>&1
restore_status=$?
check "pg_restore of a database with named caches succeeds ($(head -c 300 "$WORK/restore.out" | tr '\n' ' '))" test "$restore_status" = 0
check "after the restore the caches are back, with their options and tables, empty" \
    test "$(q restored "SELECT string_agg(name || ':' || logged || ':' || coalesce(max_size::text, '-') || ':' || coalesce(default_ttl::text, '-'), ' ' ORDER BY name) FROM cache_list()")/$(q restored "SELECT cache_get('dumped', cache => 'durable') IS NULL")" \
         = "brief:false:5242880:00:10:00 default:false:-:- durable:true:-:-/t"
check "after the restore each cache's table has the privileges granted on it before the dump, no more" \
    test "$(q restored "SELECT has_table_privilege('dump_reader', '$durable_table', 'SELECT')
                               AND NOT has_table_privilege('dump_reader', '$brief_table', 'SELECT')")" = t
q restored "SELECT cache_set('after restore', 'v', cache => 'durable')" >/dev/null
check "after the restore the restored caches work" \
    test "$(q restored "SELECT convert_from(cache_get('after restore', cache => 'durable'), 'UTF8')")" = v

check "the server log shows no crash" no_crash_in_log "$DATADIR"
check "the server did not restart" not_restarted
summary caches
