-- Tags: given when an entry is set, read with cache_tags, removed with cache_remove_by_tag in
-- the caller's transaction. Keys start with 'tag:'.

-- A set with tags: duplicates collapse (the first kept), order kept.
SELECT cache_set('tag:a', 'a', tags => ARRAY['red', 'blue', 'red']);
SELECT cache_set('tag:b', 'b', ttl => '1 hour', tags => '{blue}');
SELECT cache_set('tag:c', 'c');
SELECT cache_tags('tag:a') AS a, cache_tags('tag:b') AS b, cache_tags('tag:c') AS untagged,
       cache_tags('tag:absent') IS NULL AS absent;
-- an empty array gives no tags, as NULL does
SELECT cache_set('tag:empty', 'e', tags => '{}');
SELECT cache_tags('tag:empty') AS empty, (SELECT tags IS NULL FROM pg_cache_entries WHERE key = 'tag:empty') AS stored_null;

-- A set without tags gives the entry no tags: the old ones go (the replace of an existing key).
SELECT cache_set('tag:a', 'a2');
SELECT cache_tags('tag:a') AS after_untagged_set;
SELECT cache_set('tag:a', 'a3', tags => '{green}');
SELECT cache_tags('tag:a') AS after_tagged_set;
-- the same in one transaction: the direct replace and the upsert agree
BEGIN;
SELECT cache_set('tag:tx', '1', tags => '{one}');
SELECT cache_set('tag:tx', '2', tags => '{two}');
SELECT cache_tags('tag:tx') AS in_transaction;
COMMIT;

-- The other setting functions take tags; cache_add that does not set leaves them.
SELECT cache_add('tag:add', 'v', tags => '{added}') AS added,
       cache_add('tag:add', 'w', tags => '{other}') AS added_again,
       cache_tags('tag:add') AS tags;
SELECT cache_set_many(ARRAY['tag:m1', 'tag:m2'], ARRAY['1', '2']::bytea[], tags => '{many}');
SELECT cache_set_json('tag:json', '{"n": 1}', tags => '{json, many}');
SELECT key, cache_tags(key) FROM (VALUES ('tag:m1'), ('tag:m2'), ('tag:json')) AS k(key);
-- a counter keeps its tags while live; expiry changes keep them
SELECT cache_set('tag:counter', '5', tags => '{counters}');
SELECT cache_incr('tag:counter', 2) AS counter, cache_tags('tag:counter') AS kept_by_incr;
SELECT cache_expire('tag:counter', ttl => '1 hour') AS expired, cache_tags('tag:counter') AS kept_by_expire;
-- an expired tagged counter starts again without tags
SELECT cache_set('tag:stale counter', '1', tags => '{old}', expires_at => clock_timestamp() + interval '100 ms');
SELECT pg_sleep(0.2);
SELECT cache_incr('tag:stale counter') AS restarted, cache_tags('tag:stale counter') AS tags;
-- cache_tags does not slide and does not see expired entries
SELECT cache_set('tag:short', 'v', tags => '{short}', expires_at => clock_timestamp() + interval '100 ms');
SELECT pg_sleep(0.2);
SELECT cache_tags('tag:short') IS NULL AS expired_has_no_tags;

-- Removal by tag: any of the tags, or all of them; the count is of live entries, expired ones
-- are removed too.
SELECT cache_set('tag:r1', '1', tags => '{x, y}');
SELECT cache_set('tag:r2', '2', tags => '{x}');
SELECT cache_set('tag:r3', '3', tags => '{y}');
SELECT cache_set('tag:r4', '4', tags => '{z}');
SELECT cache_remove_by_tag('{x, y}', match_all => true) AS removed_all_of;
SELECT array_agg(key ORDER BY key) AS left_after_all FROM pg_cache_entries WHERE key LIKE 'tag:r%';
SELECT cache_remove_by_tag('{x, y}') AS removed_any_of;
SELECT array_agg(key ORDER BY key) AS left_after_any FROM pg_cache_entries WHERE key LIKE 'tag:r%';
SELECT cache_remove_by_tag('{nobody}') AS removed_none;
SELECT cache_remove_by_tag('{short}') AS expired_not_counted,
       (SELECT count(*) FROM pg_cache_entries WHERE key = 'tag:short') AS expired_rows_left;
