#!/usr/bin/env bash
# The direct heap and index paths against what users and maintenance do to the cache table: a
# second index, REINDEX … CONCURRENTLY under load, ALTER TABLE, triggers, CHECK constraints,
# row-level security; reads that must see what committed; slides racing a replace. After each,
# the server has not restarted, amcheck finds every index and the heap clean, and no key has two
# live rows. Expects pg_cache installed (and amcheck, from postgresql-contrib).
set -uo pipefail
cd "$(dirname "$0")/.."

source tests/lib.sh
DATADIR=${PG_CACHE_DATA_ROOT:-/tmp/pg_cache}/safety
export PGPORT=$((5492 + ${PG_CACHE_PORT_OFFSET:-0}))
DB=safety
SECONDS_OF_REINDEX_LOAD=${REINDEX_LOAD_SECONDS:-20}

cleanup() { tests/cluster.sh destroy "$DATADIR"; }
trap cleanup EXIT
cleanup
tests/cluster.sh start "$DATADIR" "$PGPORT" "restart_after_crash = on"
q postgres "CREATE DATABASE $DB"
q "$DB" "CREATE EXTENSION pg_cache" && q "$DB" "CREATE EXTENSION amcheck"
started=$(q postgres "SELECT pg_postmaster_start_time()")

# The server has not restarted since the script began (a backend crash restarts it).
not_restarted() { test "$(q postgres "SELECT pg_postmaster_start_time()")" = "$started"; }
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
    grep -q "23514" <<<"$("$PGBIN/psql" -X -q -d "$DB" -v VERBOSITY=verbose -c "SELECT cache_set('guarded 1', convert_to(repeat('c', 200), 'UTF8'))" 2>&1)"
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

# --- Reads see what committed before them: a value removed while the statement ran is gone.
q "$DB" "SELECT cache_set('stale', 'v')" >/dev/null
(sleep 1; q "$DB" "SELECT cache_remove('stale')" >/dev/null) &
check "cache_get late in a statement sees a removal committed after the statement began" \
    test "$(q "$DB" "SELECT pg_sleep(2), cache_get('stale') IS NULL")" = "|t"
wait
q "$DB" "SELECT cache_set('stale', 'v')" >/dev/null
(sleep 1; q "$DB" "SELECT cache_remove('stale')" >/dev/null) &
fetched=$("$PGBIN/psql" -X -A -t -q -d "$DB" -c "BEGIN" \
    -c "DECLARE reads CURSOR FOR SELECT cache_get('stale') IS NULL FROM generate_series(1, 2)" \
    -c "FETCH 1 FROM reads" -c "SELECT pg_sleep(2)" -c "FETCH 1 FROM reads" -c "COMMIT" | tr '\n' ' ')
wait
check "a cursor's next FETCH sees a removal committed in between (got: $fetched)" test "$fetched" = "f  t "

# --- A slide racing a replace never applies the old window to the new row, on the direct path
# and on the statement it falls back to (here: row-level security with an open policy).
slide_race() {
    q "$DB" "SELECT cache_set('raced', 'old', sliding => '10 min')" >/dev/null
    "$PGBIN/psql" -X -q -d "$DB" -c "BEGIN" -c "SELECT cache_set('raced', 'new', ttl => '1 hour')" \
        -c "SELECT pg_sleep(2)" -c "COMMIT" >/dev/null &
    sleep 0.5
    # Reads the old version, then its slide waits for the replace and must find it changed.
    "$PGBIN/psql" -X -q -d "$DB" -c "SET pg_cache.refresh_granularity = 0" -c "SELECT cache_get('raced')" >/dev/null
    wait
    test "$(q "$DB" "SELECT sliding IS NULL AND expires_at > pg_catalog.clock_timestamp() + interval '50 min' FROM pg_cache_entries WHERE key = 'raced'")" = t
}
# In REPEATABLE READ, a slide (or removal, given as $1) of an entry another session replaced after
# the snapshot is a serialization failure (40001), as the statement's UPDATE (DELETE) would be.
repeatable_read_conflict() {
    q "$DB" "SELECT cache_set('rr', 'v1', sliding => '10 min')" >/dev/null
    (sleep 1; q "$DB" "SELECT cache_set('rr', 'v2', sliding => '10 min')" >/dev/null) &
    local out
    out=$("$PGBIN/psql" -X -q -d "$DB" -v VERBOSITY=verbose -c "SET pg_cache.refresh_granularity = 0" \
        -c "BEGIN ISOLATION LEVEL REPEATABLE READ" -c "SELECT cache_ttl('rr')" -c "SELECT pg_sleep(2)" \
        -c "${1:-SELECT cache_get('rr')}" -c "COMMIT" 2>&1)
    wait
    grep -q "40001" <<<"$out"
}
# A removal by tag or prefix that waits for a session sliding one of its entries removes that
# entry too, in the version the slide wrote.
removal_racing_slide() { # removal_racing_slide REMOVAL
    q "$DB" "SELECT cache_set('race:' || i, 'v', sliding => '10 min', tags => '{race}') FROM generate_series(1, 2) i" >/dev/null
    "$PGBIN/psql" -X -q -d "$DB" -c "SET pg_cache.refresh_granularity = 0" -c "BEGIN" \
        -c "SELECT cache_get('race:1')" -c "SELECT pg_sleep(1.5)" -c "COMMIT" >/dev/null &
    sleep 0.5
    local removed
    removed=$(q "$DB" "$1")
    wait
    test "$removed" = 2 -a "$(q "$DB" "SELECT count(*) FROM pg_cache_entries WHERE key LIKE 'race:%'")" = 0
}
check "cache_remove_by_tag waiting for a slide removes the slid entry too" removal_racing_slide "SELECT cache_remove_by_tag('{race}')"
check "cache_remove_prefix waiting for a slide removes the slid entry too" removal_racing_slide "SELECT cache_remove_prefix('race:')"
check "a slide racing a replace leaves the replaced entry's expiry (direct path)" slide_race
check "REPEATABLE READ: sliding an entry replaced since the snapshot is 40001 (direct path)" repeatable_read_conflict
check "REPEATABLE READ: removing an entry replaced since the snapshot is 40001 (direct path)" \
    repeatable_read_conflict "SELECT cache_remove('rr')"
