#!/usr/bin/env bash
# pg_cache's reads and batches against their baselines, in alternating runs (A, B, A, B, …) so
# that the machine's drift falls on both: sliding cache_get against absolute cache_get (entries
# stored together, and interleaved with absolute ones) and against the .NET cache's get;
# cache_get_many of 100 against a plain `= ANY` of the same 100 keys and against Redis MGET of
# 100; cache_set_many of 100 against one 100-row `INSERT … SELECT unnest … ON CONFLICT DO UPDATE`.
# A logged cache's get and set against the UNLOGGED cache's and against a plain logged table's
# SELECT and upsert. At 1 and 8 clients, ROUNDS rounds of DURATION s per side (128-byte values,
# 10,000 keys). Prints each round's ratio and writes results/pairs-<time>.txt and
# results/latest-pairs.txt.
#   ROUNDS=N (default 3)   DURATION=N (default 5)   ONLY=REGEX: the pairs whose name matches
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
KEYS=10000
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PGBIN=$("$PG_CONFIG" --bindir)
DATADIR=${BENCH_DATADIR:-${PG_CACHE_DATA_ROOT:-/tmp/pg_cache}/bench}
export PGHOST=${PG_CACHE_SOCKET_DIR:-/tmp} PGPORT=${BENCH_PORT:-$((5495 + ${PG_CACHE_PORT_OFFSET:-0}))} PGUSER=postgres
REDIS_PORT=${BENCH_REDIS_PORT:-$((6395 + ${PG_CACHE_PORT_OFFSET:-0}))}
DB=pg_cache_pairs
RESULTS=results
OUT=$RESULTS/pairs-$(date -u +%Y%m%dT%H%M%SZ).txt
mkdir -p "$RESULTS"

source benches/lib.sh
need redis-server redis-server
need redis-benchmark redis-tools

tests/cluster.sh start "$DATADIR" "$PGPORT" "shared_buffers = 1GB"
"$PGBIN/psql" -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
"$PGBIN/psql" -X -q -d "$DB" -v keys=$KEYS -v size=128 -f benches/setup.sql >/dev/null
trap stop_redis EXIT
start_redis "$REDIS_PORT"
redis-cli -p "$REDIS_PORT" flushall >/dev/null
# The keys MGET reads, with 128-byte values.
redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -t set -n 100000 -r "$KEYS" -d 128 -q >/dev/null
VALUE='\x'$(head -c 128 /dev/urandom | od -An -tx1 -v | tr -d ' \n')

# ops SIDE CLIENTS: calls/s of one run of SIDE (a benches/ script, or redis:COMMAND args…).
ops() {
    local side=$1 clients=$2
    if [[ $side == redis:* ]]; then
        # shellcheck disable=SC2086
        redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c "$clients" -n $((DURATION * (clients == 1 ? 2000 : 8000))) \
            -r "$KEYS" -P 1 --csv ${side#redis:} | awk -F'"' 'NR == 2 { print $4 }'
    else
        "$PGBIN/pgbench" -n -M prepared -c "$clients" -j "$clients" -T "$DURATION" -D keys=$KEYS -D value="$VALUE" \
            -f "benches/$side.sql" "$DB" 2>&1 | sed -n 's/^tps = \([0-9.]*\) .*/\1/p'
    fi
}

# pair NAME A B TARGET: ROUNDS alternating runs of A and B at each client count; the ratio A/B.
pair() {
    local name=$1 a=$2 b=$3 target=$4 clients round x y ratios
    [[ $name =~ ${ONLY:-.} ]] || return 0
    for clients in 1 8; do
        ratios=()
        for round in $(seq "$ROUNDS"); do
            x=$(ops "$a" "$clients")
            y=$(ops "$b" "$clients")
            ratios+=("$(awk -v x="$x" -v y="$y" 'BEGIN { printf "%.2f", x / y }')")
            printf '  %-34s %d clients, round %d: %9.0f / %9.0f\n' "$name" "$clients" "$round" "$x" "$y" >&2
        done
        printf '%-44s %2d clients  ratio %s  (target %s)\n' "$name" "$clients" "$(IFS=' '; echo "${ratios[*]}")" "$target"
    done
}

{
    echo "Alternating runs, $ROUNDS rounds of $DURATION s per side, 128-byte values, $KEYS keys; ratio of each round:"
    pair "sliding get (together) / absolute get" get_sliding_together get_absolute "≥ 0.95"
    pair "sliding get (interleaved) / absolute get" get_sliding get_absolute "≥ 0.95"
    pair "sliding get (together) / dotnet get" get_sliding_together dotnet_get "≥ 2.0 at 8 clients"
    pair "get_many 100 / plain select 100" get_many plain_select_many "≥ 1.0"
    pair "get_many 100 / redis mget 100" get_many "redis:MGET $(printf 'key:__rand_int__ %.0s' $(seq 100))" "≥ 0.4"
    pair "set_many 100 / plain upsert 100" set_many plain_upsert_many "≥ 1.0"
    pair "logged get / UNLOGGED get" get_logged get_absolute "(measured)"
    pair "logged get / plain logged select" get_logged plain_select_logged "(measured)"
    pair "logged set / UNLOGGED set" set_logged set "(measured)"
    pair "logged set / plain logged upsert" set_logged plain_upsert_logged "(measured)"
} | tee "$OUT"
# A subset (ONLY) does not replace the latest full run.
[ -n "${ONLY:-}" ] || cp "$OUT" "$RESULTS/latest-pairs.txt"
