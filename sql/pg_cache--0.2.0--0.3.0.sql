-- pg_cache 0.2.0 -> 0.3.0.
-- 0.3.0 hardens the library (workers and statements immune to search_path, reads that never
-- wait for a row lock, bounded JSON numbers, write accounting per subtransaction), stores entries
-- that never expire (expires_at => 'infinity') and writes JSON values as untagged CBOR. The SQL
-- objects of 0.2.0 keep their C symbols, except cache_incr, which gains create_missing, and
-- cache_stats, which gains the lease and touch counters. Leases: cache_get_or_lease, cache_fill,
-- cache_release. Sliding hits no longer write: pg_cache_pending_expiry lets the library's
-- statements see the hits not yet written.
\echo Use "ALTER EXTENSION pg_cache UPDATE" to load this file. \quit

-- A new argument: dropped and created again (an overload would make calls without it ambiguous).
-- Until this script runs, the 0.2.0 definition is bound to the library's 0.2.0 symbol. Privileges
-- granted on the old function go with it: grant them again after the update.
DROP FUNCTION @extschema@.cache_incr(text, bigint, interval, interval, timestamptz);

CREATE FUNCTION "cache_incr"(
	"key" TEXT, /* Option < & str > */
	"delta" bigint DEFAULT 1, /* Option < i64 > */
	"ttl" interval DEFAULT NULL, /* Option < Interval > */
	"sliding" interval DEFAULT NULL, /* Option < Interval > */
	"expires_at" timestamp with time zone DEFAULT NULL, /* Option < TimestampWithTimeZone > */
	"create_missing" bool DEFAULT true /* Option < bool > */
) RETURNS bigint /* core::option::Option<i64> */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_incr_counter_wrapper';

-- A changed result: dropped and created again. Until this script runs, the 0.2.0 definition is
-- bound to the library's 0.2.0 symbol, which returns the 0.2.0 columns.
DROP FUNCTION @extschema@.cache_stats();

CREATE  FUNCTION "cache_stats"() RETURNS TABLE (
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
STRICT VOLATILE PARALLEL SAFE 
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_stats_with_leases_and_touches_wrapper';

CREATE  FUNCTION "cache_get_or_lease"(
	"key" TEXT, /* Option < & str > */
	"lease_ttl" interval DEFAULT '10 s', /* Option < Interval > */
	"wait" interval DEFAULT '0', /* Option < Interval > */
	"beta" double precision DEFAULT 1.0, /* Option < f64 > */
	"grace" interval DEFAULT '0' /* Option < Interval > */
) RETURNS TABLE (
	"status" TEXT,  /* String */
	"value" bytea,  /* :: std :: option :: Option < Vec < u8 > > */
	"lease" uuid,  /* Option < Uuid > */
	"ttl" interval  /* Option < Interval > */
)
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_get_or_lease_wrapper';

CREATE  FUNCTION "cache_fill"(
	"key" TEXT, /* Option < & str > */
	"value" bytea, /* Option < & [u8] > */
	"lease" uuid, /* Option < Uuid > */
	"ttl" interval DEFAULT NULL, /* Option < Interval > */
	"sliding" interval DEFAULT NULL, /* Option < Interval > */
	"expires_at" timestamp with time zone DEFAULT NULL, /* Option < TimestampWithTimeZone > */
	"tags" TEXT[] DEFAULT NULL /* :: std :: option :: Option < Array < & str > > */
) RETURNS bool /* bool */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_fill_wrapper';

CREATE  FUNCTION "cache_release"(
	"key" TEXT, /* Option < & str > */
	"lease" uuid /* Option < Uuid > */
) RETURNS bool /* bool */
VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'cache_release_wrapper';

-- Internal: what the library's statements call to see sliding hits not yet written. In
-- pg_catalog, where no database owner can add an overload that would make their calls ambiguous.
CREATE  FUNCTION pg_catalog."pg_cache_pending_expiry"(
	"cache_table" oid, /* pgrx_pg_sys::submodules::oids::Oid */
	"key" TEXT, /* &str */
	"expires_at" timestamp with time zone /* pgrx::datum::time_stamp_with_timezone::TimestampWithTimeZone */
) RETURNS timestamp with time zone /* pgrx::datum::time_stamp_with_timezone::TimestampWithTimeZone */
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'pg_cache_pending_expiry_wrapper';
