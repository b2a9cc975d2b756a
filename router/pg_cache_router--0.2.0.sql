-- pg_cache_router: in a router database, the pg_cache functions with the same names, arguments and
-- results, each call sent through PL/Proxy to the pg_cache servers (shards) that own its keys.
-- Shards must have pg_cache in the schema this extension is created in (public by default): the
-- calls sent to them name that schema. See the README, Scaling out.
\echo Use "CREATE EXTENSION pg_cache_router" to load this file. \quit

-- Internals: the key hash, argument checks, the per-shard PL/Proxy functions, the setup helper.
CREATE SCHEMA cache_router;

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
            routed.name, routed.arguments, routed.result,
            'CLUSTER ''pg_cache_shards''; RUN ON cache_router.key_hash(key);');
    END LOOP;
END
$generate$;

-- Batches: PL/Proxy splits the arrays by the partition of each key and calls pg_cache once per
-- shard with that shard's part. What pg_cache checks on the whole array (NULL, length) is
-- checked here, since no shard sees the whole array; each element is checked by its shard.
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
-- Both sides of the join check the keys: the planner may run either one alone (when it is empty).
CREATE FUNCTION cache_router.first_positions(keys text[]) RETURNS TABLE (key text, ordinal bigint)
IMMUTABLE PARALLEL SAFE LANGUAGE sql
AS $$
    SELECT requested.key, min(requested.ordinal)
    FROM unnest(keys) WITH ORDINALITY AS requested(key, ordinal)
    GROUP BY requested.key
$$;

CREATE FUNCTION cache_router.get_many(keys text[]) RETURNS TABLE (key text, value bytea)
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    SPLIT keys;
    RUN ON cache_router.key_hash(keys);
    TARGET @extschema@.cache_get_many;
$$;

CREATE FUNCTION @extschema@.cache_get_many(keys text[]) RETURNS TABLE (key text, value bytea)
LANGUAGE sql AS $$
    SELECT hit.key, hit.value
    FROM cache_router.get_many(cache_router.checked_array('cache_get_many', 'keys', keys)) AS hit
    JOIN cache_router.first_positions(cache_router.checked_array('cache_get_many', 'keys', keys)) AS requested
        ON requested.key = hit.key
    ORDER BY requested.ordinal
$$;

CREATE FUNCTION cache_router.get_many_json(keys text[]) RETURNS TABLE (key text, value jsonb)
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    SPLIT keys;
    RUN ON cache_router.key_hash(keys);
    TARGET @extschema@.cache_get_many_json;
$$;

CREATE FUNCTION @extschema@.cache_get_many_json(keys text[]) RETURNS TABLE (key text, value jsonb)
LANGUAGE sql AS $$
    SELECT hit.key, hit.value
    FROM cache_router.get_many_json(cache_router.checked_array('cache_get_many_json', 'keys', keys)) AS hit
    JOIN cache_router.first_positions(cache_router.checked_array('cache_get_many_json', 'keys', keys)) AS requested
        ON requested.key = hit.key
    ORDER BY requested.ordinal
$$;

-- Every shard's part of the pairs gets all the tags.
CREATE FUNCTION cache_router.set_many(
    keys text[], vals bytea[], ttl interval, sliding interval, expires_at timestamptz, tags text[]
) RETURNS SETOF bigint
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    SPLIT keys, vals;
    RUN ON cache_router.key_hash(keys);
    TARGET @extschema@.cache_set_many;
$$;

CREATE FUNCTION @extschema@.cache_set_many(
    keys text[], vals bytea[],
    ttl interval DEFAULT NULL, sliding interval DEFAULT NULL, expires_at timestamptz DEFAULT NULL,
    tags text[] DEFAULT NULL
) RETURNS bigint
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cache_router.checked_array('cache_set_many', 'keys', keys),
            cache_router.checked_array('cache_set_many', 'vals', vals);
    IF cardinality(keys) <> cardinality(vals) THEN
        RAISE EXCEPTION 'cache_set_many: keys and vals must have the same length, got % keys and % vals',
            cardinality(keys), cardinality(vals) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN coalesce(sum(pairs), 0) FROM cache_router.set_many(keys, vals, ttl, sliding, expires_at, tags) AS pairs;
END
$$;

CREATE FUNCTION cache_router.remove_many(keys text[]) RETURNS SETOF bigint
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    SPLIT keys;
    RUN ON cache_router.key_hash(keys);
    TARGET @extschema@.cache_remove_many;
$$;

CREATE FUNCTION @extschema@.cache_remove_many(keys text[]) RETURNS bigint
LANGUAGE sql AS $$
    SELECT coalesce(sum(removed), 0)::bigint
    FROM cache_router.remove_many(cache_router.checked_array('cache_remove_many', 'keys', keys)) AS removed
$$;

