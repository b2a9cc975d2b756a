-- pg_cache: cache_set replacing absolute entries of a logged cache.
\set k random(1, :keys)
SELECT cache_set('a:' || :k, :value, ttl => '1 hour', cache => 'logged');
