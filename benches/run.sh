#!/usr/bin/env bash
# `make bench`: pg_cache against the round-trip floor (SELECT 1), plain SQL on an UNLOGGED table,
# the SQL Microsoft.Extensions.Caching.Postgres sends, and Redis, with pgbench / redis-benchmark at
# 1 and 8 clients. Prints one table (ops/s and the ratio to SELECT 1 at the same client count) and
# writes results/bench-<time>.{csv,md,png} (and results/latest.*).
#   QUICK=1      128-byte payloads only, 3 s runs, no 1M-key run (about 2 minutes)
#   DURATION=N   seconds per pgbench run (default 6)
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then PAYLOADS=(128); DURATION=${DURATION:-3}; else PAYLOADS=(128 1024 10240); DURATION=${DURATION:-6}; fi
CLIENT_COUNTS=(1 8)
KEYS=10000
LARGE_KEYS=1000000
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PGBIN=$("$PG_CONFIG" --bindir)
DATADIR=${BENCH_DATADIR:-${PG_CACHE_DATA_ROOT:-/tmp/pg_cache}/bench}
export PGHOST=${PG_CACHE_SOCKET_DIR:-/tmp} PGPORT=${BENCH_PORT:-$((5495 + ${PG_CACHE_PORT_OFFSET:-0}))} PGUSER=postgres
REDIS_PORT=${BENCH_REDIS_PORT:-$((6395 + ${PG_CACHE_PORT_OFFSET:-0}))}
DB=pg_cache_bench
RESULTS=results
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
CSV=$RESULTS/bench-$STAMP.csv
MD=$RESULTS/bench-$STAMP.md
mkdir -p "$RESULTS"

source benches/lib.sh
need redis-server redis-server
need redis-benchmark redis-tools
need gnuplot gnuplot-nox

psql_bench() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 "$@"; }

tests/cluster.sh start "$DATADIR" "$PGPORT" "shared_buffers = 1GB"
psql_bench -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1 || psql_bench -d postgres -c "CREATE DATABASE $DB"

trap stop_redis EXIT
start_redis "$REDIS_PORT"

echo "case,payload,clients,ops_per_s,ratio_to_select_1,failed" >"$CSV"
declare -A FLOOR

# record CASE PAYLOAD CLIENTS OPS FAILED
record() {
    local ratio
    ratio=$(awk -v ops="$4" -v floor="${FLOOR[$3]:-$4}" 'BEGIN { printf "%.2f", ops / floor }')
    echo "$1,$2,$3,$4,$ratio,$5" >>"$CSV"
    printf '%-16s %7s B %3s clients %10.0f ops/s  %5s x SELECT 1%s\n' "$1" "$2" "$3" "$4" "$ratio" \
        "$([ "$5" = 0 ] || echo "  ($5 failed)")"
}

# pgbench_case CASE SCRIPT PAYLOAD CLIENTS [KEYS]
pgbench_case() {
    local hex out ops failed
    hex='\x'$(head -c "$3" /dev/urandom | od -An -tx1 -v | tr -d ' \n')
    out=$("$PGBIN/pgbench" -n -M prepared -c "$4" -j "$4" -T "$DURATION" -D keys="${5:-$KEYS}" -D value="$hex" \
        -f "benches/$2.sql" "$DB" 2>&1) || { echo "$out" >&2; return 1; }
    ops=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out")
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out")
    [ "$1" = "select 1" ] && FLOOR[$4]=$ops
    record "$1" "$3" "$4" "$ops" "${failed:-0}"
}

# redis_case CASE COMMAND PAYLOAD CLIENTS
redis_case() {
    local requests=$((DURATION * ($4 == 1 ? 12000 : 60000))) out ops
    out=$(redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c "$4" -n "$requests" -r "$KEYS" -d "$3" -P 1 -t "$2" --csv)
    ops=$(awk -F'"' -v cmd="${2^^}" '$2 == cmd { print $4 }' <<<"$out")
    record "$1" "$3" "$4" "$ops" 0
}

