-- The expiry rules. Short intervals and pg_sleep stand in for minutes.
SET pg_cache.refresh_granularity = 0;

-- ttl alone: absolute, hits do not move it
SELECT cache_set('absolute', 'v', ttl => '30 min');
SELECT sliding IS NULL AS no_window, expires_at = absolute_expires_at AS fixed FROM pg_cache_entries WHERE key = 'absolute';
SELECT expires_at AS before FROM pg_cache_entries WHERE key = 'absolute' \gset
SELECT pg_sleep(0.1);
SELECT cache_get('absolute') = 'v' AS hit;
SELECT expires_at = :'before' AS unmoved FROM pg_cache_entries WHERE key = 'absolute';

-- expires_at alone: absolute at that time
SELECT cache_set('at', 'v', expires_at => '2100-01-01 00:00:00+00');
SELECT expires_at = '2100-01-01 00:00:00+00' AS at_time FROM pg_cache_entries WHERE key = 'at';

-- both: the sliding expiry is capped by the absolute one at set time already
SELECT cache_set('capped', 'v', ttl => '2 min', sliding => '1 hour');
SELECT cache_ttl('capped') BETWEEN '1 min 59 s' AND '2 min' AS capped_at_set;

-- The .NET example: set with ttl 30 min and sliding 5 min at 10:00, read at 10:01: the expiry is
-- 10:06 (read time + 5 min), not 10:30. Here the read comes 1.2 s after the set.
SELECT cache_set('dotnet', 'v', ttl => '30 min', sliding => '5 min');
SELECT clock_timestamp() AS set_at \gset
SELECT pg_sleep(1.2);
SELECT clock_timestamp() AS read_at \gset
SELECT cache_get('dotnet') = 'v' AS hit;
-- The hit is recorded in shared memory, not written: the row keeps its expiry until the worker
-- (here cache_evict_expired, which writes pending touches first) writes it; cache_ttl sees it.
SELECT expires_at < timestamptz :'read_at' + interval '5 min' AS not_written_by_the_read,
       cache_ttl('dotnet') > interval '4 min 59 s' AS ttl_slid
FROM pg_cache_entries WHERE key = 'dotnet';
SELECT cache_evict_expired() >= 0 AS touches_written;
SELECT expires_at >= timestamptz :'read_at' + interval '5 min' AS slid_to_read_plus_window,
       expires_at < timestamptz :'set_at' + interval '6 min' AS not_to_the_absolute_cap,
       absolute_expires_at > timestamptz :'set_at' + interval '29 min' AS cap_kept
FROM pg_cache_entries WHERE key = 'dotnet';

-- on hits the sliding expiry never passes the absolute one: an entry with a 1.5 s window and a
-- 2 s cap, read at 0.5 s and 1 s, is gone at 2 s although its last read was less than 1.5 s before
SELECT cache_set('cap on read', 'v', ttl => '2 s', sliding => '1.5 s');
SELECT pg_sleep(0.5);
SELECT cache_get('cap on read') = 'v' AS hit_at_0_5;
SELECT pg_sleep(0.5);
SELECT cache_get('cap on read') = 'v' AS hit_at_1_0;
SELECT cache_evict_expired() >= 0 AS touches_written;
SELECT expires_at = absolute_expires_at AS capped FROM pg_cache_entries WHERE key = 'cap on read';
SELECT pg_sleep(1.1);
SELECT cache_get('cap on read') IS NULL AS gone_at_2_1;

-- sliding alone: kept alive by reads (get and refresh) past its window, gone a window after the
-- last one
SELECT cache_set('slider', 'v', sliding => '2 s');
SELECT pg_sleep(0.8);
SELECT cache_get('slider') = 'v' AS hit_at_0_8;
SELECT pg_sleep(0.8);
SELECT cache_refresh('slider') AS refreshed_at_1_6;
SELECT pg_sleep(0.8);
SELECT cache_get('slider') = 'v' AS hit_at_2_4;
SELECT pg_sleep(2.1);
SELECT cache_get('slider') IS NULL AS gone_after_window;

-- an expired entry is never returned, refreshed, removed as live or given a ttl, evicted or not
SELECT cache_set('stale', 'v', ttl => '100 ms');
SELECT pg_sleep(0.15);
SELECT cache_get('stale') IS NULL AS not_returned, cache_refresh('stale') AS refreshed,
       cache_ttl('stale') IS NULL AS no_ttl;
SELECT count(*) AS still_stored FROM pg_cache_entries WHERE key = 'stale';
SELECT cache_remove('stale') AS removed_live;

-- the clock is the server's wall clock, not the transaction start: inside one transaction an
-- entry expires on time
BEGIN;
SELECT cache_set('in transaction', 'v', ttl => '1 s');
SELECT cache_get('in transaction') = 'v' AS hit;
SELECT pg_sleep(1.1);
SELECT cache_get('in transaction') IS NULL AS expired_within_transaction;
COMMIT;

