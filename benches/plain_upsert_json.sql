-- Baseline: an upsert of a jsonb column on an UNLOGGED table (the document read from a plain table).
\set k random(1, :keys)
INSERT INTO bench_json_upsert (id, doc) SELECT id, doc FROM bench_json WHERE id = 'j:' || :k
ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc;
