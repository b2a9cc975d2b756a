#!/usr/bin/env bash
# The stampede (after run.sh, on its cluster): 64 clients miss one cold key whose computation
# takes 200 ms, ROUNDS times, first as the cache-aside code most apps have (cache_get, on a miss
# compute and cache_set: every client that missed computes), then with cache_get_or_lease (one
# computes, the others wait for its fill). Reports computations per expiry and the p50, p99 and
# max latency of a client's read. Writes results/stampede-<time>.txt (and
# results/latest-stampede.txt).
#   QUICK=1   3 rounds instead of 10
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then ROUNDS=3; else ROUNDS=10; fi
CLIENTS=64
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PGBIN=$("$PG_CONFIG" --bindir)
DATADIR=${BENCH_DATADIR:-${PG_CACHE_DATA_ROOT:-/tmp/pg_cache}/bench}
export PGHOST=${PG_CACHE_SOCKET_DIR:-/tmp} PGPORT=${BENCH_PORT:-$((5495 + ${PG_CACHE_PORT_OFFSET:-0}))} PGUSER=postgres
DB=pg_cache_stampede
mkdir -p results
OUT=results/stampede-$(date -u +%Y%m%dT%H%M%SZ).txt
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

q() { "$PGBIN/psql" -X -A -t -q -v ON_ERROR_STOP=1 -d "$DB" -c "$1"; }
report() { echo "$*" | tee -a "$OUT"; }

tests/cluster.sh start "$DATADIR" "$PGPORT" "max_connections = 120"
"$PGBIN/psql" -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
q "CREATE EXTENSION pg_cache;
   CREATE UNLOGGED TABLE reads (approach text, round int, computed bool, took interval);"
# An app server's read of one key, in one transaction: cache-aside, or with a lease.
q "CREATE FUNCTION cache_aside(round int) RETURNS void LANGUAGE plpgsql AS \$\$
DECLARE started timestamptz := clock_timestamp(); value bytea := cache_get('report:' || round);
BEGIN
    IF value IS NULL THEN
        PERFORM pg_sleep(0.2);
        PERFORM cache_set('report:' || round, 'computed', ttl => '1 hour');
    END IF;
    INSERT INTO reads VALUES ('cache_get + cache_set', round, value IS NULL, clock_timestamp() - started);
END \$\$;
CREATE FUNCTION with_lease(round int) RETURNS void LANGUAGE plpgsql AS \$\$
DECLARE started timestamptz := clock_timestamp(); answer record;
BEGIN
    SELECT * INTO answer FROM cache_get_or_lease('leased:' || round, wait => '5 s', beta => 0);
    IF answer.status = 'miss' THEN
        PERFORM pg_sleep(0.2);
        PERFORM cache_fill('leased:' || round, 'computed', answer.lease, ttl => '1 hour');
    END IF;
    INSERT INTO reads VALUES ('cache_get_or_lease', round, answer.status = 'miss', clock_timestamp() - started);
END \$\$;"

for round in $(seq "$ROUNDS"); do
    for function in cache_aside with_lease; do
        echo "SELECT $function($round);" >"$WORK/read.sql"
        "$PGBIN/pgbench" -n -c "$CLIENTS" -j 4 -t 1 -f "$WORK/read.sql" "$DB" >"$WORK/out" 2>&1 || { cat "$WORK/out"; exit 1; }
    done
done

report "The stampede: $CLIENTS clients miss one cold key whose computation takes 200 ms, $ROUNDS times"
report ""
report "| approach | computations per expiry | p50 ms | p99 ms | max ms |"
report "|---|---:|---:|---:|---:|"
q "SELECT format('| %s | %s | %s | %s | %s |', approach,
              round(count(*) FILTER (WHERE computed)::numeric / $ROUNDS, 1),
              round(extract(epoch FROM percentile_disc(0.5) WITHIN GROUP (ORDER BY took)) * 1000),
              round(extract(epoch FROM percentile_disc(0.99) WITHIN GROUP (ORDER BY took)) * 1000),
              round(extract(epoch FROM max(took)) * 1000))
   FROM reads GROUP BY approach ORDER BY approach = 'cache_get_or_lease'" | tee -a "$OUT"
cp "$OUT" results/latest-stampede.txt
