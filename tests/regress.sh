#!/usr/bin/env bash
# SQL regression tests (tests/pg_regress/{sql,expected}) with Debian's pg_regress against a cluster
# of our own: `cargo pgrx regress` cannot run as root. Expects pg_cache to be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

source tests/lib.sh
PG_REGRESS=$(dirname "$("$PG_CONFIG" --pgxs)")/../test/regress/pg_regress
DATADIR=${REGRESS_DATADIR:-$PG_CACHE_DATA_ROOT/regress}
PORT=${REGRESS_PORT:-$(port_for regress)}
DB=pg_cache_regress
OUT=$(mktemp -d)
at_exit 'rm -rf "$OUT"'

# A new cluster each run, without eviction sweeps: the tests look at expired rows a few
# milliseconds after they expire, which a sweep (every second) would sometimes have removed.
# tests/live.sh tests the eviction worker.
tests/cluster.sh destroy "$DATADIR"
tests/cluster.sh start "$DATADIR" "$PORT" "pg_cache.eviction_enabled = off"
export PGPORT=$PORT
"$PGBIN/psql" -q -X -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" -c "CREATE DATABASE $DB"

tests=$(cd tests/pg_regress/sql && ls ./*.sql | sed 's|^\./||; s|\.sql$||' | sort)
status=0
# shellcheck disable=SC2086
"$PG_REGRESS" --use-existing --bindir="$PGBIN" --dbname="$DB" \
    --inputdir=tests/pg_regress --outputdir="$OUT" $tests || status=$?
if [ "$status" != 0 ]; then
    cat "$OUT/regression.diffs" 2>/dev/null || true
    # Keep what the failing run produced, to compare or to adopt as the new expected output.
    mkdir -p tests/pg_regress/results && cp "$OUT"/results/*.out tests/pg_regress/results/ 2>/dev/null || true
fi
tests/cluster.sh stop "$DATADIR"
exit "$status"