redis_command_case() { # redis_command_case NAME PAYLOAD CLIENTS COMMAND ARGS...: one command, calls/s
    local name=$1 payload=$2 clients=$3 requests out ops
    shift 3
    requests=$((DURATION * ($clients == 1 ? 2000 : 8000)))
    out=$(redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c "$clients" -n "$requests" -r "$KEYS" -P 1 --csv "$@")
    ops=$(awk -F'"' 'NR == 2 { print $4 }' <<<"$out")
    record "$name" "$payload" "$clients" "$ops" 0
}

table_report() { # after each payload: storage and update behaviour of the three tables
    psql_bench -d "$DB" -c "SELECT pg_stat_force_next_flush()" >/dev/null 2>&1 || true
    sleep 1
    psql_bench -d "$DB" -P footer=off -c "
        SELECT relname AS table, $1 AS payload, n_live_tup AS live_rows, n_dead_tup AS dead_rows,
               n_tup_upd AS updates, n_tup_hot_upd AS hot_updates,
               CASE WHEN n_tup_upd > 0 THEN round(100.0 * n_tup_hot_upd / n_tup_upd) END AS hot_pct,
               pg_size_pretty(pg_total_relation_size(relid)) AS total_size,
               pg_size_pretty(pg_total_relation_size(relid) - pg_relation_size(relid)) AS toast_and_indexes
        FROM pg_stat_user_tables WHERE relname IN ('pg_cache_entries', 'bench_dotnet', 'bench_plain') ORDER BY relname" \
        | tee -a "$RESULTS/tables-$STAMP.txt"
}

echo "pg_cache benchmark, $("$PG_CONFIG" --version), $(nproc) cores, $(date -u +%F), ${DURATION}s per run, $KEYS keys"
for payload in "${PAYLOADS[@]}"; do
    echo "--- payload $payload bytes: prepopulating"
    psql_bench -d "$DB" -v keys=$KEYS -v size="$payload" -f benches/setup.sql >/dev/null
    redis-cli -p "$REDIS_PORT" flushall >/dev/null
    redis-benchmark -h 127.0.0.1 -p "$REDIS_PORT" -c 8 -n $((KEYS * 20)) -r "$KEYS" -d "$payload" -t set -q >/dev/null
    for clients in "${CLIENT_COUNTS[@]}"; do
        pgbench_case "select 1" floor "$payload" "$clients"
        pgbench_case "plain select" plain_select "$payload" "$clients"
        pgbench_case "get absolute" get_absolute "$payload" "$clients"
        pgbench_case "get sliding" get_sliding "$payload" "$clients"
        pgbench_case "get sliding together" get_sliding_together "$payload" "$clients"
        pgbench_case "dotnet get" dotnet_get "$payload" "$clients"
        redis_case "redis get" get "$payload" "$clients"
        if [ "$payload" = "${PAYLOADS[0]}" ]; then
            pgbench_case "get miss" get_miss "$payload" "$clients"
            pgbench_case "refresh" refresh "$payload" "$clients"
            pgbench_case "dotnet refresh" dotnet_refresh "$payload" "$clients"
        fi
        if [ "$payload" = "${PAYLOADS[0]}" ]; then
            pgbench_case "get_many 100" get_many "$payload" "$clients"
            pgbench_case "plain select 100" plain_select_many "$payload" "$clients"
            redis_command_case "redis mget 100" "$payload" "$clients" MGET $(printf 'key:__rand_int__ %.0s' $(seq 100))
            pgbench_case "set_many 100" set_many "$payload" "$clients"
            redis_command_case "redis mset 100" "$payload" "$clients" MSET $(printf 'key:__rand_int__ v %.0s' $(seq 100))
            pgbench_case "incr" incr "$payload" "$clients"
            redis_case "redis incr" incr "$payload" "$clients"
            pgbench_case "add hit" add_hit "$payload" "$clients"
            pgbench_case "add miss" add_miss "$payload" "$clients"
            pgbench_case "add+take" take "$payload" "$clients"
            pgbench_case "plain insert new" plain_insert_new "$payload" "$clients"
            pgbench_case "set new" set_new "$payload" "$clients"
        fi
        pgbench_case "get_json" get_json "$payload" "$clients"
        pgbench_case "plain select jsonb" plain_select_json "$payload" "$clients"
        pgbench_case "set_json" set_json "$payload" "$clients"
        pgbench_case "plain upsert jsonb" plain_upsert_json "$payload" "$clients"
        pgbench_case "mixed 90/10" mixed "$payload" "$clients"
        pgbench_case "plain upsert" plain_upsert "$payload" "$clients"
        pgbench_case "set" set "$payload" "$clients"
        pgbench_case "dotnet set" dotnet_set "$payload" "$clients"
        redis_case "redis set" set "$payload" "$clients"
    done
    table_report "$payload"
