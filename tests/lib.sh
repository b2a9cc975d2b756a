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
