#!/usr/bin/env bash
# The invalidation feed's relay under load: 4 clients set keys with pg_cache.notify on while a
# listener collects what it hears and the relay is terminated mid-run; every key set is heard
# (or {"all": true} covers it). The relay steps aside for DROP DATABASE. With few background
# worker slots, relays stay within pg_cache.max_relays and nothing fails when no slot is left.
# Expects pg_cache installed (make install); the listener is a dblink connection (contrib).
set -uo pipefail
cd "$(dirname "$0")/.."

source tests/lib.sh
DATADIR=$PG_CACHE_DATA_ROOT/feed
export PGPORT
PGPORT=$(port_for feed)
DB=feed

# Slots for the launcher, the default two relays and one evictor.
start_cluster "$DATADIR" "$PGPORT" "max_worker_processes = 4"
q postgres "CREATE DATABASE $DB" && q "$DB" "CREATE EXTENSION pg_cache" && q "$DB" "CREATE EXTENSION dblink"
relays() { q "$DB" "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_cache invalidation relay' AND datname = '$DB'"; }

# The listener: a dblink connection of a psql session that collects payloads for 14 s, then
# says how many distinct keys it heard and whether it heard all.
listener_out=$(mktemp)
"$PGBIN/psql" -X -A -t -q -d "$DB" >"$listener_out" 2>&1 <<SQL &
SELECT dblink_connect('listener', 'dbname=$DB port=$PGPORT host=$PGHOST user=postgres') \gset
SELECT dblink_exec('listener', 'LISTEN pg_cache_invalidation') \gset
CREATE TEMP TABLE heard (payload jsonb);
DO \$\$
BEGIN
    WHILE clock_timestamp() < statement_timestamp() + interval '14 s' LOOP
        INSERT INTO heard SELECT extra::jsonb FROM dblink_get_notify('listener');
        PERFORM pg_sleep(0.02);
    END LOOP;
END
\$\$;
SELECT (SELECT count(DISTINCT k) FROM heard, jsonb_array_elements_text(payload -> 'keys') AS k)
       || ' ' || (SELECT count(*) FROM heard WHERE payload ? 'all');
SQL
listener=$!
sleep 1

cat >"$DATADIR.writes.sql" <<'SQL'
\set k random(1, 1000000000)
SELECT cache_set('w:' || :k, 'v', ttl => '1 hour');
SQL
PGOPTIONS="-c pg_cache.notify=on" "$PGBIN/pgbench" -n -M prepared -c 4 -j 4 -T 8 -f "$DATADIR.writes.sql" "$DB" >/dev/null 2>&1 &
writers=$!
sleep 3
check "under load a relay sends the database's notifications" test "$(relays)" = 1
relay_pid() { q "$DB" "SELECT pid FROM pg_stat_activity WHERE backend_type = 'pg_cache invalidation relay'"; }
first_relay=$(relay_pid)
q "$DB" "SELECT pg_cancel_backend($first_relay)" >/dev/null
sleep 0.5
check "pg_cancel_backend does not stop the relay (it has no statement to cancel)" test "$(relay_pid)" = "$first_relay"
q "$DB" "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE backend_type = 'pg_cache invalidation relay'" >/dev/null
check "after the relay is terminated, the next transactions start another" wait_for 5 "$DB" \
    "SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'pg_cache invalidation relay' AND datname = '$DB'"
wait "$writers"
wait "$listener"
rm -f "$DATADIR.writes.sql"
read -r heard all <<<"$(tail -1 "$listener_out")"
set_keys=$(q "$DB" "SELECT count(*) FROM pg_cache_entries WHERE key LIKE 'w:%'")
echo "keys set: $set_keys, distinct keys heard: $heard, notifications saying all: $all"
check "every key set was heard, the relay's termination included" test "$heard" = "$set_keys" -o "${all:-0}" -gt 0
check "the listener heard something at all" test "${heard:-0}" -gt 1000
rm -f "$listener_out"

check "a relay is connected before DROP DATABASE" test "$(relays)" = 1
started=$(date +%s%N)
q postgres "DROP DATABASE $DB"
elapsed_ms=$((($(date +%s%N) - started) / 1000000))
check "DROP DATABASE does not wait for the relay (took $elapsed_ms ms)" test "$elapsed_ms" -lt 2000
# Three databases want a relay and are due for eviction at once: two relays (the cap), and the
# launcher finds no slot for some evictors without failing.
for db in f1 f2 f3; do
    q postgres "CREATE DATABASE $db" && q "$db" "CREATE EXTENSION pg_cache"
    q "$db" "SET pg_cache.notify = on; SELECT cache_set('k', 'v'), count(cache_set('short ' || i, 'v', ttl => '1 s')) FROM generate_series(1, 100) i" >/dev/null
done
sleep 4
check "relays stay within pg_cache.max_relays (2)" \
    test "$(q postgres "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'pg_cache invalidation relay'")" -le 2
check "with every worker slot taken the server keeps running (no crash, no restart)" \
    not_restarted
for db in f1 f2 f3; do
    q "$db" "SET pg_cache.notify = on; SELECT cache_set('k2', 'v')" >/dev/null
done
check "writes keep working in every database" test "$(q f3 "SELECT convert_from(cache_get('k2'), 'UTF8')")" = v
summary feed
