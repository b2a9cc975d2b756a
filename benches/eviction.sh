#!/usr/bin/env bash
# The eviction worker, measured: throughput on 1M expired rows, the effect of a running sweep on
# concurrent cache_get throughput (ratio with and without it, same run), and table size under a
# sustained set/expire churn. Writes results/eviction-<time>.txt (and results/latest-eviction.txt).
#   QUICK=1   200k expired rows, 3 s runs
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then EXPIRED=200000; DURATION=3; CHURN=10; else EXPIRED=1000000; DURATION=8; CHURN=60; fi
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PGBIN=$("$PG_CONFIG" --bindir)
DATADIR=${BENCH_DATADIR:-${PG_CACHE_DATA_ROOT:-/tmp/pg_cache}/bench}
export PGHOST=${PG_CACHE_SOCKET_DIR:-/tmp} PGPORT=${BENCH_PORT:-$((5495 + ${PG_CACHE_PORT_OFFSET:-0}))} PGUSER=postgres
DB=pg_cache_eviction
mkdir -p results
OUT=results/eviction-$(date -u +%Y%m%dT%H%M%SZ).txt

q() { "$PGBIN/psql" -X -A -t -q -v ON_ERROR_STOP=1 -d "$DB" -c "$1"; }
reload_with() { "$PGBIN/psql" -X -q -d postgres -c "ALTER SYSTEM SET pg_cache.eviction_enabled = $1" -c "SELECT pg_reload_conf()" >/dev/null; }
evicted_total() { q "SELECT coalesce(max(evicted_total), 0) FROM cache_worker_status() WHERE database = '$DB'"; }
now_ms() { date +%s%3N; }
expire_rows() { # expire_rows N [DB]: N expired rows, inserted straight into the table (as cache_set
    # would store them), and one set through cache_set that tells the launcher the database is due
    "$PGBIN/psql" -X -A -t -q -v ON_ERROR_STOP=1 -d "${2:-$DB}" \
        -c "INSERT INTO pg_cache_entries (key, value, expires_at, absolute_expires_at)
            SELECT 'expired:' || i, convert_to(repeat('x', 128), 'UTF8'), now() - interval '1 s', now() - interval '1 s'
            FROM generate_series(1, $1) i" \
        -c "SELECT cache_set('due', 'x', ttl => '1 ms')" >/dev/null
}
get_ops() { "$PGBIN/pgbench" -n -M prepared -c 8 -j 8 -T "$DURATION" -D keys=10000 -f benches/get_absolute.sql "$DB" 2>&1 \
    | sed -n 's/^tps = \([0-9.]*\) .*/\1/p'; }

tests/cluster.sh start "$DATADIR" "$PGPORT" "shared_buffers = 1GB"
"$PGBIN/psql" -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"
q "CREATE EXTENSION pg_cache"
q "SELECT count(cache_set('a:' || i, convert_to(repeat('x', 128), 'UTF8'), ttl => '1 hour')) FROM generate_series(1, 10000) i" >/dev/null

