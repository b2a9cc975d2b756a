-- pg_cache: cache_get hits on absolute entries of a logged cache.
\set k random(1, :keys)
SELECT cache_get('a:' || :k, cache => 'logged');
