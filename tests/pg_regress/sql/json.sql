-- jsonb values stored as CBOR: exact round trips, the stored bytes, CBOR written by others, and
-- bad input. Keys start with 'json:'.
CREATE TEMP TABLE documents (name text, doc jsonb);
INSERT INTO documents VALUES
    ('object', '{"name": "Ada", "tags": ["math", "engines"], "active": true, "manager": null}'),
    ('nested', '{"a": {"b": {"c": [1, [2, [3, {"d": "deep"}]]]}}}'),
    ('array', '[1, "two", 3.0, false, null, {}, []]'),
    ('unicode', '{"text": "héllo wörld ✓ 😀 \u0001 \"quoted\" back\\slash\nline"}'),
    ('string', '"just a string"'),
    ('null', 'null'),
    ('true', 'true'),
    ('false', 'false'),
    ('empty object', '{}'),
    ('empty array', '[]'),
    ('zero point one', '0.1'),
    ('one point three zeros', '1.000'),
    ('minus zero', '-0'),
    ('1e400', '1e400'),
    ('-1e-300', '-1e-300'),
    ('big integer', '123456789012345678901234567890'),
    ('negative big integer', '-123456789012345678901234567890'),
    ('int64 max', '9223372036854775807'),
    ('int64 max + 1', '9223372036854775808'),
    ('int64 min', '-9223372036854775808'),
    ('int64 min - 1', '-9223372036854775809'),
    ('many digits', '3.14159265358979323846264338327950288419716939937510'),
    ('numbers', '[0, -1, 1.5, -2.25, 100, 1e3, 1.5e-7, 0.000001]'),
    ('keys', '{"b": 1, "a": 2, "aa": 3, "": 4}');
SELECT count(cache_set_json('json:' || name, doc, ttl => '1 hour')) FROM documents;
SELECT name, cache_get_json('json:' || name)::text = doc::text AS exact, cache_get_json('json:' || name)::text AS read_back
FROM documents ORDER BY name;

-- numbers are read from numeric's stored digits (short and long header forms) and built back
-- from their integer parts: exact at the edges of 64 bits, of the float rule, of the scales
CREATE TEMP TABLE numbers (n int GENERATED ALWAYS AS IDENTITY, doc jsonb);
INSERT INTO numbers (doc) SELECT unnest(ARRAY[
    '0', '0.0', '-0.0', '0.00000', '1e-5', '0.0001', '0.00010', '10000', '100000000', '1e20',
    '12.25', '-12.25', '12.50', '0.5', '-0.5', '1.5e300', '-1.5e-290', '0.00000095367431640625',
    '9007199254740991.5', '4503599627370495.5', '123456789.123456789',
    '9223372036854775807', '-9223372036854775808', '9223372036854775807.5',
    '922337203685477580.7', '-922337203685477580.8', '92233720368547758.08', '9223372036854775.8070',
    '9223372036854.775', '9223372036854.776', '-9223372036854.776', '1e-63', '1e-64', '1e64',
    '1e-16383', '-1e131071']::jsonb[]);
SELECT count(cache_set_json('json:number ' || n, doc)) FROM numbers;
SELECT n, doc, cache_get_json('json:number ' || n)::text = doc::text AS exact
FROM numbers WHERE length(doc::text) < 60 ORDER BY n;
SELECT count(*) FILTER (WHERE cache_get_json('json:number ' || n)::text = doc::text) AS long_ones_exact
FROM numbers WHERE length(doc::text) >= 60;
-- CBOR from clients: decimal fractions at the exponent limits and with a mantissa of 64 bits,
-- indefinite-length arrays, maps and text
SELECT cache_set('json:client 1', '\xc482393ffe01'::bytea),
       cache_set('json:client 2', '\xc4820224'::bytea),
       cache_set('json:client 3', '\xc482211b7fffffffffffffff'::bytea),
       cache_set('json:client 4', '\x9f01bf6161f5ff7f61616162ffff'::bytea),
       cache_set('json:client 5', '\xc482393fff01'::bytea);
SELECT key, length(cache_get_json(key)::text) AS length, left(cache_get_json(key)::text, 40) AS starts
FROM (VALUES ('json:client 1'), ('json:client 2'), ('json:client 3'), ('json:client 4')) AS k(key);
SELECT regress_error($$SELECT cache_get_json('json:client 5')$$) AS exponent_too_small;

