-- pg_cache 0.1.0 -> 0.2.0: Redis-class operations and statistics; jsonb values stored as CBOR;
-- tags. The 0.1.0 functions stay as they were, except cache_set, which gains tags.

-- Tags: a column (NULL for none) and an index of the tagged entries only.
ALTER TABLE @extschema@.pg_cache_entries ADD COLUMN tags text[] COLLATE "C";
CREATE INDEX pg_cache_entries_tags ON @extschema@.pg_cache_entries USING gin (tags) WHERE tags IS NOT NULL;

-- Values are compressed with lz4 where the server has it: several times faster than pglz to
-- compress and to read back, which large values feel on every set and get.
DO $$
BEGIN
    IF 'lz4' = ANY (SELECT pg_catalog.unnest(enumvals) FROM pg_catalog.pg_settings WHERE name = 'default_toast_compression') THEN
        ALTER TABLE @extschema@.pg_cache_entries ALTER COLUMN value SET COMPRESSION lz4;
    END IF;
END
$$;

-- A new argument: dropped and created again (an overload would make calls without it ambiguous).
-- Until this script runs, the 0.1.0 definition is bound to the library's 0.1.0 symbol.
DROP FUNCTION @extschema@.cache_set(text, bytea, interval, interval, timestamptz);

CREATE FUNCTION "cache_add"(
	"key" TEXT, /* Option < & str > */
	"value" bytea, /* Option < & [u8] > */
	"ttl" interval DEFAULT NULL, /* Option < Interval > */
	"sliding" interval DEFAULT NULL, /* Option < Interval > */
	"expires_at" timestamp with time zone DEFAULT NULL, /* Option < TimestampWithTimeZone > */
	"tags" TEXT[] DEFAULT NULL /* :: std :: option :: Option < Array < & str > > */
) RETURNS bool /* bool */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_add_wrapper';

CREATE FUNCTION "cache_clear"() RETURNS bigint /* i64 */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_clear_wrapper';

CREATE FUNCTION "cache_expire"(
	"key" TEXT, /* Option < & str > */
	"ttl" interval DEFAULT NULL, /* Option < Interval > */
	"sliding" interval DEFAULT NULL, /* Option < Interval > */
	"expires_at" timestamp with time zone DEFAULT NULL /* Option < TimestampWithTimeZone > */
) RETURNS bool /* bool */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_expire_wrapper';

CREATE FUNCTION "cache_get_json"(
	"key" TEXT /* Option < & str > */
) RETURNS jsonb /* Option < Jsonb > */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_get_json_wrapper';

CREATE FUNCTION "cache_get_many"(
	"keys" TEXT[] /* :: std :: option :: Option < Array < & str > > */
) RETURNS TABLE (
	"key" TEXT,  /* String */
	"value" bytea  /* Vec < u8 > */
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_get_many_wrapper';

CREATE FUNCTION "cache_get_many_json"(
	"keys" TEXT[] /* :: std :: option :: Option < Array < & str > > */
) RETURNS TABLE (
	"key" TEXT,  /* String */
	"value" jsonb  /* Jsonb */
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_get_many_json_wrapper';

CREATE FUNCTION "cache_incr"(
	"key" TEXT, /* Option < & str > */
	"delta" bigint DEFAULT 1, /* Option < i64 > */
	"ttl" interval DEFAULT NULL, /* Option < Interval > */
	"sliding" interval DEFAULT NULL, /* Option < Interval > */
	"expires_at" timestamp with time zone DEFAULT NULL /* Option < TimestampWithTimeZone > */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_incr_wrapper';

CREATE FUNCTION "cache_keys"(
	"prefix" TEXT DEFAULT '', /* Option < & str > */
	"max_rows" INT DEFAULT 1000 /* Option < i32 > */
) RETURNS TABLE (
	"key" TEXT,  /* String */
	"expires_at" timestamp with time zone,  /* TimestampWithTimeZone */
	"sliding" interval,  /* Option < Interval > */
	"absolute_expires_at" timestamp with time zone,  /* Option < TimestampWithTimeZone > */
	"value_bytes" INT  /* i32 */
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_keys_wrapper';

CREATE FUNCTION "cache_remove_by_tag"(
	"tags" TEXT[], /* :: std :: option :: Option < Array < & str > > */
	"match_all" bool DEFAULT false /* Option < bool > */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_remove_by_tag_wrapper';

CREATE FUNCTION "cache_remove_many"(
	"keys" TEXT[] /* :: std :: option :: Option < Array < & str > > */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_remove_many_wrapper';

CREATE FUNCTION "cache_remove_prefix"(
	"prefix" TEXT /* Option < & str > */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_remove_prefix_wrapper';

CREATE FUNCTION "cache_set"(
	"key" TEXT, /* Option < & str > */
	"value" bytea, /* Option < & [u8] > */
	"ttl" interval DEFAULT NULL, /* Option < Interval > */
	"sliding" interval DEFAULT NULL, /* Option < Interval > */
	"expires_at" timestamp with time zone DEFAULT NULL, /* Option < TimestampWithTimeZone > */
	"tags" TEXT[] DEFAULT NULL /* :: std :: option :: Option < Array < & str > > */
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_set_tagged_wrapper';

CREATE FUNCTION "cache_set_json"(
	"key" TEXT, /* Option < & str > */
	"value" jsonb, /* Option < Jsonb > */
	"ttl" interval DEFAULT NULL, /* Option < Interval > */
	"sliding" interval DEFAULT NULL, /* Option < Interval > */
	"expires_at" timestamp with time zone DEFAULT NULL, /* Option < TimestampWithTimeZone > */
	"tags" TEXT[] DEFAULT NULL /* :: std :: option :: Option < Array < & str > > */
) RETURNS void
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_set_json_wrapper';

CREATE FUNCTION "cache_set_many"(
	"keys" TEXT[], /* :: std :: option :: Option < Array < & str > > */
	"vals" bytea[], /* :: std :: option :: Option < Array < & [u8] > > */
	"ttl" interval DEFAULT NULL, /* Option < Interval > */
	"sliding" interval DEFAULT NULL, /* Option < Interval > */
	"expires_at" timestamp with time zone DEFAULT NULL, /* Option < TimestampWithTimeZone > */
	"tags" TEXT[] DEFAULT NULL /* :: std :: option :: Option < Array < & str > > */
) RETURNS bigint /* i64 */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_set_many_wrapper';

CREATE FUNCTION "cache_stats"() RETURNS TABLE (
	"hits" bigint,  /* Option < i64 > */
	"misses" bigint,  /* Option < i64 > */
	"sets" bigint,  /* Option < i64 > */
	"removes" bigint,  /* Option < i64 > */
	"evicted" bigint,  /* Option < i64 > */
	"evicted_for_size" bigint,  /* Option < i64 > */
	"live_bytes" bigint,  /* Option < i64 > */
	"entries" bigint,  /* Option < i64 > */
	"total_bytes" bigint,  /* Option < i64 > */
	"since" timestamp with time zone  /* Option < TimestampWithTimeZone > */
)
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_stats_wrapper';

CREATE FUNCTION "cache_stats_reset"() RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_stats_reset_wrapper';

CREATE FUNCTION "cache_tags"(
	"key" TEXT /* Option < & str > */
) RETURNS TEXT[] /* :: std :: option :: Option < Vec < String > > */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_tags_wrapper';

CREATE FUNCTION "cache_take"(
	"key" TEXT /* Option < & str > */
) RETURNS bytea /* :: std :: option :: Option < Vec < u8 > > */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_take_wrapper';
