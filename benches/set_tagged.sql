-- pg_cache: cache_set replacing entries with an absolute expiry, each with three tags (one of
-- 100 tenants, one of 10 kinds, and its own).
\set k random(1, :keys)
SELECT cache_set('t:' || :k, :value, ttl => '1 hour',
                 tags => ARRAY['tenant:' || :k % 100, 'kind:' || :k % 10, 'item:' || :k]);
