-- The concurrency workload (pgbench -f): every API call on 100 hot keys with 1 s ttls, half of
-- them sliding too, a third tagged with one of ten tags that other clients remove. Values describe themselves: "key|md5(key || nonce)|nonce|padding of nonce % 2000
-- bytes"; a read that is not exactly some writer's value for that key fails a cast, an error.
\set k random(1, 100)
\set op random(1, 100)
\set nonce random(1, 1000000000)
\if :op <= 30
SELECT cache_set('hot:' || :k,
                 convert_to('hot:' || :k || '|' || md5('hot:' || :k || :nonce) || '|' || :nonce || '|' || repeat('p', :nonce % 2000), 'UTF8'),
                 ttl => '1 s', sliding => CASE WHEN :nonce % 2 = 0 THEN interval '300 ms' END,
                 tags => CASE WHEN :nonce % 3 = 0 THEN ARRAY['hot tag ' || :k % 10] END);
\elif :op <= 80
SELECT CASE WHEN t IS NULL OR (split_part(t, '|', 1) = 'hot:' || :k
                               AND split_part(t, '|', 2) = md5(split_part(t, '|', 1) || split_part(t, '|', 3))
                               AND length(split_part(t, '|', 4)) = split_part(t, '|', 3)::bigint % 2000)
            THEN 1 ELSE ('torn value: ' || t)::int END AS value_is_whole
FROM (SELECT convert_from(cache_get('hot:' || :k), 'UTF8') AS t) AS read;
\elif :op <= 90
SELECT cache_refresh('hot:' || :k);
\elif :op <= 94
SELECT cache_remove('hot:' || :k);
\elif :op <= 96
-- overlapping batches, keys in random order: their locks are taken in key order, never a deadlock
SELECT cache_set_many(ARRAY['hot:' || :k, 'hot:' || (:k % 100 + 1), 'hot:' || (:nonce % 100 + 1)],
                      ARRAY[convert_to('hot:' || :k || '|' || md5('hot:' || :k || :nonce) || '|' || :nonce || '|' || repeat('p', :nonce % 2000), 'UTF8'),
                            convert_to('hot:' || (:k % 100 + 1) || '|' || md5('hot:' || (:k % 100 + 1) || :nonce) || '|' || :nonce || '|' || repeat('p', :nonce % 2000), 'UTF8'),
                            convert_to('hot:' || (:nonce % 100 + 1) || '|' || md5('hot:' || (:nonce % 100 + 1) || :nonce) || '|' || :nonce || '|' || repeat('p', :nonce % 2000), 'UTF8')],
                      ttl => '1 s', tags => ARRAY['hot tag ' || :nonce % 10, 'batch']);
\elif :op <= 98
SELECT cache_remove_many(ARRAY['hot:' || (:nonce % 100 + 1), 'hot:' || :k]);
\elif :nonce % 2 = 0
SELECT cache_remove_by_tag(ARRAY['hot tag ' || :k % 10, 'batch'], match_all => :nonce % 4 = 0);
\else
SELECT cache_evict_expired(50);
\endif
