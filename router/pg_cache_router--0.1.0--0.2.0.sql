-- pg_cache_router 0.1.0 -> 0.2.0, for pg_cache 0.3.0 on the shards (update them first): every
-- function but cache_worker_status takes the cache last (`cache text DEFAULT 'default'`, named
-- caches), cache_incr gains create_missing, cache_stats the lease and touch counters, and the
-- leases are routed (cache_get_or_lease, cache_fill, cache_release: a key's lease lives on the
-- shard that owns it). An empty batch is sent to partition 0's shard, which checks its cache.
-- Callers that are not superusers may use the router (USAGE on the schema cache_router).
-- cache_create, cache_alter and cache_drop run on every shard; cache_list lists the shards' caches.
\echo Use "ALTER EXTENSION pg_cache_router UPDATE" to load this file. \quit

-- Every caller uses the internals (0.1.0 left them to superusers: PL/Proxy computes the partition
-- with cache_router.key_hash as the caller), but configure_shards and the functions behind
-- cache_create, cache_alter and cache_drop.
GRANT USAGE ON SCHEMA cache_router TO PUBLIC;
REVOKE EXECUTE ON FUNCTION cache_router.configure_shards(text[], integer) FROM PUBLIC;

-- A new argument: each function is made again (an overload would make calls without the cache
-- ambiguous). Calls, and prepared statements, that name no cache keep working: they resolve to
-- the new function and the default cache. The 0.1.0 functions are renamed out of the way, their
-- privileges given to their successors at the end, and then dropped.
ALTER FUNCTION @extschema@.cache_set(text, bytea, interval, interval, timestamptz, text[]) RENAME TO "pg_cache_router_0.1.0_cache_set";
ALTER FUNCTION @extschema@.cache_add(text, bytea, interval, interval, timestamptz, text[]) RENAME TO "pg_cache_router_0.1.0_cache_add";
ALTER FUNCTION @extschema@.cache_get(text) RENAME TO "pg_cache_router_0.1.0_cache_get";
ALTER FUNCTION @extschema@.cache_take(text) RENAME TO "pg_cache_router_0.1.0_cache_take";
ALTER FUNCTION @extschema@.cache_refresh(text) RENAME TO "pg_cache_router_0.1.0_cache_refresh";
ALTER FUNCTION @extschema@.cache_remove(text) RENAME TO "pg_cache_router_0.1.0_cache_remove";
ALTER FUNCTION @extschema@.cache_ttl(text) RENAME TO "pg_cache_router_0.1.0_cache_ttl";
ALTER FUNCTION @extschema@.cache_tags(text) RENAME TO "pg_cache_router_0.1.0_cache_tags";
ALTER FUNCTION @extschema@.cache_expire(text, interval, interval, timestamptz) RENAME TO "pg_cache_router_0.1.0_cache_expire";
ALTER FUNCTION @extschema@.cache_incr(text, bigint, interval, interval, timestamptz) RENAME TO "pg_cache_router_0.1.0_cache_incr";
ALTER FUNCTION @extschema@.cache_set_json(text, jsonb, interval, interval, timestamptz, text[]) RENAME TO "pg_cache_router_0.1.0_cache_set_json";
ALTER FUNCTION @extschema@.cache_get_json(text) RENAME TO "pg_cache_router_0.1.0_cache_get_json";
ALTER FUNCTION @extschema@.cache_get_many(text[]) RENAME TO "pg_cache_router_0.1.0_cache_get_many";
ALTER FUNCTION @extschema@.cache_get_many_json(text[]) RENAME TO "pg_cache_router_0.1.0_cache_get_many_json";
ALTER FUNCTION @extschema@.cache_set_many(text[], bytea[], interval, interval, timestamptz, text[]) RENAME TO "pg_cache_router_0.1.0_cache_set_many";
ALTER FUNCTION @extschema@.cache_remove_many(text[]) RENAME TO "pg_cache_router_0.1.0_cache_remove_many";
ALTER FUNCTION @extschema@.cache_evict_expired(integer) RENAME TO "pg_cache_router_0.1.0_cache_evict_expired";
ALTER FUNCTION @extschema@.cache_clear() RENAME TO "pg_cache_router_0.1.0_cache_clear";
ALTER FUNCTION @extschema@.cache_remove_prefix(text) RENAME TO "pg_cache_router_0.1.0_cache_remove_prefix";
ALTER FUNCTION @extschema@.cache_remove_by_tag(text[], boolean) RENAME TO "pg_cache_router_0.1.0_cache_remove_by_tag";
ALTER FUNCTION @extschema@.cache_keys(text, integer) RENAME TO "pg_cache_router_0.1.0_cache_keys";
ALTER FUNCTION @extschema@.cache_stats() RENAME TO "pg_cache_router_0.1.0_cache_stats";
ALTER FUNCTION @extschema@.cache_stats_reset() RENAME TO "pg_cache_router_0.1.0_cache_stats_reset";
DROP FUNCTION cache_router.get_many(text[]);
DROP FUNCTION cache_router.get_many_json(text[]);
DROP FUNCTION cache_router.set_many(text[], bytea[], interval, interval, timestamptz, text[]);
DROP FUNCTION cache_router.remove_many(text[]);
DROP FUNCTION cache_router.evict_expired(integer);
DROP FUNCTION cache_router.clear();
DROP FUNCTION cache_router.remove_prefix(text);
DROP FUNCTION cache_router.remove_by_tag(text[], boolean);
DROP FUNCTION cache_router.keys(text, integer);
DROP FUNCTION cache_router.stats();
DROP FUNCTION cache_router.stats_reset();

