-- pg_cache 0.2.0 -> 0.3.0.
-- 0.3.0 hardens the library (workers and statements immune to search_path, reads that never
-- wait for a row lock, bounded JSON numbers, write accounting per subtransaction), stores entries
-- that never expire (expires_at => 'infinity') and writes JSON values as untagged CBOR. Sliding
-- hits no longer write: pg_cache_pending_expiry lets the library's statements see the hits not
-- yet written. Leases: cache_get_or_lease, cache_fill, cache_release. Named caches: the catalog
-- pg_cache_caches, whose cache `default` is 0.2.0's table, unchanged (no entry moves); every
-- function but cache_worker_status gains a last argument `cache text DEFAULT 'default'`,
-- cache_incr also create_missing, and cache_stats the lease and touch counters.
\echo Use "ALTER EXTENSION pg_cache UPDATE" to load this file. \quit

-- The caches of the database (since 0.3.0): `default` is pg_cache_entries; the cache numbered N
-- (id) is the table pg_cache_entries_N, created by cache_create() from pg_cache_entries. Read by
-- the library through the catalog caches; change it with cache_create/cache_alter/cache_drop.
CREATE TABLE @extschema@.pg_cache_caches (
    name            text COLLATE "C" NOT NULL
                    CONSTRAINT pg_cache_caches_name_check
                    CHECK (name OPERATOR(pg_catalog.~) '^[a-z_][a-z0-9_]{0,62}$'),
    id              integer NOT NULL CONSTRAINT pg_cache_caches_id_check CHECK (id OPERATOR(pg_catalog.>=) 0),
    logged          boolean NOT NULL DEFAULT false,
    max_size        bigint CONSTRAINT pg_cache_caches_max_size_check CHECK (max_size OPERATOR(pg_catalog.>=) 0),
    default_sliding interval,
    default_ttl     interval,
    CONSTRAINT pg_cache_caches_pkey PRIMARY KEY (name),
    CONSTRAINT pg_cache_caches_id_key UNIQUE (id)
);
INSERT INTO @extschema@.pg_cache_caches (name, id) VALUES ('default', 0);
-- Readable by anyone (cache_list shows the same), so that a database owner can pg_dump it;
-- written only by the extension's owner.
REVOKE ALL ON TABLE @extschema@.pg_cache_caches FROM PUBLIC;
GRANT SELECT ON TABLE @extschema@.pg_cache_caches TO PUBLIC;
COMMENT ON TABLE @extschema@.pg_cache_caches IS
    'pg_cache''s named caches; change them with cache_create, cache_alter and cache_drop';
-- pg_dump dumps the caches made with cache_create (not their entries): restored, each is made
-- again by the trigger below.
SELECT pg_catalog.pg_extension_config_dump('@extschema@.pg_cache_caches', 'WHERE name OPERATOR(pg_catalog.<>) ''default''');

-- Makes the table of a cache recorded in the catalog (by cache_create, or by a restore).
CREATE FUNCTION "pg_cache_caches_made"()
	RETURNS TRIGGER
	LANGUAGE c
	AS 'MODULE_PATHNAME', 'pg_cache_caches_made_wrapper';

CREATE TRIGGER pg_cache_caches_made AFTER INSERT ON @extschema@.pg_cache_caches
    FOR EACH ROW EXECUTE FUNCTION @extschema@.pg_cache_caches_made();
-- A trigger fires whatever the privileges; nobody needs to attach this function to a table.
REVOKE ALL ON FUNCTION @extschema@.pg_cache_caches_made() FROM PUBLIC;

