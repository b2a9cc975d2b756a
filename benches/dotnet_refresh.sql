-- The SQL Microsoft.Extensions.Caching.Postgres sends for Refresh: the sliding UPDATE alone.
\set k random(1, :keys)
UPDATE bench_dotnet SET expiresattime = CASE WHEN EXTRACT(SECOND FROM AGE(absoluteexpiration, now())) <= slidingexpirationinseconds THEN absoluteexpiration ELSE now() + INTERVAL '1 second' * slidingexpirationinseconds END WHERE id = 's:' || :k AND expiresattime >= now() AND slidingexpirationinseconds IS NOT NULL AND (absoluteexpiration IS NULL OR absoluteexpiration <> expiresattime);
