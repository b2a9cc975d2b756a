#!/usr/bin/env bash
# The Python client (clients/python): builds its wheel, installs it into a venv, starts a cluster
# of its own with pg_cache preloaded, runs the pytest suite (the cbor tests with cbor2 6.x and 5.9),
# then Django's own cache test suite (BaseCacheTests of the Django 5.2 LTS sdist) against the
# Django backend, in LOCATION mode, on Django's own connection (OPTIONS DATABASE) and on a named
# cache (OPTIONS CACHE), with the culling caches excluded as Django does for Redis. Ends with `python: N passed, M failed` (tests).
#   PG_CONFIG, PG_CACHE_PORT_OFFSET, PG_CACHE_DATA_ROOT as for the other suites; port 5450 + offset.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
source tests/lib.sh

PORT=$((5450 + PG_CACHE_PORT_OFFSET))
DATADIR=$PG_CACHE_DATA_ROOT/python
VENV=$PG_CACHE_DATA_ROOT/python-venv
WORK=$(mktemp -d "${TMPDIR:-/tmp}/pg_cache_python.XXXXXX")
chmod 755 "$WORK"
PYTHON=${PYTHON:-python3}
DJANGO_SPEC=${DJANGO_SPEC:-"django>=5.2,<5.3"}
URL_BASE="postgresql://postgres@127.0.0.1:$PORT"

cleanup() {
    tests/cluster.sh stop "$DATADIR" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

setup_failed() { echo "python: setup failed: $1" >&2; echo "python: $passed passed, $((failed + 1)) failed"; exit 1; }

# --- Python: a venv with the wheel built from clients/python ------------------------------------
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
if ! "$PYTHON" -c 'import venv, ensurepip' >/dev/null 2>&1; then
    # Debian splits venv/ensurepip into python3-venv.
    as_root apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends python3-venv >/dev/null \
        || { as_root apt-get -o DPkg::Lock::Timeout=600 update -q >/dev/null \
             && as_root apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends python3-venv >/dev/null; } \
        || setup_failed "python3-venv"
fi
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || setup_failed "python -m venv $VENV"
fi
PIP=("$VENV/bin/python" -m pip -q --disable-pip-version-check)

echo "--- building the wheel"
# From a copy, so that the build leaves nothing in the source tree.
cp -r clients/python "$WORK/src" && rm -rf "$WORK/src/build" "$WORK/src/src/"*.egg-info
"${PIP[@]}" wheel --no-deps -w "$WORK/dist" "$WORK/src" || setup_failed "pip wheel clients/python"
WHEEL=$(ls "$WORK"/dist/pg_cache_client-*.whl 2>/dev/null | head -1)
[ -n "$WHEEL" ] || setup_failed "no wheel built"
echo "built $(basename "$WHEEL")"

# Django's test suite comes from the sdist of the same version as the installed Django.
SDIST_DIR=$VENV/django-sdist
if ! ls "$SDIST_DIR"/[Dd]jango-*.tar.gz >/dev/null 2>&1; then
    mkdir -p "$SDIST_DIR"
    "${PIP[@]}" download --no-binary :all: --no-deps -d "$SDIST_DIR" "$DJANGO_SPEC" || setup_failed "pip download $DJANGO_SPEC sdist"
fi
SDIST=$(ls "$SDIST_DIR"/[Dd]jango-*.tar.gz | sort -V | tail -1)
DJANGO_VERSION=$(basename "$SDIST" .tar.gz | sed 's/^[Dd]jango-//')

"${PIP[@]}" install --force-reinstall --no-deps "$WHEEL" || setup_failed "pip install the wheel"
"${PIP[@]}" install "$WHEEL[test]" "django==$DJANGO_VERSION" "cbor2>=6.3" "psycopg[binary]>=3.2" \
    || setup_failed "pip install the wheel's dependencies"
# The suite imports the installed package, never the source tree.
"$VENV/bin/python" -c 'import pg_cache_client, sys; sys.exit("site-packages" not in pg_cache_client.__file__)' \
    || setup_failed "pg_cache_client is not imported from the installed wheel"

# --- the cluster ---------------------------------------------------------------------------------
echo "--- cluster on port $PORT ($("$PG_CONFIG" --version))"
tests/cluster.sh destroy "$DATADIR" >/dev/null 2>&1
tests/cluster.sh start "$DATADIR" "$PORT" "max_connections = 200" || setup_failed "cluster start"
export PGPORT=$PORT
# In template1, so that every database created from now on has pg_cache, Django's test database too.
q template1 "SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS pg_cache" || setup_failed "CREATE EXTENSION pg_cache"
q postgres "CREATE DATABASE pg_cache_py" && q postgres "CREATE DATABASE pg_cache_django" || setup_failed "CREATE DATABASE"
# For Django's suite on a named cache (the pytest suite makes its own, tests/conftest.py).
q pg_cache_django "SELECT cache_create('django_named')" >/dev/null || setup_failed "cache_create('django_named')"
# get_or_compute(grace=...) serves expired entries, which the eviction worker keeps this long
# (tests/test_compute.py checks that it is set; an extension without grace has no such setting).
if [ "$(q postgres "SELECT count(*) FROM pg_settings WHERE name = 'pg_cache.stale_retention'")" = 1 ]; then
    q postgres "ALTER DATABASE pg_cache_py SET pg_cache.stale_retention = 10" || setup_failed "pg_cache.stale_retention"
fi

# --- pytest --------------------------------------------------------------------------------------
# run_pytest NAME ARGS...: adds the counts of its JUnit report to passed/failed.
run_pytest() {
    local name=$1 report="$WORK/$1.xml" status counts
    shift
    (cd "$ROOT/clients/python" && PG_CACHE_TEST_URL="$URL_BASE/pg_cache_py" \
        "$VENV/bin/python" -m pytest -p no:cacheprovider -q --junitxml="$report" "$@")
    status=$?
    counts=$("$VENV/bin/python" - "$report" <<'PY'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print("0 0 0"); sys.exit()
suites = [root] if root.tag == "testsuite" else list(root)
total = sum(int(s.get("tests", 0)) for s in suites)
bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skipped = sum(int(s.get("skipped", 0)) for s in suites)
print(total - bad - skipped, bad, skipped)
PY
)
    read -r ok bad skipped <<<"$counts"
    passed=$((passed + ok)) failed=$((failed + bad))
    # Exit status 5 is "no tests collected"; any failure without a failed test counts once.
    if [ "$status" != 0 ] && [ "$bad" = 0 ]; then failed=$((failed + 1)); fi
    echo "pytest $name: $ok passed, $bad failed, $skipped skipped (exit $status)"
}

echo "--- pytest (cbor2 $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("cbor2"))'))"
run_pytest suite
echo "--- pytest tests/test_cbor.py with cbor2 5.9"
if "${PIP[@]}" install "cbor2==5.9.*"; then
    run_pytest cbor2-5.9 tests/test_cbor.py
else
    fail "pip install cbor2==5.9"
fi
"${PIP[@]}" install "cbor2>=6.3" || true

# --- Django's cache test suite -------------------------------------------------------------------
echo "--- Django $DJANGO_VERSION: tests/cache BaseCacheTests against pg_cache_client.django.PgCache"
tar -xzf "$SDIST" -C "$WORK" || setup_failed "unpack $SDIST"
DJANGO_TESTS=$WORK/django-$DJANGO_VERSION/tests
[ -d "$DJANGO_TESTS" ] || DJANGO_TESTS=$(ls -d "$WORK"/[Dd]jango-*/tests | head -1)
cat >"$DJANGO_TESTS/pg_cache_settings.py" <<PY
# Settings for Django's test runner with pg_cache (written by tests/python.sh).
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "pg_cache_django",
        "USER": "postgres",
        "HOST": "127.0.0.1",
        "PORT": "$PORT",
    },
}
CACHES = {
    "default": {
        "BACKEND": "pg_cache_client.django.PgCache",
        "LOCATION": "$URL_BASE/pg_cache_django",
    },
}
SECRET_KEY = "django_tests_secret_key"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = False
PY
cat >"$DJANGO_TESTS/cache/tests_pg_cache.py" <<PY
# pg_cache_client.django.PgCache under Django's BaseCacheTests, set up as Django sets up its
# Redis backend's tests (tests/cache/tests.py, RedisCacheTests): the culling caches excluded.
from django.test import TestCase, TransactionTestCase, override_settings

