#!/usr/bin/env bash
# The direct heap and index paths against what users and maintenance do to the cache table: a
# second index, REINDEX … CONCURRENTLY under load, ALTER TABLE, triggers, CHECK constraints,
# row-level security, other unique indexes, read-only transactions. After each, the server has not
# restarted, amcheck finds every index and the heap clean, and no key has two live rows. The cases
# that depend on the order in which sessions act (reads seeing later commits, slides racing
# writers, 40001s, writes racing an inserting session, savepoints) are isolation specs:
# tests/isolation/specs, run by tests/isolation.sh. Expects pg_cache installed (and amcheck, from
# postgresql-contrib).
set -uo pipefail
cd "$(dirname "$0")/.."

source tests/lib.sh
DATADIR=$PG_CACHE_DATA_ROOT/safety
export PGPORT
PGPORT=$(port_for safety)
DB=safety
SECONDS_OF_REINDEX_LOAD=${REINDEX_LOAD_SECONDS:-20}

start_cluster "$DATADIR" "$PGPORT" "restart_after_crash = on"
q postgres "CREATE DATABASE $DB"
q "$DB" "CREATE EXTENSION pg_cache" && q "$DB" "CREATE EXTENSION amcheck"

# amcheck on the heap and every index (see table_checked in lib.sh).
amcheck_clean() { table_checked "$DB"; }
# No key has two live rows, counted without any index.
no_duplicate_keys() {
    test "$(q "$DB" "SET enable_indexscan = off; SET enable_bitmapscan = off; SET enable_indexonlyscan = off;
                     SELECT count(*) FROM (SELECT key FROM pg_cache_entries GROUP BY key HAVING count(*) > 1) twice")" = 0
}
table_intact() { not_restarted && amcheck_clean && no_duplicate_keys; }
fresh_extension() { q "$DB" "DROP EXTENSION pg_cache" && q "$DB" "CREATE EXTENSION pg_cache"; }
set_many() { q "$DB" "SELECT count(cache_set('$1 ' || i, convert_to(repeat('$2', i * 40), 'UTF8'), ttl => '${3:-1 hour}')) FROM generate_series(1, ${4:-20}) i" >/dev/null; }
value_of() { q "$DB" "SELECT convert_from(cache_get('$1'), 'UTF8')" 2>&1; }

# --- A second index: replaces that change its column must give it entries.
q "$DB" "CREATE INDEX entries_by_expiry ON pg_cache_entries (expires_at)"
set_many second a '1 hour'
set_many second b '2 hours'
check "with a second index, 20 replaces keep it complete (index scan finds 20)" \
    test "$(q "$DB" "SET enable_seqscan = off; SET enable_bitmapscan = off;
                     SELECT count(*) FROM pg_cache_entries WHERE expires_at > pg_catalog.clock_timestamp() + interval '90 min'")" = 20
check "with a second index, amcheck is clean and no key has two rows" table_intact
q "$DB" "DROP INDEX entries_by_expiry"

# --- ALTER TABLE … ADD COLUMN: the direct paths decline; every function keeps working.
set_many altered a
q "$DB" "ALTER TABLE pg_cache_entries ADD COLUMN note text, ADD COLUMN weight int DEFAULT 7"
set_many altered b
check "after ADD COLUMN, replaces and reads work" test "$(value_of 'altered 1')" = "$(printf 'b%.0s' $(seq 40))"
check "after ADD COLUMN, the table reads back whole" \
    test "$(q "$DB" "SELECT count(*) FROM pg_cache_entries WHERE key LIKE 'altered %' AND weight = 7 AND note IS NULL")" = 20
check "after ADD COLUMN, the server did not crash and the table is intact" table_intact
fresh_extension

# --- A trigger, a CHECK constraint and row-level security apply to every write and read.
set_many guarded a 1 3
q "$DB" "CREATE TABLE audit (key text, op text)"
q "$DB" "CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS \$\$BEGIN INSERT INTO audit VALUES (coalesce(NEW.key, OLD.key), TG_OP); RETURN coalesce(NEW, OLD); END\$\$"
q "$DB" "CREATE TRIGGER audit BEFORE INSERT OR UPDATE OR DELETE ON pg_cache_entries FOR EACH ROW EXECUTE FUNCTION audit()"
set_many guarded b 1 3
q "$DB" "SELECT cache_get('guarded 1')" >/dev/null
check "a trigger on the table fires for every replace" test "$(q "$DB" "SELECT count(*) FROM audit WHERE op = 'UPDATE'")" = 3
q "$DB" "SELECT cache_set('guarded 4', 'v'), cache_set('guarded 5', 'v')" >/dev/null
q "$DB" "SELECT cache_remove('guarded 4'), cache_take('guarded 5')" >/dev/null
check "a trigger on the table fires for every removal and take" test "$(q "$DB" "SELECT count(*) FROM audit WHERE op = 'DELETE'")" = 2
q "$DB" "DROP TRIGGER audit ON pg_cache_entries"
q "$DB" "ALTER TABLE pg_cache_entries ADD CONSTRAINT small_values CHECK (length(value) < 150)"
check "a CHECK constraint on the table refuses a replace that breaks it (23514)" \
    sqlstate_is 23514 "$DB" "SELECT cache_set('guarded 1', convert_to(repeat('c', 200), 'UTF8'))"
