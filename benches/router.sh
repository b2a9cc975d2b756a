#!/usr/bin/env bash
# pg_cache_router's cost: cache_get and cache_set through a router over 4 shards against the same
# calls made directly on one shard, at 1 and 8 clients, in one run; cache_get_many of 100 keys
# both ways. All servers share this machine's CPUs, so this measures what routing costs, not what
# sharding gains. Writes results/router-<time>.txt (and results/latest-router.txt).
#   QUICK=1   3 s runs instead of 6
set -euo pipefail
cd "$(dirname "$0")/.."

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PGBIN=$("$PG_CONFIG" --bindir)
major=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
if [ "$major" != 15 ]; then
    echo "router benchmark skipped: PL/Proxy is packaged for PostgreSQL 15 only, and this is PostgreSQL $major"
    exit 0
fi
if [ "${QUICK:-0}" = 1 ]; then DURATION=3; else DURATION=${DURATION:-6}; fi
KEYS=10000
DATA=${BENCH_DATADIR:-${PG_CACHE_DATA_ROOT:-/tmp/pg_cache}/bench}-router
ROUTER_PORT=$((5465 + ${PG_CACHE_PORT_OFFSET:-0}))
SHARD_PORTS=($((5466 + ${PG_CACHE_PORT_OFFSET:-0})) $((5467 + ${PG_CACHE_PORT_OFFSET:-0})) $((5468 + ${PG_CACHE_PORT_OFFSET:-0})) $((5469 + ${PG_CACHE_PORT_OFFSET:-0})))
export PGHOST=${PG_CACHE_SOCKET_DIR:-/tmp} PGUSER=postgres
mkdir -p results
OUT=results/router-$(date -u +%Y%m%dT%H%M%SZ).txt

q() { PGPORT=$1 "$PGBIN/psql" -X -A -t -q -v ON_ERROR_STOP=1 -d "$2" -c "$3"; }
# ops PORT DB CLIENTS SCRIPT: pgbench's calls per second
ops() {
    PGPORT=$1 "$PGBIN/pgbench" -n -M prepared -c "$3" -j "$3" -T "$DURATION" -D keys=$KEYS -D value="'$(printf 'x%.0s' $(seq 128))'" -f "benches/$4" "$2" 2>&1 \
        | sed -n 's/^tps = \([0-9.]*\) .*/\1/p'
}

clusters=(router shard1 shard2 shard3 shard4)
ports=("$ROUTER_PORT" "${SHARD_PORTS[@]}")
destroy() { for name in "${clusters[@]}"; do tests/cluster.sh destroy "$DATA/$name" & done; wait; }
trap destroy EXIT
destroy
for i in "${!clusters[@]}"; do tests/cluster.sh start "$DATA/${clusters[$i]}" "${ports[$i]}" & done
wait
for port in "${SHARD_PORTS[@]}"; do q "$port" postgres "CREATE DATABASE cache"; q "$port" cache "CREATE EXTENSION pg_cache"; done
# The direct calls go to a database of their own on shard 1, holding every key.
q "${SHARD_PORTS[0]}" postgres "CREATE DATABASE direct"
q "${SHARD_PORTS[0]}" direct "CREATE EXTENSION pg_cache"
q "$ROUTER_PORT" postgres "CREATE DATABASE cache"
q "$ROUTER_PORT" cache "SET client_min_messages = warning; CREATE EXTENSION pg_cache_router CASCADE"
q "$ROUTER_PORT" cache "SELECT cache_router.configure_shards(ARRAY[$(printf "'host=127.0.0.1 port=%s dbname=cache user=postgres'," "${SHARD_PORTS[@]}" | sed 's/,$//')])" >/dev/null
populate="SELECT cache_set_many(array_agg('a:' || i), array_agg(convert_to(repeat('x', 128), 'UTF8')), ttl => '1 hour') FROM generate_series(1, $KEYS) i"
q "$ROUTER_PORT" cache "$populate" >/dev/null
q "${SHARD_PORTS[0]}" direct "$populate" >/dev/null

{
echo "pg_cache_router benchmark, $("$PG_CONFIG" --version), $(nproc) cores, $(date -u +%F): 4 shards and the router on this machine, $KEYS keys of 128 bytes, ${DURATION} s per run, ops/s"
printf '%-32s %8s %12s %12s %8s\n' case clients direct router ratio
for case in "cache_get get_absolute.sql" "cache_set set.sql" "cache_get_many(100 keys) get_many.sql"; do
    name=${case% *} script=${case##* }
    for clients in 1 8; do
        direct=$(ops "${SHARD_PORTS[0]}" direct "$clients" "$script")
        routed=$(ops "$ROUTER_PORT" cache "$clients" "$script")
        printf '%-32s %8s %12.0f %12.0f %8.2f\n' "$name" "$clients" "$direct" "$routed" "$(awk -v r="$routed" -v d="$direct" 'BEGIN { print r / d }')"
    done
done
} | tee "$OUT"
cp "$OUT" results/latest-router.txt
