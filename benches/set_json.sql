-- pg_cache: cache_set_json replacing documents (the document read from a plain table, as the
-- baseline reads it).
\set k random(1, :keys)
SELECT cache_set_json(id, doc, ttl => '1 hour') FROM bench_json WHERE id = 'j:' || :k;