-- cache_ttl does not slide; cache_get and cache_refresh do
SELECT cache_set('watch', 'v', sliding => '2 s');
SELECT ctid AS before FROM pg_cache_entries WHERE key = 'watch' \gset
SELECT pg_sleep(0.5);
SELECT cache_ttl('watch') BETWEEN '0.5 s' AND '1.5 s' AS ttl_counts_down;
SELECT ctid = :'before' AS ttl_did_not_write FROM pg_cache_entries WHERE key = 'watch';
SELECT cache_refresh('watch');
SELECT ctid = :'before' AS refresh_did_not_write, cache_ttl('watch') > '1.9 s' AS refresh_slid
FROM pg_cache_entries WHERE key = 'watch';
SELECT cache_evict_expired() >= 0 AS touches_written;
SELECT ctid <> :'before' AS written_by_the_worker, cache_ttl('watch') > '1.8 s' AS still_slid
FROM pg_cache_entries WHERE key = 'watch';

-- refresh granularity: a hit that would move the expiry by less is not written back
SET pg_cache.refresh_granularity = '1s';
SELECT cache_set('granular', 'v', sliding => '1 hour');
SELECT ctid AS before FROM pg_cache_entries WHERE key = 'granular' \gset
SELECT cache_get('granular') = 'v' AS hit, cache_refresh('granular') AS refreshed;
SELECT cache_evict_expired() >= 0 AS touches_written;
SELECT ctid = :'before' AS not_rewritten FROM pg_cache_entries WHERE key = 'granular';
SELECT pg_sleep(1.1);
SELECT cache_get('granular') = 'v' AS hit;
SELECT cache_evict_expired() >= 0 AS touches_written;
SELECT ctid <> :'before' AS rewritten_after_a_second FROM pg_cache_entries WHERE key = 'granular';

-- sliding hits never write in the reader's transaction: it gets no transaction id, even with
-- every hit due to slide
SET pg_cache.refresh_granularity = 0;
BEGIN;
SELECT count(cache_get('granular')) AS hits FROM generate_series(1, 20);
SELECT count(*) AS many_hits FROM cache_get_many(ARRAY['granular', 'watch', 'granular']);
SELECT cache_refresh('watch') AS refreshed;
SELECT pg_current_xact_id_if_assigned() IS NULL AS no_transaction_id;
COMMIT;
-- the write of a touch is a HOT update (only expires_at changes, which no index covers)
BEGIN;
SELECT cache_evict_expired() >= 0 AS touches_written;
-- (the counters may include a previous transaction's updates not yet flushed)
SELECT n_tup_upd >= 2 AS touches_wrote, n_tup_hot_upd = n_tup_upd AS all_hot FROM pg_stat_xact_user_tables WHERE relname = 'pg_cache_entries';
COMMIT;

-- a read-only transaction reads the cache; it just does not slide
BEGIN READ ONLY;
SELECT cache_get('granular') = 'v' AS read_only_hit, cache_refresh('granular') AS read_only_refresh;
COMMIT;
RESET pg_cache.refresh_granularity;

-- entries that never expire: expires_at => 'infinity' (and ttl => 'infinity' from PostgreSQL 17)
SELECT cache_set('forever', 'v', expires_at => 'infinity');
SELECT expires_at = 'infinity' AS stored_infinite, sliding IS NULL AS not_sliding
FROM pg_cache_entries WHERE key = 'forever';
SELECT cache_get('forever') = 'v' AS forever_hit, cache_ttl('forever') > interval '1000000 years' AS ttl_unbounded,
       isfinite(cache_ttl('forever')) = (current_setting('server_version_num')::int < 170000) AS ttl_infinite_from_17;
SELECT expires_at = 'infinity' AS listed_infinite FROM cache_keys('forever');
SELECT cache_evict_expired() >= 0 AS evicted, cache_get('forever') = 'v' AS survives_eviction;
-- a sliding window under an infinite cap has no cap
SELECT cache_set('forever sliding', 'v', sliding => '1 hour', expires_at => 'infinity');
SELECT absolute_expires_at IS NULL AS no_cap, expires_at < 'infinity' AS slides
FROM pg_cache_entries WHERE key = 'forever sliding';
-- cache_expire makes a live entry permanent (Redis PERSIST), and finite again
SELECT cache_set('made forever', 'v', ttl => '1 min');
SELECT cache_expire('made forever', expires_at => 'infinity') AS persisted,
       cache_ttl('made forever') > interval '1000000 years' AS now_unbounded;
SELECT cache_expire('made forever', ttl => '1 min') AS finite_again,
       cache_ttl('made forever') <= interval '1 min' AS bounded_again;
-- an absent counter created with no expiry, then counted
SELECT cache_incr('forever counter', expires_at => 'infinity') AS first, cache_incr('forever counter') AS second;
SELECT expires_at = 'infinity' AS counter_never_expires FROM pg_cache_entries WHERE key = 'forever counter';
-- ttl => 'infinity' on PostgreSQL 17 and later
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 170000 THEN
        EXECUTE $q$SELECT cache_set('forever', 'w', ttl => 'infinity')$q$;
    ELSE
        PERFORM cache_set('forever', 'w', expires_at => 'infinity');
    END IF;
END
$$;
SELECT expires_at = 'infinity' AS ttl_infinity_stored, cache_get('forever') = 'w' AS replaced
FROM pg_cache_entries WHERE key = 'forever';
SELECT cache_remove('forever'), cache_remove('forever sliding'), cache_remove('made forever'), cache_remove('forever counter');
