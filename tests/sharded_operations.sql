-- The random operations of tests/sharded.sh's differential run (psql -v operations=N): one line
-- each, SELECT attempt($op$<operation>$op$), where <operation> is a SELECT of one text with what
-- may rightly differ between a router and one server normalised: remaining expiry in whole hours
-- (expiries are whole hours long, the run takes minutes), statistics as their four counters.
-- Keys come from 5 groups of 8 so that operations meet the same keys; JSON is written to its
-- own groups (j0: to j4:), other values to theirs (b0: to b4:): a batch of cache_get_many_json
-- meets no value that is not JSON, which would fail it on one shard after others counted hits.
-- Most operations name a cache at random ({cache}: none, 'default', c1, c2, c3, which exists
-- at times, an unknown one or NULL); tests/sharded.sh creates c1 and c2 on both sides first.
SELECT setseed(0.15) AS seeded \gset

-- A key of one of the kinds in `kinds` (b, j).
CREATE FUNCTION pg_temp.random_key(kinds text DEFAULT 'bj') RETURNS text LANGUAGE sql
AS $$
    SELECT quote_literal(substr(kinds, 1 + floor(random() * length(kinds))::integer, 1)
        || floor(random() * 5) || ':' || floor(random() * 8))
$$;

-- Some values are integers, for cache_incr.
CREATE FUNCTION pg_temp.random_value() RETURNS text LANGUAGE sql
AS $$ SELECT quote_literal(CASE WHEN random() < 0.3 THEN floor(random() * 100)::text ELSE 'v' || floor(random() * 1e6) END) || '::bytea' $$;

-- A group (b3:), a kind (j) or everything ('').
CREATE FUNCTION pg_temp.random_prefix() RETURNS text LANGUAGE sql
AS $$
    SELECT quote_literal(left(substr('bj', 1 + floor(random() * 2)::integer, 1) || floor(random() * 5) || ':',
                              (ARRAY[0, 1, 3, 3, 3, 3, 3, 3, 3, 3])[1 + floor(random() * 10)]))
$$;

-- Up to 12 keys, at times none; repeats happen.
CREATE FUNCTION pg_temp.random_keys(kinds text DEFAULT 'bj') RETURNS text LANGUAGE sql
AS $$
    SELECT format('ARRAY[%s]::text[]', string_agg(pg_temp.random_key(kinds), ','))
    FROM generate_series(1, floor(random() * 13)::integer)
$$;

CREATE FUNCTION pg_temp.random_pairs() RETURNS text LANGUAGE sql
AS $$
    SELECT format('ARRAY[%s]::text[], ARRAY[%s]::bytea[]', string_agg(pg_temp.random_key('b'), ','), string_agg(pg_temp.random_value(), ','))
    FROM generate_series(1, floor(random() * 13)::integer)
$$;

-- None (the default sliding window), ttl, sliding, expires_at, or sliding with an expires_at cap.
CREATE FUNCTION pg_temp.random_expiry() RETURNS text LANGUAGE sql
AS $$
    SELECT format((ARRAY[
        '',
        ', ttl => interval ''%1$s hours''',
        ', sliding => interval ''%1$s hours''',
        ', expires_at => now() + interval ''%1$s hours''',
        ', sliding => interval ''%1$s hours'', expires_at => now() + interval ''%2$s hours'''
    ])[1 + floor(random() * 5)], 1 + floor(random() * 9), 1 + floor(random() * 9))
$$;

CREATE FUNCTION pg_temp.random_json() RETURNS text LANGUAGE sql
AS $$ SELECT quote_literal(format('{"n": %s, "tags": ["t%s", null], "ok": %s}', floor(random() * 1000), floor(random() * 5), random() < 0.5)) || '::jsonb' $$;

-- The cache argument of a call, if any: by name (named notation), or by position ('cache_name').
CREATE FUNCTION pg_temp.random_cache_name() RETURNS text LANGUAGE sql
AS $$
    SELECT CASE
        WHEN draw < 0.15 THEN '''default'''
        WHEN draw < 0.55 THEN '''c1'''
        WHEN draw < 0.75 THEN '''c2'''
        WHEN draw < 0.93 THEN '''c3'''
        WHEN draw < 0.97 THEN '''nope'''
        ELSE 'NULL'
    END
    FROM (SELECT random() AS draw) AS drawn
$$;

CREATE FUNCTION pg_temp.random_cache() RETURNS text LANGUAGE sql
AS $$ SELECT CASE WHEN random() < 0.35 THEN '' ELSE ', cache => ' || pg_temp.random_cache_name() END $$;

-- The name given to cache_create, cache_alter or cache_drop: mostly the one each works on, else
-- one it must refuse (cache_create: one that exists; cache_alter, cache_drop: one that does not,
-- or default, which cache_drop refuses). c1 and c2 are never dropped, nor nope created.
CREATE FUNCTION pg_temp.random_admin_name(usual text, other text) RETURNS text LANGUAGE sql
AS $$
    SELECT CASE WHEN random() < 0.8 THEN quote_literal(usual)
                ELSE (ARRAY[quote_literal(other), '''default''', '''Not a name''', 'NULL'])[1 + floor(random() * 4)] END
