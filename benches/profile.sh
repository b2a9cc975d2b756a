#!/usr/bin/env bash
# Where the time goes: `perf record` of the whole machine while pgbench runs SELECT 1, a plain
# primary-key SELECT, absolute and sliding cache_get, cache_get_many of 100 and its `= ANY`
# baseline at 8 clients (8 s each, on the benchmark cluster of run.sh), then each run's samples of
# the postgres processes by category (benches/profile_categories.awk) and the CPU time per call;
# written to results/latest-profile.txt, which benches/readme.sh includes. Needs perf (Debian: linux-perf) and root or perf_event_paranoid <= 1
# for kernel samples.
set -euo pipefail
cd "$(dirname "$0")/.."
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PGBIN=$("$PG_CONFIG" --bindir)
DATADIR=${BENCH_DATADIR:-${PG_CACHE_DATA_ROOT:-/tmp/pg_cache}/bench}
export PGHOST=${PG_CACHE_SOCKET_DIR:-/tmp} PGPORT=${BENCH_PORT:-$((5495 + ${PG_CACHE_PORT_OFFSET:-0}))} PGUSER=postgres
DB=pg_cache_profile
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
command -v perf >/dev/null || { echo "profile: perf is not installed (Debian: apt-get install linux-perf)" >&2; exit 1; }

tests/cluster.sh start "$DATADIR" "$PGPORT" "shared_buffers = 1GB"
"$PGBIN/psql" -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
"$PGBIN/psql" -X -q -d "$DB" -v keys=10000 -v size=128 -f benches/setup.sql >/dev/null
# CASES: the benches/ scripts to profile (default: the round-trip floor, a plain primary-key
# SELECT, absolute and sliding gets, and the 100-key batches with their = ANY baseline).
CASES=${CASES:-floor plain_select get_absolute get_sliding_together get_many plain_select_many}
mkdir -p results
OUT=results/profile-$(date -u +%Y%m%dT%H%M%SZ).txt
for case in $CASES; do
    tps=$(perf record -q -a -g -F 997 -o "$WORK/$case.data" -- \
        "$PGBIN/pgbench" -n -M prepared -c 8 -j 8 -T 8 -D keys=10000 -D value='\x00' -f "benches/$case.sql" "$DB" 2>/dev/null \
        | sed -n 's/^tps = \([0-9.]*\) .*/\1/p')
    perf report -i "$WORK/$case.data" --stdio --no-children -g none --sort comm,dso,sym --percent-limit 0 2>/dev/null \
        | grep -E '^ +[0-9]' >"$WORK/$case.txt"
    echo "== $case: $tps ops/s at 8 clients, $(nproc) cores"
    awk -v tps="$tps" -v cores="$(nproc)" -f benches/profile_categories.awk "$WORK/$case.txt"
done | tee "$OUT"
cp "$OUT" results/latest-profile.txt
