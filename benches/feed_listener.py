"""Listens on pg_cache_invalidation until SIGTERM, then prints what it heard:
  count:    notifications received
  latency:  p50 and p99 (ms) from setting a key 'lat:<µs since the epoch>' to hearing it
Connection: the libpq environment (PGHOST, PGPORT, PGUSER) and the database given as argument.
"""

import signal
import statistics
import sys
import time

import psycopg

mode, database = sys.argv[1], sys.argv[2]
stopping = False


def stop(*_):
    global stopping
    stopping = True


signal.signal(signal.SIGTERM, stop)
heard = 0
latencies = []
with psycopg.connect(dbname=database, autocommit=True) as conn:
    conn.execute("LISTEN pg_cache_invalidation")
    print("listening", flush=True)
    while not stopping:
        for notification in conn.notifies(timeout=0.2):
            now = time.time()
            heard += 1
            if mode == "latency":
                for key in notification.payload.split('"lat:')[1:]:
                    latencies.append((now - int(key.split('"')[0]) / 1e6) * 1000)
if mode == "count":
    print(heard)
else:
    cuts = statistics.quantiles(latencies, n=100)
    print(f"{len(latencies)} {cuts[49]:.2f} {cuts[98]:.2f}")