-- A new argument, or a changed result: each function is renamed out of the way, made again
-- (an overload next to the old one would make calls without the new argument ambiguous, 42725),
-- given the privileges the old one had, then dropped. Until this script runs, the 0.2.0
-- definitions stay bound to the library's 0.2.0 symbols, which work on the cache `default`.
-- Prepared statements calling them are planned again after the update.
ALTER FUNCTION @extschema@.cache_add(text, bytea, interval, interval, timestamptz, text[]) RENAME TO "pg_cache_0.2.0_cache_add";
ALTER FUNCTION @extschema@.cache_clear() RENAME TO "pg_cache_0.2.0_cache_clear";
ALTER FUNCTION @extschema@.cache_evict_expired(integer) RENAME TO "pg_cache_0.2.0_cache_evict_expired";
ALTER FUNCTION @extschema@.cache_expire(text, interval, interval, timestamptz) RENAME TO "pg_cache_0.2.0_cache_expire";
ALTER FUNCTION @extschema@.cache_get(text) RENAME TO "pg_cache_0.2.0_cache_get";
ALTER FUNCTION @extschema@.cache_get_json(text) RENAME TO "pg_cache_0.2.0_cache_get_json";
ALTER FUNCTION @extschema@.cache_get_many(text[]) RENAME TO "pg_cache_0.2.0_cache_get_many";
ALTER FUNCTION @extschema@.cache_get_many_json(text[]) RENAME TO "pg_cache_0.2.0_cache_get_many_json";
ALTER FUNCTION @extschema@.cache_incr(text, bigint, interval, interval, timestamptz) RENAME TO "pg_cache_0.2.0_cache_incr";
ALTER FUNCTION @extschema@.cache_keys(text, integer) RENAME TO "pg_cache_0.2.0_cache_keys";
ALTER FUNCTION @extschema@.cache_refresh(text) RENAME TO "pg_cache_0.2.0_cache_refresh";
ALTER FUNCTION @extschema@.cache_remove(text) RENAME TO "pg_cache_0.2.0_cache_remove";
ALTER FUNCTION @extschema@.cache_remove_by_tag(text[], boolean) RENAME TO "pg_cache_0.2.0_cache_remove_by_tag";
ALTER FUNCTION @extschema@.cache_remove_many(text[]) RENAME TO "pg_cache_0.2.0_cache_remove_many";
ALTER FUNCTION @extschema@.cache_remove_prefix(text) RENAME TO "pg_cache_0.2.0_cache_remove_prefix";
ALTER FUNCTION @extschema@.cache_set(text, bytea, interval, interval, timestamptz, text[]) RENAME TO "pg_cache_0.2.0_cache_set";
ALTER FUNCTION @extschema@.cache_set_json(text, jsonb, interval, interval, timestamptz, text[]) RENAME TO "pg_cache_0.2.0_cache_set_json";
ALTER FUNCTION @extschema@.cache_set_many(text[], bytea[], interval, interval, timestamptz, text[]) RENAME TO "pg_cache_0.2.0_cache_set_many";
ALTER FUNCTION @extschema@.cache_stats() RENAME TO "pg_cache_0.2.0_cache_stats";
ALTER FUNCTION @extschema@.cache_stats_reset() RENAME TO "pg_cache_0.2.0_cache_stats_reset";
ALTER FUNCTION @extschema@.cache_tags(text) RENAME TO "pg_cache_0.2.0_cache_tags";
ALTER FUNCTION @extschema@.cache_take(text) RENAME TO "pg_cache_0.2.0_cache_take";
ALTER FUNCTION @extschema@.cache_ttl(text) RENAME TO "pg_cache_0.2.0_cache_ttl";

CREATE FUNCTION "cache_add"(
	"key" TEXT, /* Option < & str > */
	"value" bytea, /* Option < & [u8] > */
	"ttl" interval DEFAULT NULL, /* Option < Interval > */
	"sliding" interval DEFAULT NULL, /* Option < Interval > */
	"expires_at" timestamp with time zone DEFAULT NULL, /* Option < TimestampWithTimeZone > */
	"tags" TEXT[] DEFAULT NULL, /* :: std :: option :: Option < Array < & str > > */
	"cache" TEXT DEFAULT 'default' /* Option < & str > */
) RETURNS bool /* bool */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_add_in_cache_wrapper';