q "$DB" "ALTER TABLE pg_cache_entries ENABLE ROW LEVEL SECURITY; CREATE POLICY everyone ON pg_cache_entries USING (true)"
check "a slide racing a replace leaves the replaced entry's expiry (statement path)" slide_race
check "REPEATABLE READ: sliding an entry replaced since the snapshot is 40001 (statement path)" repeatable_read_conflict
check "REPEATABLE READ: removing an entry replaced since the snapshot is 40001 (statement path)" \
    repeatable_read_conflict "SELECT cache_remove('rr')"
fresh_extension

# --- New keys are inserted directly, as INSERT … ON CONFLICT inserts them (speculatively).
savepoint_out=$(q "$DB" "BEGIN;
    SELECT cache_set('sp:kept', 'before');
    SAVEPOINT s;
    SELECT cache_set('sp:set', 'v'), cache_add('sp:add', 'v'), cache_incr('sp:incr'), cache_set('sp:kept', 'inside');
    ROLLBACK TO s;
    SELECT cache_set('sp:set', 'after');
    COMMIT;
    SELECT concat_ws(',', convert_from(cache_get('sp:set'), 'UTF8'), cache_get('sp:add') IS NULL,
                     cache_get('sp:incr') IS NULL, convert_from(cache_get('sp:kept'), 'UTF8'))" | tail -1)
check "ROLLBACK TO SAVEPOINT undoes new keys set, added and counted inside it (got: $savepoint_out)" \
    test "$savepoint_out" = "after,t,t,before"
# A session writing a key another session is inserting waits for it, and never sees 23505.
concurrent_new_key() { # concurrent_new_key FIRST_CALL COMMIT|ROLLBACK SECOND_CALL: the second call's output
    "$PGBIN/psql" -X -q -d "$DB" -c "BEGIN" -c "$1" -c "SELECT pg_sleep(1.5)" -c "$2" >/dev/null 2>&1 &
    sleep 0.5
    q "$DB" "$3" 2>&1
    wait
}
check "a set of a key another session is inserting waits for it, then replaces it" \
    test "$(concurrent_new_key "SELECT cache_set('race:set', 'first')" COMMIT \
        "SELECT cache_set('race:set', 'second'); SELECT convert_from(cache_get('race:set'), 'UTF8')" | tail -1)" = second
check "an add of a key another session is inserting gets false once it commits" \
    test "$(concurrent_new_key "SELECT cache_add('race:add', 'first')" COMMIT "SELECT cache_add('race:add', 'second')")" = f
check "an add of a key another session is inserting gets true once it rolls back" \
    test "$(concurrent_new_key "SELECT cache_add('race:undone', 'first')" ROLLBACK "SELECT cache_add('race:undone', 'second')")" = t
check "an increment of a counter another session is creating adds to what it committed" \
    test "$(concurrent_new_key "SELECT cache_incr('race:incr', 2)" COMMIT "SELECT cache_incr('race:incr', 5)")" = 7
# SERIALIZABLE: adding a key another transaction added after our snapshot is 40001, as the
# statement's (the conflicting row is not visible to the snapshot).
serializable_add() {
    (sleep 0.5; q "$DB" "SELECT cache_add('ser', 'first')" >/dev/null) &
    local out
    out=$("$PGBIN/psql" -X -q -d "$DB" -v VERBOSITY=verbose -c "BEGIN ISOLATION LEVEL SERIALIZABLE" \
        -c "SELECT cache_ttl('ser')" -c "SELECT pg_sleep(1.5)" -c "SELECT cache_add('ser', 'second')" -c "COMMIT" 2>&1)
    wait
    grep -q "ERROR:  40001" <<<"$out"
}
check "SERIALIZABLE: adding a key another transaction added since the snapshot is 40001" serializable_add
# SERIALIZABLE: transactions setting different new keys (on one B-tree page) both commit, as
# with the statement, whose pre-check takes no predicate lock.
serializable_neighbours() {
    local first second
    first=$(mktemp)
    "$PGBIN/psql" -X -q -d "$DB" -c "BEGIN ISOLATION LEVEL SERIALIZABLE" -c "SELECT cache_set('ssi:1', 'a')" \
        -c "SELECT pg_sleep(1)" -c "SELECT cache_set('ssi:3', 'a')" -c "SELECT pg_sleep(1)" -c "COMMIT" >"$first" 2>&1 &
    sleep 0.5
    second=$("$PGBIN/psql" -X -q -d "$DB" -c "BEGIN ISOLATION LEVEL SERIALIZABLE" -c "SELECT cache_set('ssi:2', 'b')" \
        -c "SELECT pg_sleep(1)" -c "SELECT cache_set('ssi:4', 'b')" -c "COMMIT" 2>&1)
    wait
    ! grep -q ERROR "$first" && ! grep -q ERROR <<<"$second" \
        && test "$(q "$DB" "SELECT count(*) FROM pg_cache_entries WHERE key LIKE 'ssi:%'")" = 4
    local status=$?
    rm -f "$first"
    return $status
}
check "SERIALIZABLE: two transactions setting different new keys both commit" serializable_neighbours
# sqlstate_is CODE SQL...: the statements, one after another in one session, end in that error.
sqlstate_is() {
    local args=() statement
    for statement in "${@:2}"; do args+=(-c "$statement"); done
    local out
    out=$("$PGBIN/psql" -X -q -d "$DB" -v VERBOSITY=verbose "${args[@]}" 2>&1)
    grep -q "ERROR:  $1:" <<<"$out"
}
check "a read-only transaction cannot insert a new key (25006)" \
    sqlstate_is 25006 "BEGIN READ ONLY" "SELECT cache_set('ro:new', 'v')"
# Another UNIQUE index (partial, on an expression; not the primary key the upsert names) raises
# 23505, as for the statement.
q "$DB" "CREATE UNIQUE INDEX one_per_value ON pg_cache_entries (md5(value)) WHERE key LIKE 'unique:%'"
q "$DB" "SELECT cache_set('unique:1', 'same value')" >/dev/null
check "a second UNIQUE index refuses a new key with a duplicate value (23505)" \
    sqlstate_is 23505 "SELECT cache_set('unique:2', 'same value')"
check "the refused key is not stored" test "$(q "$DB" "SELECT count(*) FROM pg_cache_entries WHERE key = 'unique:2'")" = 0
q "$DB" "DROP INDEX one_per_value"
# With another unique index on the key, or an exclusion constraint, a write of a key another
# session is inserting still waits for it (the statement's pre-check does) and is never refused.
q "$DB" "CREATE UNIQUE INDEX key_again ON pg_cache_entries (key)"
check "with a second unique index on the key, a set of a key being inserted waits, then replaces it" \
    test "$(concurrent_new_key "SELECT cache_set('race2:set', 'first')" COMMIT \
        "SELECT cache_set('race2:set', 'second'); SELECT convert_from(cache_get('race2:set'), 'UTF8')" | tail -1)" = second
q "$DB" "DROP INDEX key_again; ALTER TABLE pg_cache_entries ADD CONSTRAINT one_key EXCLUDE USING btree (key WITH =)"
check "with an exclusion constraint on the key, an add of a key being inserted gets false once it commits" \
    test "$(concurrent_new_key "SELECT cache_add('race2:add', 'first')" COMMIT "SELECT cache_add('race2:add', 'second')")" = f
q "$DB" "ALTER TABLE pg_cache_entries DROP CONSTRAINT one_key"
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

grep -E "PANIC|TRAP|server process .* was terminated" "$DATADIR/server.log" && fail "the server log shows no crash" || pass "the server log shows no crash"
summary safety
