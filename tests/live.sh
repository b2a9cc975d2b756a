#!/usr/bin/env bash
# Tests that need a real running server: the background eviction worker. Starts clusters of its
# own (with and without pg_cache preloaded) and removes them afterwards. Expects pg_cache installed.
set -uo pipefail
cd "$(dirname "$0")/.."

source tests/lib.sh
DATADIR=$PG_CACHE_DATA_ROOT/live
PLAIN_DATADIR=$PG_CACHE_DATA_ROOT/live-no-preload
export PGPORT
PGPORT=$(port_for live)
PLAIN_PORT=$(port_for live-no-preload)

fill() { q "$1" "SELECT count(cache_set('expiring ' || i, 'v', ttl => '1 s')) FROM generate_series(1, ${2:-500}) i" >/dev/null; }
stored() { echo "SELECT count(*) = ${2:-0} FROM pg_cache_entries WHERE key LIKE '${1:-expiring} %'"; }

fresh_cluster_dir "$PLAIN_DATADIR"
start_cluster "$DATADIR" "$PGPORT" "log_min_messages = debug1"
for db in alpha beta; do q postgres "CREATE DATABASE $db" && q "$db" "CREATE EXTENSION pg_cache"; done

# Entries with a 1 s ttl leave the table with no cache call made, in two databases.
fill alpha; fill beta
check "expired entries are evicted in database alpha" wait_for 10 alpha "$(stored)"
check "expired entries are evicted in database beta" wait_for 10 beta "$(stored)"
check "a worker was started for each database, named for it" \
    test "$(grep -c -E 'starting background worker process "pg_cache evictor for database (alpha|beta)"' "$DATADIR/server.log")" -ge 2
check "cache_worker_status() counts the evicted rows" \
    test "$(q alpha "SELECT evicted_total >= 500 AND last_sweep_at > now() - interval '5 s' AND last_error IS NULL FROM cache_worker_status() WHERE database = 'alpha'")" = t

# A sliding entry that keeps being refreshed is never evicted; one left alone is.
q alpha "SELECT cache_set('slider', 'v', sliding => '1 s'), cache_set('abandoned', 'v', sliding => '1 s')" >/dev/null
for _ in $(seq 1 12); do q alpha "SELECT cache_refresh('slider')" >/dev/null; sleep 0.3; done
check "a sliding entry refreshed every 0.3 s outlives its 1 s window" \
    test "$(q alpha "SELECT count(*) FROM pg_cache_entries WHERE key = 'slider'")" = 1
check "the abandoned sliding entry was evicted meanwhile" \
    test "$(q alpha "SELECT count(*) FROM pg_cache_entries WHERE key = 'abandoned'")" = 0

# The evictor vacuums the table when sets and evictions leave it many dead rows.
vacuums_before=$(q alpha "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'pg_cache_entries'")
fill alpha 5000
check "the evictor vacuums the table after evicting many rows" wait_for 15 alpha \
    "SELECT vacuum_count > $vacuums_before FROM pg_stat_user_tables WHERE relname = 'pg_cache_entries'"

# The evictor's VACUUM when the table's lock is not available (autovacuum or a session holds
# SHARE UPDATE EXCLUSIVE): it skips the table and says so, and the server does not crash.
# Sessions holding many subtransaction xids make the snapshots big, so memory freed too early
# gets reused; 3,000 replaces leave the dead rows that make the evictor vacuum.
remember_start
configure log_min_messages warning # VACUUM's skip is a WARNING
q alpha "CREATE TABLE subxacts (i int)"
for _ in $(seq 1 14); do
    "$PGBIN/psql" -X -q -d alpha -c "BEGIN" \
        -c "DO \$\$BEGIN FOR i IN 1..63 LOOP BEGIN INSERT INTO subxacts VALUES (i); EXCEPTION WHEN OTHERS THEN NULL; END; END LOOP; END\$\$" \
        -c "SELECT pg_sleep(12)" -c "COMMIT" >/dev/null 2>&1 &
done
"$PGBIN/psql" -X -q -d alpha -c "BEGIN" -c "LOCK TABLE pg_cache_entries IN SHARE UPDATE EXCLUSIVE MODE" \
    -c "SELECT pg_sleep(10)" -c "COMMIT" >/dev/null 2>&1 &
