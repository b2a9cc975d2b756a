#!/usr/bin/env bash
# A hostile tenant: the owner of a database (not a superuser) tries to run code with the rights
# of pg_cache's background workers, which connect as the bootstrap superuser. Each route puts
# operators, functions, aggregates and a domain named as the workers' statements name theirs
# where name lookup could find them: a schema the database's search_path puts before pg_catalog
# (ALTER DATABASE … SET search_path), the same in public with the default search_path (exact
# matches that would win over pg_catalog's), and a trigger on the cache table once the tenant
# owns it. Every trap records who ran it and makes the tenant superuser when a superuser runs it.
# Meanwhile every statement of the evictor runs (expiry, size cap, vacuum) and the relay sends.
# Then: the tenant is not superuser, no trap ran as a superuser, and eviction still happened.
# An impostor of the function the statements call to see pending touches (before the update that
# creates the extension's own) is never called. Also: cache_worker_status() shows other databases
# only to pg_read_all_stats; a database that stops taking connections keeps its statistics for
# the sessions still in it.
set -uo pipefail
cd "$(dirname "$0")/.."

source tests/lib.sh
DATADIR=$PG_CACHE_DATA_ROOT/hostile
export PGPORT
PGPORT=$(port_for hostile)

# KEEP=1 keeps the cluster (see fresh_cluster_dir in lib.sh).
start_cluster "$DATADIR" "$PGPORT" "pg_cache.eviction_interval = '200ms'" "autovacuum = off"

# The test's own superuser sessions name pg_catalog first, whatever the tenant sets; the
# tenant's sessions (as) take the database's and the role's settings.
export PGOPTIONS="-c search_path=pg_catalog,public"
# as ROLE DB SQL: q as another role, with the settings of the database and the role.
as() { local role=$1 db=$2; shift 2; PGOPTIONS= PGUSER=$role q "$db" "$@"; }

q postgres "CREATE ROLE tenant LOGIN" && q postgres "CREATE DATABASE tenant OWNER tenant"
q tenant "CREATE EXTENSION pg_cache SCHEMA public; GRANT SELECT, INSERT, UPDATE, DELETE ON pg_cache_entries TO tenant"
as tenant tenant "CREATE SCHEMA evil;
CREATE TABLE evil.calls (by_user name, superuser text, what text);
CREATE FUNCTION evil.escalate(what text) RETURNS boolean LANGUAGE plpgsql SET search_path = pg_catalog AS \$\$
DECLARE
    -- The current user's own attribute: is_superuser says what the session user is.
    superuser boolean := (SELECT rolsuper FROM pg_roles WHERE rolname = current_user);
BEGIN
    INSERT INTO evil.calls VALUES (current_user, CASE WHEN superuser THEN 'on' ELSE 'off' END, what);
    IF superuser THEN
        EXECUTE 'ALTER ROLE tenant SUPERUSER';
    END IF;
    RETURN true;
END \$\$;
GRANT USAGE ON SCHEMA evil TO PUBLIC; GRANT INSERT ON evil.calls TO PUBLIC;"