$$;

-- Options of cache_create and cache_alter: none, or some of these. No small max_size: a cap is
-- each shard's own, and eviction for size is not the same on 4 shards as on one server.
CREATE FUNCTION pg_temp.random_cache_options() RETURNS text LANGUAGE sql
AS $$
    SELECT coalesce(string_agg(option, ''), '')
    FROM unnest(ARRAY[
        ', logged => ' || (random() < 0.5),
        ', max_size => ' || (ARRAY['''1GB''', '''default''', '''0''', '''-1'''])[1 + floor(random() * 4)],
        ', default_sliding => ' || (ARRAY['''2 hours''', '''0''', 'NULL'])[1 + floor(random() * 3)],
        ', default_ttl => ' || (ARRAY['''5 hours''', '''0''', '''-1 hour'''])[1 + floor(random() * 3)]
    ]) AS option
    WHERE random() < 0.3
$$;

-- Calls that pg_cache rejects, whose SQLSTATE must come back through the router as well.
CREATE FUNCTION pg_temp.random_rejected() RETURNS text LANGUAGE sql
AS $$
    SELECT (ARRAY[
        'SELECT cache_get(NULL)::text',
        'SELECT cache_set('''', ''x'')::text',
        'SELECT cache_get(repeat(''x'', 3000))::text',
        'SELECT count(*)::text FROM cache_get_many(NULL)',
        'SELECT cache_set_many(ARRAY[''g0:1''], ARRAY[]::bytea[])::text',
        'SELECT cache_set(''g0:1'', ''x'', ttl => interval ''-1 hour'')::text',
        'SELECT count(*)::text FROM cache_keys('''', 0)',
        'SELECT cache_remove_prefix('''')::text',
        'SELECT cache_evict_expired(0)::text',
        'SELECT cache_set(''b0:1'', ''x'', tags => ARRAY[''''])::text',
        'SELECT cache_remove_by_tag(ARRAY[]::text[])::text',
        'SELECT cache_get(''b0:1'', ''Not a name'')::text',
        'SELECT count(*)::text FROM cache_get_many(ARRAY[]::text[], ''nope'')',
        'SELECT cache_set_many(ARRAY[]::text[], ARRAY[]::bytea[], cache => ''nope'')::text',
        'SELECT cache_remove_many(ARRAY[]::text[], NULL)::text',
        'SELECT count(*)::text FROM cache_get_many_json(ARRAY[]::text[], ''Bad'')'
    ])[1 + floor(random() * 16)]
$$;

-- Up to 4 tags of 6.
CREATE FUNCTION pg_temp.random_tag_array() RETURNS text LANGUAGE sql
AS $$
    SELECT format('ARRAY[%s]::text[]', string_agg(quote_literal('t' || floor(random() * 6)), ','))
    FROM generate_series(0, floor(random() * 4)::integer)
$$;

-- A fresh draw for a placeholder of the templates below.
CREATE FUNCTION pg_temp.random_argument(placeholder text) RETURNS text LANGUAGE sql
AS $$
    SELECT CASE placeholder
        WHEN 'key' THEN pg_temp.random_key()
        WHEN 'bytes_key' THEN pg_temp.random_key('b')
        WHEN 'json_key' THEN pg_temp.random_key('j')
        WHEN 'keys' THEN pg_temp.random_keys()
        WHEN 'json_keys' THEN pg_temp.random_keys('j')
        WHEN 'value' THEN pg_temp.random_value()
        WHEN 'pairs' THEN pg_temp.random_pairs()
        WHEN 'json' THEN pg_temp.random_json()
        WHEN 'expiry' THEN pg_temp.random_expiry()
        WHEN 'tags' THEN CASE WHEN random() < 0.4 THEN '' ELSE ', tags => ' || pg_temp.random_tag_array() END
        WHEN 'tag_array' THEN pg_temp.random_tag_array()
        WHEN 'match_all' THEN (ARRAY['', ', match_all => true', ', match_all => false'])[1 + floor(random() * 3)]
        WHEN 'prefix' THEN pg_temp.random_prefix()
        WHEN 'rows' THEN (1 + floor(random() * 40))::text
        WHEN 'rejected' THEN pg_temp.random_rejected()
        WHEN 'cache' THEN pg_temp.random_cache()
        WHEN 'cache_only' THEN ltrim(pg_temp.random_cache(), ', ')
        WHEN 'cache_name' THEN pg_temp.random_cache_name()
        WHEN 'created' THEN pg_temp.random_admin_name('c3', 'c1')
        WHEN 'altered' THEN pg_temp.random_admin_name((ARRAY['c1', 'c2', 'c3'])[1 + floor(random() * 3)], 'nope')
        WHEN 'dropped' THEN pg_temp.random_admin_name('c3', 'nope')
        WHEN 'cache_options' THEN pg_temp.random_cache_options()
    END
$$;