-- Functions of one key run on the shard that owns it. PL/Proxy sends the call as
-- <schema>.<name>(<arguments>) with this function's own signature. A function that takes a key
-- is one line here.
DO $generate$
DECLARE
    expiry CONSTANT text := 'ttl interval DEFAULT NULL, sliding interval DEFAULT NULL, expires_at timestamptz DEFAULT NULL';
    tags CONSTANT text := 'tags text[] DEFAULT NULL';
    cache CONSTANT text := 'cache text DEFAULT ''default''';
    routed record;
BEGIN
    FOR routed IN
        SELECT * FROM (VALUES
            ('cache_set',      concat_ws(', ', 'key text, value bytea', expiry, tags),  'void'),
            ('cache_add',      concat_ws(', ', 'key text, value bytea', expiry, tags),  'boolean'),
            ('cache_get',      'key text',                                             'bytea'),
            ('cache_take',     'key text',                                             'bytea'),
            ('cache_refresh',  'key text',                                             'boolean'),
            ('cache_remove',   'key text',                                             'boolean'),
            ('cache_ttl',      'key text',                                             'interval'),
            ('cache_tags',     'key text',                                             'text[]'),
            ('cache_expire',   concat_ws(', ', 'key text', expiry),                    'boolean'),
            ('cache_incr',     concat_ws(', ', 'key text, delta bigint DEFAULT 1', expiry, 'create_missing boolean DEFAULT true'), 'bigint'),
            ('cache_set_json', concat_ws(', ', 'key text, value jsonb', expiry, tags),  'void'),
            ('cache_get_json', 'key text',                                             'jsonb'),
            ('cache_get_or_lease', 'key text, lease_ttl interval DEFAULT ''10 s'', wait interval DEFAULT ''0'', beta double precision DEFAULT 1.0, grace interval DEFAULT ''0''',
                               'TABLE (status text, value bytea, lease uuid, ttl interval)'),
            ('cache_fill',     concat_ws(', ', 'key text, value bytea, lease uuid', expiry, tags), 'boolean'),
            ('cache_release',  'key text, lease uuid',                                 'boolean')
        ) AS single_key(name, arguments, result)
    LOOP
        EXECUTE format(
            'CREATE FUNCTION @extschema@.%I(%s) RETURNS %s LANGUAGE plproxy AS %L',
            routed.name, concat_ws(', ', routed.arguments, cache), routed.result,
            'CLUSTER ''pg_cache_shards''; RUN ON cache_router.key_hash(key);');
    END LOOP;
END
$generate$;

