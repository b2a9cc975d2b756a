-- pg_cache: cache_get hits on sliding entries stored together (set one after another).
\set k random(1, :keys)
SELECT cache_get('g:' || :k);
