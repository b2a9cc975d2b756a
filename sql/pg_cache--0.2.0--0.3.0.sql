-- pg_cache 0.2.0 -> 0.3.0.
-- 0.3.0 hardens the library (workers and statements immune to search_path, reads that never
-- wait for a row lock, bounded JSON numbers, write accounting per subtransaction); the SQL
-- objects of 0.2.0 stay as they are, and their functions keep their C symbols.
\echo Use "ALTER EXTENSION pg_cache UPDATE" to load this file. \quit
