-- Keys reach Rust as strings, which must be valid UTF-8: a database in another encoding could hold
-- keys pg_cache cannot take. Refuse it up front rather than fail on some key later.
DO $$
BEGIN
    IF pg_catalog.getdatabaseencoding() <> 'UTF8' THEN
        RAISE EXCEPTION 'pg_cache needs a database with UTF8 encoding, not %', pg_catalog.getdatabaseencoding()
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'Create the database with ENCODING ''UTF8'' (from template0 if template1 has another encoding).';
    END IF;
END
$$;

-- The one table behind the cache. An implementation detail, not the API: use the cache_* functions.
--
-- UNLOGGED: no WAL, so writes are cheap; the table is emptied after a crash and is not readable on
-- a standby, which is what a cache can afford.
--
-- The sliding-expiry update touches expires_at alone, which no index covers, so it can be a HOT
-- update; fillfactor leaves room on each page for those new row versions.
CREATE UNLOGGED TABLE @extschema@.pg_cache_entries (
    key                 text COLLATE "C" NOT NULL,   -- compared byte-wise
    value               bytea NOT NULL,
    expires_at          timestamptz NOT NULL,        -- when the entry stops being live
    sliding             interval,                    -- sliding window, NULL for absolute-only entries
    absolute_expires_at timestamptz,                 -- hard cap that sliding never passes
    tags                text[] COLLATE "C",          -- NULL for none (since 0.2.0)
    CONSTRAINT pg_cache_entries_pkey PRIMARY KEY (key)
) WITH (
    fillfactor = 85,
    autovacuum_vacuum_scale_factor = 0.05,
    autovacuum_vacuum_insert_scale_factor = 0.05,
    autovacuum_analyze_scale_factor = 0.05,
    toast.autovacuum_vacuum_scale_factor = 0.05
);

-- Values are compressed with lz4 where the server has it: several times faster than pglz to
-- compress and to read back, which large values feel on every set and get.
DO $$
BEGIN
    IF 'lz4' = ANY (SELECT pg_catalog.unnest(enumvals) FROM pg_catalog.pg_settings WHERE name = 'default_toast_compression') THEN
        ALTER TABLE @extschema@.pg_cache_entries ALTER COLUMN value SET COMPRESSION lz4;
    END IF;
END
$$;

-- Tagged entries only: untagged writes do not pay for this index.
CREATE INDEX pg_cache_entries_tags ON @extschema@.pg_cache_entries USING gin (tags) WHERE tags IS NOT NULL;

COMMENT ON TABLE @extschema@.pg_cache_entries IS
    'pg_cache storage (UNLOGGED); read and write it through the cache_* functions';

-- Entries are private to the extension's owner until access is granted (see the README).
REVOKE ALL ON TABLE @extschema@.pg_cache_entries FROM PUBLIC;

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
-- again by the trigger pg_cache_caches_made.
SELECT pg_catalog.pg_extension_config_dump('@extschema@.pg_cache_caches', 'WHERE name OPERATOR(pg_catalog.<>) ''default''');