sleep 1
for round in v w; do
    q alpha "SELECT count(cache_set('replaced ' || i, convert_to(repeat('$round', 500), 'UTF8'), ttl => '1 hour')) FROM generate_series(1, 3000) i" >/dev/null
done
skipped() { grep -q 'skipping vacuum of "pg_cache_entries" --- lock not available' "$DATADIR/server.log"; }
wait_until() { local deadline=$((SECONDS + $1)); shift; until "$@"; do [ "$SECONDS" -lt "$deadline" ] || return 1; sleep 0.2; done; }
check "the evictor's VACUUM skips a table whose lock another session holds, and says so" wait_until 9 skipped
wait
check "the server did not restart (evictor VACUUM with the lock unavailable)" not_restarted
q alpha "DROP TABLE subxacts"
configure log_min_messages default

# No vacuum storm: while a snapshot held for 30 s keeps churn's dead rows from being removed,
# the evictor vacuums when the removal horizon has moved, not every time it looks. Autovacuum is
# off meanwhile: when it visits the database just after the snapshot goes, it removes the dead rows
# itself and the evictor rightly has nothing left to do (seen in CI), which is not what is tested.
configure autovacuum off
vacuum_count() { q alpha "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'pg_cache_entries'"; }
"$PGBIN/psql" -X -q -d alpha -c "BEGIN ISOLATION LEVEL REPEATABLE READ" -c "SELECT count(*) FROM pg_cache_entries" \
    -c "SELECT pg_sleep(30)" -c "COMMIT" >/dev/null &
holder=$!
sleep 1
vacuums_before=$(vacuum_count)
churn=$(mktemp)
echo "SELECT cache_set('churn ' || (random() * 200)::int, 'v', ttl => '1 hour');" >"$churn"
"$PGBIN/pgbench" -n -c 2 -j 2 -T 25 -f "$churn" alpha >/dev/null 2>&1
vacuums=$(($(vacuum_count) - vacuums_before))
wait "$holder"
rm -f "$churn"
check "25 s of churn under a 30 s snapshot: the table was vacuumed at most 3 times (it was $vacuums)" test "$vacuums" -le 3
check "once the snapshot is released, the evictor vacuums the dead rows away" \
    wait_for 20 alpha "SELECT vacuum_count > $((vacuums_before + vacuums)) AND n_dead_tup < 1000 FROM pg_stat_user_tables WHERE relname = 'pg_cache_entries'"
configure autovacuum default

# After pg_terminate_backend of a worker in the middle of its work, eviction resumes.
fill alpha 20000
wait_for 10 postgres "SELECT count(*) > 0 FROM pg_stat_activity WHERE backend_type = 'pg_cache evictor' AND datname = 'alpha'"
q postgres "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'pg_cache evictor'" >/dev/null
fill alpha
check "eviction resumes after pg_terminate_backend of the worker" wait_for 20 alpha "$(stored)"

# Changing pg_cache.eviction_interval and reloading takes effect.
configure pg_cache.eviction_interval 1h
sleep 2
fill beta 100
sleep 3
check "with eviction_interval = 1h, expired entries stay" test "$(q beta "$(stored expiring 100)")" = t
configure pg_cache.eviction_interval 200ms
check "after reloading eviction_interval = 200ms, they go at once" wait_for 3 beta "$(stored)"
configure pg_cache.eviction_interval default

# pg_cache.eviction_enabled = off stops sweeps.
configure pg_cache.eviction_enabled off
sleep 1.5
fill beta 100
sleep 3
check "with eviction_enabled = off, expired entries stay" test "$(q beta "$(stored expiring 100)")" = t
configure pg_cache.eviction_enabled default
check "with eviction_enabled back on, they go" wait_for 5 beta "$(stored)"

# A worker never blocks CREATE DATABASE … TEMPLATE, DROP DATABASE or DROP EXTENSION: entries
# keep expiring in beta and alpha, so workers keep coming.
fill beta 2000; fill alpha 2000
q beta "SELECT count(cache_set('copied ' || i, 'v', ttl => '4 s')) FROM generate_series(1, 100) i" >/dev/null
sleep 1.5
check "CREATE DATABASE … TEMPLATE a database with a running evictor succeeds" \
    q postgres "CREATE DATABASE gamma TEMPLATE beta"
