#!/usr/bin/env bash
# Isolation specs (tests/isolation/{specs,expected}): cases whose outcome depends on the order in
# which sessions act, run by PostgreSQL's pg_isolation_regress, whose expected output shows which
# session waits for which (`<waiting ...>`) instead of staging the order with sleeps. Against a
# cluster of our own with pg_cache preloaded, in one database with the extension, amcheck, and
# error_of(statement), which gives 'SQLSTATE: message' (or 'no error') so that the expected output
# shows each error's code; each spec sets up and removes its own entries.
# Expects pg_cache (and amcheck, from postgresql-contrib) to be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

source tests/lib.sh
ISOLATION=$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/isolation
DATADIR=$PG_CACHE_DATA_ROOT/isolation
export PGPORT
PGPORT=$(port_for isolation)
DB=pg_cache_isolation
OUT=$(mktemp -d)
at_exit 'rm -rf "$OUT"'

# No eviction sweeps: a spec decides when entries go.
start_cluster "$DATADIR" "$PGPORT" "pg_cache.eviction_enabled = off" "max_prepared_transactions = 10"
q postgres "CREATE DATABASE $DB"
q "$DB" "CREATE EXTENSION pg_cache; CREATE EXTENSION amcheck;
         CREATE FUNCTION error_of(statement text) RETURNS text LANGUAGE plpgsql AS \$\$
         BEGIN
             EXECUTE statement;
             RETURN 'no error';
         EXCEPTION WHEN OTHERS THEN
             RETURN SQLSTATE || ': ' || SQLERRM;
         END
         \$\$"

specs=$(cd tests/isolation/specs && ls ./*.spec | sed 's|^\./||; s|\.spec$||' | sort)
status=0
# shellcheck disable=SC2086
"$ISOLATION/pg_isolation_regress" --bindir="$PGBIN" --use-existing --dbname="$DB" \
    --inputdir=tests/isolation --outputdir="$OUT" $specs || status=$?
if [ "$status" != 0 ]; then
    cat "$OUT/regression.diffs" 2>/dev/null || true
    mkdir -p tests/isolation/results && cp "$OUT"/results/*.out tests/isolation/results/ 2>/dev/null || true
fi
check "the server did not restart during the specs" not_restarted
check "the server log shows no crash" no_crash_in_log "$DATADIR"
[ "$failed" = 0 ] || status=1
exit "$status"
