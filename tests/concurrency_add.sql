-- tests/reliability.sh: 8 clients add random keys of 1,000; a winner is recorded, and the
-- recorded table's primary key fails the run if a key is won twice.
\set k random(1, 1000)
INSERT INTO add_winners SELECT :k WHERE cache_add('add:' || :k, convert_to(:client_id::text, 'UTF8'), ttl => '1 hour');
