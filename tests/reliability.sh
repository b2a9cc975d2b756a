#!/usr/bin/env bash
# Reliability against a real server: concurrent use of hot keys, kill -9 of a backend in the
# middle of a 10 MiB cache_set and of the eviction worker, a clean restart, and a hot standby
# made with pg_basebackup (then promoted). Expects pg_cache installed.
#   CONCURRENCY_SECONDS=60 for the long concurrency run (make soak); 10 by default.
set -uo pipefail
cd "$(dirname "$0")/.."

source tests/lib.sh
DATADIR=$PG_CACHE_DATA_ROOT/reliability
STANDBY_DATADIR=$PG_CACHE_DATA_ROOT/reliability-standby
export PGPORT
PGPORT=$(port_for reliability)
STANDBY_PORT=$(port_for reliability-standby)
DB=reliability
SECONDS_OF_CONCURRENCY=${CONCURRENCY_SECONDS:-10}

start_cluster "$DATADIR" "$PGPORT" "pg_cache.eviction_interval = '200ms'" "restart_after_crash = on"
fresh_cluster_dir "$STANDBY_DATADIR"
q postgres "CREATE DATABASE $DB" && q "$DB" "CREATE EXTENSION pg_cache"

server_up() { "$PGBIN/pg_isready" -q -d postgres; }
wait_for_restart() { # after a crash: the server accepts connections again
    local deadline=$((SECONDS + 60))
    sleep 1
    until server_up && q "$DB" "SELECT 1" >/dev/null 2>&1; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}
# After a crash: entries that expire are evicted again (the launcher is back and starts workers).
evictor_back() {
    q "$DB" "SELECT count(cache_set('after crash ' || i, 'v', ttl => '1 s')) FROM generate_series(1, 200) i" >/dev/null
    wait_for 20 "$DB" "SELECT count(*) = 0 FROM pg_cache_entries WHERE key LIKE 'after crash %'"
}
works_at_once() { q "$DB" "SELECT cache_set('after crash', 'ok')" >/dev/null && test "$(q "$DB" "SELECT convert_from(cache_get('after crash'), 'UTF8')")" = ok; }

# --- Concurrency: 8 clients, every call on 100 hot keys, while the eviction worker runs. Tagged
# entries the workload never touches must all be there after it.
q "$DB" "SELECT count(cache_set('kept:' || i, 'v', ttl => '1 hour', tags => ARRAY['kept', 'kept ' || i % 7])) FROM generate_series(1, 1000) i" >/dev/null
out=$("$PGBIN/pgbench" -n -M prepared -c 8 -j 8 -T "$SECONDS_OF_CONCURRENCY" -f tests/concurrency.sql "$DB" 2>&1)
status=$?
ops=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")
errors=$(grep -c -E "ERROR|aborted" <<<"$out")
failed_tx=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out")
echo "concurrency: ${SECONDS_OF_CONCURRENCY} s, 8 clients, 100 hot keys: ${ops:-?} ops/s, $errors error lines, ${failed_tx:-?} failed transactions"
[ "$errors" = 0 ] || grep -E "ERROR|aborted" <<<"$out" | sort | uniq -c | head -5
check "8 clients on 100 hot keys: no error of any kind, every value read whole" \
    test "$status" = 0 -a "$errors" = 0 -a "${failed_tx:-1}" = 0
check "tag removals removed none of the 1,000 untouched tagged entries, nor their tags" \
    test "$(q "$DB" "SELECT count(*) FROM cache_get_many(ARRAY(SELECT 'kept:' || i FROM generate_series(1, 1000) i)) WHERE cache_tags(key) = ARRAY['kept', 'kept ' || split_part(key, ':', 2)::int % 7]")" = 1000
evictor_error=$(q "$DB" "SELECT coalesce(last_error, 'none') FROM cache_worker_status() WHERE database = '$DB'")
check "the evictor ran through the concurrency run without an error (last error: $evictor_error)" test "$evictor_error" = none

# --- Exact results at 8 clients: one winner per key for cache_add, the exact sum of cache_incr,
# every value of cache_take delivered exactly once; no error of any kind.
run_8() { # run_8 NAME SCRIPT TRANSACTIONS_PER_CLIENT: pgbench, and its error lines
    local out
    out=$("$PGBIN/pgbench" -n -M prepared -c 8 -j 8 -t "$3" -f "$2" "$DB" 2>&1)
    local errors
    errors=$(grep -c -E "ERROR|aborted" <<<"$out")
    [ "$errors" = 0 ] || grep -E "ERROR|aborted" <<<"$out" | sort | uniq -c | head -5
    echo "$1: $(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out") calls/s, $errors error lines"
    [ "$errors" = 0 ]
}
q "$DB" "CREATE TABLE add_winners (k int PRIMARY KEY); CREATE TABLE taken (v text PRIMARY KEY)"
check "cache_add, 8 clients x 1,000 on 1,000 keys: no error, no key won twice" run_8 add tests/concurrency_add.sql 1000
check "cache_add: every key in the cache was won by exactly the client recorded" \
    test "$(q "$DB" "SELECT count(*) FROM add_winners")" = "$(q "$DB" "SELECT count(*) FROM cache_keys('add:', 10000)")"
