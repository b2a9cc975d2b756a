#!/usr/bin/env bash
# Isolation specs (tests/isolation/{specs,expected}): cases whose outcome depends on the order in
# which sessions act, run by PostgreSQL's pg_isolation_regress, whose expected output shows which
# session waits for which (`<waiting ...>`) instead of staging the order with sleeps. Against a
# cluster of our own with pg_cache preloaded, in one database with the extension; each spec sets up
# and removes its own entries.
# Expects pg_cache to be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PGBIN=$("$PG_CONFIG" --bindir)
ISOLATION=$("$PG_CONFIG" --pkglibdir)/pgxs/src/test/isolation
DATADIR=${PG_CACHE_DATA_ROOT:-/tmp/pg_cache}/isolation
PORT=$((5474 + ${PG_CACHE_PORT_OFFSET:-0}))
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"; tests/cluster.sh destroy "$DATADIR"' EXIT

# No eviction sweeps: a spec decides when entries go.
tests/cluster.sh destroy "$DATADIR"
tests/cluster.sh start "$DATADIR" "$PORT" "pg_cache.eviction_enabled = off" "max_prepared_transactions = 10"
export PGHOST=${PG_CACHE_SOCKET_DIR:-/tmp} PGPORT=$PORT PGUSER=postgres

specs=$(cd tests/isolation/specs && ls ./*.spec | sed 's|^\./||; s|\.spec$||' | sort)
status=0
# shellcheck disable=SC2086
"$ISOLATION/pg_isolation_regress" --bindir="$PGBIN" \
    --dbname=pg_cache_isolation --load-extension=pg_cache \
    --inputdir=tests/isolation --outputdir="$OUT" $specs || status=$?
if [ "$status" != 0 ]; then
    cat "$OUT/regression.diffs" 2>/dev/null || true
    mkdir -p tests/isolation/results && cp "$OUT"/results/*.out tests/isolation/results/ 2>/dev/null || true
fi
exit "$status"
