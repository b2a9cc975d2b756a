#!/usr/bin/env bash
# Sliding hits that never write (touches) on a live server: the worker writes them; an entry read
# within its window outlives its stored expiry with the worker on and off; cache_incr,
# cache_expire and cache_take see a touched entry as live; the size cap evicts cold entries
# before hot ones whose stored expiry is older; a full touch table (and a database's share)
# makes hits slide themselves, counted; a read-only transaction and a SELECT-only role record
# nothing; without the library preloaded a hit slides the row itself; a crash forgets touches
# with the table; the worker's cost at 8 reading clients (printed); amcheck afterwards.
# Expects pg_cache (and amcheck, from postgresql-contrib) to be installed.
set -uo pipefail
cd "$(dirname "$0")/.."

source tests/lib.sh
DATADIR=$PG_CACHE_DATA_ROOT/touches
PLAIN_DATADIR=$PG_CACHE_DATA_ROOT/touches-no-preload
export PGPORT
PGPORT=$(port_for touches)
PLAIN_PORT=$(port_for touches-no-preload)
DB=touches
WORK=$(mktemp -d)
at_exit 'rm -rf "$WORK"'
at_exit 'tests/cluster.sh destroy "$DATADIR" >/dev/null 2>&1'
at_exit 'tests/cluster.sh destroy "$PLAIN_DATADIR" >/dev/null 2>&1'

start_cluster "$DATADIR" "$PGPORT" "pg_cache.eviction_interval = 200" "max_connections = 40" || exit 1
for db in "$DB" other; do
    q postgres "CREATE DATABASE $db" && q "$db" "CREATE EXTENSION pg_cache" || exit 1
done
q "$DB" "CREATE EXTENSION amcheck; ALTER DATABASE $DB SET pg_cache.refresh_granularity = 0" || exit 1
stat() { q "$DB" "SELECT $1 FROM cache_stats()"; }
# stored_expiry KEY: the expiry the row holds, as epoch seconds.
stored_expiry() { q "$DB" "SELECT extract(epoch FROM expires_at) FROM pg_cache_entries WHERE key = '$1'"; }

# The worker writes touches: the row's expiry moves without any write by the reader.
q "$DB" "SELECT count(cache_set('hot ' || i, 'v', sliding => '30 s')) FROM generate_series(1, 100) i" >/dev/null
before=$(stored_expiry "hot 1")
sleep 1
q "$DB" "BEGIN; SELECT count(cache_get('hot ' || i)) FROM generate_series(1, 100) i;
         SELECT pg_current_xact_id_if_assigned() IS NULL; COMMIT" >"$WORK/reader"
check "100 sliding hits in one transaction take no transaction id" grep -qx t "$WORK/reader"
check "the worker writes the touches within 2 s" wait_for 2 "$DB" \
    "SELECT count(*) = 100 FROM pg_cache_entries WHERE key LIKE 'hot %' AND extract(epoch FROM expires_at) > $before + 0.9"
check "cache_stats counts the touches recorded and written" \
    test "$(stat "touches_recorded >= 100 AND touches_applied >= 100 AND touch_fallbacks = 0")" = t

# An entry read every 0.5 s outlives its 1.5 s window, with the worker on and with it off.
keep_reading() {
    q "$DB" "SELECT cache_set('$1', 'v', sliding => '1.5 s')" >/dev/null
    for _ in $(seq 1 12); do
        [ "$(q "$DB" "SELECT cache_get('$1') IS NOT NULL")" = t ] || return 1
        sleep 0.5
    done
}
check "an entry read every 0.5 s outlives its 1.5 s window for 6 s (worker on)" keep_reading "read on"
configure pg_cache.eviction_enabled off
check "an entry read every 0.5 s outlives its 1.5 s window for 6 s (worker off)" keep_reading "read off"
check "meanwhile its stored expiry passed: the touch kept it live" \
    test "$(q "$DB" "SELECT expires_at < clock_timestamp() FROM pg_cache_entries WHERE key = 'read off'")" = t

# A touched entry whose stored expiry has passed is live for the writers that decide by it.
q "$DB" "SELECT cache_set('counter', '5', sliding => '1 s'), cache_set('expire me', 'v', sliding => '1 s'),
                cache_set('take me', 'v', sliding => '1 s')" >/dev/null
sleep 0.6
q "$DB" "SELECT cache_get('counter'), cache_get('expire me'), cache_get('take me')" >/dev/null
sleep 0.6
check "the touched counter's stored expiry has passed" \
    test "$(q "$DB" "SELECT bool_and(expires_at < clock_timestamp()) FROM pg_cache_entries WHERE key IN ('counter', 'expire me', 'take me')")" = t
