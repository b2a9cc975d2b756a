-- pg_cache: cache_get_json of documents stored as CBOR.
\set k random(1, :keys)
SELECT cache_get_json('j:' || :k);