{
echo "pg_cache eviction benchmark, $("$PG_CONFIG" --version), $(nproc) cores, $(date -u +%F), batch size $("$PGBIN/psql" -XAtq -d postgres -c 'SHOW pg_cache.eviction_batch_size')"

# 1. Throughput: the worker alone on EXPIRED expired rows.
reload_with off; sleep 1.5
expire_rows "$EXPIRED"
before=$(evicted_total)
reload_with on
start=$(now_ms)
while [ "$(evicted_total)" -lt $((before + EXPIRED)) ]; do sleep 0.05; done
elapsed=$(( $(now_ms) - start ))
echo "eviction throughput: $EXPIRED expired rows in ${elapsed} ms = $(( EXPIRED * 1000 / elapsed )) rows/s (from reload to done, including up to one eviction_interval of wait)"

# 2. cache_get at 8 clients, while the worker is idle and while it sweeps EXPIRED rows.
idle=$(get_ops)
reload_with off; sleep 1.5
expire_rows "$EXPIRED"
before=$(evicted_total)
reload_with on
sweeping=$(get_ops)
swept=$(( $(evicted_total) - before ))
echo "cache_get, 8 clients: $idle ops/s with the worker idle, $sweeping ops/s while it evicted $swept rows: ratio $(awk -v a="$sweeping" -v b="$idle" 'BEGIN { printf "%.2f", a / b }')"
while [ "$(evicted_total)" -lt $((before + EXPIRED)) ]; do sleep 0.1; done

# 3. Churn: 8 clients set 1 s entries under new keys for CHURN seconds; the worker evicts them.
q "VACUUM pg_cache_entries"
hex='\x'$(head -c 1024 /dev/urandom | od -An -tx1 -v | tr -d ' \n')
sets=$("$PGBIN/pgbench" -n -M prepared -c 8 -j 8 -T "$CHURN" -D value="$hex" -f benches/churn.sql "$DB" 2>&1 | sed -n 's/^tps = \([0-9.]*\) .*/\1/p')
report_churn() {
    q "SELECT format('  %s: live entries %s (%s of keys and values), stored rows %s, table with TOAST and index %s',
                     '$1', count(*) FILTER (WHERE expires_at > clock_timestamp()),
                     pg_size_pretty(coalesce(sum(octet_length(key) + octet_length(value)) FILTER (WHERE expires_at > clock_timestamp()), 0)),
                     count(*), pg_size_pretty(pg_total_relation_size('pg_cache_entries')))
       FROM pg_cache_entries WHERE key LIKE 'churn:%'"
}
echo "churn: ${CHURN} s of cache_set at 8 clients, incompressible 1 KiB values, 1 s ttl, new keys: $sets sets/s"
report_churn "at the end"
sleep 3
report_churn "3 s later"
q "SELECT format('  vacuums by the evictor %s, by autovacuum %s', vacuum_count, autovacuum_count) FROM pg_stat_user_tables WHERE relname = 'pg_cache_entries'"

# 4. Many databases: 50 databases with FLEET_ROWS expired entries each, eviction turned on at
# once; the time until every one is empty, with pg_cache.max_workers = 1 and 2.
FLEET=50
if [ "$QUICK" = 1 ]; then FLEET_ROWS=2000; else FLEET_ROWS=20000; fi
for i in $(seq 1 $FLEET); do
    "$PGBIN/psql" -X -q -d postgres -c "DROP DATABASE IF EXISTS fleet_$i WITH (FORCE)" -c "CREATE DATABASE fleet_$i" \
        && "$PGBIN/psql" -X -q -d "fleet_$i" -c "CREATE EXTENSION pg_cache" >/dev/null
done
fleet_empty() {
    for i in $(seq 1 $FLEET); do
        [ "$("$PGBIN/psql" -X -A -t -q -d "fleet_$i" -c "SELECT count(*) FROM pg_cache_entries")" = 0 ] || return 1
    done
}
for workers in 1 2; do
    "$PGBIN/psql" -X -q -d postgres -c "ALTER SYSTEM SET pg_cache.max_workers = $workers" >/dev/null
    reload_with off
    tests/cluster.sh stop "$DATADIR" && tests/cluster.sh start "$DATADIR" "$PGPORT"
    for i in $(seq 1 $FLEET); do expire_rows "$FLEET_ROWS" "fleet_$i"; done
    reload_with on
    start=$(now_ms)
    deadline=$((SECONDS + 600))
    until fleet_empty || [ "$SECONDS" -ge "$deadline" ]; do sleep 0.2; done
    if fleet_empty; then
        echo "$FLEET databases x $FLEET_ROWS expired entries, pg_cache.max_workers = $workers: all evicted $(( $(now_ms) - start )) ms after eviction was turned on"
    else
        echo "$FLEET databases x $FLEET_ROWS expired entries, pg_cache.max_workers = $workers: NOT all evicted after 600 s"
    fi
done
"$PGBIN/psql" -X -q -d postgres -c "ALTER SYSTEM RESET pg_cache.max_workers" >/dev/null
tests/cluster.sh stop "$DATADIR" && tests/cluster.sh start "$DATADIR" "$PGPORT"
for i in $(seq 1 $FLEET); do "$PGBIN/psql" -X -q -d postgres -c "DROP DATABASE fleet_$i WITH (FORCE)"; done
} | tee "$OUT"
cp "$OUT" results/latest-eviction.txt