# trap SCHEMA: in SCHEMA, every operator and function the workers' and the functions'
# statements use, for the argument types they use, doing what pg_catalog's does after the trap.
trap_in() {
    local schema=$1 sql="" n=0 op left right result
    while read -r op left right result; do
        n=$((n + 1))
        sql+="CREATE FUNCTION $schema.trap_op_$n(a $left, b $right) RETURNS $result LANGUAGE plpgsql
                  SET search_path = pg_catalog AS \$\$ BEGIN PERFORM evil.escalate('$op($left, $right)');
                  RETURN a OPERATOR(pg_catalog.$op) b; END \$\$;
              CREATE OPERATOR $schema.$op (LEFTARG = $left, RIGHTARG = $right, FUNCTION = $schema.trap_op_$n);"
    done <<'OPS'
= oid oid boolean
= name name boolean
= text text boolean
= tid tid boolean
> tid tid boolean
= timestamptz timestamptz boolean
> timestamptz timestamptz boolean
<= timestamptz timestamptz boolean
= interval interval boolean
> real integer boolean
> real real boolean
> bigint bigint boolean
> bigint integer boolean
+ integer integer integer
+ bigint bigint bigint
/ bigint integer bigint
&& text[] text[] boolean
@> text[] text[] boolean
OPS
    sql+="
    CREATE FUNCTION $schema.trap_min(state timestamptz, x timestamptz) RETURNS timestamptz LANGUAGE plpgsql
        SET search_path = pg_catalog AS \$\$ BEGIN PERFORM evil.escalate('min'); RETURN least(state, x); END \$\$;
    CREATE AGGREGATE $schema.min(timestamptz) (SFUNC = $schema.trap_min, STYPE = timestamptz);
    CREATE FUNCTION $schema.trap_sum(state bigint, x integer) RETURNS bigint LANGUAGE plpgsql
        SET search_path = pg_catalog AS \$\$ BEGIN PERFORM evil.escalate('sum'); RETURN coalesce(state, 0) + x; END \$\$;
    CREATE AGGREGATE $schema.sum(integer) (SFUNC = $schema.trap_sum, STYPE = bigint);
    CREATE FUNCTION $schema.octet_length(bytea) RETURNS integer LANGUAGE plpgsql
        SET search_path = pg_catalog AS \$\$ BEGIN PERFORM evil.escalate('octet_length'); RETURN pg_catalog.octet_length(\$1); END \$\$;
    CREATE FUNCTION $schema.octet_length(text) RETURNS integer LANGUAGE plpgsql
        SET search_path = pg_catalog AS \$\$ BEGIN PERFORM evil.escalate('octet_length'); RETURN pg_catalog.octet_length(\$1); END \$\$;
    CREATE FUNCTION $schema.pg_stat_get_dead_tuples(oid) RETURNS bigint LANGUAGE plpgsql
        SET search_path = pg_catalog AS \$\$ BEGIN PERFORM evil.escalate('pg_stat_get_dead_tuples'); RETURN 1000000; END \$\$;
    CREATE FUNCTION $schema.now() RETURNS timestamptz LANGUAGE plpgsql
        SET search_path = pg_catalog AS \$\$ BEGIN PERFORM evil.escalate('now'); RETURN pg_catalog.now(); END \$\$;
    CREATE DOMAIN $schema.int8 AS pg_catalog.int8 CHECK (evil.escalate('int8 domain'));
    CREATE DOMAIN $schema.float4 AS pg_catalog.float4 CHECK (evil.escalate('float4 domain'));"
    # A decoy of the cache table, where it is not the table itself.
    [ "$schema" = public ] || sql+="CREATE TABLE $schema.pg_cache_entries (LIKE public.pg_cache_entries);"
    as tenant tenant "$sql" >/dev/null
}

not_escalated() {
    test "$(q tenant "SELECT rolsuper FROM pg_roles WHERE rolname = 'tenant'")" = f \
        && test "$(q tenant "SELECT count(*) FROM evil.calls WHERE superuser = 'on'")" = 0
}
# churn DB: what makes every worker statement run: entries expiring in 1 s, more bytes than the
# size cap (so the cap's measure and sample run), dead rows for a vacuum; the feed on (the relay).
churn() {
    as tenant tenant "SET pg_cache.notify = on;
        SELECT count(cache_set('expiring ' || i, 'v', ttl => '1 s', tags => '{t}')) FROM generate_series(1, 2000) i;
        SELECT count(cache_set('big ' || i, convert_to(repeat('x', 1000), 'UTF8'), ttl => '1 hour')) FROM generate_series(1, 3000) i;
        SELECT cache_remove_by_tag('{none}'), cache_get('big 1'), cache_keys('big 1');" >/dev/null
}
evicted() {
    wait_for 15 tenant "SELECT count(*) = 0 FROM pg_cache_entries WHERE key LIKE 'expiring %'" \
        && wait_for 15 tenant "SELECT sum(octet_length(key) + octet_length(value)) <= 1024 * 1024 FROM pg_cache_entries"
}

q postgres "ALTER DATABASE tenant SET pg_cache.max_size = '1MB'"

