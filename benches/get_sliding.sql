-- pg_cache: cache_get hits on entries with a sliding expiry (each hit may slide the expiry).
\set k random(1, :keys)
SELECT cache_get('s:' || :k);
