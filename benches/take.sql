-- pg_cache: cache_take of a live entry, set again in the same transaction so the keys stay live
-- (compare with "set": the difference is the take).
\set k random(1, :keys)
BEGIN;
SELECT cache_take('a:' || :k);
SELECT cache_set('a:' || :k, :value, ttl => '1 hour');
COMMIT;