# Route A: the database's search_path puts the tenant's schema first.
trap_in evil
as tenant tenant "ALTER DATABASE tenant SET search_path = evil, pg_catalog, public; ALTER ROLE tenant SET search_path = evil, pg_catalog, public"
churn
check "search_path of the database: expired entries and entries over the size cap are evicted" evicted
check "search_path of the database: the tenant is not superuser, no trap ran as a superuser" not_escalated
check "search_path of the database: the tenant's own calls ran none of the traps" \
    test "$(q tenant "SELECT count(*) FROM evil.calls")" = 0
q tenant "SELECT * FROM evil.calls LIMIT 5"

# Route B: the default search_path, exact matches in public (which the database owner may
# create in), no ALTER DATABASE.
as tenant tenant "ALTER DATABASE tenant RESET search_path; ALTER ROLE tenant RESET search_path"
trap_in public
churn
check "operators in public: expired entries and entries over the size cap are evicted" evicted
check "operators in public: the tenant is not superuser, no trap ran as a superuser" not_escalated

# Settings the owner gives the database to stall or stop the workers: a VACUUM that naps for
# minutes (cost settings) and sweeps in read-only transactions. The workers use PostgreSQL's
# defaults for them: entries are evicted, the table vacuumed, no error shown.
as tenant tenant "ALTER DATABASE tenant SET vacuum_cost_delay = 100; ALTER DATABASE tenant SET vacuum_cost_limit = 1;
    ALTER DATABASE tenant SET vacuum_cost_page_hit = 10000; ALTER DATABASE tenant SET vacuum_cost_page_miss = 10000;
    ALTER DATABASE tenant SET vacuum_cost_page_dirty = 10000; ALTER DATABASE tenant SET default_transaction_read_only = on;
    ALTER DATABASE tenant SET default_transaction_isolation = 'serializable'"
vacuums_before=$(q tenant "SELECT vacuum_count FROM pg_stat_user_tables WHERE relid = 'public.pg_cache_entries'::regclass")
# The tenant's own sessions write with read-write transactions.
PGOPTIONS="-c default_transaction_read_only=off" PGUSER=tenant q tenant \
    "SELECT count(cache_set('stall ' || i, convert_to(repeat('s', 100), 'UTF8'), ttl => '1 s')) FROM generate_series(1, 5000) i" >/dev/null
check "stalling settings of the database: expired entries are evicted" \
    wait_for 20 tenant "SELECT count(*) = 0 FROM pg_cache_entries WHERE key LIKE 'stall %'"
check "stalling settings of the database: the evictor vacuums the table, and is never left napping in it" \
    wait_for 20 tenant "SELECT vacuum_count > $vacuums_before FROM pg_stat_user_tables WHERE relid = 'public.pg_cache_entries'::regclass
                        AND NOT EXISTS (SELECT FROM pg_stat_activity WHERE wait_event = 'VacuumDelay')"
check "stalling settings of the database: no sweep failed" \
    test "$(q tenant "SELECT count(*) FROM cache_worker_status() WHERE database = 'tenant' AND last_error IS NOT NULL")" = 0
for setting in vacuum_cost_delay vacuum_cost_limit vacuum_cost_page_hit vacuum_cost_page_miss vacuum_cost_page_dirty \
    default_transaction_read_only default_transaction_isolation; do
    PGOPTIONS="-c default_transaction_read_only=off" PGUSER=tenant q tenant "ALTER DATABASE tenant RESET $setting"
done

