-- Prepopulates the benchmark database: :keys keys of :size-byte values in pg_cache (absolute
-- entries 'a:N' and sliding entries 's:N'), in a plain UNLOGGED table, and in an UNLOGGED table
-- of the shape Microsoft.Extensions.Caching.Postgres creates (with its index on the expiry).
SET client_min_messages = warning;
-- Created anew: the benchmark database outlives builds, and a build's functions are defined by
-- the install script of that build.
DROP EXTENSION IF EXISTS pg_cache;
CREATE EXTENSION pg_cache;
-- Incompressible values, as most cached payloads (serialized, compressed, encrypted) are.
CREATE OR REPLACE FUNCTION pg_temp.random_bytes(size int) RETURNS bytea LANGUAGE sql AS
    $$ SELECT substring(string_agg(sha512(random()::text::bytea), '') FROM 1 FOR size) FROM generate_series(1, (size + 63) / 64) $$;
SELECT count(cache_set('a:' || i, pg_temp.random_bytes(:size), ttl => '1 hour'))
     + count(cache_set('s:' || i, pg_temp.random_bytes(:size), sliding => '1 hour'))
FROM generate_series(1, :keys) i;
-- Sliding entries stored together ('g:N', set one after another, as sessions are cached): their
-- pages hold only entries whose hits slide.
SELECT count(cache_set('g:' || i, pg_temp.random_bytes(:size), sliding => '1 hour')) FROM generate_series(1, :keys) i;

DROP TABLE IF EXISTS bench_plain, bench_plain_new, bench_dotnet;
CREATE UNLOGGED TABLE bench_plain (id text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
INSERT INTO bench_plain SELECT 'a:' || i, pg_temp.random_bytes(:size) FROM generate_series(1, :keys) i;
-- For upserts of keys never seen before (the table of plain_insert_new.sql).
CREATE UNLOGGED TABLE bench_plain_new (LIKE bench_plain INCLUDING ALL);

CREATE UNLOGGED TABLE bench_dotnet (
    id varchar(449) COLLATE "C" PRIMARY KEY,
    value bytea NOT NULL,
    expiresattime timestamptz NOT NULL,
    slidingexpirationinseconds bigint NULL,
    absoluteexpiration timestamptz NULL
);
CREATE INDEX ix_expiresattime ON bench_dotnet (expiresattime) WITH (deduplicate_items = true);
INSERT INTO bench_dotnet
SELECT 'a:' || i, pg_temp.random_bytes(:size), now() + interval '1 hour', NULL, now() + interval '1 hour' FROM generate_series(1, :keys) i
UNION ALL
SELECT 's:' || i, pg_temp.random_bytes(:size), now() + interval '1 hour', 3600, NULL FROM generate_series(1, :keys) i;
VACUUM ANALYZE;
SELECT pg_stat_reset();

-- Documents of about :size bytes of JSON text, for the jsonb cases: in pg_cache (as CBOR, 'j:N'),
-- and in plain UNLOGGED tables with a jsonb column (one to read, one to upsert into).
DROP TABLE IF EXISTS bench_json, bench_json_upsert;
CREATE UNLOGGED TABLE bench_json (id text COLLATE "C" PRIMARY KEY, doc jsonb NOT NULL);
INSERT INTO bench_json
SELECT 'j:' || i, jsonb_build_object('id', i, 'customer', 'customer ' || md5(i::text), 'items',
       (SELECT jsonb_agg(jsonb_build_object('sku', md5((i * 1000 + j)::text), 'qty', j, 'price', round((random() * 100)::numeric, 2)))
        FROM generate_series(1, greatest(1, (:size - 60) / 70)) j))
FROM generate_series(1, :keys) i;
CREATE UNLOGGED TABLE bench_json_upsert (LIKE bench_json INCLUDING ALL);
INSERT INTO bench_json_upsert SELECT * FROM bench_json;
SELECT count(cache_set_json(id, doc, ttl => '1 hour')) FROM bench_json;
VACUUM ANALYZE bench_json, bench_json_upsert;

-- A logged cache ('a:N' absolute entries, as in the cache default) and a plain logged table of
-- the same rows: what WAL costs a cache, against the same cost for a plain table.
SELECT cache_create('logged', logged => true);
SELECT count(cache_set('a:' || i, pg_temp.random_bytes(:size), ttl => '1 hour', cache => 'logged'))
FROM generate_series(1, :keys) i;
DROP TABLE IF EXISTS bench_plain_logged;
CREATE TABLE bench_plain_logged (id text COLLATE "C" PRIMARY KEY, value bytea NOT NULL);
INSERT INTO bench_plain_logged SELECT 'a:' || i, pg_temp.random_bytes(:size) FROM generate_series(1, :keys) i;
