-- tests/reliability.sh: 8 clients take random entries of 1,000; each value delivered is recorded,
-- and the recorded table's primary key fails the run if one is delivered twice.
\set k random(1, 1000)
INSERT INTO taken SELECT convert_from(v, 'UTF8') FROM (SELECT cache_take('take:' || :k) AS v) AS t WHERE v IS NOT NULL;