# The client's search_path: a decoy table and operators ahead of pg_catalog do not swap the table.
decoy=$(as tenant tenant "SET search_path = evil, pg_catalog, public;
    SELECT cache_set('decoy check', 'real');
    SELECT convert_from(cache_get('decoy check'), 'UTF8') || ' ' || (SELECT count(*) FROM evil.pg_cache_entries)
           || ' ' || (SELECT count(*) FROM public.pg_cache_entries WHERE key = 'decoy check')" | tail -1)
check "a caller's search_path with a decoy table and operators reaches the extension's table (got: $decoy)" \
    test "$decoy" = "real 0 1"

# An impostor of the function the statements call to see pending touches: before the update to
# 0.3.0 the extension has none, and the database owner creates one in public. It is not the
# extension's: no statement calls it (as the evictor's superuser or as anyone), and hits slide
# as 0.2.0's did.
q postgres "CREATE DATABASE impostor OWNER tenant"
q impostor "CREATE EXTENSION pg_cache VERSION '0.2.0' SCHEMA public;
            GRANT SELECT, INSERT, UPDATE, DELETE ON pg_cache_entries TO tenant"
as tenant impostor "CREATE TABLE impostor_calls (by_user name); GRANT INSERT ON impostor_calls TO PUBLIC;
CREATE FUNCTION public.pg_cache_pending_expiry(oid, text, timestamptz) RETURNS timestamptz
LANGUAGE plpgsql SET search_path = pg_catalog AS \$\$
BEGIN
    INSERT INTO public.impostor_calls VALUES (current_user);
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
        EXECUTE 'ALTER ROLE tenant SUPERUSER';
    END IF;
    RETURN \$3 + interval '100 years';
END \$\$;"
as tenant impostor "SET pg_cache.refresh_granularity = 0;
    SELECT cache_set('pinned?', 'v', sliding => '1 s'); SELECT pg_sleep(0.5); SELECT cache_get('pinned?');
    SELECT count(*) FROM cache_keys(''); SELECT cache_add('other', 'v', ttl => '1 s')" >/dev/null
check "an impostor pg_cache_pending_expiry: the entry read once still expires and is evicted" \
    wait_for 15 impostor "SELECT count(*) = 0 FROM pg_cache_entries WHERE key = 'pinned?'"
check "an impostor pg_cache_pending_expiry: no session or worker called it" \
    test "$(q impostor "SELECT count(*) FROM impostor_calls")" = 0
check "an impostor pg_cache_pending_expiry: the tenant is not superuser" not_escalated
# Before the update there is no catalog of caches either: a view of its name (whose heap scan
# would crash a backend) is not the extension's, and no session or worker reads it.
started=$(q postgres "SELECT pg_postmaster_start_time()")
as tenant impostor "CREATE VIEW public.pg_cache_caches AS SELECT 'default'::text AS name, 0 AS id"
as tenant impostor "SELECT cache_set('viewed', 'v', ttl => '100 ms')" >/dev/null
check "a view named like the catalog of caches before the update: calls and the evictor go on" \
    wait_for 15 impostor "SELECT count(*) = 0 FROM pg_cache_entries WHERE key = 'viewed'"
check "a view named like the catalog of caches before the update: no backend or worker crashed" \
    test "$(q postgres "SELECT pg_postmaster_start_time() = '$started'")" = t
as tenant impostor "DROP VIEW public.pg_cache_caches"
# The update carries each 0.2.0 function's privileges to its successor: a function of the tenant's
# named like a renamed 0.2.0 one gives none of its own.
q impostor "REVOKE EXECUTE ON FUNCTION cache_clear() FROM PUBLIC; CREATE ROLE bystander" >/dev/null
as tenant impostor "CREATE FUNCTION public.\"pg_cache_0.2.0_cache_clear\"(int) RETURNS void LANGUAGE sql AS '';
    REVOKE ALL ON FUNCTION public.\"pg_cache_0.2.0_cache_clear\"(int) FROM PUBLIC;
    GRANT EXECUTE ON FUNCTION public.\"pg_cache_0.2.0_cache_clear\"(int) TO bystander WITH GRANT OPTION"
# After the update the extension's own is in pg_catalog, where the owner cannot add an overload
# (one in public with an extra defaulted argument would make calls by name ambiguous).
q impostor "ALTER EXTENSION pg_cache UPDATE" >/dev/null
check "after the update, cache_clear has the privileges of the 0.2.0 one, none of the impostor's" \
    test "$(q impostor "SELECT has_function_privilege('bystander', 'cache_clear(text)', 'EXECUTE')::text
                        || has_function_privilege('public', 'cache_clear(text)', 'EXECUTE')::text")" = falsefalse
q impostor "GRANT EXECUTE ON FUNCTION cache_clear(text) TO PUBLIC" >/dev/null
as tenant impostor "CREATE FUNCTION public.pg_cache_pending_expiry(oid, text, timestamptz, extra int DEFAULT 0)
RETURNS timestamptz LANGUAGE sql AS 'SELECT \$3'"
check "after the update, with overloads in public: every function and the evictor still work" \
    test "$(as tenant impostor "SET pg_cache.refresh_granularity = 0;
        SELECT cache_set('read', 'v', sliding => '1 s'); SELECT pg_sleep(0.3); SELECT cache_get('read');
        SELECT cache_set('brief', 'v', ttl => '100 ms'); SELECT pg_sleep(0.2);
        SELECT (SELECT count(*) FROM cache_keys('read'))::text || cache_add('brief', 'w')::text
               || (cache_evict_expired() >= 0)::text" | tail -1)" = 1truetrue
check "after the update: no sweep fails in the impostor's database" \
    test "$(q impostor "SELECT pg_sleep(1.5); SELECT count(*) FROM cache_worker_status() WHERE database = 'impostor' AND last_error IS NOT NULL" | tail -1)" = 0
check "after the update: no session or worker called the impostors" \
    test "$(q impostor "SELECT count(*) FROM impostor_calls")" = 0

# A trigger on the cache table, once the tenant owns it: run by the evictor as its owner.
q tenant "ALTER TABLE pg_cache_entries OWNER TO tenant"
as tenant tenant "CREATE FUNCTION evil.on_delete() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog AS \$\$
    BEGIN PERFORM evil.escalate('trigger'); RETURN OLD; END \$\$;
    CREATE TRIGGER trap BEFORE DELETE ON pg_cache_entries FOR EACH ROW EXECUTE FUNCTION evil.on_delete();"
written=$(as tenant tenant "SELECT count(cache_set('trigger ' || i, 'v', ttl => '1 s')) FROM generate_series(1, 50) i")
check "a trigger on the table: the evictor still evicts (the $written entries written)" \
    test "$written" = 50 -a "$(wait_for 15 tenant "SELECT count(*) = 0 FROM pg_cache_entries WHERE key LIKE 'trigger %'" && echo gone)" = gone
check "a trigger on the table: it ran as the table's owner, not as a superuser" \
    test "$(q tenant "SELECT count(*) > 0 AND bool_and(by_user = 'tenant' AND superuser = 'off') FROM evil.calls WHERE what = 'trigger'")" = t
check "a trigger on the table: the tenant is not superuser" not_escalated

# cache_worker_status() shows other databases only to roles that may read all statistics.
q postgres "CREATE DATABASE other" && q other "CREATE EXTENSION pg_cache SCHEMA public"
q other "SELECT cache_set('o', 'v', ttl => '1 s')" >/dev/null
q postgres "CREATE ROLE nobody LOGIN; CREATE ROLE watcher LOGIN IN ROLE pg_read_all_stats"
check "cache_worker_status(): a role without grants sees its own database only" \
    test "$(as nobody tenant "SELECT string_agg(database, ',') FROM cache_worker_status()")" = tenant
check "cache_worker_status(): a member of pg_read_all_stats sees every database with pg_cache" \
    test "$(as watcher tenant "SELECT string_agg(database, ',' ORDER BY database) FROM cache_worker_status()")" = impostor,other,tenant

# A database that stops taking connections keeps its slot while a session still uses it.
q postgres "CREATE DATABASE frozen" && q frozen "CREATE EXTENSION pg_cache SCHEMA public"
session_in=$(mktemp -u) && mkfifo "$session_in"
session_out=$(mktemp)
"$PGBIN/psql" -X -A -t -q -d frozen <"$session_in" >"$session_out" 2>&1 &
session=$!
exec 3>"$session_in"
echo "SELECT count(cache_set('k' || i, 'v')) FROM generate_series(1, 5) i;" >&3
wait_for 5 frozen "SELECT sets = 5 FROM cache_stats()" >/dev/null
q postgres "ALTER DATABASE frozen WITH ALLOW_CONNECTIONS false"
# The launcher reads pg_database every 2 s.
sleep 3
echo "SELECT cache_set('k6', 'v'); SELECT 'sets ' || sets FROM cache_stats();" >&3
exec 3>&-
wait "$session"
rm -f "$session_in"
check "a database closed to new connections keeps its statistics for its sessions (got: $(tr '\n' ' ' <"$session_out"))" \
    grep -qx "sets 6" "$session_out"
rm -f "$session_out"
q postgres "ALTER DATABASE frozen WITH ALLOW_CONNECTIONS true"

check "the server log shows no crash" no_crash_in_log "$DATADIR"
summary hostile