from .tests import BaseCacheTests, caches_setting_for_tests

PgCache_params = {
    "BACKEND": "pg_cache_client.django.PgCache",
    "LOCATION": "$URL_BASE/pg_cache_django",
}
# pg_cache has no MAX_ENTRIES culling (pg_cache.max_size caps a database's cache instead).
pg_cache_excluded_caches = {"cull", "zero_cull"}


@override_settings(CACHES=caches_setting_for_tests(base=PgCache_params, exclude=pg_cache_excluded_caches))
class PgCacheTests(BaseCacheTests, TestCase):
    pass


# OPTIONS DATABASE: on Django's own connection to its test database (which has pg_cache: it is
# created from template1), in the test's transaction.
@override_settings(
    CACHES=caches_setting_for_tests(
        base={"BACKEND": "pg_cache_client.django.PgCache", "OPTIONS": {"DATABASE": "default"}},
        exclude=pg_cache_excluded_caches,
    )
)
class PgCacheOnDjangoConnectionTests(BaseCacheTests, TransactionTestCase):
    available_apps = ["cache"]


# OPTIONS CACHE: every call on the named cache django_named (made by tests/python.sh).
@override_settings(
    CACHES=caches_setting_for_tests(base={**PgCache_params, "OPTIONS": {"CACHE": "django_named"}},
                                    exclude=pg_cache_excluded_caches)
)
class PgCacheNamedCacheTests(BaseCacheTests, TestCase):
    pass
PY
django_out=$WORK/django.out
(cd "$DJANGO_TESTS" && "$VENV/bin/python" -W ignore::DeprecationWarning runtests.py --settings=pg_cache_settings \
    --parallel 1 --noinput -v 2 cache.tests_pg_cache) >"$django_out" 2>&1
django_status=$?
grep -E '^(FAIL|ERROR):' "$django_out" || true
grep -E "^Ran [0-9]+ tests|^OK|^FAILED" "$django_out"
ran=$(sed -n 's/^Ran \([0-9]*\) tests\{0,1\}.*/\1/p' "$django_out" | tail -1)
skipped=$(grep -c " \.\.\. skipped" "$django_out")
django_failed=$(grep -cE "^(FAIL|ERROR):" "$django_out")
if [ -z "$ran" ] || [ "$ran" = 0 ]; then
    tail -40 "$django_out"
    fail "Django's cache suite ran no tests"
else
    passed=$((passed + ran - django_failed - skipped)) failed=$((failed + django_failed))
    [ "$django_status" = 0 ] || [ "$django_failed" != 0 ] || { tail -40 "$django_out"; fail "Django's runner exited $django_status"; }
    echo "Django cache suite: $((ran - django_failed - skipped)) passed, $django_failed failed, $skipped skipped (the culling tests, as for Redis)"
fi

echo "python: $passed passed, $failed failed"
[ "$failed" = 0 ]