done

if [ "$QUICK" != 1 ]; then
    echo "--- $LARGE_KEYS keys, payload 128 bytes: prepopulating"
    psql_bench -d "$DB" -v keys=$LARGE_KEYS -c "
        TRUNCATE pg_cache_entries, bench_plain;
        INSERT INTO pg_cache_entries (key, value, expires_at, absolute_expires_at)
            SELECT 'a:' || i, convert_to(repeat('x', 128), 'UTF8'), now() + interval '1 hour', now() + interval '1 hour'
            FROM generate_series(1, $LARGE_KEYS) i;
        INSERT INTO bench_plain SELECT 'a:' || i, convert_to(repeat('x', 128), 'UTF8') FROM generate_series(1, $LARGE_KEYS) i;" \
        -c "VACUUM ANALYZE pg_cache_entries, bench_plain" >/dev/null
    for clients in "${CLIENT_COUNTS[@]}"; do
        pgbench_case "plain select 1M" plain_select 128 "$clients" "$LARGE_KEYS"
        pgbench_case "get absolute 1M" get_absolute 128 "$clients" "$LARGE_KEYS"
    done
fi

# A Markdown table (for the README) and a chart of the 128-byte ratios.
{
    echo "| case | payload | ops/s, 1 client | × SELECT 1 | ops/s, 8 clients | × SELECT 1 |"
    echo "|---|---:|---:|---:|---:|---:|"
    awk -F, 'NR > 1 { key = $1 "," $2; if (!(key in seen)) { seen[key] = 1; order[++n] = key }
                      ops[key "," $3] = $4; ratio[key "," $3] = $5 }
             END { for (i = 1; i <= n; i++) { split(order[i], p, ",")
                   printf "| %s | %s | %.0f | %s | %.0f | %s |\n", p[1], p[2], ops[order[i] ",1"], ratio[order[i] ",1"], ops[order[i] ",8"], ratio[order[i] ",8"] } }' "$CSV"
} >"$MD"
awk -F, 'NR > 1 && $2 == 128 && $1 !~ /1M$/ { key = $1; if (!(key in seen)) { seen[key] = 1; order[++n] = key } r[key "," $3] = $5 }
         END { for (i = 1; i <= n; i++) printf "\"%s\" %s %s\n", order[i], r[order[i] ",1"], r[order[i] ",8"] }' "$CSV" >"$RESULTS/chart-$STAMP.dat"
gnuplot <<GNUPLOT
set terminal pngcairo size 1200,600 noenhanced
set output "$RESULTS/bench-$STAMP.png"
set title "pg_cache benchmark, 128-byte values, $KEYS keys: ops/s as a multiple of SELECT 1 ($(nproc) cores)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set ylabel "x SELECT 1"
set yrange [0:*]
set xtics rotate by -35
set grid ytics
set key outside right top
plot "$RESULTS/chart-$STAMP.dat" using 2:xtic(1) title "1 client", "" using 3 title "8 clients"
GNUPLOT
rm -f "$RESULTS/chart-$STAMP.dat"
echo "--- jsonb stored as CBOR: sizes against compact JSON text"
psql_bench -d "$DB" -f benches/json_sizes.sql | tee "$RESULTS/json-sizes-$STAMP.txt"
cp "$RESULTS/json-sizes-$STAMP.txt" "$RESULTS/latest-json-sizes.txt"
for ext in csv md png; do cp "$RESULTS/bench-$STAMP.$ext" "$RESULTS/latest.$ext"; done
cp "$RESULTS/tables-$STAMP.txt" "$RESULTS/latest-tables.txt"
echo
cat "$MD"
echo
echo "written: $CSV, $MD, $RESULTS/bench-$STAMP.png"