check "DROP DATABASE of a database with a running evictor succeeds" q postgres "DROP DATABASE alpha"
check "DROP EXTENSION succeeds while the evictor runs" q beta "DROP EXTENSION pg_cache"
check "no worker stays in a database whose extension was dropped" \
    wait_for 5 postgres "SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'pg_cache evictor' AND datname = 'beta'"

# Creating the extension in a fresh database starts eviction there, without a restart.
q postgres "CREATE DATABASE delta" && q delta "CREATE EXTENSION pg_cache"
fill delta
check "CREATE EXTENSION in a new database starts eviction there within seconds" wait_for 15 delta "$(stored)"
check "the cloned database gamma has the entries it copied evicted too" wait_for 15 gamma "$(stored copied)"

# An ERROR in a sweep is logged and shown, and the evictor carries on: a session holding the
# table locked while entries expire. The evictor waits for a lock 2 s at most (whatever the
# database's lock_timeout: a role that may lock one cache must not stall every other), so its
# sweep fails.
q postgres "ALTER DATABASE delta SET lock_timeout = 0"
fill delta 200
"$PGBIN/psql" -X -q -d delta -c "SET lock_timeout = 0" -c "BEGIN" -c "LOCK TABLE pg_cache_entries IN ACCESS EXCLUSIVE MODE" \
    -c "SELECT pg_sleep(6)" -c "COMMIT" >/dev/null &
locker=$!
check "a sweep that fails shows its error in cache_worker_status()" wait_for 10 delta \
    "SELECT last_error LIKE '%lock timeout%' FROM cache_worker_status() WHERE database = 'delta'"
wait "$locker"
check "after the error, eviction carries on" wait_for 10 delta "$(stored)"
failures=$(grep -c "pg_cache: eviction failed in database delta: cache default: canceling statement due to lock timeout" "$DATADIR/server.log")
check "the failing sweeps are in the server log once, not at every retry ($failures)" test "$failures" = 1
check "and that they work again, once" test "$(grep -c "pg_cache: eviction in database delta works again" "$DATADIR/server.log")" = 1

q postgres "CREATE DATABASE latin ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
check "CREATE EXTENSION in a database that is not UTF8 fails with a clear error" \
    grep -q "pg_cache needs a database with UTF8 encoding, not LATIN1" <<<"$(q latin "CREATE EXTENSION pg_cache" 2>&1)"

check "misspelled pg_cache settings are rejected" \
    test "$(q delta "SET pg_cache.eviction_intervall = '1s'" 2>&1 | grep -c 'invalid configuration parameter name')" = 1

# Without shared_preload_libraries: everything but the worker works, and CREATE EXTENSION says so.
tests/cluster.sh start "$PLAIN_DATADIR" "$PLAIN_PORT" "shared_preload_libraries = ''"
notice=$(PGPORT=$PLAIN_PORT "$PGBIN/psql" -X -q -d postgres -c "CREATE EXTENSION pg_cache" 2>&1)
check "without preloading, CREATE EXTENSION warns that the worker is not running" \
    grep -q "eviction worker is not running" <<<"$notice"
check "without preloading, cache_set and cache_get work" \
    test "$(PGPORT=$PLAIN_PORT q postgres "SELECT cache_set('k', 'v')" >/dev/null && PGPORT=$PLAIN_PORT q postgres "SELECT cache_get('k') = 'v'")" = t
check "without preloading, cache_worker_status() is empty" \
    test "$(PGPORT=$PLAIN_PORT q postgres "SELECT count(*) FROM cache_worker_status()" 2>/dev/null)" = 0
env_port() { local -x PGPORT=$1; shift; "$@"; }
check "without preloading, cache_get_or_lease is refused with 55000 (the lease table is in shared memory)" \
    env_port "$PLAIN_PORT" sqlstate_is 55000 postgres "SELECT * FROM cache_get_or_lease('k2')"

check "the server log shows no crash" no_crash_in_log "$DATADIR"
summary live
