-- Runs first: the extension; a helper that turns an error into "SQLSTATE: message" so the
-- expected output shows each error's code; and one that lists the entries that stay live for the
-- next ten minutes, to check that bad input changed none of them (the eviction worker may remove
-- expired ones at any time).
CREATE EXTENSION pg_cache;

CREATE FUNCTION regress_error(statement text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE statement;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;

CREATE FUNCTION regress_long_lived_entries() RETURNS TABLE (key text, value bytea, expires_at timestamptz)
LANGUAGE sql AS $$
    SELECT key, value, expires_at FROM pg_cache_entries WHERE expires_at > clock_timestamp() + interval '10 min'
$$;
