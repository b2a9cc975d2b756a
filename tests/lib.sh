# Helpers for the scripted live-server tests (sourced).
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PGBIN=$("$PG_CONFIG" --bindir)
# Where the scripts' clusters live and the offset added to their ports: the Makefile gives PG 18
# its own (/tmp/pg_cache/pg18, + 100) so that a PG 15 and a PG 18 suite can run at the same time.
PG_CACHE_DATA_ROOT=${PG_CACHE_DATA_ROOT:-/tmp/pg_cache}
PG_CACHE_PORT_OFFSET=${PG_CACHE_PORT_OFFSET:-0}
export PGHOST=${PG_CACHE_SOCKET_DIR:-/tmp} PGUSER=postgres

# The base port of each cluster the scripts start; port_for NAME adds PG_CACHE_PORT_OFFSET. Every
# port a test script uses comes from here (python.sh and node.sh, the Makefile's `make run`
# cluster and the benchmarks' clusters still spell theirs out: they are listed so that no other
# cluster takes them; a benchmark left running must not stop a test from starting).
declare -A PG_CACHE_BASE_PORTS=(
    [python]=5450 [node]=5460
    [isolation]=5474 [hostile]=5475 [leases]=5476 [touches]=5471 [touches-no-preload]=5472
    [caches]=5473 [caches-restore]=5478
    [sharded-router]=5480 [sharded-single]=5481
    [sharded-shard1]=5482 [sharded-shard2]=5483 [sharded-shard3]=5484 [sharded-shard4]=5485
    [feed]=5488 [fleet]=5490 [upgrade]=5491 [safety]=5492
    [reliability-standby]=5493 [reliability]=5494
    [live-no-preload]=5496 [live]=5497 [regress]=5498 [run]=5499
    [bench-router]=5465 [bench-router-shard1]=5466 [bench-router-shard2]=5467
    [bench-router-shard3]=5468 [bench-router-shard4]=5469 [bench-django]=5477 [bench]=5495
)
# port_for NAME: the port of the cluster NAME (a key of PG_CACHE_BASE_PORTS), offset.
port_for() {
    local base=${PG_CACHE_BASE_PORTS[$1]:-}
    [ -n "$base" ] || { echo "port_for: no port for a cluster named '$1' in tests/lib.sh" >&2; return 1; }
    echo $((base + PG_CACHE_PORT_OFFSET))
}

# at_exit COMMAND: run COMMAND (a string, eval'd) when the script exits, after the commands
# registered later (last registered, first run).
PG_CACHE_AT_EXIT=()
at_exit() { PG_CACHE_AT_EXIT=("$1" "${PG_CACHE_AT_EXIT[@]}"); trap run_at_exit EXIT; }
run_at_exit() { local command; for command in "${PG_CACHE_AT_EXIT[@]}"; do eval "$command"; done; }
# fresh_cluster_dir DATADIR: no cluster is left there, now and when the script exits (KEEP=1 keeps
# it, and whatever was there, to look at afterwards).
fresh_cluster_dir() {
    [ -n "${KEEP:-}" ] && return 0
    tests/cluster.sh destroy "$1"
    at_exit "tests/cluster.sh destroy '$1'"
}
# start_cluster DATADIR PORT [postgresql.conf lines...]: a new cluster there (see cluster.sh),
# destroyed when the script exits; remembers when its server started (not_restarted).
start_cluster() {
    fresh_cluster_dir "$1"
    tests/cluster.sh start "$@" || return 1
    remember_start "$2"
}
# remember_start [PORT]: note when the server on PORT (default $PGPORT) started;
# not_restarted [PORT]: it has not restarted since (a backend crash restarts it).
declare -A PG_CACHE_STARTED_AT=()
remember_start() {
    local port=${1:-$PGPORT}
    PG_CACHE_STARTED_AT[$port]=$(PGPORT=$port q postgres "SELECT pg_postmaster_start_time()")
}
not_restarted() {
    local port=${1:-$PGPORT}
    [ -n "${PG_CACHE_STARTED_AT[$port]:-}" ] || { echo "not_restarted: remember_start $port first" >&2; return 1; }
    test "$(PGPORT=$port q postgres "SELECT pg_postmaster_start_time()")" = "${PG_CACHE_STARTED_AT[$port]}"
}
# no_crash_in_log DATADIR: the server log shows no PANIC, failed assertion or killed backend (and
# prints the lines that do).
no_crash_in_log() { ! grep -E "PANIC|TRAP|server process .* was terminated" "$1/server.log"; }
# sqlstate_is CODE DB STATEMENT...: the statements, one after another in one session, end in an
# error with that SQLSTATE.
sqlstate_is() {
    local code=$1 db=$2 args=() statement out
    for statement in "${@:3}"; do args+=(-c "$statement"); done
    out=$("$PGBIN/psql" -X -q -d "$db" -v VERBOSITY=verbose "${args[@]}" 2>&1)
    grep -q "ERROR:  $code:" <<<"$out"
}

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
