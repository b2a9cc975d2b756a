-- pg_cache: 90% cache_get, 10% cache_set, on sliding entries.
\set k random(1, :keys)
\set roll random(1, 10)
\if :roll = 1
SELECT cache_set('s:' || :k, :value, sliding => '1 hour');
\else
SELECT cache_get('s:' || :k);
\endif
