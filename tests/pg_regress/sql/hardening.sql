-- Hardening in 0.3.0: each case below failed on 0.2.0.

-- A trigger on the table that calls pg_cache again (re-entry): it works, no internal error.
CREATE FUNCTION regress_count_updates() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM cache_incr('hardening:updates');
    RETURN NEW;
END
$$;
CREATE TRIGGER regress_counting BEFORE UPDATE ON pg_cache_entries
    FOR EACH ROW WHEN (NEW.key <> 'hardening:updates') EXECUTE FUNCTION regress_count_updates();
SELECT cache_set('hardening:k', 'a', ttl => '1 hour'), cache_set('hardening:k', 'b', ttl => '1 hour');
SELECT convert_from(cache_get('hardening:k'), 'UTF8') AS value,
       convert_from(cache_get('hardening:updates'), 'UTF8') AS updates;
DROP TRIGGER regress_counting ON pg_cache_entries;
DROP FUNCTION regress_count_updates();

-- A role with only SELECT reads sliding entries (it does not slide them); cache_refresh, whose
-- point is the slide, is refused.
SET client_min_messages = warning;
DROP ROLE IF EXISTS regress_cache_reader;
RESET client_min_messages;
CREATE ROLE regress_cache_reader;
GRANT SELECT ON pg_cache_entries TO regress_cache_reader;
SELECT cache_set('hardening:sliding', 'v', sliding => '1 hour');
SET pg_cache.refresh_granularity = 0;
SET ROLE regress_cache_reader;
SELECT convert_from(cache_get('hardening:sliding'), 'UTF8') AS value;
SELECT key FROM cache_get_many(ARRAY['hardening:sliding']);
SELECT regress_error($$SELECT cache_refresh('hardening:sliding')$$);
RESET ROLE;
RESET pg_cache.refresh_granularity;
REVOKE ALL ON pg_cache_entries FROM regress_cache_reader;
DROP ROLE regress_cache_reader;

-- Hostile bignums: refused from their length (22P02 naming the key) well within a 2 s
-- statement_timeout, a 1 MiB one as fast as a 256 KiB one; 0.2.0 spent 46 s on the 256 KiB one.
SET statement_timeout = '2s';
SELECT cache_set('hardening:bignum', '\xc25a00040000'::bytea || decode(repeat('ff', 262144), 'hex'));
SELECT regress_error($$SELECT cache_get_json('hardening:bignum')$$);
SELECT cache_set('hardening:bignum', '\xc25a00100000'::bytea || decode(repeat('ff', 1048576), 'hex'));
SELECT regress_error($$SELECT cache_get_json('hardening:bignum')$$);
-- Past numeric's 131,072 digits before the point, but under the byte bound: refused as well.
SELECT cache_set('hardening:bignum', '\xc259d4e4'::bytea || decode(repeat('ff', 54500), 'hex'));
SELECT regress_error($$SELECT cache_get_json('hardening:bignum')$$);
-- The largest integer numeric holds goes both ways (without the timeout: converting its
-- 131,072 digits is quadratic, about 0.2 s here, longer on a loaded machine).
RESET statement_timeout;
SELECT cache_set_json('hardening:largest', ('9' || repeat('9', 131071))::jsonb);
SELECT length(value::text) AS digits, value = ('9' || repeat('9', 131071))::jsonb AS exact
FROM (SELECT cache_get_json('hardening:largest') AS value) AS read;
SET statement_timeout = '2s';
-- Decimal fractions whose exponent puts them past numeric's range: 22P02 naming the key.
SELECT cache_set('hardening:fraction', '\xc4821a000200000a'::bytea);
SELECT regress_error($$SELECT cache_get_json('hardening:fraction')$$);
SELECT cache_set('hardening:fraction', '\xc4821a0001ffff01'::bytea);
SELECT length(cache_get_json('hardening:fraction')::text) AS digits;
RESET statement_timeout;

-- A caller's search_path with a same-named table and an oid "=" that is always true ahead of
-- pg_catalog: the functions still reach the extension's table (in a new session, which has not
-- looked the table up yet).
\c
CREATE SCHEMA regress_decoy;
CREATE TABLE regress_decoy.pg_cache_entries (LIKE public.pg_cache_entries INCLUDING ALL);
INSERT INTO regress_decoy.pg_cache_entries (key, value, expires_at) VALUES ('hardening:decoy', 'decoy', 'infinity');
CREATE FUNCTION regress_decoy.always(oid, oid) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR regress_decoy.= (LEFTARG = oid, RIGHTARG = oid, FUNCTION = regress_decoy.always);
CREATE FUNCTION regress_decoy.always(name, name) RETURNS boolean LANGUAGE sql AS 'SELECT true';
CREATE OPERATOR regress_decoy.= (LEFTARG = name, RIGHTARG = name, FUNCTION = regress_decoy.always);
SET search_path = regress_decoy, pg_catalog, public;
SELECT public.cache_set('hardening:decoy', 'real', ttl => '1 hour');
SELECT pg_catalog.convert_from(public.cache_get('hardening:decoy'), 'UTF8') AS value;
RESET search_path;
SELECT convert_from(value, 'UTF8') AS decoy_value FROM regress_decoy.pg_cache_entries;
SELECT convert_from(value, 'UTF8') AS real_value FROM public.pg_cache_entries WHERE key = 'hardening:decoy';
DROP SCHEMA regress_decoy CASCADE;
SELECT cache_remove_prefix('hardening:') > 0 AS removed;