check "cache_incr, 8 clients x 10,000 on 10 counters: no error" run_8 incr tests/concurrency_incr.sql 10000
check "cache_incr: the counters add up to exactly 80,000" \
    test "$(q "$DB" "SELECT sum(convert_from(value, 'UTF8')::bigint) FROM cache_get_many(ARRAY(SELECT 'incr:' || i FROM generate_series(1, 10) i))")" = 80000
q "$DB" "SELECT cache_set_many(ARRAY(SELECT 'take:' || i FROM generate_series(1, 1000) i), ARRAY(SELECT convert_to('value ' || i, 'UTF8') FROM generate_series(1, 1000) i), ttl => '1 hour')" >/dev/null
check "cache_take, 8 clients x 1,000 on 1,000 entries: no error, no value delivered twice" run_8 take tests/concurrency_take.sql 1000
q "$DB" "INSERT INTO taken SELECT convert_from(cache_take('take:' || i), 'UTF8') FROM generate_series(1, 1000) i WHERE cache_ttl('take:' || i) IS NOT NULL" >/dev/null
check "cache_take: every one of the 1,000 values was delivered exactly once" \
    test "$(q "$DB" "SELECT count(*) FROM taken")" = 1000
q "$DB" "CREATE EXTENSION amcheck"
check "after the concurrency runs, amcheck finds the heap and every index clean" table_checked "$DB"


q "$DB" "SELECT count(cache_set('durable ' || i, 'v', ttl => '1 hour')) FROM generate_series(1, 100) i" >/dev/null
tests/cluster.sh stop "$DATADIR" && tests/cluster.sh start "$DATADIR" "$PGPORT"
check "entries survive a clean restart (pg_ctl stop -m fast, start)" \
    test "$(q "$DB" "SELECT count(*) FROM pg_cache_entries WHERE key LIKE 'durable %'")" = 100

# --- A logged cache: its entries survive crashes, and a standby reads them.
q "$DB" "SELECT cache_create('durable', logged => true)" >/dev/null
q "$DB" "SELECT count(cache_set('logged ' || i, 'v', ttl => '1 hour', cache => 'durable')) FROM generate_series(1, 100) i;
         SELECT cache_set('sliding', 'v', sliding => '1 hour', cache => 'durable')" >/dev/null
logged_count() { q "$DB" "SELECT count(*) FROM cache_keys('logged ', 1000, cache => 'durable')"; }

# --- kill -9 of a backend in the middle of a 10 MiB cache_set.
"$PGBIN/psql" -X -q -d "$DB" -c "SELECT cache_set('big ' || i, decode(repeat(md5(i::text), 655360), 'hex')) FROM generate_series(1, 100000) i" >/dev/null 2>&1 &
writer=$!
wait_for 10 "$DB" "SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE '%cache_set(''big%' AND state = 'active' AND pid <> pg_backend_pid()"
sleep 0.5
backend=$(q "$DB" "SELECT pid FROM pg_stat_activity WHERE query LIKE '%cache_set(''big%' AND state = 'active' AND pid <> pg_backend_pid()")
kill -9 "$backend"
wait "$writer" 2>/dev/null
check "the server restarts after kill -9 of a backend writing 10 MiB values" wait_for_restart
check "after the crash the cache is empty (UNLOGGED)" test "$(q "$DB" "SELECT count(*) FROM pg_cache_entries")" = 0
check "after the crash the logged cache keeps its 100 entries" test "$(logged_count)" = 100
check "after the crash cache_set and cache_get work at once" works_at_once
check "after the crash, expired entries are evicted again within seconds" evictor_back

# --- kill -9 of the eviction launcher itself.
kill -9 "$(q postgres "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_cache launcher'")"
check "the server restarts after kill -9 of the eviction launcher" wait_for_restart
check "after that crash the cache is empty and works" works_at_once
check "after that crash, expired entries are evicted again within seconds" evictor_back

as_owner() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
as_owner "$PGBIN/pg_ctl" -D "$DATADIR" -m immediate -w restart -l "$DATADIR/server.log" >/dev/null
check "after pg_ctl restart -m immediate the logged cache keeps its 100 entries, the other is empty" \
    test "$(logged_count)/$(q "$DB" "SELECT count(*) FROM pg_cache_entries")" = 100/0