-- A template with each placeholder ({key}, {expiry}, ...) replaced by a fresh draw.
CREATE FUNCTION pg_temp.filled(template text) RETURNS text LANGUAGE plpgsql
AS $$
DECLARE
    placeholder text;
BEGIN
    LOOP
        placeholder := substring(template FROM '\{([a-z_]+)\}');
        EXIT WHEN placeholder IS NULL;
        template := regexp_replace(template, '\{' || placeholder || '\}', pg_temp.random_argument(placeholder));
    END LOOP;
    RETURN template;
END
$$;

WITH operation(weight, template) AS (VALUES
    (14,   'SELECT cache_set({bytes_key}, {value}{expiry}{tags}{cache})::text'),
    (19,   'SELECT cache_get({key}{cache})::text'),
    (3,    'SELECT cache_get({key}, {cache_name})::text'),
    (2,    'SELECT cache_set({bytes_key}, {value}, NULL, NULL, NULL, NULL, {cache_name})::text'),
    (4,    'SELECT cache_add({bytes_key}, {value}{expiry}{tags}{cache})::text'),
    (3,    'SELECT cache_take({key}{cache})::text'),
    (3,    'SELECT cache_refresh({key}{cache})::text'),
    (4,    'SELECT cache_remove({key}{cache})::text'),
    (5,    'SELECT round(extract(epoch FROM cache_ttl({key}{cache})) / 3600)::text'),
    (3,    'SELECT cache_tags({key}{cache})::text'),
    (3,    'SELECT cache_expire({key}{expiry}{cache})::text'),
    (5,    'SELECT cache_incr({bytes_key}, {rows} - 20{expiry}{cache})::text'),
    (2,    'SELECT cache_incr({bytes_key}, {rows} - 20{expiry}, create_missing => false{cache})::text'),
    (4,    'SELECT cache_set_json({json_key}, {json}{expiry}{tags}{cache})::text'),
    (4,    'SELECT cache_get_json({key}{cache})::text'),
    (2,    'SELECT status FROM cache_get_or_lease({key}, lease_ttl => ''1 hour'', beta => 0{cache})'),
    (1,    'SELECT cache_fill({bytes_key}, {value}, gen_random_uuid(){expiry}{tags}{cache})::text'),
    (1,    'SELECT cache_release({key}, gen_random_uuid(){cache})::text'),
    (6,    'SELECT string_agg(hit.key || ''='' || hit.value::text, '','' ORDER BY hit.n) FROM cache_get_many({keys}{cache}) WITH ORDINALITY AS hit(key, value, n)'),
    (3,    'SELECT string_agg(hit.key || ''='' || hit.value::text, '','' ORDER BY hit.n) FROM cache_get_many_json({json_keys}{cache}) WITH ORDINALITY AS hit(key, value, n)'),
    (5,    'SELECT cache_set_many({pairs}{expiry}{tags}{cache})::text'),
    (2,    'SELECT cache_remove_many({keys}{cache})::text'),
    (4,    'SELECT string_agg(concat_ws(''/'', listed.key, listed.value_bytes, listed.sliding, round(extract(epoch FROM listed.expires_at - now()) / 3600), round(extract(epoch FROM listed.absolute_expires_at - now()) / 3600)), '','' ORDER BY listed.n) FROM cache_keys({prefix}, {rows}{cache}) WITH ORDINALITY AS listed(key, expires_at, sliding, absolute_expires_at, value_bytes, n)'),
    (3,    'SELECT concat_ws(''/'', hits, misses, sets, removes) FROM cache_stats({cache_only})'),
    (2,    'SELECT cache_evict_expired({rows}{cache})::text'),
    (3,    '{rejected}'),
    (0.5,  'SELECT cache_remove_prefix({prefix}{cache})::text'),
    (0.5,  'SELECT cache_remove_by_tag({tag_array}{match_all}{cache})::text'),
    (0.5,  'SELECT cache_stats_reset({cache_only})::text'),
    (0.4,  'SELECT cache_clear({cache_only})::text'),
    (0.6,  'SELECT cache_create({created}{cache_options})::text'),
    (0.6,  'SELECT cache_alter({altered}{cache_options})::text'),
    (0.5,  'SELECT cache_drop({dropped})::text'),
    (1,    'SELECT string_agg(concat_ws(''/'', name, logged, max_size, default_sliding, default_ttl, table_name), '','' ORDER BY name) FROM cache_list()')
), bounds AS (
    SELECT template, sum(weight) OVER (ORDER BY template) - weight AS low, sum(weight) OVER (ORDER BY template) AS high,
           sum(weight) OVER () AS total
    FROM operation
)
SELECT 'SELECT attempt($op$' || pg_temp.filled(bounds.template) || '$op$);'
FROM generate_series(1, :operations) AS step(n)
CROSS JOIN LATERAL (SELECT random() + step.n * 0 AS pick) AS draw
JOIN bounds ON draw.pick * bounds.total >= bounds.low AND draw.pick * bounds.total < bounds.high
ORDER BY step.n;
