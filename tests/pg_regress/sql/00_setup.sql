-- Runs first: the extension, and a helper that turns an error into "SQLSTATE: message" so the
-- expected output shows each error's code.
CREATE EXTENSION pg_cache;

CREATE FUNCTION regress_error(statement text) RETURNS text LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE statement;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    RETURN SQLSTATE || ': ' || SQLERRM;
END
$$;
