#!/usr/bin/env bash
# Django's cache API on pg_cache_client.django.PgCache, Django's DatabaseCache (same PostgreSQL)
# and Django's RedisCache (Debian's redis-server on loopback, started here): get (hit), set,
# get_many of 20, at 1 and 8 processes, then the table sizes after churn (clients/python/bench.py).
# Writes results/django-<time>.md (and results/latest-django.md).
#   DURATION=N   seconds per case (default 10)
#   CHURN=N      seconds of churn with 60 s timeouts (default 600; 0 skips it)
#   KEYS=N       working set (default 10000)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10}
CHURN=${CHURN:-600}
KEYS=${KEYS:-10000}
PG_CONFIG=${PG_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
PGBIN=$("$PG_CONFIG" --bindir)
PG_CACHE_DATA_ROOT=${PG_CACHE_DATA_ROOT:-/tmp/pg_cache}
DATADIR=${BENCH_DJANGO_DATADIR:-$PG_CACHE_DATA_ROOT/bench-django}
PORT=${BENCH_DJANGO_PORT:-$((5477 + ${PG_CACHE_PORT_OFFSET:-0}))}
REDIS_PORT=${BENCH_DJANGO_REDIS_PORT:-$((6396 + ${PG_CACHE_PORT_OFFSET:-0}))}
VENV=$PG_CACHE_DATA_ROOT/python-venv
DB=pg_cache_bench_django
export PGHOST=${PG_CACHE_SOCKET_DIR:-/tmp} PGPORT=$PORT PGUSER=postgres
mkdir -p results
OUT=results/django-$(date -u +%Y%m%dT%H%M%SZ).md

source benches/lib.sh
need redis-server redis-server
need redis-cli redis-tools
python3 -c 'import venv, ensurepip' 2>/dev/null || as_root apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends python3-venv >/dev/null

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
# The client from this tree (built from a copy, leaving nothing in it), Django 5.2, redis-py.
WORK=$(mktemp -d)
cp -r clients/python "$WORK/src"
"$VENV/bin/python" -m pip -q --disable-pip-version-check install --force-reinstall --no-deps "$WORK/src"
"$VENV/bin/python" -m pip -q --disable-pip-version-check install "$WORK/src" "django>=5.2,<5.3" redis "psycopg[binary]>=3.2"
rm -rf "$WORK"

tests/cluster.sh start "$DATADIR" "$PORT" "shared_buffers = 512MB" "max_connections = 200"
"$PGBIN/psql" -X -q -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1 \
    || "$PGBIN/psql" -X -q -d postgres -c "CREATE DATABASE $DB"
"$PGBIN/psql" -X -q -d "$DB" -c "SET client_min_messages = warning" -c "CREATE EXTENSION IF NOT EXISTS pg_cache" \
    -c "ALTER EXTENSION pg_cache UPDATE" -c "DROP TABLE IF EXISTS django_cache"

trap stop_redis EXIT
start_redis "$REDIS_PORT"

"$VENV/bin/python" clients/python/bench.py --pg "postgresql://postgres@127.0.0.1:$PORT/$DB" \
    --redis "redis://127.0.0.1:$REDIS_PORT/0" --duration "$DURATION" --churn "$CHURN" --keys "$KEYS" --out "$OUT"
cp "$OUT" results/latest-django.md
echo "written: $OUT"
