-- pg_cache: cache_set of a key that carries the time it was set (µs since the epoch), for the
-- invalidation feed's latency: the listener subtracts it from the time it hears the key.
SELECT cache_set('lat:' || (extract(epoch FROM clock_timestamp()) * 1000000)::bigint, 'v', ttl => '10 s');