check "the refused replace left the entry as it was" test "$(value_of 'guarded 1')" = "$(printf 'b%.0s' $(seq 40))"
q "$DB" "ALTER TABLE pg_cache_entries DROP CONSTRAINT small_values"
q "$DB" "SELECT cache_set('secret', 'kept')" >/dev/null
q "$DB" "CREATE ROLE tenant; GRANT SELECT, INSERT, UPDATE, DELETE ON pg_cache_entries TO tenant"
q "$DB" "ALTER TABLE pg_cache_entries ENABLE ROW LEVEL SECURITY"
q "$DB" "CREATE POLICY own_keys ON pg_cache_entries TO tenant USING (key LIKE 'tenant:%')"
as_tenant() { "$PGBIN/psql" -X -A -t -q -d "$DB" -c "SET ROLE tenant" -c "$1" 2>&1; }
check "row-level security: a role the policy blocks does not read the key" test "$(as_tenant "SELECT cache_get('secret') IS NULL")" = t
as_tenant "SELECT cache_set('secret', 'overwritten')" >/dev/null
check "row-level security: a role the policy blocks cannot overwrite the key" test "$(value_of secret)" = kept
as_tenant "SELECT cache_remove('secret'), cache_take('secret')" >/dev/null
check "row-level security: a role the policy blocks cannot remove or take the key" test "$(value_of secret)" = kept
as_tenant "SELECT cache_set('tenant:1', 'mine')" >/dev/null
check "row-level security: the role reads and writes its own keys" test "$(as_tenant "SELECT convert_from(cache_get('tenant:1'), 'UTF8')")" = mine
check "after triggers, constraints and policies, the table is intact" table_intact
fresh_extension

# --- New keys are inserted directly, as INSERT … ON CONFLICT inserts them (speculatively).
check "a read-only transaction cannot insert a new key (25006)" \
    sqlstate_is 25006 "$DB" "BEGIN READ ONLY" "SELECT cache_set('ro:new', 'v')"
# Another UNIQUE index (partial, on an expression; not the primary key the upsert names) raises
# 23505, as for the statement.
q "$DB" "CREATE UNIQUE INDEX one_per_value ON pg_cache_entries (md5(value)) WHERE key LIKE 'unique:%'"
q "$DB" "SELECT cache_set('unique:1', 'same value')" >/dev/null
check "a second UNIQUE index refuses a new key with a duplicate value (23505)" \
    sqlstate_is 23505 "$DB" "SELECT cache_set('unique:2', 'same value')"
check "the refused key is not stored" test "$(q "$DB" "SELECT count(*) FROM pg_cache_entries WHERE key = 'unique:2'")" = 0
q "$DB" "DROP INDEX one_per_value"
check "after new keys in savepoints, races and refusals, the table is intact" table_intact

# --- 8 clients setting and reading while REINDEX TABLE CONCURRENTLY runs twice: every session
# keeps working through the index swaps, every key stays readable, the indexes stay whole.
q "$DB" "SELECT count(cache_set('ri:' || i, convert_to(repeat('x', i * 30), 'UTF8'), ttl => '1 hour')) FROM generate_series(1, 60) i" >/dev/null
load_out=$(mktemp)
"$PGBIN/pgbench" -n -M prepared -c 8 -j 8 -T "$SECONDS_OF_REINDEX_LOAD" -f tests/reindex_load.sql "$DB" >"$load_out" 2>&1 &
load=$!
sleep 3
reindexed=0
for _ in 1 2; do
    q "$DB" "REINDEX TABLE CONCURRENTLY pg_cache_entries" && reindexed=$((reindexed + 1))
    sleep 3
done
wait "$load"
load_status=$?
errors=$(grep -c -E "ERROR|aborted" "$load_out")
echo "reindex load: $(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' "$load_out") ops/s, $errors error lines, REINDEX ran $reindexed times"
[ "$errors" = 0 ] || grep -E "ERROR|aborted" "$load_out" | sort | uniq -c | head -5
check "REINDEX TABLE CONCURRENTLY ran twice under load" test "$reindexed" = 2
check "8 clients through two REINDEX CONCURRENTLY: no client error, every key read back" \
    test "$load_status" = 0 -a "$errors" = 0
check "after REINDEX CONCURRENTLY under load, amcheck is clean and no key has two rows" table_intact
check "after REINDEX CONCURRENTLY, every key is found through the new primary key" \
    test "$(q "$DB" "SELECT count(*) FROM generate_series(1, 60) i WHERE cache_get('ri:' || i) IS NOT NULL")" = 60
rm -f "$load_out"

check "the server log shows no crash" no_crash_in_log "$DATADIR"
summary safety
