# Helpers for the scripted live-server tests (sourced).
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PGBIN=$("$PG_CONFIG" --bindir)
# Where the scripts' clusters live and the offset added to their ports: the Makefile gives PG 18
# its own (/tmp/pg_cache/pg18, + 100) so that a PG 15 and a PG 18 suite can run at the same time.
PG_CACHE_DATA_ROOT=${PG_CACHE_DATA_ROOT:-/tmp/pg_cache}
PG_CACHE_PORT_OFFSET=${PG_CACHE_PORT_OFFSET:-0}
export PGHOST=${PG_CACHE_SOCKET_DIR:-/tmp} PGUSER=postgres

passed=0 failed=0
pass() { passed=$((passed + 1)); echo "ok - $1"; }
fail() { failed=$((failed + 1)); echo "FAILED - $1"; }
# check NAME COMMAND...: the test passes when COMMAND succeeds.
check() { local name=$1; shift; if "$@"; then pass "$name"; else fail "$name"; fi; }
# q DB SQL: one result, unaligned, no headers; errors go to stderr and fail.
q() { "$PGBIN/psql" -X -A -t -q -v ON_ERROR_STOP=1 -d "$1" -c "$2"; }
# wait_for SECONDS DB SQL: until SQL returns t, polling every 0.2 s.
wait_for() {
    local deadline=$((SECONDS + $1))
    while [ "$SECONDS" -lt "$deadline" ]; do
        [ "$(q "$2" "$3" 2>/dev/null)" = t ] && return 0
        sleep 0.2
    done
    return 1
}
# configure SETTING VALUE: ALTER SYSTEM SET (VALUE "default": RESET) and reload.
configure() {
    if [ "$2" = default ]; then q postgres "ALTER SYSTEM RESET $1"; else q postgres "ALTER SYSTEM SET $1 = '$2'"; fi
    q postgres "SELECT pg_reload_conf()" >/dev/null
}
# summary SUITE: the closing line; exit status says whether all passed.
summary() { echo "$1: $passed passed, $failed failed"; [ "$failed" = 0 ]; }
# table_checked DB: amcheck finds the cache table's heap and B-tree indexes clean (every tuple
# indexed), and its tags index finds exactly the tagged rows a heap scan finds (amcheck checks GIN
# indexes only from PostgreSQL 18 on: there it runs too). Needs the amcheck extension.
table_checked() {
    local db=$1 all_tags by_heap by_index
    q "$db" "SELECT count(bt_index_check(i.indexrelid, true)) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE i.indrelid = 'pg_cache_entries'::regclass AND c.relam = (SELECT oid FROM pg_am WHERE amname = 'btree')" >/dev/null || return 1
    test "$(q "$db" "SELECT count(*) FROM verify_heapam('pg_cache_entries')")" = 0 || return 1
    if [ "$(q "$db" "SELECT count(*) FROM pg_proc WHERE proname = 'gin_index_check'")" = 1 ]; then
        q "$db" "SELECT gin_index_check('pg_cache_entries_tags')" >/dev/null || return 1
    fi
    all_tags="(SELECT coalesce(array_agg(DISTINCT tag), '{}') FROM pg_cache_entries, unnest(tags) AS tag)"
    by_heap=$(q "$db" "SET enable_indexscan = off; SET enable_bitmapscan = off;
                       SELECT count(*) || ' ' || coalesce(md5(string_agg(key, ',' ORDER BY key)), '') FROM pg_cache_entries WHERE tags && $all_tags" | tail -1)
    by_index=$(q "$db" "SET enable_seqscan = off;
                        SELECT count(*) || ' ' || coalesce(md5(string_agg(key, ',' ORDER BY key)), '') FROM pg_cache_entries WHERE tags && $all_tags" | tail -1)
    [ "$by_heap" = "$by_index" ] || { echo "tags index: $by_index rows, heap: $by_heap" >&2; return 1; }
}
