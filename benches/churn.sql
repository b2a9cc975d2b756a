-- Set/expire churn: every set writes a new key that expires a second later.
\set k random(1, 100000000)
SELECT cache_set('churn:' || :k, :value, ttl => '1 s');
