-- pg_cache_router 0.1.0 -> 0.2.0, for pg_cache 0.3.0 on the shards (update them first): cache_incr
-- gains create_missing, cache_stats the lease counters, and the leases are routed
-- (cache_get_or_lease, cache_fill, cache_release: a key's lease lives on the shard that owns it).
\echo Use "ALTER EXTENSION pg_cache_router UPDATE" to load this file. \quit

DROP FUNCTION @extschema@.cache_incr(text, bigint, interval, interval, timestamptz);
CREATE FUNCTION @extschema@.cache_incr(key text, delta bigint DEFAULT 1, ttl interval DEFAULT NULL,
        sliding interval DEFAULT NULL, expires_at timestamptz DEFAULT NULL,
        create_missing boolean DEFAULT true)
    RETURNS bigint LANGUAGE plproxy
    AS 'CLUSTER ''pg_cache_shards''; RUN ON cache_router.key_hash(key);';

CREATE FUNCTION @extschema@.cache_get_or_lease(key text, lease_ttl interval DEFAULT '10 s',
        wait interval DEFAULT '0', beta double precision DEFAULT 1.0, grace interval DEFAULT '0')
    RETURNS TABLE (status text, value bytea, lease uuid, ttl interval) LANGUAGE plproxy
    AS 'CLUSTER ''pg_cache_shards''; RUN ON cache_router.key_hash(key);';
CREATE FUNCTION @extschema@.cache_fill(key text, value bytea, lease uuid, ttl interval DEFAULT NULL,
        sliding interval DEFAULT NULL, expires_at timestamptz DEFAULT NULL, tags text[] DEFAULT NULL)
    RETURNS boolean LANGUAGE plproxy
    AS 'CLUSTER ''pg_cache_shards''; RUN ON cache_router.key_hash(key);';
CREATE FUNCTION @extschema@.cache_release(key text, lease uuid)
    RETURNS boolean LANGUAGE plproxy
    AS 'CLUSTER ''pg_cache_shards''; RUN ON cache_router.key_hash(key);';

DROP FUNCTION @extschema@.cache_stats();
DROP FUNCTION cache_router.stats();
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