-- nesting: 256 levels round-trip; 257 are refused (54000)
SELECT cache_set_json('json:deep', (repeat('[', 256) || '1' || repeat(']', 256))::jsonb);
SELECT cache_get_json('json:deep')::text = repeat('[', 256) || '1' || repeat(']', 256) AS deep_round_trip;
SELECT cache_set_json('json:deep object', (repeat('{"a":', 256) || '1' || repeat('}', 256))::jsonb);
SELECT cache_get_json('json:deep object')::text = repeat('{"a": ', 256) || '1' || repeat('}', 256) AS deep_object_round_trip;
SELECT cache_set('json:deep client', decode(repeat('81', 256) || '00', 'hex'));
SELECT cache_get_json('json:deep client')::text = repeat('[', 256) || '0' || repeat(']', 256) AS deep_client_round_trip;
SELECT regress_error($$SELECT cache_set_json('json:too deep', (repeat('[', 257) || '1' || repeat(']', 257))::jsonb)$$) AS too_deep;
SELECT regress_error($$SELECT cache_set_json('json:too deep', (repeat('{"a":', 300) || '1' || repeat('}', 300))::jsonb)$$) AS too_deep_objects;

-- the stored bytes: untagged CBOR since 0.3.0, integers as CBOR integers,
-- 1.000 as the decimal fraction [-3, 1000] (tag 4: c4 82 22 19 03e8)
SELECT cache_set_json('json:small', '{"a": 1}');
SELECT cache_get('json:small') AS small_cbor;
SELECT cache_set_json('json:decimal', '1.000');
SELECT cache_get('json:decimal') AS decimal_cbor;
-- a fraction a double holds exactly (and prints back the same) is the smallest float: 12.25 is
-- the half-precision f9 4a20
SELECT cache_set_json('json:float', '12.25');
SELECT cache_get('json:float') AS float_cbor, cache_get_json('json:float') AS float_back;
SELECT cache_set_json('json:bignum', '18446744073709551616');
SELECT cache_get('json:bignum') AS bignum_cbor;

-- what 0.2.0 wrote (self-described, tag 55799: d9 d9 f7) still reads back
SELECT cache_set('json:0.2.0', '\xd9d9f7a1616101'::bytea);
SELECT cache_get_json('json:0.2.0') AS tagged_by_0_2_0;

-- CBOR written by clients, untagged: a map, floats, a negative bignum, a decimal fraction
SELECT cache_set('json:client', '\xa3616101616282f93e00fb3ff199999999999a6163c349010000000000000000'::bytea);
SELECT cache_get_json('json:client') AS from_client;
SELECT cache_set('json:fraction', '\xc48221196ab3'::bytea);
SELECT cache_get_json('json:fraction') AS fraction_273_15;
-- bytes set with cache_set that are one CBOR item decode as that item: '5' is 0x35, the CBOR
-- integer -22
SELECT cache_set('json:counter', '5');
SELECT cache_get_json('json:counter') AS counter_text_as_cbor;

-- many
SELECT key, value FROM cache_get_many_json(ARRAY['json:string', 'json:missing', 'json:null', 'json:string']);

-- bad input: values that are not one CBOR item JSON can express (22P02, naming the key; the
-- entry is untouched), NULL arguments (22004), nesting (54000)
SELECT cache_set('json:bad:invalid', '\xff'::bytea),
       cache_set('json:bad:trailing', '\x0102'::bytea),
       cache_set('json:bad:empty', ''::bytea),
       cache_set('json:bad:truncated', '\x82'::bytea),
       cache_set('json:bad:bytes', '\x4101'::bytea),
       cache_set('json:bad:int key', '\xa10100'::bytea),
       cache_set('json:bad:undefined', '\xf7'::bytea),
       cache_set('json:bad:nan', '\xf97e00'::bytea),
       cache_set('json:bad:infinity', '\xf97c00'::bytea),
       cache_set('json:bad:date tag', '\xc11a514b67b0'::bytea),
       cache_set('json:bad:nul', '\x6100'::bytea),
       cache_set('json:bad:deep', decode(repeat('81', 300) || '00', 'hex'));
SELECT key, regress_error(format('SELECT cache_get_json(%L)', key)) AS error
FROM cache_keys('json:bad:') ORDER BY key;
SELECT count(*) AS untouched FROM cache_keys('json:bad:');
SELECT statement, regress_error(statement) FROM (VALUES
    ($$SELECT cache_set_json(NULL, '1')$$),
    ($$SELECT cache_set_json('json:k', NULL)$$),
    ($$SELECT cache_set_json('', '1')$$),
    ($$SELECT cache_set_json('json:k', '1', ttl => '-1 s')$$),
    ($$SELECT cache_get_json(NULL)$$),
    ($$SELECT * FROM cache_get_many_json(NULL)$$),
    ($$SELECT * FROM cache_get_many_json(ARRAY[NULL]::text[])$$)
) AS cases(statement);
SELECT cache_remove_prefix('json:');