-- Batches: PL/Proxy splits the arrays by the partition of each key and calls pg_cache once per
-- shard with that shard's part and the cache. What pg_cache checks on the whole array (NULL,
-- length) is checked here, since no shard sees the whole array; each element is checked by its
-- shard. An empty batch splits into no part: it is sent whole to partition 0's shard, which
-- answers it as one server does (and checks the cache: an unknown cache is an error there too).
CREATE FUNCTION cache_router.get_many(keys text[], cache text) RETURNS TABLE (key text, value bytea)
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    SPLIT keys;
    RUN ON cache_router.key_hash(keys);
    TARGET @extschema@.cache_get_many;
$$;

CREATE FUNCTION cache_router.get_many_whole(keys text[], cache text) RETURNS TABLE (key text, value bytea)
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    RUN ON 0;
    TARGET @extschema@.cache_get_many;
$$;

CREATE FUNCTION @extschema@.cache_get_many(keys text[], cache text DEFAULT 'default')
RETURNS TABLE (key text, value bytea)
LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(cache_router.checked_array('cache_get_many', 'keys', keys)) = 0 THEN
        RETURN QUERY SELECT hit.key, hit.value FROM cache_router.get_many_whole(keys, cache) AS hit;
        RETURN;
    END IF;
    RETURN QUERY
        SELECT hit.key, hit.value
        FROM cache_router.get_many(keys, cache) AS hit
        JOIN cache_router.first_positions(keys) AS requested ON requested.key = hit.key
        ORDER BY requested.ordinal;
END
$$;

CREATE FUNCTION cache_router.get_many_json(keys text[], cache text) RETURNS TABLE (key text, value jsonb)
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    SPLIT keys;
    RUN ON cache_router.key_hash(keys);
    TARGET @extschema@.cache_get_many_json;
$$;

CREATE FUNCTION cache_router.get_many_json_whole(keys text[], cache text) RETURNS TABLE (key text, value jsonb)
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    RUN ON 0;
    TARGET @extschema@.cache_get_many_json;
$$;

CREATE FUNCTION @extschema@.cache_get_many_json(keys text[], cache text DEFAULT 'default')
RETURNS TABLE (key text, value jsonb)
LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(cache_router.checked_array('cache_get_many_json', 'keys', keys)) = 0 THEN
        RETURN QUERY SELECT hit.key, hit.value FROM cache_router.get_many_json_whole(keys, cache) AS hit;
        RETURN;
    END IF;
    RETURN QUERY
        SELECT hit.key, hit.value
        FROM cache_router.get_many_json(keys, cache) AS hit
        JOIN cache_router.first_positions(keys) AS requested ON requested.key = hit.key
        ORDER BY requested.ordinal;
END
$$;

-- Every shard's part of the pairs gets all the tags.
CREATE FUNCTION cache_router.set_many(
    keys text[], vals bytea[], ttl interval, sliding interval, expires_at timestamptz, tags text[], cache text
) RETURNS SETOF bigint
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    SPLIT keys, vals;
    RUN ON cache_router.key_hash(keys);
    TARGET @extschema@.cache_set_many;
$$;

CREATE FUNCTION cache_router.set_many_whole(
    keys text[], vals bytea[], ttl interval, sliding interval, expires_at timestamptz, tags text[], cache text
) RETURNS bigint
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    RUN ON 0;
    TARGET @extschema@.cache_set_many;
$$;

CREATE FUNCTION @extschema@.cache_set_many(
    keys text[], vals bytea[],
    ttl interval DEFAULT NULL, sliding interval DEFAULT NULL, expires_at timestamptz DEFAULT NULL,
    tags text[] DEFAULT NULL, cache text DEFAULT 'default'
) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cache_router.checked_array('cache_set_many', 'keys', keys),
            cache_router.checked_array('cache_set_many', 'vals', vals);
    IF cardinality(keys) <> cardinality(vals) THEN
        RAISE EXCEPTION 'cache_set_many: keys and vals must have the same length, got % keys and % vals',
            cardinality(keys), cardinality(vals) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF cardinality(keys) = 0 THEN
        RETURN cache_router.set_many_whole(keys, vals, ttl, sliding, expires_at, tags, cache);
    END IF;
    RETURN coalesce(sum(pairs), 0)
        FROM cache_router.set_many(keys, vals, ttl, sliding, expires_at, tags, cache) AS pairs;
END
$$;

