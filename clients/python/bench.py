"""Django's cache API on three backends, side by side in one run: pg_cache_client.django.PgCache,
Django's DatabaseCache on the same PostgreSQL (MAX_ENTRIES above the working set, or its default
of 300 turns hits into misses) and Django's RedisCache (redis-py).

Cases, at 1 and 8 processes: get (a hit), set, get_many of 20 keys; ops/s is Django cache calls
per second summed over the processes. Then the churn: new keys with a 60 s timeout at a steady
rate, for pg_cache and DatabaseCache at once, for CHURN seconds; the rows and bytes of each table
afterwards against the live set.

    python bench.py --pg postgresql://postgres@127.0.0.1:5496/bench --redis redis://127.0.0.1:6396/0 \
        --duration 10 --churn 600 --out results/django.md

benches/django.sh starts the PostgreSQL cluster and the Redis server and runs this.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import random
import sys
import time
from datetime import datetime, timezone

from psycopg.conninfo import conninfo_to_dict

DJANGO_TABLE = "django_cache"
BACKENDS = ("pg_cache", "DatabaseCache", "RedisCache")


def configure(pg_url: str, redis_url: str, max_entries: int) -> None:
    import django
    from django.conf import settings

    if settings.configured:
        return
    params = conninfo_to_dict(pg_url)
    settings.configure(
        DATABASES={"default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": params["dbname"], "USER": params.get("user", "postgres"),
            "HOST": params.get("host", "127.0.0.1"), "PORT": params.get("port", "5432"),
            "CONN_MAX_AGE": None,
        }},
        CACHES={
            "pg_cache": {"BACKEND": "pg_cache_client.django.PgCache", "LOCATION": pg_url,
                         "OPTIONS": {"POOL_SIZE": 2}},
            "DatabaseCache": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": DJANGO_TABLE,
                              "OPTIONS": {"MAX_ENTRIES": max_entries}},
            "RedisCache": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": redis_url},
        },
        USE_TZ=True,
    )
    django.setup()


def value_for(i: int) -> str:
    return f"{i:08d}" + "v" * 120  # 128 characters, pickled by every backend


def worker(args: tuple) -> int:
    (pg_url, redis_url, max_entries, backend, case, keys, duration, start_at, seed) = args
    configure(pg_url, redis_url, max_entries)
    from django.core.cache import caches

    cache = caches[backend]
    rng = random.Random(seed)
    names = [f"bench:{i}" for i in range(keys)]
    cache.get(names[0])  # connect before the clock starts
    value = value_for(seed)
    while time.time() < start_at:
        time.sleep(0.001)
    deadline = start_at + duration
    done = 0
    if case == "get":
        while time.time() < deadline:
            for _ in range(50):
                if cache.get(names[rng.randrange(keys)]) is None:
                    raise SystemExit(f"{backend}: a get missed: the working set must be in the cache")
            done += 50
    elif case == "set":
        while time.time() < deadline:
            for _ in range(50):
                cache.set(names[rng.randrange(keys)], value, 3600)
            done += 50
    elif case == "get_many 20":
        while time.time() < deadline:
            for _ in range(10):
                found = cache.get_many([names[rng.randrange(keys)] for _ in range(20)])
                if not found:
                    raise SystemExit(f"{backend}: get_many found nothing")
            done += 10
    return done


def populate(pg_url: str, redis_url: str, max_entries: int, keys: int) -> None:
    configure(pg_url, redis_url, max_entries)
    from django.core.cache import caches

    for backend in BACKENDS:
        cache = caches[backend]
        cache.clear()
        names = [f"bench:{i}" for i in range(keys)]
        for start in range(0, keys, 500):
            cache.set_many({name: value_for(i) for i, name in enumerate(names[start:start + 500], start)}, 3600)
        # every key is there (DatabaseCache culls when its MAX_ENTRIES is passed)
        present = sum(len(cache.get_many(names[s:s + 500])) for s in range(0, keys, 500))
        if present != keys:
            raise SystemExit(f"{backend}: {present} of {keys} keys after populating")


def run_case(ctx, pool_args: tuple, backend: str, case: str, processes: int, duration: float) -> float:
    pg_url, redis_url, max_entries, keys = pool_args
    start_at = time.time() + 2.0 + 0.3 * processes  # every process connected by then
    jobs = [(pg_url, redis_url, max_entries, backend, case, keys, duration, start_at, 1000 * processes + i)
            for i in range(processes)]
    with ctx.Pool(processes) as pool:
        counts = pool.map(worker, jobs)
    return sum(counts) / duration


def churn_worker(args: tuple) -> tuple[int, float]:
    pg_url, redis_url, max_entries, backend, seconds, rate, timeout = args
    configure(pg_url, redis_url, max_entries)
    from django.core.cache import caches

    cache = caches[backend]
    started = time.monotonic()
    done = 0
    value = value_for(0)
    while True:
        now = time.monotonic() - started
        if now >= seconds:
            break
        due = int(now * rate)
        while done < due:
            cache.set(f"churn:{backend}:{done}", value, timeout)
            done += 1
        time.sleep(0.005)
    return done, time.monotonic() - started


def table_sizes(pg_url: str) -> dict[str, tuple[int, int, int]]:
    """(rows, live rows, total bytes) of each backend's table."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        pg_rows, pg_live = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE expires_at > clock_timestamp()) FROM pg_cache_entries").fetchone()
        pg_bytes = conn.execute("SELECT pg_total_relation_size('pg_cache_entries')").fetchone()[0]
        dj_rows, dj_live = conn.execute(
            f"SELECT count(*), count(*) FILTER (WHERE expires > now()) FROM {DJANGO_TABLE}").fetchone()
        dj_bytes = conn.execute(f"SELECT pg_total_relation_size('{DJANGO_TABLE}')").fetchone()[0]
    return {"pg_cache": (pg_rows, pg_live, pg_bytes), "DatabaseCache": (dj_rows, dj_live, dj_bytes)}


def mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pg", required=True, help="PostgreSQL URL of a database with pg_cache")
    parser.add_argument("--redis", required=True, help="redis:// URL")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per case (default 10)")
    parser.add_argument("--processes", default="1,8")
    parser.add_argument("--keys", type=int, default=10_000, help="working set (default 10,000)")
    parser.add_argument("--churn", type=float, default=600.0, help="seconds of churn (default 600; 0: none)")
    parser.add_argument("--churn-rate", type=float, default=100.0, help="new keys per second per backend")
    parser.add_argument("--out", help="Markdown file to write")
    args = parser.parse_args()

    max_entries = args.keys * 100  # far above the working set and the churn
    ctx = mp.get_context("spawn")
    process_counts = [int(p) for p in args.processes.split(",")]
    configure(args.pg, args.redis, max_entries)
    from django.core.management import call_command

    call_command("createcachetable", DJANGO_TABLE, verbosity=0)
    from django.db import connection

    connection.close()

    header = (f"Django cache API, {os.cpu_count()} cores, {datetime.now(timezone.utc):%Y-%m-%d}, "
              f"{args.duration:g} s per case, {args.keys} keys, 128-character values")
    print(header, flush=True)
    with ctx.Pool(1) as pool:
        pool.apply(populate, (args.pg, args.redis, max_entries, args.keys))

    results: dict[tuple[str, str, int], float] = {}
    pool_args = (args.pg, args.redis, max_entries, args.keys)
    for case in ("get", "set", "get_many 20"):
        for processes in process_counts:
            for backend in BACKENDS:
                ops = run_case(ctx, pool_args, backend, case, processes, args.duration)
                results[(case, backend, processes)] = ops
                print(f"{case:12} {backend:14} {processes} processes {ops:10.0f} ops/s", flush=True)

    lines = [f"# {header}", "",
             "ops/s (Django cache calls per second, all processes together); ratios are pg_cache's.", "",
             "| case | processes | pg_cache | DatabaseCache | RedisCache | pg_cache / DatabaseCache | pg_cache / Redis |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for case in ("get", "set", "get_many 20"):
        for processes in process_counts:
            pg, db, redis = (results[(case, b, processes)] for b in BACKENDS)
            lines.append(f"| {case} | {processes} | {pg:.0f} | {db:.0f} | {redis:.0f} | "
                         f"{pg / db:.2f}x | {pg / redis:.2f}x |")

    if args.churn > 0:
        print(f"--- churn: {args.churn:g} s of new keys with a 60 s timeout, {args.churn_rate:g}/s per backend",
              flush=True)
        from django.core.cache import caches

        for backend in ("pg_cache", "DatabaseCache"):
            caches[backend].clear()  # the churn starts from empty tables
        connection.close()
        jobs = [(args.pg, args.redis, max_entries, backend, args.churn, args.churn_rate, 60)
                for backend in ("pg_cache", "DatabaseCache")]
        with ctx.Pool(2) as pool:
            churned = pool.map(churn_worker, jobs)
        sizes = table_sizes(args.pg)
        lines += ["", f"Churn: {args.churn:g} s of sets of new keys with a 60 s timeout, "
                  f"{args.churn_rate:g} per second to each backend at once (MAX_ENTRIES {max_entries}):", "",
                  "| backend | sets | live rows | rows in the table | table size |", "|---|---:|---:|---:|---:|"]
        for backend, (done, took) in zip(("pg_cache", "DatabaseCache"), churned):
            rows, live, size = sizes[backend]
            lines.append(f"| {backend} | {done} ({done / took:.0f}/s) | {live} | {rows} | {mib(size)} |")
            print(f"{backend}: {done} sets, {live} live rows, {rows} rows, {mib(size)}", flush=True)
    lines += ["", f"Command: `python clients/python/bench.py --duration {args.duration:g} --churn {args.churn:g} "
              f"--keys {args.keys}` (benches/django.sh)"]
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    if args.out:
        with open(args.out, "w") as out:
            out.write(text)


if __name__ == "__main__":
    sys.exit(main())