-- Whole-cache functions run on every shard; counts are summed. Each shard applies max_rows to
-- itself: cache_evict_expired can return up to max_rows per shard.
CREATE FUNCTION cache_router.evict_expired(max_rows integer) RETURNS SETOF bigint
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    RUN ON ALL;
    TARGET @extschema@.cache_evict_expired;
$$;

CREATE FUNCTION @extschema@.cache_evict_expired(max_rows integer DEFAULT 10000) RETURNS bigint
LANGUAGE sql AS $$
    SELECT sum(evicted)::bigint FROM cache_router.evict_expired(max_rows) AS evicted
$$;

CREATE FUNCTION cache_router.clear() RETURNS SETOF bigint
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    RUN ON ALL;
    TARGET @extschema@.cache_clear;
$$;

CREATE FUNCTION @extschema@.cache_clear() RETURNS bigint
LANGUAGE sql AS $$
    SELECT sum(removed)::bigint FROM cache_router.clear() AS removed
$$;

CREATE FUNCTION cache_router.remove_prefix(prefix text) RETURNS SETOF bigint
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    RUN ON ALL;
    TARGET @extschema@.cache_remove_prefix;
$$;

CREATE FUNCTION @extschema@.cache_remove_prefix(prefix text) RETURNS bigint
LANGUAGE sql AS $$
    SELECT sum(removed)::bigint FROM cache_router.remove_prefix(prefix) AS removed
$$;

CREATE FUNCTION cache_router.remove_by_tag(tags text[], match_all boolean) RETURNS SETOF bigint
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    RUN ON ALL;
    TARGET @extschema@.cache_remove_by_tag;
$$;

CREATE FUNCTION @extschema@.cache_remove_by_tag(tags text[], match_all boolean DEFAULT false) RETURNS bigint
LANGUAGE sql AS $$
    SELECT sum(removed)::bigint FROM cache_router.remove_by_tag(tags, match_all) AS removed
$$;

-- Each shard lists up to max_rows of its keys in key order; the first max_rows of all of them
-- are the first max_rows overall. Numbered rather than LIMITed: a LIMIT 0 would call no shard,
-- and no shard would reject max_rows 0.
CREATE FUNCTION cache_router.keys(prefix text, max_rows integer) RETURNS TABLE (
    key text, expires_at timestamptz, sliding interval, absolute_expires_at timestamptz, value_bytes integer
)
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    RUN ON ALL;
    TARGET @extschema@.cache_keys;
$$;

CREATE FUNCTION @extschema@.cache_keys(prefix text DEFAULT '', max_rows integer DEFAULT 1000) RETURNS TABLE (
    key text, expires_at timestamptz, sliding interval, absolute_expires_at timestamptz, value_bytes integer
)
LANGUAGE sql AS $$
    SELECT numbered.key, numbered.expires_at, numbered.sliding, numbered.absolute_expires_at, numbered.value_bytes
    FROM (
        SELECT listed.*, row_number() OVER (ORDER BY listed.key COLLATE "C") AS n
        FROM cache_router.keys(prefix, max_rows) AS listed
    ) AS numbered
    WHERE numbered.n <= max_rows
    ORDER BY numbered.n
$$;

CREATE FUNCTION cache_router.stats() RETURNS TABLE (
    hits bigint, misses bigint, sets bigint, removes bigint, evicted bigint, evicted_for_size bigint,
    live_bytes bigint, entries bigint, total_bytes bigint, since timestamptz,
    leases_granted bigint, stale_served bigint, lease_waits bigint, fills_rejected bigint
)
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    RUN ON ALL;
    TARGET @extschema@.cache_stats;
$$;

-- The sums over the shards; since is the earliest shard's.
CREATE FUNCTION @extschema@.cache_stats() RETURNS TABLE (
    hits bigint, misses bigint, sets bigint, removes bigint, evicted bigint, evicted_for_size bigint,
    live_bytes bigint, entries bigint, total_bytes bigint, since timestamptz,
    leases_granted bigint, stale_served bigint, lease_waits bigint, fills_rejected bigint
)
LANGUAGE sql AS $$
    SELECT sum(shard.hits)::bigint, sum(shard.misses)::bigint, sum(shard.sets)::bigint,
           sum(shard.removes)::bigint, sum(shard.evicted)::bigint, sum(shard.evicted_for_size)::bigint,
           sum(shard.live_bytes)::bigint, sum(shard.entries)::bigint, sum(shard.total_bytes)::bigint,
           min(shard.since), sum(shard.leases_granted)::bigint, sum(shard.stale_served)::bigint,
           sum(shard.lease_waits)::bigint,
           sum(shard.fills_rejected)::bigint
    FROM cache_router.stats() AS shard
$$;

CREATE FUNCTION cache_router.stats_reset() RETURNS SETOF void
LANGUAGE plproxy AS $$
    CLUSTER 'pg_cache_shards';
    RUN ON ALL;
    TARGET @extschema@.cache_stats_reset;
$$;

CREATE FUNCTION @extschema@.cache_stats_reset() RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM count(*) FROM cache_router.stats_reset();
END
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
