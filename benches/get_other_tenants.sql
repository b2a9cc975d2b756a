-- pg_cache: cache_get hits on entries 'r:N' of tenants 50 to 99 (N % 100), which the tag removals
-- running beside it do not touch.
\set n random(0, :keys / 100 - 1)
\set t random(50, 99)
SELECT cache_get('r:' || (:n * 100 + :t));