CREATE FUNCTION "cache_clear"(
	"cache" TEXT DEFAULT 'default' /* Option < & str > */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_clear_in_cache_wrapper';

CREATE FUNCTION "cache_evict_expired"(
	"max_rows" INT DEFAULT 10000, /* Option < i32 > */
	"cache" TEXT DEFAULT 'default' /* Option < & str > */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_evict_expired_in_cache_wrapper';

CREATE FUNCTION "cache_expire"(
	"key" TEXT, /* Option < & str > */
	"ttl" interval DEFAULT NULL, /* Option < Interval > */
	"sliding" interval DEFAULT NULL, /* Option < Interval > */
	"expires_at" timestamp with time zone DEFAULT NULL, /* Option < TimestampWithTimeZone > */
	"cache" TEXT DEFAULT 'default' /* Option < & str > */
) RETURNS bool /* bool */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_expire_in_cache_wrapper';

CREATE FUNCTION "cache_get"(
	"key" TEXT, /* Option < & str > */
	"cache" TEXT DEFAULT 'default' /* Option < & str > */
) RETURNS bytea /* :: std :: option :: Option < Vec < u8 > > */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_get_in_cache_wrapper';

CREATE FUNCTION "cache_get_json"(
	"key" TEXT, /* Option < & str > */
	"cache" TEXT DEFAULT 'default' /* Option < & str > */
) RETURNS jsonb /* Option < Jsonb > */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_get_json_in_cache_wrapper';

CREATE FUNCTION "cache_get_many"(
	"keys" TEXT[],
	"cache" TEXT DEFAULT 'default'
) RETURNS TABLE (
	"key" TEXT,
	"value" bytea
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'cache_get_many_in_cache_wrapper';

CREATE FUNCTION "cache_get_many_json"(
	"keys" TEXT[], /* :: std :: option :: Option < Array < & str > > */
	"cache" TEXT DEFAULT 'default' /* Option < & str > */
) RETURNS TABLE (
	"key" TEXT,  /* String */
	"value" jsonb  /* Jsonb */
)
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_get_many_json_in_cache_wrapper';

CREATE FUNCTION "cache_incr"(
	"key" TEXT, /* Option < & str > */
	"delta" bigint DEFAULT 1, /* Option < i64 > */
	"ttl" interval DEFAULT NULL, /* Option < Interval > */
	"sliding" interval DEFAULT NULL, /* Option < Interval > */
	"expires_at" timestamp with time zone DEFAULT NULL, /* Option < TimestampWithTimeZone > */
	"create_missing" bool DEFAULT true, /* Option < bool > */
	"cache" TEXT DEFAULT 'default' /* Option < & str > */
) RETURNS bigint /* Option < i64 > */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_incr_counter_wrapper';

CREATE FUNCTION "cache_keys"(
	"prefix" TEXT DEFAULT '', /* Option < & str > */
	"max_rows" INT DEFAULT 1000, /* Option < i32 > */
	"cache" TEXT DEFAULT 'default' /* Option < & str > */
) RETURNS TABLE (
	"key" TEXT,  /* String */
	"expires_at" timestamp with time zone,  /* TimestampWithTimeZone */
	"sliding" interval,  /* Option < Interval > */
	"absolute_expires_at" timestamp with time zone,  /* Option < TimestampWithTimeZone > */
	"value_bytes" INT  /* i32 */
)
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_keys_in_cache_wrapper';

CREATE FUNCTION "cache_refresh"(
	"key" TEXT, /* Option < & str > */
	"cache" TEXT DEFAULT 'default' /* Option < & str > */
) RETURNS bool /* bool */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_refresh_in_cache_wrapper';

CREATE FUNCTION "cache_remove"(
	"key" TEXT, /* Option < & str > */
	"cache" TEXT DEFAULT 'default' /* Option < & str > */
) RETURNS bool /* bool */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_remove_in_cache_wrapper';

CREATE FUNCTION "cache_remove_by_tag"(
	"tags" TEXT[], /* :: std :: option :: Option < Array < & str > > */
	"match_all" bool DEFAULT false, /* Option < bool > */
	"cache" TEXT DEFAULT 'default' /* Option < & str > */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_remove_by_tag_in_cache_wrapper';

CREATE FUNCTION "cache_remove_many"(
	"keys" TEXT[], /* :: std :: option :: Option < Array < & str > > */
	"cache" TEXT DEFAULT 'default' /* Option < & str > */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_remove_many_in_cache_wrapper';

CREATE FUNCTION "cache_remove_prefix"(
	"prefix" TEXT, /* Option < & str > */
	"cache" TEXT DEFAULT 'default' /* Option < & str > */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_remove_prefix_in_cache_wrapper';

CREATE FUNCTION "cache_set"(
	"key" TEXT, /* Option < & str > */
	"value" bytea, /* Option < & [u8] > */
	"ttl" interval DEFAULT NULL, /* Option < Interval > */
	"sliding" interval DEFAULT NULL, /* Option < Interval > */
	"expires_at" timestamp with time zone DEFAULT NULL, /* Option < TimestampWithTimeZone > */
	"tags" TEXT[] DEFAULT NULL, /* :: std :: option :: Option < Array < & str > > */
	"cache" TEXT DEFAULT 'default' /* Option < & str > */
) RETURNS void
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_set_in_cache_wrapper';

CREATE FUNCTION "cache_set_json"(
	"key" TEXT, /* Option < & str > */
	"value" jsonb, /* Option < Jsonb > */
	"ttl" interval DEFAULT NULL, /* Option < Interval > */
	"sliding" interval DEFAULT NULL, /* Option < Interval > */
	"expires_at" timestamp with time zone DEFAULT NULL, /* Option < TimestampWithTimeZone > */
	"tags" TEXT[] DEFAULT NULL, /* :: std :: option :: Option < Array < & str > > */
	"cache" TEXT DEFAULT 'default' /* Option < & str > */
) RETURNS void
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_set_json_in_cache_wrapper';

CREATE FUNCTION "cache_set_many"(
	"keys" TEXT[], /* :: std :: option :: Option < Array < & str > > */
	"vals" bytea[], /* :: std :: option :: Option < Array < & [u8] > > */
	"ttl" interval DEFAULT NULL, /* Option < Interval > */
	"sliding" interval DEFAULT NULL, /* Option < Interval > */
	"expires_at" timestamp with time zone DEFAULT NULL, /* Option < TimestampWithTimeZone > */
	"tags" TEXT[] DEFAULT NULL, /* :: std :: option :: Option < Array < & str > > */
	"cache" TEXT DEFAULT 'default' /* Option < & str > */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_set_many_in_cache_wrapper';

CREATE FUNCTION "cache_stats"(
	"cache" TEXT DEFAULT 'default' /* Option < & str > */
) RETURNS TABLE (
	"hits" bigint,  /* Option < i64 > */
	"misses" bigint,  /* Option < i64 > */
	"sets" bigint,  /* Option < i64 > */
	"removes" bigint,  /* Option < i64 > */
	"evicted" bigint,  /* Option < i64 > */
	"evicted_for_size" bigint,  /* Option < i64 > */
	"live_bytes" bigint,  /* Option < i64 > */
	"entries" bigint,  /* Option < i64 > */
	"total_bytes" bigint,  /* Option < i64 > */
	"since" timestamp with time zone,  /* Option < TimestampWithTimeZone > */
	"leases_granted" bigint,  /* Option < i64 > */
	"stale_served" bigint,  /* Option < i64 > */
	"lease_waits" bigint,  /* Option < i64 > */
	"fills_rejected" bigint,  /* Option < i64 > */
	"touches_recorded" bigint,  /* Option < i64 > */
	"touches_applied" bigint,  /* Option < i64 > */
	"touch_fallbacks" bigint  /* Option < i64 > */
)
VOLATILE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_stats_with_leases_and_touches_wrapper';

CREATE FUNCTION "cache_stats_reset"(
	"cache" TEXT DEFAULT 'default' /* Option < & str > */
) RETURNS void
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_stats_reset_in_cache_wrapper';

CREATE FUNCTION "cache_tags"(
	"key" TEXT, /* Option < & str > */
	"cache" TEXT DEFAULT 'default' /* Option < & str > */
) RETURNS TEXT[] /* :: std :: option :: Option < Vec < String > > */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_tags_in_cache_wrapper';

CREATE FUNCTION "cache_take"(
	"key" TEXT, /* Option < & str > */
	"cache" TEXT DEFAULT 'default' /* Option < & str > */
) RETURNS bytea /* :: std :: option :: Option < Vec < u8 > > */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_take_in_cache_wrapper';

CREATE FUNCTION "cache_ttl"(
	"key" TEXT, /* Option < & str > */
	"cache" TEXT DEFAULT 'default' /* Option < & str > */
) RETURNS interval /* Option < Interval > */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_ttl_in_cache_wrapper';

CREATE FUNCTION "cache_get_or_lease"(
	"key" TEXT, /* Option < & str > */
	"lease_ttl" interval DEFAULT '10 s', /* Option < Interval > */
	"wait" interval DEFAULT '0', /* Option < Interval > */
	"beta" double precision DEFAULT 1.0, /* Option < f64 > */
	"grace" interval DEFAULT '0', /* Option < Interval > */
	"cache" TEXT DEFAULT 'default' /* Option < & str > */
) RETURNS TABLE (
	"status" TEXT,  /* String */
	"value" bytea,  /* :: std :: option :: Option < Vec < u8 > > */
	"lease" uuid,  /* Option < Uuid > */
	"ttl" interval  /* Option < Interval > */
)
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_get_or_lease_wrapper';

CREATE FUNCTION "cache_fill"(
	"key" TEXT, /* Option < & str > */
	"value" bytea, /* Option < & [u8] > */
	"lease" uuid, /* Option < Uuid > */
	"ttl" interval DEFAULT NULL, /* Option < Interval > */
	"sliding" interval DEFAULT NULL, /* Option < Interval > */
	"expires_at" timestamp with time zone DEFAULT NULL, /* Option < TimestampWithTimeZone > */
	"tags" TEXT[] DEFAULT NULL, /* :: std :: option :: Option < Array < & str > > */
	"cache" TEXT DEFAULT 'default' /* Option < & str > */
) RETURNS bool /* bool */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_fill_wrapper';

CREATE FUNCTION "cache_release"(
	"key" TEXT, /* Option < & str > */
	"lease" uuid, /* Option < Uuid > */
	"cache" TEXT DEFAULT 'default' /* Option < & str > */
) RETURNS bool /* bool */
VOLATILE PARALLEL UNSAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_release_wrapper';

CREATE FUNCTION "cache_create"(
	"name" TEXT, /* Option < & str > */
	"logged" bool DEFAULT false, /* Option < bool > */
	"max_size" TEXT DEFAULT NULL, /* Option < & str > */
	"default_sliding" interval DEFAULT NULL, /* Option < Interval > */
	"default_ttl" interval DEFAULT NULL /* Option < Interval > */
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_create_wrapper';

CREATE FUNCTION "cache_alter"(
	"name" TEXT, /* Option < & str > */
	"logged" bool DEFAULT NULL, /* Option < bool > */
	"max_size" TEXT DEFAULT NULL, /* Option < & str > */
	"default_sliding" interval DEFAULT NULL, /* Option < Interval > */
	"default_ttl" interval DEFAULT NULL /* Option < Interval > */
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_alter_wrapper';

CREATE FUNCTION "cache_drop"(
	"name" TEXT /* Option < & str > */
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_drop_wrapper';

CREATE FUNCTION "cache_list"() RETURNS TABLE (
	"name" TEXT,  /* String */
	"logged" bool,  /* bool */
	"max_size" bigint,  /* Option < i64 > */
	"default_sliding" interval,  /* Option < Interval > */
	"default_ttl" interval,  /* Option < Interval > */
	"entries" bigint,  /* Option < i64 > */
	"live_bytes" bigint,  /* Option < i64 > */
	"table_name" TEXT  /* String */
)
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_list_wrapper';

-- The privileges of each 0.2.0 function, given to its successor (with the owner's own left as
-- they are), then the 0.2.0 function dropped.
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
          AND p.proname OPERATOR(pg_catalog.~~) 'pg\_cache\_0.2.0\_%'
          AND EXISTS (SELECT FROM pg_catalog.pg_depend d
                      WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid OPERATOR(pg_catalog.=) p.oid
                        AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype OPERATOR(pg_catalog.=) 'e'
                        AND d.refobjid OPERATOR(pg_catalog.=) (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'pg_cache'))
    LOOP
        SELECT n.oid INTO STRICT successor
        FROM pg_catalog.pg_proc n
        WHERE n.pronamespace OPERATOR(pg_catalog.=) '@extschema@'::pg_catalog.regnamespace
          AND n.proname OPERATOR(pg_catalog.=) pg_catalog.substr(old.proname, 16)
          AND EXISTS (SELECT FROM pg_catalog.pg_depend d
                      WHERE d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.objid OPERATOR(pg_catalog.=) n.oid
                        AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_extension'::pg_catalog.regclass AND d.deptype OPERATOR(pg_catalog.=) 'e'
                        AND d.refobjid OPERATOR(pg_catalog.=) (SELECT e.oid FROM pg_catalog.pg_extension e WHERE e.extname OPERATOR(pg_catalog.=) 'pg_cache'));
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

-- Internal: what the library's statements call to see sliding hits not yet written. In
-- pg_catalog, where no database owner can add an overload that would make their calls ambiguous.
CREATE FUNCTION pg_catalog."pg_cache_pending_expiry"(
	"cache_table" oid,
	"key" TEXT,
	"expires_at" timestamp with time zone
) RETURNS timestamp with time zone
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'pg_cache_pending_expiry_wrapper';