CREATE FUNCTION cache_router.remove_many(keys text[], cache text) RETURNS SETOF bigint
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    SPLIT keys;
    RUN ON cache_router.key_hash(keys);
    TARGET @extschema@.cache_remove_many;
$$;

CREATE FUNCTION cache_router.remove_many_whole(keys text[], cache text) RETURNS bigint
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    RUN ON 0;
    TARGET @extschema@.cache_remove_many;
$$;

CREATE FUNCTION @extschema@.cache_remove_many(keys text[], cache text DEFAULT 'default') RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    IF cardinality(cache_router.checked_array('cache_remove_many', 'keys', keys)) = 0 THEN
        RETURN cache_router.remove_many_whole(keys, cache);
    END IF;
    RETURN coalesce(sum(removed), 0) FROM cache_router.remove_many(keys, cache) AS removed;
END
$$;

-- Whole-cache functions run on every shard, each given the cache; counts are summed. Each shard
-- applies max_rows to itself: cache_evict_expired can return up to max_rows per shard.
CREATE FUNCTION cache_router.evict_expired(max_rows integer, cache text) RETURNS SETOF bigint
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    RUN ON ALL;
    TARGET @extschema@.cache_evict_expired;
$$;

CREATE FUNCTION @extschema@.cache_evict_expired(max_rows integer DEFAULT 10000, cache text DEFAULT 'default')
RETURNS bigint
LANGUAGE sql AS $$
    SELECT sum(evicted)::bigint FROM cache_router.evict_expired(max_rows, cache) AS evicted
$$;

CREATE FUNCTION cache_router.clear(cache text) RETURNS SETOF bigint
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    RUN ON ALL;
    TARGET @extschema@.cache_clear;
$$;

CREATE FUNCTION @extschema@.cache_clear(cache text DEFAULT 'default') RETURNS bigint
LANGUAGE sql AS $$
    SELECT sum(removed)::bigint FROM cache_router.clear(cache) AS removed
$$;

CREATE FUNCTION cache_router.remove_prefix(prefix text, cache text) RETURNS SETOF bigint
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    RUN ON ALL;
    TARGET @extschema@.cache_remove_prefix;
$$;

CREATE FUNCTION @extschema@.cache_remove_prefix(prefix text, cache text DEFAULT 'default') RETURNS bigint
LANGUAGE sql AS $$
    SELECT sum(removed)::bigint FROM cache_router.remove_prefix(prefix, cache) AS removed
$$;

CREATE FUNCTION cache_router.remove_by_tag(tags text[], match_all boolean, cache text) RETURNS SETOF bigint
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    RUN ON ALL;
    TARGET @extschema@.cache_remove_by_tag;
$$;

CREATE FUNCTION @extschema@.cache_remove_by_tag(tags text[], match_all boolean DEFAULT false, cache text DEFAULT 'default')
RETURNS bigint
LANGUAGE sql AS $$
    SELECT sum(removed)::bigint FROM cache_router.remove_by_tag(tags, match_all, cache) AS removed
$$;

-- Each shard lists up to max_rows of its keys in key order; the first max_rows of all of them
-- are the first max_rows overall. Numbered rather than LIMITed: a LIMIT 0 would call no shard,
-- and no shard would reject max_rows 0.
CREATE FUNCTION cache_router.keys(prefix text, max_rows integer, cache text) RETURNS TABLE (
    key text, expires_at timestamptz, sliding interval, absolute_expires_at timestamptz, value_bytes integer
)
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    RUN ON ALL;
    TARGET @extschema@.cache_keys;
$$;

CREATE FUNCTION @extschema@.cache_keys(prefix text DEFAULT '', max_rows integer DEFAULT 1000, cache text DEFAULT 'default')
RETURNS TABLE (
    key text, expires_at timestamptz, sliding interval, absolute_expires_at timestamptz, value_bytes integer
)
LANGUAGE sql AS $$
    SELECT numbered.key, numbered.expires_at, numbered.sliding, numbered.absolute_expires_at, numbered.value_bytes
    FROM (
        SELECT listed.*, row_number() OVER (ORDER BY listed.key COLLATE "C") AS n
        FROM cache_router.keys(prefix, max_rows, cache) AS listed
    ) AS numbered
    WHERE numbered.n <= max_rows
    ORDER BY numbered.n