check "cache_incr adds to a touched counter (6, not a new counter at 1)" test "$(q "$DB" "SELECT cache_incr('counter')")" = 6
check "cache_incr writes the touch with the counter" \
    test "$(q "$DB" "SELECT expires_at > clock_timestamp() FROM pg_cache_entries WHERE key = 'counter'")" = t
check "cache_expire finds the touched entry live" test "$(q "$DB" "SELECT cache_expire('expire me', ttl => '1 hour')")" = t
check "cache_take returns the touched entry's value" test "$(q "$DB" "SELECT convert_from(cache_take('take me'), 'UTF8')")" = v
configure pg_cache.eviction_enabled default

# A later write wins even when it stores the same expiry: an absolute entry stored with the
# expiry a touch was read with is not extended, by any function.
q "$DB" "SELECT cache_set('same expiry', 'a', sliding => '3 s')" >/dev/null
sleep 1
q "$DB" "SELECT cache_get('same expiry')" >/dev/null
q "$DB" "SELECT cache_set('same expiry', 'b', expires_at => expires_at) FROM pg_cache_entries WHERE key = 'same expiry'" >/dev/null
sleep 2.3
check "an absolute entry stored with a touched expiry expires then, for every function" \
    test "$(q "$DB" "SELECT (cache_get('same expiry') IS NULL)::text || (cache_ttl('same expiry') IS NULL)::text
                            || (SELECT count(*) FROM cache_keys('same expiry'))::text
                            || cache_add('same expiry', 'c', ttl => '1 min')::text")" = truetrue0true

# A full touch table: hits slide the row themselves, and say so.
configure pg_cache.max_touches_per_database 3
configure pg_cache.eviction_enabled off
sleep 0.3
q "$DB" "SELECT cache_evict_expired()" >/dev/null # writes what is pending: none of the 3 is taken
q "$DB" "SELECT count(cache_set('full ' || i, 'v', sliding => '1 hour')) FROM generate_series(1, 10) i" >/dev/null
fallbacks_before=$(stat touch_fallbacks)
q "$DB" "SELECT ctid FROM pg_cache_entries WHERE key LIKE 'full %' ORDER BY key" >"$WORK/ctids_before"
sleep 0.2
q "$DB" "SELECT count(cache_get('full ' || i)) FROM generate_series(1, 10) i" >/dev/null
q "$DB" "SELECT ctid FROM pg_cache_entries WHERE key LIKE 'full %' ORDER BY key" >"$WORK/ctids_after"
check "past the database's share of 3 touches, 7 hits slide the row themselves" \
    test "$(($(stat touch_fallbacks) - fallbacks_before))" = 7
check "those hits wrote their rows (7 of 10 rows have new versions)" \
    test "$(diff "$WORK/ctids_before" "$WORK/ctids_after" | grep -c '^>')" = 7
q "$DB" "BEGIN; SELECT count(*) FROM cache_get_many(ARRAY(SELECT 'full ' || i FROM generate_series(1, 10) i));
         SELECT pg_current_xact_id_if_assigned() IS NULL; COMMIT" >"$WORK/many"
check "with the table full, cache_get_many still writes nothing (takes no transaction id)" grep -qx t "$WORK/many"
check "another database still records touches" \
    test "$(q other "SET pg_cache.refresh_granularity = 0; SELECT cache_set('k', 'v', sliding => '1 hour'); SELECT pg_sleep(0.1); SELECT cache_get('k') IS NOT NULL; SELECT touches_recorded FROM cache_stats()" | tail -1)" = 1
configure pg_cache.max_touches_per_database default
configure pg_cache.eviction_enabled default

# The touches of a dropped cache table go with it: after DROP and CREATE EXTENSION the database's
# share is free again once the worker (here cache_evict_expired) looks.
configure pg_cache.max_touches_per_database 3
q "$DB" "SELECT cache_evict_expired()" >/dev/null
q "$DB" "SELECT count(cache_set('dropped ' || i, 'v', sliding => '10 years')) FROM generate_series(1, 3) i" >/dev/null
sleep 0.1
q "$DB" "SELECT count(cache_get('dropped ' || i)) FROM generate_series(1, 3) i" >/dev/null
q "$DB" "DROP EXTENSION pg_cache; CREATE EXTENSION pg_cache; SELECT cache_evict_expired()" >/dev/null
q "$DB" "SELECT count(cache_set('again ' || i, 'v', sliding => '1 hour')) FROM generate_series(1, 3) i" >/dev/null
fallbacks_before=$(stat touch_fallbacks)
sleep 0.1
q "$DB" "SELECT count(cache_get('again ' || i)) FROM generate_series(1, 3) i" >/dev/null
check "after DROP and CREATE EXTENSION the old table's touches no longer take the share" \
    test "$(stat touch_fallbacks)" = "$fallbacks_before"
configure pg_cache.max_touches_per_database default