-- in the caller's transaction: a rollback keeps the entries
BEGIN;
SELECT cache_remove_by_tag('{z}') AS removed_in_transaction;
SELECT cache_get('tag:r4') IS NULL AS gone_inside;
ROLLBACK;
SELECT convert_from(cache_get('tag:r4'), 'UTF8') AS back_after_rollback;
-- counted as removes
SELECT cache_stats_reset();
SELECT cache_remove_by_tag('{many}') AS removed_many, (SELECT removes FROM cache_stats()) AS removes;

-- Tags are compared byte-wise and in full: no prefix or case folding.
SELECT cache_set('tag:case', 'v', tags => '{Red, ünïcode}');
SELECT cache_remove_by_tag('{red}') AS other_case, cache_remove_by_tag('{Re}') AS prefix,
       cache_remove_by_tag('{ünïcode}') AS exact;

-- The tags index holds exactly the tagged entries: read through it and without it.
-- 10 tagged entries, then 6 replaced with a tag (the direct replace), 4 of them untagged before
SELECT count(cache_set('tag:i' || i, 'v', tags => CASE WHEN i % 3 = 0 THEN ARRAY['idx', 'i' || i] END))
FROM generate_series(1, 30) AS i;
SELECT count(cache_set('tag:i' || i, 'w', tags => ARRAY['idx'])) FROM generate_series(1, 30, 5) AS i;
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT count(*) FROM pg_cache_entries WHERE tags && '{idx}';
SELECT count(*) AS through_index FROM pg_cache_entries WHERE tags && '{idx}';
RESET enable_seqscan;
SET enable_bitmapscan = off;
SET enable_indexscan = off;
SELECT count(*) AS without_index FROM pg_cache_entries WHERE tags && '{idx}';
RESET enable_bitmapscan;
RESET enable_indexscan;

-- Bad input: the SQLSTATE and a message naming the argument; nothing changed.
SELECT statement, regress_error(statement) FROM (VALUES
    ($$SELECT cache_set('k', 'v', tags => ARRAY['a', NULL])$$),
    ($$SELECT cache_set('k', 'v', tags => ARRAY['a', ''])$$),
    ($$SELECT cache_set('k', 'v', tags => ARRAY[repeat('t', 257)])$$),
    ($$SELECT cache_set('k', 'v', tags => (SELECT array_agg('t' || i) FROM generate_series(1, 65) AS i))$$),
    ($$SELECT cache_add('k', 'v', tags => ARRAY[NULL::text])$$),
    ($$SELECT cache_set_many(ARRAY['k'], ARRAY['v']::bytea[], tags => ARRAY[''])$$),
    ($$SELECT cache_set_json('k', '1', tags => ARRAY[repeat('t', 300)])$$),
    ($$SELECT cache_tags(NULL)$$),
    ($$SELECT cache_tags('')$$),
    ($$SELECT cache_remove_by_tag(NULL)$$),
    ($$SELECT cache_remove_by_tag('{}')$$),
    ($$SELECT cache_remove_by_tag(ARRAY['a', NULL])$$),
    ($$SELECT cache_remove_by_tag(ARRAY[''])$$),
    ($$SELECT cache_remove_by_tag(ARRAY[repeat('t', 257)])$$),
    ($$SELECT cache_remove_by_tag('{a}', match_all => NULL)$$)
) AS bad(statement);
SELECT cache_get('k') IS NULL AS nothing_set;
-- the limits themselves are accepted: 64 distinct tags (with duplicates) of 256 bytes
SELECT cache_set('tag:limits', 'v',
                 tags => (SELECT array_agg(repeat('t', 254) || lpad((i % 64)::text, 2, '0')) FROM generate_series(1, 100) AS i));
SELECT cardinality(cache_tags('tag:limits')) AS distinct_tags,
       (SELECT max(octet_length(tag)) FROM unnest(cache_tags('tag:limits')) AS tag) AS longest;