$$;

CREATE FUNCTION cache_router.stats(cache text) RETURNS TABLE (
    hits bigint, misses bigint, sets bigint, removes bigint, evicted bigint, evicted_for_size bigint,
    live_bytes bigint, entries bigint, total_bytes bigint, since timestamptz,
    leases_granted bigint, stale_served bigint, lease_waits bigint, fills_rejected bigint,
    touches_recorded bigint, touches_applied bigint, touch_fallbacks bigint
)
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    RUN ON ALL;
    TARGET @extschema@.cache_stats;
$$;

-- The sums over the shards; since is the earliest shard's.
CREATE FUNCTION @extschema@.cache_stats(cache text DEFAULT 'default') RETURNS TABLE (
    hits bigint, misses bigint, sets bigint, removes bigint, evicted bigint, evicted_for_size bigint,
    live_bytes bigint, entries bigint, total_bytes bigint, since timestamptz,
    leases_granted bigint, stale_served bigint, lease_waits bigint, fills_rejected bigint,
    touches_recorded bigint, touches_applied bigint, touch_fallbacks bigint
)
LANGUAGE sql AS $$
    SELECT sum(shard.hits)::bigint, sum(shard.misses)::bigint, sum(shard.sets)::bigint,
           sum(shard.removes)::bigint, sum(shard.evicted)::bigint, sum(shard.evicted_for_size)::bigint,
           sum(shard.live_bytes)::bigint, sum(shard.entries)::bigint, sum(shard.total_bytes)::bigint,
           min(shard.since), sum(shard.leases_granted)::bigint, sum(shard.stale_served)::bigint,
           sum(shard.lease_waits)::bigint, sum(shard.fills_rejected)::bigint,
           sum(shard.touches_recorded)::bigint, sum(shard.touches_applied)::bigint,
           sum(shard.touch_fallbacks)::bigint
    FROM cache_router.stats(cache) AS shard
$$;

CREATE FUNCTION cache_router.stats_reset(cache text) RETURNS SETOF void
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    RUN ON ALL;
    TARGET @extschema@.cache_stats_reset;
$$;

CREATE FUNCTION @extschema@.cache_stats_reset(cache text DEFAULT 'default') RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM count(*) FROM cache_router.stats_reset(cache);
END
$$;

-- Named caches. A cache must exist on every shard to be used through the router: cache_create,
-- cache_alter and cache_drop run on every shard, each shard in its own transaction, as the role
-- the router connects as (which must own pg_cache there). When one shard fails (it is down, or
-- already has the cache), the others keep what they did; cache_drop through the router, then
-- cache_create again, makes them alike (see docs/scaling-out.md). Only the router database's
-- superusers, and roles granted EXECUTE on these three, may call them: the router's user mapping
-- would otherwise let any caller create and drop caches as the role it connects as.
CREATE FUNCTION cache_router.create(
    name text, logged boolean, max_size text, default_sliding interval, default_ttl interval
) RETURNS SETOF void
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    RUN ON ALL;
    TARGET @extschema@.cache_create;
$$;

