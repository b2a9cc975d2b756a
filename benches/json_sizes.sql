-- The size of jsonb values stored as CBOR against their compact JSON text, on a generated corpus
-- of realistic documents from about 200 B to 100 KiB: API responses (nested objects and arrays),
-- number-heavy series, string-heavy text. Run against a database with pg_cache:
--   psql -f benches/json_sizes.sql DB
SET client_min_messages = warning;
SELECT setseed(0.42);
-- The spaces jsonb's text output adds after ':' and ',' (compact JSON has none).
CREATE FUNCTION pg_temp.separators(doc jsonb) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN
    RETURN CASE jsonb_typeof(doc)
        WHEN 'object' THEN (SELECT coalesce(sum(1 + pg_temp.separators(value)), 0) + greatest(count(*) - 1, 0) FROM jsonb_each(doc))
        WHEN 'array' THEN (SELECT coalesce(sum(pg_temp.separators(value)), 0) + greatest(count(*) - 1, 0) FROM jsonb_array_elements(doc))
        ELSE 0 END;
END $$;
CREATE TEMP TABLE corpus (kind text, items int, doc jsonb);
INSERT INTO corpus
SELECT 'api response', n, jsonb_build_object(
    'page', 1, 'per_page', n, 'total', n * 17, 'next', 'https://api.example.com/v2/users?page=2',
    'data', (SELECT jsonb_agg(jsonb_build_object(
        'id', 100000 + i, 'name', 'User ' || substr(md5(i::text), 1, 8), 'email', substr(md5(i::text), 1, 10) || '@example.com',
        'active', i % 3 <> 0, 'score', round((random() * 1000)::numeric, 2), 'balance', round((random() * 100000)::numeric, 2),
        'roles', CASE WHEN i % 5 = 0 THEN '["admin", "dev"]'::jsonb ELSE '["viewer"]'::jsonb END,
        'address', jsonb_build_object('street', (i * 7) || ' Main Street', 'city', (ARRAY['Zürich', 'São Paulo', 'Tokyo', 'Oslo'])[1 + i % 4], 'zip', lpad((i * 37 % 99999)::text, 5, '0')),
        'created_at', to_char(timestamptz '2026-01-01' + i * interval '37 min', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
        'manager', CASE WHEN i % 4 = 0 THEN NULL ELSE jsonb_build_object('id', 1000 + i % 10) END))
        FROM generate_series(1, n) i))
FROM unnest(ARRAY[1, 2, 5, 10, 30, 60, 120, 200]) n
UNION ALL
SELECT 'number-heavy', n, jsonb_build_object(
    'sensor', 'probe-' || n, 'unit', 'celsius',
    'readings', (SELECT jsonb_agg(jsonb_build_array(1767225600 + i * 60, round((20 + random() * 10)::numeric, 3), round((random() * 100)::numeric, 1), (random() * 1000)::int))
                 FROM generate_series(1, n) i))
FROM unnest(ARRAY[5, 20, 50, 200, 500, 1000, 2500]) n
UNION ALL
SELECT 'string-heavy', n, jsonb_build_object(
    'title', 'Release notes ' || n, 'language', 'en',
    'paragraphs', (SELECT jsonb_agg(repeat('Lorem ipsum dolor sit amet, ' || md5(i::text) || ' — naïve café "quoted" ', 1 + i % 4))
                   FROM generate_series(1, n) i))
FROM unnest(ARRAY[1, 3, 10, 30, 100, 300, 450]) n;
SELECT count(cache_set_json('size:' || kind || ':' || items, doc, ttl => '10 min')) AS documents FROM corpus;
CREATE TEMP TABLE sizes AS
SELECT kind, items, octet_length(doc::text) - pg_temp.separators(doc) AS json_bytes,
       octet_length(cache_get('size:' || kind || ':' || items)) AS cbor_bytes,
       cache_get_json('size:' || kind || ':' || items) = doc AS round_trip
FROM corpus;
SELECT kind, count(*) AS documents, min(json_bytes) AS smallest_json, max(json_bytes) AS largest_json,
       sum(json_bytes) AS json_bytes, sum(cbor_bytes) AS cbor_bytes,
       round(sum(cbor_bytes)::numeric / sum(json_bytes), 3) AS cbor_to_json, bool_and(round_trip) AS all_round_trip
FROM sizes GROUP BY ROLLUP (kind) ORDER BY kind NULLS LAST;
SELECT cache_remove_prefix('size:') AS removed;
