-- pg_cache_router: in a router database, the pg_cache functions with the same names, arguments and
-- results, each call sent through PL/Proxy to the pg_cache servers (shards) that own its keys.
-- Shards must have pg_cache in the schema this extension is created in (public by default): the
-- calls sent to them name that schema. See the README, Scaling out.
-- Named caches (pg_cache 0.3.0): every function but cache_worker_status takes the cache last,
-- `cache text DEFAULT 'default'`, and passes it to the shards it calls. The shard is still chosen
-- by the key alone: a key of any cache lives on the shard that owns the key. A cache must exist on
-- every shard: create it through the router (cache_create runs on all of them).
\echo Use "CREATE EXTENSION pg_cache_router" to load this file. \quit

-- Internals: the key hash, argument checks, the per-shard PL/Proxy functions, the setup helper.
-- Every caller uses them (PL/Proxy computes the partition with cache_router.key_hash as the
-- caller), but configure_shards and the functions behind cache_create, cache_alter and cache_drop.
CREATE SCHEMA cache_router;
GRANT USAGE ON SCHEMA cache_router TO PUBLIC;

-- The hash that picks a key's partition: the first 32 bits of the key's MD5. Every router must
-- hash a key alike, on any PostgreSQL version and machine; hashtext() is not promised to (its
-- result depends on the byte order). A NULL key goes to partition 0, whose pg_cache raises the
-- error a NULL key gets.
CREATE FUNCTION cache_router.key_hash(key text) RETURNS integer
IMMUTABLE PARALLEL SAFE LANGUAGE sql
AS $$ SELECT coalesce(('x' || left(pg_catalog.md5(key), 8))::bit(32)::integer, 0) $$;

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
CREATE FUNCTION cache_router.checked_array(function text, argument text, elements anyarray)
RETURNS anyarray IMMUTABLE PARALLEL SAFE LANGUAGE plpgsql
AS $$
BEGIN
    IF elements IS NULL THEN
        RAISE EXCEPTION '%: % must not be NULL', function, argument USING ERRCODE = 'null_value_not_allowed';
    END IF;
    -- pg_cache's MAX_BATCH_KEYS
    IF cardinality(elements) > 10000 THEN
        RAISE EXCEPTION '%: % has % elements; the maximum is 10000', function, argument, cardinality(elements)
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    RETURN elements;
END
$$;

-- The first position of each key in a batch: hits come back in the order keys were asked for.
CREATE FUNCTION cache_router.first_positions(keys text[]) RETURNS TABLE (key text, ordinal bigint)
IMMUTABLE PARALLEL SAFE LANGUAGE sql
AS $$
    SELECT requested.key, min(requested.ordinal)
    FROM unnest(keys) WITH ORDINALITY AS requested(key, ordinal)
    GROUP BY requested.key
$$;

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

-- The cluster the functions above run on: SQL/MED server pg_cache_shards, one partition option
-- (p0, p1, ...) per partition. configure_shards(shards) maps `partitions` partitions (a power of
-- two, by default the least one that is at least 64 and at least the number of shards) onto the
-- shards, partition n to shards[n % number of shards + 1]. Starting with more partitions than
-- shards lets the cluster grow by moving partitions: running it again with more shards moves
-- some partitions to the new ones and keeps the server's other options and user mappings.
-- Returns the number of partitions.
CREATE FUNCTION cache_router.configure_shards(shards text[], partitions integer DEFAULT NULL)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    shard_count CONSTANT integer := coalesce(cardinality(shards), 0);
    old_partitions text[];
    options text[] := '{}';
    changes text[] := '{}';
    name text;
BEGIN
    IF shard_count = 0 OR array_position(shards, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'configure_shards: shards must be a non-empty array of connection strings without NULLs'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    partitions := coalesce(partitions, greatest(64, 1 << ceil(log(2, shard_count))::integer));
    IF partitions < shard_count OR partitions & (partitions - 1) <> 0 THEN
        RAISE EXCEPTION 'configure_shards: partitions must be a power of two and at least the number of shards (%), got %',
            shard_count, partitions USING ERRCODE = 'invalid_parameter_value';
    END IF;

    SELECT coalesce(array_agg(split_part(option, '=', 1)), '{}') INTO old_partitions
    FROM pg_foreign_server, unnest(srvoptions) AS option
    WHERE srvname = 'pg_cache_shards' AND option ~ '^p[0-9]+=';
    FOR part IN 0 .. partitions - 1 LOOP
        name := 'p' || part;
        options := options || format('%I %L', name, shards[part % shard_count + 1]);
        changes := changes || format('%s %I %L',
            CASE WHEN name = ANY (old_partitions) THEN 'SET' ELSE 'ADD' END, name, shards[part % shard_count + 1]);
    END LOOP;
    FOREACH name IN ARRAY old_partitions LOOP
        IF substr(name, 2)::integer >= partitions THEN
            changes := changes || format('DROP %I', name);
        END IF;
    END LOOP;

    IF EXISTS (SELECT FROM pg_foreign_server WHERE srvname = 'pg_cache_shards') THEN
        EXECUTE format('ALTER SERVER pg_cache_shards OPTIONS (%s)', array_to_string(changes, ', '));
    ELSE
        EXECUTE format('CREATE SERVER pg_cache_shards FOREIGN DATA WRAPPER plproxy OPTIONS (%s)',
            array_to_string(options, ', '));
        EXECUTE 'CREATE USER MAPPING FOR PUBLIC SERVER pg_cache_shards';
    END IF;
    RETURN partitions;
END
$$;
REVOKE EXECUTE ON FUNCTION cache_router.configure_shards(text[], integer) FROM PUBLIC;
