-- The SQL Microsoft.Extensions.Caching.Postgres sends for Get on a sliding entry: an UPDATE that
-- slides the expiry, then a SELECT, in one round trip (a pipeline). Its clock parameter is now().
\set k random(1, :keys)
\startpipeline
UPDATE bench_dotnet SET expiresattime = CASE WHEN EXTRACT(SECOND FROM AGE(absoluteexpiration, now())) <= slidingexpirationinseconds THEN absoluteexpiration ELSE now() + INTERVAL '1 second' * slidingexpirationinseconds END WHERE id = 's:' || :k AND expiresattime >= now() AND slidingexpirationinseconds IS NOT NULL AND (absoluteexpiration IS NULL OR absoluteexpiration <> expiresattime);
SELECT value FROM bench_dotnet WHERE id = 's:' || :k AND expiresattime >= now();
\endpipeline