# --- A hot standby from pg_basebackup: an UNLOGGED cache fails clearly there, a logged one is
# read (and never slid); no worker runs.
q "$DB" "SELECT cache_set('replicated?', 'no')" >/dev/null
mkdir -p "$STANDBY_DATADIR" && chmod 700 "$STANDBY_DATADIR"
[ "$(id -u)" = 0 ] && chown postgres: "$STANDBY_DATADIR"
as_owner "$PGBIN/pg_basebackup" -h "$PGHOST" -p "$PGPORT" -U postgres -D "$STANDBY_DATADIR" -R -X stream -c fast
echo "port = $STANDBY_PORT" | as_owner tee -a "$STANDBY_DATADIR/postgresql.auto.conf" >/dev/null
tests/cluster.sh start "$STANDBY_DATADIR" "$STANDBY_PORT"
on_standby() { PGPORT=$STANDBY_PORT "$@"; }
check "the standby is in recovery" test "$(on_standby q "$DB" "SELECT pg_is_in_recovery()")" = t
standby_error=$(on_standby "$PGBIN/psql" -X -q -d "$DB" -v VERBOSITY=verbose -c "SELECT cache_get('replicated?')" 2>&1)
echo "on the standby: $(head -1 <<<"$standby_error")"
check "on a standby cache_get fails with 0A000 and says why, not an internal error" \
    grep -q "ERROR:  0A000: pg_cache: the cache is not available on a standby" <<<"$standby_error"
standby_error=$(on_standby "$PGBIN/psql" -X -q -d "$DB" -v VERBOSITY=verbose -c "SELECT cache_set('k', 'v')" 2>&1)
echo "on the standby: $(head -1 <<<"$standby_error")"
check "on a standby cache_set fails with 0A000 and says why, not an internal error" \
    grep -q "ERROR:  0A000: pg_cache: the cache is not available on a standby" <<<"$standby_error"
q "$DB" "SELECT cache_set('streamed', 'after the backup', cache => 'durable')" >/dev/null
check "on a standby a logged cache is read: an entry written after the backup streams there" \
    on_standby wait_for 20 "$DB" "SELECT convert_from(cache_get('streamed', cache => 'durable'), 'UTF8') = 'after the backup'"
check "on a standby the other read functions work on a logged cache" \
    test "$(on_standby q "$DB" "SELECT (SELECT count(*) FROM cache_get_many(ARRAY['logged 1', 'logged 2', 'absent'], cache => 'durable'))::text
                                || '/' || (SELECT count(*) FROM cache_keys('logged ', 1000, cache => 'durable'))::text
                                || '/' || (cache_ttl('logged 1', cache => 'durable') > interval '50 min')::text
                                || '/' || (cache_tags('logged 1', cache => 'durable') = '{}')::text")" = 2/100/true/true
expiry_before=$(on_standby q "$DB" "SELECT expires_at FROM pg_cache_entries_1 WHERE key = 'sliding'")
on_standby q "$DB" "SET pg_cache.refresh_granularity = 0; SELECT cache_get('sliding', cache => 'durable')" >/dev/null
check "on a standby a hit does not slide (no write, no touch)" \
    test "$(on_standby q "$DB" "SELECT expires_at FROM pg_cache_entries_1 WHERE key = 'sliding'")" = "$expiry_before"
standby_error=$(on_standby "$PGBIN/psql" -X -q -d "$DB" -v VERBOSITY=verbose -c "SELECT cache_set('k', 'v', cache => 'durable')" 2>&1)
echo "on the standby: $(head -1 <<<"$standby_error")"
check "on a standby a write to a logged cache fails with 25006 naming it" \
    grep -q "ERROR:  25006: pg_cache: cache \"durable\" is read-only on a standby" <<<"$standby_error"
check "no pg_cache worker runs on the standby" \
    test "$(on_standby q postgres "SELECT count(*) FROM pg_stat_activity WHERE backend_type LIKE 'pg_cache%'")" = 0
on_standby "$PGBIN/psql" -X -q -d postgres -c "SELECT pg_promote()" >/dev/null
check "after promotion the eviction launcher starts there" \
    on_standby wait_for 20 postgres "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pg_cache launcher'"
check "after promotion the cache works there, starting empty" \
    test "$(on_standby q "$DB" "SELECT cache_get('replicated?') IS NULL")" = t
check "after promotion the logged cache has every entry and takes writes" \
    test "$(on_standby q "$DB" "SELECT cache_set('promoted', 'v', cache => 'durable'); SELECT count(*) FROM cache_keys('', 1000, cache => 'durable')" | tail -1)" = 103

summary reliability
