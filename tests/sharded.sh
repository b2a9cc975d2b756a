#!/usr/bin/env bash
# pg_cache_router over four pg_cache servers, on loopback: configure_shards; 100,000 keys spread
# evenly, each on the one shard that owns it; a differential run of random operations through the
# router and against a single pg_cache server, call by call; calls commit on the shards by
# themselves, which also send the invalidation feed; a stopped shard fails its own keys only.
# Expects pg_cache and pg_cache_router installed, and PL/Proxy (PostgreSQL 15 only).
set -uo pipefail
cd "$(dirname "$0")/.."

source tests/lib.sh
major=$("$PG_CONFIG" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')
if [ "$major" != 15 ]; then
    echo "skipped - the sharded test: PL/Proxy, which pg_cache_router needs, is packaged for PostgreSQL 15 only (postgresql-15-plproxy), and this is PostgreSQL $major"
    exit 0
fi

DATA=$PG_CACHE_DATA_ROOT/sharded
ROUTER_PORT=$(port_for sharded-router)
SINGLE_PORT=$(port_for sharded-single)
SHARD_PORTS=($(port_for sharded-shard1) $(port_for sharded-shard2) $(port_for sharded-shard3) $(port_for sharded-shard4))
OPERATIONS=${SHARDED_OPERATIONS:-20000}
KEYS=100000
# The functions the router routes: every function of pg_cache (from the catalog of the single
# server, so that a new one cannot be left out) but these, which report on one server, and trigger
# functions (pg_cache_caches_made, the catalog's), which no one calls.
NOT_ROUTED=(cache_worker_status)
# functions_of EXTENSION: the names of the extension's functions in its own schema, one a line.
functions_of() {
    echo "SELECT p.proname FROM pg_extension e
          JOIN pg_depend d ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
                          AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
          JOIN pg_proc p ON p.oid = d.objid AND p.pronamespace = e.extnamespace
          WHERE e.extname = '$1' AND p.prorettype <> 'trigger'::regtype ORDER BY 1"
}

on() { local port=$1; shift; PGPORT=$port "$@"; }
router() { on "$ROUTER_PORT" q cache "$1"; }
named_on_shards() { # SQL run on each shard: the outputs, joined by spaces
    local port out=()
    for port in "${SHARD_PORTS[@]}"; do out+=("$(on "$port" q cache "$1")"); done
    echo "${out[*]}"
}
clusters=(router single shard1 shard2 shard3 shard4)
ports=("$ROUTER_PORT" "$SINGLE_PORT" "${SHARD_PORTS[@]}")

cleanup() {
    for name in "${clusters[@]}"; do tests/cluster.sh destroy "$DATA/$name" & done
    wait
}
at_exit cleanup
cleanup
for i in "${!clusters[@]}"; do tests/cluster.sh start "$DATA/${clusters[$i]}" "${ports[$i]}" & done
wait
for port in "${ports[@]}"; do on "$port" q postgres "CREATE DATABASE cache" >/dev/null || exit 1; done
for port in "$SINGLE_PORT" "${SHARD_PORTS[@]}"; do on "$port" q cache "CREATE EXTENSION pg_cache" || exit 1; done
shard_list=$(printf "'host=127.0.0.1 port=%s dbname=cache user=postgres'," "${SHARD_PORTS[@]}")
router "SET client_min_messages = warning; CREATE EXTENSION pg_cache_router CASCADE" || exit 1
ROUTED=()
while read -r function; do
    [[ " ${NOT_ROUTED[*]} " == *" $function "* ]] || ROUTED+=("$function")
done < <(on "$SINGLE_PORT" q cache "$(functions_of pg_cache)")
echo "routed functions (from pg_cache's catalog): ${ROUTED[*]}"
check "the router defines every routed function of pg_cache (${#ROUTED[@]}), named as pg_cache names it" \
    test "$(router "$(functions_of pg_cache_router)" | tr '\n' ' ')" = "$(printf '%s\n' "${ROUTED[@]}" | LC_ALL=C sort | tr '\n' ' ')"
# signatures_of EXTENSION: each function's name, arguments (with their defaults) and result.
signatures_of() {
    echo "SELECT p.proname || '(' || pg_get_function_arguments(p.oid) || ') -> ' || pg_get_function_result(p.oid)
          FROM pg_extension e
          JOIN pg_depend d ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
                          AND d.classid = 'pg_proc'::regclass AND d.deptype = 'e'
          JOIN pg_proc p ON p.oid = d.objid AND p.pronamespace = e.extnamespace
          WHERE e.extname = '$1' AND p.prorettype <> 'trigger'::regtype ORDER BY 1"
}
unrouted_signatures=$(on "$SINGLE_PORT" q cache "$(signatures_of pg_cache)" | grep -vE "^($(IFS='|'; echo "${NOT_ROUTED[*]}"))\(")
differing_signatures=$(diff <(echo "$unrouted_signatures") <(router "$(signatures_of pg_cache_router)"))
check "the router's functions take the same arguments, with the same defaults (the cache last), and return the same results as pg_cache's" \
    test -z "$differing_signatures"
[ -z "$differing_signatures" ] || echo "$differing_signatures" | head -20
check "configure_shards maps 64 partitions onto the 4 shards" \
    test "$(router "SELECT cache_router.configure_shards(ARRAY[${shard_list%,}])")" = 64

# Growing to 8 shards moves the partitions n with n % 8 >= 4, and keeps the server's other options
# (tried in a transaction that is rolled back).
grown=$(router "BEGIN;
    ALTER SERVER pg_cache_shards OPTIONS (ADD query_timeout '30');
    SELECT cache_router.configure_shards(ARRAY[${shard_list%,}, 'host=new1', 'host=new2', 'host=new3', 'host=new4']);
    SELECT count(*) FILTER (WHERE CASE WHEN part.n % 8 >= 4 THEN option LIKE '%=host=new' || (part.n % 8 - 3)
                                       ELSE option LIKE '%port=' || (${SHARD_PORTS[0]} + part.n % 4) || ' %' END)
           || ' ' || count(*) FILTER (WHERE option = 'query_timeout=30')
    FROM pg_foreign_server, unnest(srvoptions) AS option, LATERAL (SELECT substring(option FROM '^p([0-9]+)=')::integer AS n) AS part
    WHERE srvname = 'pg_cache_shards';
    ROLLBACK" | sed -n 2p)
check "configure_shards with 8 shards moves half of each shard's partitions to the new ones and keeps other options" \
    test "$grown" = "64 1"
check "configure_shards refuses a number of partitions that is not a power of two, with 22023" \
    router "DO \$\$ BEGIN PERFORM cache_router.configure_shards(ARRAY['host=a'], 48); RAISE 'accepted';
            EXCEPTION WHEN invalid_parameter_value THEN END \$\$"

# --- 100,000 keys set through the router: where they landed, read on the shards themselves.
check "$KEYS keys set through the router in batches of 10,000" \
    test "$(router "SELECT sum(cache_set_many(batch.keys, batch.vals)) FROM (
                        SELECT array_agg('key:' || i) AS keys, array_agg(convert_to('value ' || i, 'UTF8')) AS vals
                        FROM generate_series(1, $KEYS) i GROUP BY i % 10) batch")" = "$KEYS"
router "CREATE TABLE placed (shard integer, key text)"
for shard in 1 2 3 4; do
    on "${SHARD_PORTS[$((shard - 1))]}" "$PGBIN/psql" -X -q -d cache \
        -c "COPY (SELECT $shard, key FROM pg_cache_entries) TO STDOUT" \
        | router "COPY placed FROM STDIN"
done
counts=$(router "SELECT string_agg(count::text, ' ' ORDER BY shard) FROM (SELECT shard, count(*) FROM placed GROUP BY shard) per_shard")
echo "keys per shard: $counts"
check "$KEYS keys set through the router are on the shards, each key once" \
    test "$(router "SELECT count(*) = $KEYS AND count(DISTINCT key) = $KEYS FROM placed")" = t
check "each shard holds its share within ±10% of an even split ($counts)" \
    test "$(router "SELECT bool_and(abs(count - $KEYS / 4) <= $KEYS / 40) AND count(*) = 4
                    FROM (SELECT count(*) FROM placed GROUP BY shard) per_shard")" = t
# configure_shards puts partition n on shard n % 4 + 1.
check "each key is on the shard its hash names" \
    test "$(router "SELECT count(*) FROM placed WHERE shard <> (cache_router.key_hash(key) & 63) % 4 + 1")" = 0
check "the keys read back through the router with their values" \
    test "$(router "SELECT count(*) FROM (SELECT array_agg('key:' || i) AS keys FROM generate_series(1, $KEYS) i GROUP BY i % 10) batch,
                    cache_get_many(batch.keys) AS hit WHERE hit.value = convert_to('value ' || substr(hit.key, 5), 'UTF8')")" = "$KEYS"

# --- Differential: the same random operations through the router and against one server. Each
# operation is one SELECT giving one text, normalised where the two may rightly differ (remaining
# expiry in whole hours; statistics: the counters only), or the SQLSTATE it failed with.
# The operations name the caches c1 and c2 (made on the router's shards through the router) and c3,
# which they create and drop.
router "SELECT cache_clear()" >/dev/null
cat > "$DATA/attempt.sql" <<'SQL'
CREATE FUNCTION attempt(operation text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    result text;
BEGIN
    EXECUTE operation INTO result;
    RETURN coalesce(result, 'NULL');
EXCEPTION WHEN OTHERS THEN
    RETURN 'ERROR ' || SQLSTATE;
END
$$;
SELECT cache_stats_reset();
SELECT cache_create('c1'), cache_create('c2');
SQL
for port in "$ROUTER_PORT" "$SINGLE_PORT"; do on "$port" "$PGBIN/psql" -X -q -d cache -f "$DATA/attempt.sql" >/dev/null; done
listed="SELECT string_agg(concat_ws('/', name, logged, max_size, default_sliding, default_ttl, table_name), ' ' ORDER BY name) FROM cache_list()"
echo "caches through the router: $(router "$listed")"
check "cache_list through the router lists each cache once, as one server does, after cache_create made c1 and c2 on every shard" \
    test "$(router "$listed")" = "$(on "$SINGLE_PORT" q cache "$listed")" -a "$(named_on_shards "SELECT count(*) FROM cache_list() WHERE name IN ('c1', 'c2')")" = "2 2 2 2"
on "$SINGLE_PORT" "$PGBIN/psql" -X -A -t -q -d cache -v operations="$OPERATIONS" \
    -f tests/sharded_operations.sql > "$DATA/operations.sql"
generated=$(grep -c '^SELECT attempt' "$DATA/operations.sql")
for port in "$ROUTER_PORT" "$SINGLE_PORT"; do
    # PL/Proxy says when it reconnects after an error: a notice, not a result.
    PGOPTIONS="-c client_min_messages=warning" on "$port" "$PGBIN/psql" -X -A -t -q -d cache \
        -f "$DATA/operations.sql" > "$DATA/results-$port.txt" 2>&1 &
done
wait
differing=$(paste -d '\n' "$DATA/results-$ROUTER_PORT.txt" "$DATA/results-$SINGLE_PORT.txt" /dev/null \
    | awk 'NR % 3 == 1 { r = $0 } NR % 3 == 2 && $0 != r { n++ } END { print n + 0 }')
answered=$(wc -l < "$DATA/results-$ROUTER_PORT.txt")
errors=$(grep -c '^ERROR' "$DATA/results-$SINGLE_PORT.txt")
echo "differential: $generated operations, $answered answered through the router, $errors of them errors on both sides"
check "the differential run has at least 20,000 operations, every one answered on both sides" \
    test "$generated" -ge 20000 -a "$answered" = "$generated" -a "$(wc -l < "$DATA/results-$SINGLE_PORT.txt")" = "$generated"
calls() { grep -oE "$1\(" "$DATA/operations.sql" | wc -l; }
rare=$(for function in "${ROUTED[@]}"; do [ "$(calls "$function")" -ge 50 ] || echo "$function"; done)
check "every routed function was called at least 50 times${rare:+ (not: $rare)}" test -z "$rare"
check "through the router and against one server, the $generated operations give the same results ($differing differ)" \
    test "$differing" = 0
if [ "$differing" != 0 ]; then
    diff "$DATA/results-$ROUTER_PORT.txt" "$DATA/results-$SINGLE_PORT.txt" | head -10
fi

# --- Transactions: a router call commits on its shard by itself.
router "BEGIN; SELECT cache_set('rolled back', 'still there'); ROLLBACK" >/dev/null
check "a cache_set through the router stays after the caller's transaction rolls back" \
    test "$(router "SELECT convert_from(cache_get('rolled back'), 'UTF8')")" = "still there"

# --- The invalidation feed comes from the shards, when each router call commits there, with the
# shard's setting (the router session's SET does not travel). Shard 1 is heard through dblink.
shard1="host=127.0.0.1 port=${SHARD_PORTS[0]} dbname=cache user=postgres"
feed_keys=$(router "SELECT array_agg(key ORDER BY key)::text FROM (SELECT key FROM placed WHERE shard = 1 LIMIT 2) on_shard1")
other_key=$(router "SELECT key FROM placed WHERE shard = 2 LIMIT 1")
heard=$(router "SET client_min_messages = warning; CREATE EXTENSION dblink;
    SELECT dblink_exec('$shard1', 'ALTER DATABASE cache SET pg_cache.notify = on');
    SELECT dblink_connect('listener', '$shard1');
    SELECT dblink_exec('listener', 'LISTEN pg_cache_invalidation');
    SET pg_cache.notify = off;
    BEGIN;
    SELECT cache_set_many('$feed_keys'::text[] || '$other_key'::text, ARRAY['1', '2', '3']::bytea[]);
    SELECT pg_sleep(1);
    SELECT array(SELECT key FROM dblink_get_notify('listener') AS heard,
                 jsonb_array_elements_text(heard.extra::jsonb -> 'keys') AS key ORDER BY key)::text;
    ROLLBACK;" | tail -1)
echo "shard 1 notified, before the router transaction ended, the keys $heard"
check "shard 1 notifies its keys of a router batch (not the others'), before the router transaction ends, though the router session SET pg_cache.notify off" \
    test "$heard" = "$feed_keys"

# --- A shard stopped: its keys fail, naming it; the other shards' keys keep working.
down_key=$(router "SELECT key FROM placed WHERE shard = 2 LIMIT 1")
up_keys=$(router "SELECT array_agg(key)::text FROM (SELECT key FROM placed WHERE shard <> 2 LIMIT 50) up")
up_key=$(router "SELECT ('$up_keys'::text[])[1]")
router "SELECT cache_set('$down_key', 'before'), cache_set_many('$up_keys', array_fill('before'::bytea, ARRAY[50]))" >/dev/null
tests/cluster.sh stop "$DATA/shard2"
down_port=${SHARD_PORTS[1]}
fails_naming_shard() { # SQL fails with an error naming the stopped shard's port
    local error
    error=$(router "$1" 2>&1 >/dev/null) && return 1
    echo "$error" | grep -q "port $down_port failed"
}
echo "a stopped shard's key: $(router "SELECT cache_get('$down_key')" 2>&1 | head -1)"
check "with shard 2 stopped, cache_get of a key it owns fails naming it" fails_naming_shard "SELECT cache_get('$down_key')"
check "... and cache_set of such a key" fails_naming_shard "SELECT cache_set('$down_key', 'during')"
check "... and a batch that includes such a key, as a whole" \
    fails_naming_shard "SELECT count(*) FROM cache_get_many('$up_keys'::text[] || '$down_key'::text)"
check "... and a whole-cache call (cache_keys)" fails_naming_shard "SELECT count(*) FROM cache_keys()"
router "SELECT cache_set('$up_key', 'during')" >/dev/null
check "keys on the other shards keep working" test "$(router "SELECT convert_from(cache_get('$up_key'), 'UTF8')")" = during
check "... and so do batches of them" test "$(router "SELECT count(*) FROM cache_get_many('$up_keys'::text[])")" = 50
tests/cluster.sh start "$DATA/shard2" "$down_port"
check "after shard 2 restarts, its key is there again" \
    test "$(router "SELECT convert_from(cache_get('$down_key'), 'UTF8')")" = before
on_shards=0
for port in "${SHARD_PORTS[@]}"; do on_shards=$((on_shards + $(on "$port" q cache "SELECT count(*) FROM cache_keys('', 100000)"))); done
check "... and whole-cache calls work (cache_keys lists the $on_shards keys of all shards)" \
    test "$(router "SELECT count(*) FROM cache_keys('', 100000)")" = "$on_shards"

# --- Named caches: a call naming a cache works on that cache, on the shard that owns the key.
router "SELECT cache_create('sessions')" >/dev/null
check "cache_create through the router creates the cache on every shard" \
    test "$(named_on_shards "SELECT count(*) FROM cache_list() WHERE name = 'sessions'")" = "1 1 1 1"
check "1,000 keys set through the router in the cache sessions, and the first 10 in the default cache too" \
    test "$(router "SELECT cache_set_many(array_agg('named:' || i), array_agg(convert_to('session ' || i, 'UTF8')), cache => 'sessions')
                    FROM generate_series(1, 1000) i")/$(router "SELECT cache_set_many(array_agg('named:' || i),
                    array_agg(convert_to('default ' || i, 'UTF8'))) FROM generate_series(1, 10) i")" = 1000/10
router "CREATE TABLE named_placed (shard integer, cache text, key text)"
for shard in 1 2 3 4; do
    for cache in default sessions; do
        on "${SHARD_PORTS[$((shard - 1))]}" "$PGBIN/psql" -X -q -d cache \
            -c "COPY (SELECT $shard, '$cache', key FROM cache_keys('named:', 100000, '$cache')) TO STDOUT" \
            | router "COPY named_placed FROM STDIN"
    done
done
echo "keys of the cache sessions per shard: $(router "SELECT string_agg(count::text, ' ' ORDER BY shard) FROM (
    SELECT shard, count(*) FROM named_placed WHERE cache = 'sessions' GROUP BY shard) per_shard")"
check "the 1,000 keys are in the cache sessions of the shards, each once, and every shard has some" \
    test "$(router "SELECT count(*) = 1000 AND count(DISTINCT key) = 1000 AND count(DISTINCT shard) = 4
                    FROM named_placed WHERE cache = 'sessions'")" = t
check "each key of the cache sessions is on the shard its hash names" \
    test "$(router "SELECT count(*) FROM named_placed WHERE shard <> (cache_router.key_hash(key) & 63) % 4 + 1")" = 0
check "the default caches of the shards hold only the 10 keys set without a cache" \
    test "$(router "SELECT count(*) FROM named_placed WHERE cache = 'default'")" = 10
check "cache_get through the router reads the cache it names: sessions, default, or default when it names none" \
    test "$(router "SELECT concat_ws('/', convert_from(cache_get('named:1', 'sessions'), 'UTF8'),
                                     convert_from(cache_get('named:1', cache => 'default'), 'UTF8'),
                                     convert_from(cache_get('named:1'), 'UTF8'), cache_get('named:11') IS NULL)")" \
         = "session 1/default 1/default 1/t"
check "cache_get_many through the router with a cache finds that cache's keys only" \
    test "$(router "SELECT count(*) FILTER (WHERE value = convert_to('session ' || substr(key, 7), 'UTF8')) || '/'
                           || (SELECT count(*) FROM cache_get_many(ARRAY(SELECT 'named:' || i FROM generate_series(1, 1000) i)))
                    FROM cache_get_many(ARRAY(SELECT 'named:' || i FROM generate_series(1, 1000) i), 'sessions')")" = 1000/10
check "cache_remove of a key in one cache leaves the key in the other" \
    test "$(router "SELECT cache_remove('named:1', 'sessions')")/$(router "SELECT cache_get('named:1', 'sessions') IS NULL AND cache_get('named:1') IS NOT NULL")" = t/t
check "cache_incr counts a counter of each cache apart" \
    test "$(router "SELECT cache_incr('named:counter', 5, cache => 'sessions'), cache_incr('named:counter', 2), cache_incr('named:counter', cache => 'sessions')" | tr '|' ' ')" = "5 2 6"
check "cache_keys through the router with a cache lists that cache's keys" \
    test "$(router "SELECT count(*) FROM cache_keys('named:', 100000, 'sessions')")" = 1000
stats_of_sessions="SELECT concat_ws('/', sum(sets), sum(hits), sum(misses)) FROM cache_stats('sessions')"
check "cache_stats('sessions') through the router sums the shards' statistics of that cache" \
    test "$(router "$stats_of_sessions")" = "$(on "$SINGLE_PORT" q cache "SELECT concat_ws('/', sum(n[1]), sum(n[2]), sum(n[3]))
        FROM (VALUES $(named_on_shards "SELECT format('(ARRAY[%s,%s,%s])', sets, hits, misses) FROM cache_stats('sessions')" | tr ' ' ',')) AS shard(n)")"
lease=$(router "SELECT lease FROM cache_get_or_lease('named:lease', beta => 0, cache => 'sessions')")
check "a lease in the cache sessions is its own: the default cache's key gets a lease too (miss), sessions' next caller waits" \
    test -n "$lease" -a "$(router "SELECT status FROM cache_get_or_lease('named:lease', beta => 0)")/$(router "SELECT status FROM cache_get_or_lease('named:lease', beta => 0, cache => 'sessions')")" = miss/wait
check "... and the fill through the router stores in the cache sessions" \
    test "$(router "SELECT cache_fill('named:lease', 'filled', '$lease', cache => 'sessions')")/$(router "SELECT convert_from(cache_get('named:lease', 'sessions'), 'UTF8')")" = t/filled
check "cache_clear('sessions') through the router empties that cache on every shard and leaves the default caches" \
    test "$(router "SELECT cache_clear('sessions')")/$(named_on_shards "SELECT count(*) FROM cache_keys('', 100000, 'sessions')")/$(router "SELECT count(*) FROM cache_keys('named:')")" \
         = "1001/0 0 0 0/11"
router "SELECT cache_alter('sessions', default_ttl => '2 hours')" >/dev/null
check "cache_alter through the router changes the cache on every shard: a key set with no expiry gets its default ttl" \
    test "$(named_on_shards "SELECT default_ttl FROM cache_list() WHERE name = 'sessions'")/$(router "SELECT cache_set('named:ttl', 'x', cache => 'sessions'),
              round(extract(epoch FROM cache_ttl('named:ttl', 'sessions')) / 60)")" = "02:00:00 02:00:00 02:00:00 02:00:00/|120"
# A role of the router's database that is no superuser, set up as docs/scaling-out.md says.
router "CREATE ROLE router_tenant; GRANT USAGE ON FOREIGN SERVER pg_cache_shards TO router_tenant"
check "a router role that is no superuser uses the caches through the router, single keys and batches" \
    test "$(router "SET ROLE router_tenant; SELECT convert_from(cache_get('named:ttl', 'sessions'), 'UTF8') || count(*)
                    FROM cache_get_many(ARRAY['named:ttl', 'named:2'], 'sessions')")" = x1
for call in "SELECT cache_create('tenant')" "SELECT cache_alter('sessions', logged => true)" "SELECT cache_drop('sessions')" \
            "SELECT cache_router.drop('sessions')" "SELECT cache_router.configure_shards(ARRAY['host=elsewhere'])"; do
    check "... but may not $call (42501)" on "$ROUTER_PORT" sqlstate_is 42501 cache "SET ROLE router_tenant" "$call"
done

# Errors about the cache come back from the shards with their SQLSTATE, for every kind of call.
rejects() { on "$ROUTER_PORT" sqlstate_is "$1" cache "SET client_min_messages = warning" "$2"; }
for call in "SELECT cache_get('named:1', 'nope')" "SELECT cache_set('named:1', 'x', cache => 'nope')" \
            "SELECT * FROM cache_get_many(ARRAY['named:1', 'named:2', 'named:3'], 'nope')" \
            "SELECT * FROM cache_get_many(ARRAY[]::text[], 'nope')" "SELECT cache_set_many(ARRAY[]::text[], ARRAY[]::bytea[], cache => 'nope')" \
            "SELECT cache_clear('nope')" "SELECT * FROM cache_stats('nope')" "SELECT * FROM cache_keys(cache => 'nope')" \
            "SELECT * FROM cache_get_or_lease('named:1', cache => 'nope')"; do
    check "through the router, an unknown cache is 42704: $call" rejects 42704 "$call"
done
check "through the router, a cache name that breaks the rule is 22023" rejects 22023 "SELECT cache_get('named:1', 'Sessions')"
check "through the router, a NULL cache is 22004" rejects 22004 "SELECT cache_get('named:1', NULL)"
unknown=$(on "$ROUTER_PORT" "$PGBIN/psql" -X -q -d cache -c "SELECT cache_get('named:1', 'nope')" 2>&1)
echo "an unknown cache through the router: $(head -1 <<<"$unknown")"
check "the error keeps pg_cache's message, naming the cache" grep -q 'cache_get: cache "nope" does not exist' <<<"$unknown"

# A cache made on some shards only (directly, not through the router) fails the keys of the others.
for port in "${SHARD_PORTS[@]:0:3}"; do on "$port" q cache "SELECT cache_create('partial')" >/dev/null; done
on_shard4=$(router "SELECT key FROM placed WHERE shard = 4 LIMIT 1")
on_shard1=$(router "SELECT key FROM placed WHERE shard = 1 LIMIT 1")
check "a cache missing on shard 4: its keys there are 42704 through the router, the others' work" \
    test "$(rejects 42704 "SELECT cache_set('$on_shard4', 'x', cache => 'partial')" && echo refused)/$(router "SELECT cache_set('$on_shard1', 'x', cache => 'partial')")" = refused/
check "... and whole-cache calls fail" rejects 42704 "SELECT cache_clear('partial')"
for port in "${SHARD_PORTS[@]:0:3}"; do on "$port" q cache "SELECT cache_drop('partial')" >/dev/null; done

router "SELECT cache_drop('sessions')" >/dev/null
check "cache_drop through the router drops the cache on every shard" \
    test "$(named_on_shards "SELECT count(*) FROM cache_list() WHERE name = 'sessions'")" = "0 0 0 0"

# The router's upgrade: 0.1.0 updated to the current version defines the same functions, with the
# same arguments, results, privileges and PL/Proxy bodies, as a fresh install.
router_functions() {
    on "$ROUTER_PORT" q "$1" "SELECT p.oid::regprocedure::text || ' ' || pg_get_function_arguments(p.oid)
                                     || ' -> ' || pg_get_function_result(p.oid) || ' ' || coalesce(p.proacl::text, '')
                                     || ' ' || p.prosrc
                              FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
                              WHERE n.nspname IN ('public', 'cache_router') ORDER BY 1"
}
on "$ROUTER_PORT" q postgres "CREATE DATABASE router_upgraded" >/dev/null
on "$ROUTER_PORT" q postgres "CREATE DATABASE router_fresh" >/dev/null
on "$ROUTER_PORT" q router_fresh "SET client_min_messages = warning; CREATE EXTENSION pg_cache_router CASCADE" >/dev/null
on "$ROUTER_PORT" q router_upgraded "SET client_min_messages = warning; CREATE EXTENSION pg_cache_router VERSION '0.1.0' CASCADE" >/dev/null
# A client of the router with statements prepared on 0.1.0 runs them again after the update (in
# another session): they find the new functions, and the default cache.
on "$ROUTER_PORT" q router_upgraded "SELECT cache_router.configure_shards(ARRAY[${shard_list%,}])" >/dev/null
prepared=$(on "$ROUTER_PORT" "$PGBIN/psql" -X -A -t -q -v ON_ERROR_STOP=1 -d router_upgraded 2>&1 <<SQL
PREPARE set_value(text, text) AS SELECT cache_set(\$1, convert_to(\$2, 'UTF8'), ttl => '1 hour');
PREPARE get_value(text) AS SELECT convert_from(cache_get(\$1), 'UTF8');
PREPARE get_many(text[]) AS SELECT string_agg(key, ',' ORDER BY key) FROM cache_get_many(\$1);
PREPARE counted(text) AS SELECT cache_incr(\$1);
PREPARE listed(text) AS SELECT count(*) FROM cache_keys(\$1);
EXECUTE set_value('upgrade:a', 'on 0.1.0');
EXECUTE get_value('upgrade:a');
EXECUTE counted('upgrade:n');
SELECT extversion FROM pg_extension WHERE extname = 'pg_cache_router';
\! "$PGBIN/psql" -X -q -d router_upgraded -c 'ALTER EXTENSION pg_cache_router UPDATE'
SELECT extversion FROM pg_extension WHERE extname = 'pg_cache_router';
EXECUTE set_value('upgrade:b', 'after the update');
EXECUTE get_value('upgrade:a');
EXECUTE get_value('upgrade:b');
EXECUTE get_many(ARRAY['upgrade:a', 'upgrade:b', 'upgrade:c']);
EXECUTE counted('upgrade:n');
EXECUTE listed('upgrade:');
SQL
)
router_version=$(sed -nE "s/default_version = '(.*)'/\1/p" router/pg_cache_router.control)
echo "statements prepared before the update, executed after it: $(echo $prepared)"
check "statements prepared on 0.1.0 run after ALTER EXTENSION pg_cache_router UPDATE in another session, on the default cache" \
    test "$(echo $prepared)" = "on 0.1.0 1 0.1.0 $router_version on 0.1.0 after the update upgrade:a,upgrade:b 2 3" \
         -a "$(router "SELECT convert_from(cache_get('upgrade:b', 'default'), 'UTF8')")" = "after the update"
router "SELECT cache_remove_prefix('upgrade:')" >/dev/null
check "ALTER EXTENSION pg_cache_router UPDATE from 0.1.0 reaches $router_version" \
    test "$(on "$ROUTER_PORT" q router_upgraded "SELECT extversion FROM pg_extension WHERE extname = 'pg_cache_router'")" = "$router_version"
check "the router upgraded from 0.1.0 defines the same functions as a fresh install ($(router_functions router_fresh | wc -l) compared)" \
    test "$(router_functions router_upgraded)" = "$(router_functions router_fresh)"
router_members() {
    on "$ROUTER_PORT" q "$1" "SELECT pg_describe_object(d.classid, d.objid, d.objsubid) FROM pg_depend d
                              JOIN pg_extension e ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid
                              WHERE e.extname = 'pg_cache_router' AND d.deptype = 'e'
                              UNION ALL SELECT 'schema cache_router: ' || nspacl::text FROM pg_namespace WHERE nspname = 'cache_router'
                              ORDER BY 1"
}
check "... and has the same members ($(router_members router_fresh | wc -l)), and the same privileges on its schema" \
    test "$(router_members router_upgraded)" = "$(router_members router_fresh)"
# Privileges changed on the 0.1.0 functions go to their successors.
on "$ROUTER_PORT" q postgres "CREATE DATABASE router_grants" >/dev/null
on "$ROUTER_PORT" q router_grants "SET client_min_messages = warning; CREATE EXTENSION pg_cache_router VERSION '0.1.0' CASCADE;
    REVOKE ALL ON FUNCTION cache_clear() FROM PUBLIC;
    REVOKE ALL ON FUNCTION cache_get(text) FROM PUBLIC; GRANT EXECUTE ON FUNCTION cache_get(text) TO router_tenant;
    ALTER EXTENSION pg_cache_router UPDATE" >/dev/null
check "privileges revoked and granted on 0.1.0's functions apply to their successors after the update" \
    test "$(on "$ROUTER_PORT" q router_grants "SELECT concat_ws(' ',
              has_function_privilege('router_tenant', 'cache_get(text, text)', 'EXECUTE'),
              has_function_privilege('pg_monitor', 'cache_get(text, text)', 'EXECUTE'),
              has_function_privilege('router_tenant', 'cache_clear(text)', 'EXECUTE'),
              has_function_privilege('router_tenant', 'cache_set(text, bytea, interval, interval, timestamptz, text[], text)', 'EXECUTE'),
              (SELECT count(*) FROM pg_proc WHERE proname LIKE 'pg_cache_router_0.1.0_%'))")" = "t f f t 0"
lease=$(router "SELECT lease FROM cache_get_or_lease('router:lease', beta => 0)")
check "through the router, a miss gets a lease and the next caller waits" \
    test -n "$lease" -a "$(router "SELECT status FROM cache_get_or_lease('router:lease', beta => 0)")" = wait
owner_port=$(for port in "${SHARD_PORTS[@]}"; do
    [ "$(on "$port" q cache "SELECT count(*) FROM cache_get_or_lease('router:lease', beta => 0) WHERE status = 'wait'")" = 1 ] && echo "$port"
done)
check "the lease lives on the one shard that owns the key ($owner_port)" test "$(wc -w <<<"$owner_port")" = 1
check "the fill through the router stores, and the next caller hits" \
    test "$(router "SELECT cache_fill('router:lease', 'filled', '$lease')")/$(router "SELECT status || ' ' || convert_from(value, 'UTF8') FROM cache_get_or_lease('router:lease')")" = "t/hit filled"
check "cache_stats through the router sums the lease counters" \
    test "$(router "SELECT leases_granted >= 1 AND lease_waits >= 1 FROM cache_stats()")" = t
check "cache_incr through the router with create_missing => false leaves an absent counter absent" \
    test "$(router "SELECT cache_incr('router:absent counter', create_missing => false) IS NULL
                    AND NOT EXISTS (SELECT 1 FROM cache_keys('router:absent counter'))")" = t

summary sharded