# Nothing is recorded by a read-only transaction or by a role that may only read.
recorded_before=$(stat touches_recorded)
q "$DB" "BEGIN READ ONLY; SELECT cache_get('hot 1'); COMMIT" >/dev/null
q "$DB" "CREATE ROLE reader; GRANT SELECT ON pg_cache_entries TO reader" >/dev/null
q "$DB" "SET ROLE reader; SELECT cache_get('hot 2')" >/dev/null
check "a read-only transaction and a SELECT-only role record no touch" test "$(stat touches_recorded)" = "$recorded_before"

# The size cap evicts the entries that expire soonest as readers see them: hot entries, set first
# (so stored to expire first) and read since, outlive cold ones set after them.
q "$DB" "SELECT count(cache_set('capped hot ' || i, convert_to(repeat('h', 1000), 'UTF8'), sliding => '60 s')) FROM generate_series(1, 300) i" >/dev/null
sleep 1
q "$DB" "SELECT count(cache_set('capped cold ' || i, convert_to(repeat('c', 1000), 'UTF8'), sliding => '60 s')) FROM generate_series(1, 1500) i" >/dev/null
sleep 1
q "$DB" "SELECT count(cache_get('capped hot ' || i)) FROM generate_series(1, 300) i" >/dev/null
q postgres "ALTER DATABASE $DB SET pg_cache.max_size = '1MB'" >/dev/null
q "$DB" "SELECT cache_set('poke', 'v')" >/dev/null  # a write from a session that knows the cap
# (A worker already running keeps the settings it connected with, for up to 30 s.)
check "over the size cap, cold entries are evicted" wait_for 45 "$DB" \
    "SELECT count(*) < 1500 FROM pg_cache_entries WHERE key LIKE 'capped cold %'"
check "and the hot ones, read since, all stay" \
    test "$(q "$DB" "SELECT count(*) FROM pg_cache_entries WHERE key LIKE 'capped hot %'")" = 300
q postgres "ALTER DATABASE $DB RESET pg_cache.max_size" >/dev/null

# The worker's cost: 8 clients reading sliding entries, every hit due to slide.
q "$DB" "SELECT count(cache_set('bench ' || i, convert_to(repeat('x', 128), 'UTF8'), sliding => '1 hour')) FROM generate_series(1, 10000) i" >/dev/null
echo "SELECT cache_get('bench ' || (random() * 9999 + 1)::int);" >"$WORK/get.sql"
applied_before=$(stat touches_applied)
"$PGBIN/pgbench" -n -M prepared -c 8 -j 2 -T 10 -f "$WORK/get.sql" "$DB" >"$WORK/pgbench" 2>&1
sleep 1
applied=$(($(stat touches_applied) - applied_before))
tps=$(sed -nE 's/^tps = ([0-9.]+).*/\1/p' "$WORK/pgbench" | head -1)
echo "# 8 clients, 10 s: $tps sliding gets/s; the worker wrote $((applied / 10)) touches/s"
check "pgbench's sliding gets ran without errors" grep -q "number of failed transactions: 0" "$WORK/pgbench"
check "the worker wrote touches while they ran" test "$applied" -gt 1000

# A crash forgets the touches with the table's rows; the cache works on.
q "$DB" "SELECT cache_get('hot 3')" >/dev/null
as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
as_owner "$PGBIN/pg_ctl" -D "$DATADIR" -m immediate -w restart -l "$DATADIR/server.log" >/dev/null
check "after a crash the table is empty and a sliding entry works again" \
    test "$(q "$DB" "SELECT count(*) FROM pg_cache_entries; SELECT cache_set('after', 'v', sliding => '1 hour'); SELECT cache_get('after') IS NOT NULL" | tr '\n' ' ')" = "0  t "
remember_start

# Without the library preloaded there is no touch table: a hit slides its row itself.
start_cluster "$PLAIN_DATADIR" "$PLAIN_PORT" "shared_preload_libraries = ''" || exit 1
PGPORT=$PLAIN_PORT q postgres "CREATE EXTENSION pg_cache; SET pg_cache.refresh_granularity = 0;
    SELECT cache_set('plain', 'v', sliding => '1 hour')" >/dev/null
plain_before=$(PGPORT=$PLAIN_PORT q postgres "SELECT ctid FROM pg_cache_entries WHERE key = 'plain'")
check "without preloading, a sliding hit writes its row" \
    test "$(PGPORT=$PLAIN_PORT q postgres "SET pg_cache.refresh_granularity = 0; SELECT cache_get('plain') IS NOT NULL;
                                        SELECT ctid <> '$plain_before' FROM pg_cache_entries WHERE key = 'plain'" | tail -1)" = t

check "amcheck finds the table and its indexes clean" table_checked "$DB"
check "the server did not restart but for the crash" not_restarted
check "the server log shows no unexpected crash" \
    test "$(grep -cE "PANIC|TRAP" "$DATADIR/server.log")" = 0
summary touches