CREATE FUNCTION @extschema@.cache_create(
    name text, logged boolean DEFAULT false, max_size text DEFAULT NULL,
    default_sliding interval DEFAULT NULL, default_ttl interval DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM count(*) FROM cache_router.create(name, logged, max_size, default_sliding, default_ttl);
END
$$;

CREATE FUNCTION cache_router.alter(
    name text, logged boolean, max_size text, default_sliding interval, default_ttl interval
) RETURNS SETOF void
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    RUN ON ALL;
    TARGET @extschema@.cache_alter;
$$;

CREATE FUNCTION @extschema@.cache_alter(
    name text, logged boolean DEFAULT NULL, max_size text DEFAULT NULL,
    default_sliding interval DEFAULT NULL, default_ttl interval DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM count(*) FROM cache_router.alter(name, logged, max_size, default_sliding, default_ttl);
END
$$;

CREATE FUNCTION cache_router.drop(name text) RETURNS SETOF void
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    RUN ON ALL;
    TARGET @extschema@.cache_drop;
$$;

CREATE FUNCTION @extschema@.cache_drop(name text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM count(*) FROM cache_router.drop(name);
END
$$;

REVOKE EXECUTE ON FUNCTION
    @extschema@.cache_create(text, boolean, text, interval, interval),
    cache_router.create(text, boolean, text, interval, interval),
    @extschema@.cache_alter(text, boolean, text, interval, interval),
    cache_router.alter(text, boolean, text, interval, interval),
    @extschema@.cache_drop(text),
    cache_router.drop(text)
FROM PUBLIC;

CREATE FUNCTION cache_router.list() RETURNS TABLE (
    name text, logged boolean, max_size bigint, default_sliding interval, default_ttl interval,
    entries bigint, live_bytes bigint, table_name text
)
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    RUN ON ALL;
    TARGET @extschema@.cache_list;
$$;

-- One row per cache, with entries and live_bytes summed over the shards. The options and table
-- name are the shards': a cache whose shards differ in them (it was not made or altered through
-- the router) is listed once for each variant.
CREATE FUNCTION @extschema@.cache_list() RETURNS TABLE (
    name text, logged boolean, max_size bigint, default_sliding interval, default_ttl interval,
    entries bigint, live_bytes bigint, table_name text
)
LANGUAGE sql AS $$
    SELECT shard.name, shard.logged, shard.max_size, shard.default_sliding, shard.default_ttl,
           sum(shard.entries)::bigint, sum(shard.live_bytes)::bigint, shard.table_name
    FROM cache_router.list() AS shard
    GROUP BY shard.name, shard.logged, shard.max_size, shard.default_sliding, shard.default_ttl, shard.table_name
    ORDER BY shard.name COLLATE "C", shard.table_name COLLATE "C"
$$;

-- The privileges of each 0.1.0 function, given to its successor (with the owner's own left as
-- they are), then the 0.1.0 function dropped.
DO $$
DECLARE
    old record;
    successor pg_catalog.regprocedure;
    grant_ record;
BEGIN
    FOR old IN
        SELECT p.oid, p.proname, p.proacl, p.proowner
        FROM pg_catalog.pg_proc p
        WHERE p.pronamespace OPERATOR(pg_catalog.=) '@extschema@'::pg_catalog.regnamespace
          AND p.proname OPERATOR(pg_catalog.~~) 'pg\_cache\_router\_0.1.0\_%'
          AND EXISTS (SELECT FROM pg_catalog.pg_depend d
                      WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid OPERATOR(pg_catalog.=) p.oid
                        AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype OPERATOR(pg_catalog.=) 'e'
                        AND d.refobjid OPERATOR(pg_catalog.=) (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'pg_cache_router'))
    LOOP
        SELECT n.oid INTO STRICT successor
        FROM pg_catalog.pg_proc n
        WHERE n.pronamespace OPERATOR(pg_catalog.=) '@extschema@'::pg_catalog.regnamespace
          AND n.proname OPERATOR(pg_catalog.=) pg_catalog.substr(old.proname, 23)
          AND EXISTS (SELECT FROM pg_catalog.pg_depend d
                      WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid OPERATOR(pg_catalog.=) n.oid
                        AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype OPERATOR(pg_catalog.=) 'e'
                        AND d.refobjid OPERATOR(pg_catalog.=) (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'pg_cache_router'));
        IF old.proacl IS NOT NULL THEN
            EXECUTE pg_catalog.format('REVOKE ALL ON FUNCTION %s FROM PUBLIC', successor);
            FOR grant_ IN
                SELECT a.grantee, a.is_grantable FROM pg_catalog.aclexplode(old.proacl) a
                WHERE a.grantee OPERATOR(pg_catalog.<>) old.proowner
            LOOP
                EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO %s%s', successor,
                    CASE WHEN grant_.grantee OPERATOR(pg_catalog.=) 0 THEN 'PUBLIC'
                         ELSE grant_.grantee::pg_catalog.regrole::pg_catalog.text END,
                    CASE WHEN grant_.is_grantable THEN ' WITH GRANT OPTION' ELSE '' END);
            END LOOP;
        END IF;
        EXECUTE pg_catalog.format('DROP FUNCTION %s', old.oid::pg_catalog.regprocedure);
    END LOOP;
END
$$;
