#!/usr/bin/env bash
# The Keyv store benchmark (clients/node/bench/keyv-bench.mjs): KeyvPgCache against
# @keyv/postgres 2.2.3 (useUnloggedTable) on the same PostgreSQL and @keyv/redis on a Redis of its
# own (Debian's redis-server, loopback only), all behind Keyv in one Node.js process: ops/s of get
# (hit), set and getMany of 20 at 1 and 32 calls in flight, and the table sizes after set churn
# with a 60 s ttl. Writes benches/results/keyv-<time>.md (and keyv-latest.md).
#   SECONDS_PER_CASE=N  seconds per measurement (default 1); ROUNDS=N interleaved measurements
#                       per adapter and case, medians reported (default 10)
#   CHURN_SECONDS=N     duration of the churn (default 600: 10 minutes; 0 skips it)
#   CHURN_TTL_SECONDS=N ttl of the churned keys (default 60)
#   CHURN_RATE=N        sets/s of new keys into each PostgreSQL store during the churn (default 1000)
set -euo pipefail
cd "$(dirname "$0")/.."

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PGBIN=$("$PG_CONFIG" --bindir)
DATADIR=${PG_CACHE_DATA_ROOT:-/tmp/pg_cache}/keyv-bench
export PGHOST=${PG_CACHE_SOCKET_DIR:-/tmp} PGPORT=$((5870 + ${PG_CACHE_PORT_OFFSET:-0})) PGUSER=postgres
REDIS_PORT=$((6470 + ${PG_CACHE_PORT_OFFSET:-0}))
RESULTS=benches/results
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$RESULTS"

source benches/lib.sh
need redis-server redis-server
need redis-cli redis-tools
command -v node >/dev/null || { echo "keyv bench: needs Node.js 20 or later and npm" >&2; exit 1; }

(cd clients/node && npm ci --no-audit --no-fund >/dev/null && npm run build >/dev/null)

OUT=$PWD/$RESULTS/keyv-$STAMP.md
stop_all() {
    rm -f "$OUT.head" "$OUT.body"
    stop_redis
    tests/cluster.sh destroy "$DATADIR"
}
trap stop_all EXIT
tests/cluster.sh destroy "$DATADIR"
tests/cluster.sh start "$DATADIR" "$PGPORT" "shared_buffers = 1GB" "max_connections = 200"
start_redis "$REDIS_PORT"

psql() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }
for db in keyv_bench keyv_churn; do
    psql -d postgres -c "CREATE DATABASE $db"
    psql -d "$db" -c "CREATE EXTENSION pg_cache"
done

echo "Keyv stores benchmark, $("$PG_CONFIG" --version), $(redis-server --version | cut -d' ' -f1-3), Node.js $(node --version), $(nproc) cores, $(date -u +%F)"
{
    echo "Command: \`SECONDS_PER_CASE=${SECONDS_PER_CASE:-1} ROUNDS=${ROUNDS:-10} CHURN_SECONDS=${CHURN_SECONDS:-600} CHURN_TTL_SECONDS=${CHURN_TTL_SECONDS:-60} CHURN_RATE=${CHURN_RATE:-1000} benches/keyv.sh\`; $("$PG_CONFIG" --version), $(redis-server --version | cut -d' ' -f1-3), Node.js $(node --version), $(nproc) cores, $(date -u +%F)."
    echo
} >"$OUT.head"
(cd clients/node && PG_URL=postgresql://postgres@127.0.0.1:$PGPORT/keyv_bench \
    CHURN_URL=postgresql://postgres@127.0.0.1:$PGPORT/keyv_churn \
    REDIS_URL=redis://127.0.0.1:$REDIS_PORT SECONDS=${SECONDS_PER_CASE:-1} ROUNDS=${ROUNDS:-10} \
    CHURN_SECONDS=${CHURN_SECONDS:-600} CHURN_TTL_SECONDS=${CHURN_TTL_SECONDS:-60} CHURN_RATE=${CHURN_RATE:-1000} OUT="$OUT.body" \
    node bench/keyv-bench.mjs)
cat "$OUT.head" "$OUT.body" >"$OUT" && rm -f "$OUT.head" "$OUT.body"
cp "$OUT" "$RESULTS/keyv-latest.md"
echo "written: $OUT"
