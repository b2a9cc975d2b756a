#!/usr/bin/env bash
# Tags and the invalidation feed, measured (after run.sh, on its cluster): cache_get of tagged
# against untagged entries and cache_set with three tags against none, each as the median of 5
# alternating runs; cache_get with the statistics counters against without (the same way);
# cache_set with pg_cache.notify on against off (a listener consuming), through the relay and
# without it; the latency from commit to a listener at 1,000 changes/s; and removing the 10,000
# entries of one tag out of 1,000,000 while other sessions read other keys. Writes results/tags-<time>.txt (and
# results/latest-tags.txt).
#   QUICK=1   3 s runs, 3 rounds, 200k entries
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then DURATION=3; ROUNDS=3; ENTRIES=200000; else DURATION=6; ROUNDS=5; ENTRIES=1000000; fi
KEYS=10000
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PGBIN=$("$PG_CONFIG" --bindir)
DATADIR=${BENCH_DATADIR:-${PG_CACHE_DATA_ROOT:-/tmp/pg_cache}/bench}
export PGHOST=${PG_CACHE_SOCKET_DIR:-/tmp} PGPORT=${BENCH_PORT:-$((5495 + ${PG_CACHE_PORT_OFFSET:-0}))} PGUSER=postgres
DB=pg_cache_tags
mkdir -p results
OUT=results/tags-$(date -u +%Y%m%dT%H%M%SZ).txt
WORK=$(mktemp -d)
LISTENER=
cleanup() { [ -z "$LISTENER" ] || kill "$LISTENER" 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

q() { "$PGBIN/psql" -X -A -t -q -v ON_ERROR_STOP=1 -d "$DB" -c "$1"; }
report() { echo "$*" | tee -a "$OUT"; }

# The listener runs in a virtual environment with the psycopg the Python example pins.
python3 -m venv benches/.venv && benches/.venv/bin/pip install -q "$(grep '^psycopg' examples/python/requirements.txt)"
start_listener() { # start_listener MODE: until stop_listener, which prints its result
    benches/.venv/bin/python benches/feed_listener.py "$1" "$DB" >"$WORK/listener" &
    LISTENER=$!
    for _ in $(seq 100); do grep -q listening "$WORK/listener" 2>/dev/null && return; sleep 0.1; done
}
# stop_listener: its result in HEARD (not in a subshell: the listener is this shell's child)
stop_listener() { kill -TERM "$LISTENER"; wait "$LISTENER" || true; LISTENER=; HEARD=$(tail -1 "$WORK/listener"); }

tests/cluster.sh start "$DATADIR" "$PGPORT" "shared_buffers = 1GB"
"$PGBIN/psql" -X -q -d postgres -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB"
q "CREATE EXTENSION pg_cache"
q "SELECT count(cache_set('a:' || i, convert_to(repeat('x', 128), 'UTF8'), ttl => '1 hour'))
        + count(cache_set('t:' || i, convert_to(repeat('x', 128), 'UTF8'), ttl => '1 hour',
                          tags => ARRAY['tenant:' || i % 100, 'kind:' || i % 10, 'item:' || i]))
   FROM generate_series(1, $KEYS) i" >/dev/null
q "VACUUM ANALYZE pg_cache_entries" >/dev/null

# ops/s of SCRIPT at CLIENTS clients for DURATION s, with PGOPTIONS as given in the environment
ops() {
    local hex='\x'$(head -c 128 /dev/urandom | od -An -tx1 -v | tr -d ' \n')
    "$PGBIN/pgbench" -n -M prepared -c "$2" -j "$2" -T "$DURATION" -D keys=$KEYS -D value="$hex" -f "benches/$1.sql" "$DB" 2>&1 \
        | sed -n 's/^tps = \([0-9.]*\) .*/\1/p'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# alternating NAME BASE_SCRIPT BASE_OPTIONS SCRIPT OPTIONS CLIENTS: ROUNDS runs of each, one after
# the other; the median ops/s of each and the median of the round ratios.
alternating() {
    local base ops_of ratios=() bases=() others=()
    for _ in $(seq "$ROUNDS"); do
        base=$(PGOPTIONS=$3 ops "$2" "$6")
        ops_of=$(PGOPTIONS=$5 ops "$4" "$6")
        bases+=("$base") others+=("$ops_of")
        ratios+=("$(awk -v a="$ops_of" -v b="$base" 'BEGIN { printf "%.3f", a / b }')")
    done
    report "$(printf '%-44s %2s clients: %8.0f against %8.0f ops/s, median ratio %s (rounds: %s)' "$1" "$6" \
        "$(printf '%s\n' "${others[@]}" | median)" "$(printf '%s\n' "${bases[@]}" | median)" \
        "$(printf '%s\n' "${ratios[@]}" | median)" "${ratios[*]}")"
}

report "tags and the invalidation feed, $("$PG_CONFIG" --version), $(nproc) cores, $(date -u +%F), ${DURATION}s per run, $ROUNDS rounds"
for clients in 1 8; do
    alternating "cache_get tagged (3 tags) / untagged" get_absolute "" get_tagged "" "$clients"
    alternating "cache_set with 3 tags / without" set "" set_tagged "" "$clients"
done
start_listener count
alternating "cache_get, statistics counted / not" get_absolute "-c pg_cache.track_stats=off" get_absolute "" 8
alternating "cache_set, pg_cache.notify on / off" set "" set "-c pg_cache.notify=on" 8
alternating "cache_set, notify on without the relay / off" set "" set "-c pg_cache.notify=on -c pg_cache.notify_relay=off" 8
stop_listener
report "  (notifications the listener heard: $HEARD)"

for relay in on off; do
    start_listener latency
    PGOPTIONS="-c pg_cache.notify=on -c pg_cache.notify_relay=$relay" "$PGBIN/pgbench" -n -M prepared -c 4 -j 4 -R 1000 \
        -T $((DURATION * 2)) -f benches/set_latency.sql "$DB" >/dev/null 2>&1
    stop_listener
    read -r heard p50 p99 <<<"$HEARD"
    report "feed latency at 1,000 changes/s (relay $relay), set to listener: p50 $p50 ms, p99 $p99 ms ($heard keys heard)"
done

# Removal by tag: ENTRIES entries 'r:N' tagged tenant:(N % 100), so each tenant has ENTRIES / 100.
q "TRUNCATE pg_cache_entries" >/dev/null
q "INSERT INTO pg_cache_entries (key, value, expires_at, absolute_expires_at, tags)
   SELECT 'r:' || i, convert_to(repeat('x', 128), 'UTF8'), now() + interval '1 hour', now() + interval '1 hour',
          ARRAY['tenant:' || i % 100]
   FROM generate_series(0, $ENTRIES - 1) i" >/dev/null
q "VACUUM ANALYZE pg_cache_entries" >/dev/null
# Readers of tenants 50 to 99 for the whole run; tenants 0 to ROUNDS - 1 removed, one at a time,
# with a second between; each removal's start and end on the server's clock.
(cd "$WORK" && "$PGBIN/pgbench" -n -M prepared -c 8 -j 8 -T $((ROUNDS + 3)) -D keys="$ENTRIES" -l --log-prefix=reads \
    -f "$OLDPWD/benches/get_other_tenants.sql" "$DB" >/dev/null 2>&1) &
readers=$!
removals=()
sleep 1.5
for round in $(seq 0 $((ROUNDS - 1))); do
    removals+=("$("$PGBIN/psql" -X -A -t -q -d "$DB" -c "CREATE FUNCTION pg_temp.timed_removal(tag text) RETURNS text LANGUAGE plpgsql AS \$\$
        DECLARE started float8 := extract(epoch FROM clock_timestamp()); removed bigint;
        BEGIN removed := cache_remove_by_tag(ARRAY[tag]);
              RETURN started || ' ' || extract(epoch FROM clock_timestamp()) || ' ' || removed; END \$\$" \
        -c "SELECT pg_temp.timed_removal('tenant:$round')")")
    sleep 1
done
wait "$readers"
# Reads completed inside the removals' windows against those outside them (a 0.1 s margin apart).
printf '%s\n' "${removals[@]}" >"$WORK/windows"
cat "$WORK"/reads* | awk -v windows="$WORK/windows" '
    BEGIN { while ((getline line < windows) > 0) { split(line, w, " "); n++; from[n] = w[1]; to[n] = w[2]; inside_time += w[2] - w[1] } }
    { t = $5 + $6 / 1e6; first = (NR == 1 || t < first) ? t : first; last = (t > last) ? t : last
      where = "outside"
      for (i = 1; i <= n; i++) { if (t >= from[i] && t <= to[i]) where = "inside"; else if (t >= from[i] - 0.1 && t <= to[i] + 0.1) where = "margin" }
      count[where]++ }
    END { outside_time = (last - first) - inside_time - n * 0.2
          printf "%.0f %.0f %.3f\n", count["inside"] / inside_time, count["outside"] / outside_time, (count["inside"] / inside_time) / (count["outside"] / outside_time) }' >"$WORK/ratio"
read -r during outside ratio <"$WORK/ratio"
report "cache_remove_by_tag of $((ENTRIES / 100)) entries out of $ENTRIES (seconds, removed): $(printf '%s\n' "${removals[@]}" | awk '{ printf "%.3f (%s) ", $2 - $1, $3 }')"
report "cache_get of other keys, 8 clients: $during ops/s during the removals, $outside outside them: $ratio x"
cp "$OUT" results/latest-tags.txt
