"""get_or_compute, sync and async: leases (cache_get_or_lease / cache_fill / cache_release) where
the server has them, the cache_add lock where it does not."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from typing import Callable

import psycopg
import pytest

from pg_cache_client import AsyncPgCache, PgCache, PgCacheError
from pg_cache_client._compute import lock_key


def stats(raw: psycopg.Connection) -> dict[str, int]:
    row = raw.execute("SELECT to_jsonb(s) FROM cache_stats() AS s").fetchone()[0]
    return {name: row.get(name) for name in ("leases_granted", "lease_waits", "fills_rejected", "stale_served")}


def lock_keys(raw: psycopg.Connection) -> int:
    return raw.execute("SELECT count(*) FROM cache_keys('pg_cache_client:lock:')").fetchone()[0]


def hold_lease(raw: psycopg.Connection, key: str, lease_ttl: str = "30 s"):
    """Takes the key's lease as another process would, and returns it."""
    status, lease = raw.execute("SELECT status, lease FROM cache_get_or_lease(%s, lease_ttl => %s::interval)",
                                (key, lease_ttl)).fetchone()
    assert status == "miss"
    return lease


def run_threads(targets: list[Callable[[], None]], timeout: float = 30) -> None:
    threads = [threading.Thread(target=target) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads)


@pytest.fixture(autouse=True)
def _leases(raw: psycopg.Connection) -> None:
    """Every test here needs the lease functions working (the cluster preloads pg_cache), and
    starts with zeroed counters."""
    assert raw.execute("SELECT count(*) FROM pg_proc WHERE proname IN "
                       "('cache_get_or_lease', 'cache_fill', 'cache_release')").fetchone()[0] == 3
    raw.execute("SELECT cache_stats_reset()")


# --- one computation ---------------------------------------------------------------------------

def test_sixteen_threads_on_a_cold_key_compute_once(url: str, raw: psycopg.Connection) -> None:
    calls = []

    def factory() -> bytes:
        calls.append(threading.get_ident())
        time.sleep(0.3)
        return b"computed"

    results: list[bytes] = []
    clients = [PgCache(url, max_size=1) for _ in range(16)]  # a connection each: 16 processes' worth
    try:
        for c in clients:
            assert c.features().leases
        barrier = threading.Barrier(16)

        def call(c: PgCache) -> None:
            barrier.wait()
            results.append(c.get_or_compute("cold", factory, ttl=60, lease_ttl=30, wait=20))

        started = time.monotonic()
        run_threads([lambda c=c: call(c) for c in clients])
        elapsed = time.monotonic() - started
    finally:
        for c in clients:
            c.close()
    assert len(calls) == 1
    assert results == [b"computed"] * 16
    # The waiters woke at the fill's commit: not at lease_ttl (30 s) nor at wait (20 s).
    assert elapsed < 5, elapsed
    counted = stats(raw)
    # One lease; the others waited in the server and got the value ('hit'), never 'wait'
    # (polling would have been answered 'wait' again and again).
    assert counted["leases_granted"] == 1 and counted["lease_waits"] == 0, counted
    assert counted["fills_rejected"] == 0
    assert lock_keys(raw) == 0  # no fallback lock
    assert raw.execute("SELECT cache_get('cold'), cache_ttl('cold') > interval '50 s'").fetchone() == \
        (b"computed", True)


def test_threads_sharing_one_client_share_one_call(url: str, raw: psycopg.Connection) -> None:
    # 16 threads on a client of 2 connections: were each to wait in the server, the waiters would
    # hold both connections and the computing thread could not fill until lease_ttl.
    calls = []

    def factory() -> bytes:
        calls.append(1)
        time.sleep(0.3)
        return b"shared"

    results: list[bytes] = []
    with PgCache(url, max_size=2) as cache:
        started = time.monotonic()
        run_threads([lambda: results.append(cache.get_or_compute("shared", factory, ttl=60, lease_ttl=30, wait=20))
                     for _ in range(16)])
        elapsed = time.monotonic() - started
    assert len(calls) == 1 and results == [b"shared"] * 16
    assert elapsed < 5, elapsed
    assert stats(raw)["leases_granted"] == 1


def test_a_hit_does_not_compute(client: PgCache) -> None:
    client.set("hit", b"cached", ttl=60)
    assert client.get_or_compute("hit", lambda: b"never", beta=0) == b"cached"


# --- failures ----------------------------------------------------------------------------------

def test_a_failing_factory_releases_the_lease(client: PgCache, raw: psycopg.Connection) -> None:
    def failing() -> bytes:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        client.get_or_compute("fail", failing, ttl=60, lease_ttl=30)
    # Released: the next caller gets the lease at once instead of waiting 30 s for it.
    started = time.monotonic()
    assert client.get_or_compute("fail", lambda: b"second", ttl=60, wait=20) == b"second"
    assert time.monotonic() - started < 1
    assert stats(raw)["leases_granted"] == 2


def test_a_waiter_computes_as_soon_as_the_holder_fails(url: str, raw: psycopg.Connection) -> None:
    computing = threading.Event()
    errors: list[BaseException] = []

    def failing() -> bytes:
        computing.set()
        time.sleep(0.3)
        raise RuntimeError("boom")

    def holder() -> None:
        with PgCache(url, max_size=1) as c:
            try:
                c.get_or_compute("fail2", failing, ttl=60, lease_ttl=30)
            except RuntimeError as error:
                errors.append(error)

    thread = threading.Thread(target=holder)
    thread.start()
    assert computing.wait(10)
    with PgCache(url, max_size=1) as other:
        started = time.monotonic()
        assert other.get_or_compute("fail2", lambda: b"second", ttl=60, wait=20) == b"second"
        elapsed = time.monotonic() - started
    thread.join(10)
    assert len(errors) == 1
    assert elapsed < 2, elapsed  # woken by the release, not by lease_ttl (30 s)


def test_a_fill_refused_after_a_concurrent_set_keeps_the_set(client: PgCache, raw: psycopg.Connection) -> None:
    def factory() -> bytes:
        # Another process writes the key while this one computes: its value is newer.
        raw.execute("SELECT cache_set('raced', 'theirs'::bytea, ttl => '60 s')")
        return b"mine"

    assert client.get_or_compute("raced", factory, ttl=60) == b"mine"  # the caller gets its value
    assert client.get("raced") == b"theirs"                             # the set's stays
    assert stats(raw)["fills_rejected"] == 1


# --- waiting -----------------------------------------------------------------------------------

def test_after_wait_it_computes_without_a_lease(client: PgCache, raw: psycopg.Connection) -> None:
    lease = hold_lease(raw, "stuck")  # someone computes and never finishes
    started = time.monotonic()
    assert client.get_or_compute("stuck", lambda: b"mine", ttl=60, wait=0.3) == b"mine"
    assert 0.3 <= time.monotonic() - started < 2
    assert client.get("stuck") == b"mine"
    # its write cancelled the other lease: the late computation does not overwrite it
    assert raw.execute("SELECT cache_fill('stuck', 'late'::bytea, %s, ttl => '60 s')", (lease,)).fetchone()[0] is False
    assert client.get("stuck") == b"mine"
    assert stats(raw)["lease_waits"] == 1  # one 'wait' answer, after waiting in the server


def test_wait_zero_does_not_wait(client: PgCache, raw: psycopg.Connection) -> None:
    hold_lease(raw, "nowait")
    started = time.monotonic()
    assert client.get_or_compute("nowait", lambda: b"mine", ttl=60, wait=0) == b"mine"
    assert time.monotonic() - started < 0.25


def test_a_waiter_gets_the_fill_of_another_process(client: PgCache, raw: psycopg.Connection, url: str) -> None:
    lease = hold_lease(raw, "filled")

    def fill_later() -> None:
        time.sleep(0.3)
        with psycopg.connect(url, autocommit=True) as other:
            assert other.execute("SELECT cache_fill('filled', 'theirs'::bytea, %s, ttl => '60 s')",
                                 (lease,)).fetchone()[0] is True

    thread = threading.Thread(target=fill_later)
    thread.start()
    started = time.monotonic()
    assert client.get_or_compute("filled", lambda: b"never", ttl=60, wait=20) == b"theirs"
    assert 0.25 <= time.monotonic() - started < 3
    thread.join(10)


def test_in_a_read_committed_transaction_it_waits(url: str, raw: psycopg.Connection) -> None:
    lease = hold_lease(raw, "rc")

    def fill_later() -> None:
        time.sleep(0.3)
        with psycopg.connect(url, autocommit=True) as other:
            other.execute("SELECT cache_fill('rc', 'theirs'::bytea, %s, ttl => '60 s')", (lease,))

    with psycopg.connect(url) as conn:  # not autocommit: the client runs in its transaction
        cache = PgCache(conn)
        conn.execute("SELECT 1")  # the transaction is open
        thread = threading.Thread(target=fill_later)
        thread.start()
        started = time.monotonic()
        assert cache.get_or_compute("rc", lambda: b"never", ttl=60, wait=20) == b"theirs"
        assert time.monotonic() - started < 3
        thread.join(10)
        conn.commit()


def test_in_a_repeatable_read_transaction_it_neither_waits_nor_fails(url: str, raw: psycopg.Connection) -> None:
    # The server neither grants leases nor waits there (0A000, which would abort the caller's
    # transaction): the client only reads, and computes.
    hold_lease(raw, "rr")
    with psycopg.connect(url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        cache = PgCache(conn)
        conn.execute("SELECT 1")
        started = time.monotonic()
        assert cache.get_or_compute("rr", lambda: b"mine", ttl=60, wait=20) == b"mine"
        assert time.monotonic() - started < 1
        assert conn.execute("SELECT 1").fetchone() == (1,)  # the transaction goes on
        conn.commit()
    assert raw.execute("SELECT cache_get('rr')").fetchone()[0] == b"mine"


def test_a_cold_key_in_a_repeatable_read_transaction_is_computed_without_a_lease(
        url: str, raw: psycopg.Connection) -> None:
    # The server grants no lease there (0A000: a value computed from the transaction's snapshot
    # could predate a committed write): the client only reads, computes, and the transaction goes
    # on.
    with psycopg.connect(url) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        cache = PgCache(conn)
        conn.execute("SELECT 1")
        assert cache.get_or_compute("rr-cold", lambda: b"mine", ttl=60) == b"mine"
        assert conn.execute("SELECT 1").fetchone() == (1,)
        conn.commit()
    assert raw.execute("SELECT cache_get('rr-cold')").fetchone()[0] == b"mine"
    assert raw.execute("SELECT status FROM cache_get_or_lease('rr-cold')").fetchone()[0] == "hit"


# --- early refresh (XFetch) --------------------------------------------------------------------

def test_early_refresh_computes_the_next_value(client: PgCache, raw: psycopg.Connection) -> None:
    def first() -> bytes:
        time.sleep(0.05)  # the server learns how long a computation takes from this fill
        return b"v1"

    assert client.get_or_compute("xf", first, ttl=60) == b"v1"
    # beta this large makes every hit of an entry with a known computing time a refresh
    assert client.get_or_compute("xf", lambda: b"v2", ttl=60, beta=1e9) == b"v2"
    assert client.get("xf") == b"v2"

    def failing() -> bytes:
        raise RuntimeError("backend down")

    # A failed early refresh: the live value, and the lease released ...
    assert client.get_or_compute("xf", failing, ttl=60, beta=1e9) == b"v2"
    # ... so that the next hit may refresh again (a held lease would make it a plain hit).
    assert client.get_or_compute("xf", lambda: b"v3", ttl=60, beta=1e9) == b"v3"
    assert client.get("xf") == b"v3"
    # beta=0: never early
    assert client.get_or_compute("xf", lambda: b"v4", ttl=60, beta=0) == b"v3"
    assert stats(raw)["leases_granted"] == 4


# --- without leases ----------------------------------------------------------------------------

def test_not_preloaded_falls_back_to_the_lock(client: PgCache, raw: psycopg.Connection) -> None:
    # A server with the functions but without pg_cache in shared_preload_libraries answers 55000.
    real = client._execute
    asked = []

    def execute(call):
        if call.function == "cache_get_or_lease":
            asked.append(call.key)
            raise PgCacheError("cache_get_or_lease: leases need pg_cache in shared_preload_libraries",
                               sqlstate="55000", key=call.key, function=call.function)
        return real(call)

    client._execute = execute  # type: ignore[method-assign]
    assert client.get_or_compute("np", lambda: b"v", ttl=60) == b"v"
    assert client.features().leases is False
    assert client.get_or_compute("np2", lambda: b"w", ttl=60) == b"w"
    assert asked == ["np"]  # asked once, then the lock protocol
    assert raw.execute("SELECT cache_get('np'), cache_get('np2')").fetchone() == (b"v", b"w")


def test_a_full_lease_table_computes_without_a_lease(client: PgCache) -> None:
    real = client._execute

    def execute(call):
        if call.function == "cache_get_or_lease":
            raise PgCacheError("cache_get_or_lease: 1024 leases are held already", sqlstate="53400",
                               key=call.key, function=call.function)
        return real(call)

    client._execute = execute  # type: ignore[method-assign]
    assert client.get_or_compute("full", lambda: b"v", ttl=60) == b"v"
    assert client.get("full") == b"v"
    assert client.features().leases is True


def without_leases(cache: PgCache) -> PgCache:
    cache._features = dataclasses.replace(cache.features(), leases=False, lease_grace=False)
    return cache


def test_lock_fallback_computes_once(url: str, raw: psycopg.Connection) -> None:
    calls = []
    release = threading.Event()

    def factory() -> bytes:
        calls.append(1)
        release.wait(5)
        return b"computed"

    results: list[bytes] = []
    clients = [without_leases(PgCache(url, max_size=1)) for _ in range(6)]
    try:
        threads = [threading.Thread(target=lambda c=c: results.append(c.get_or_compute("lk", factory, ttl=60)))
                   for c in clients]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 5
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
        assert raw.execute("SELECT cache_get('lk')").fetchone()[0] is None
        assert lock_keys(raw) == 1
        release.set()
        for thread in threads:
            thread.join(10)
    finally:
        for c in clients:
            c.close()
    assert results == [b"computed"] * 6 and len(calls) == 1
    assert lock_keys(raw) == 0
    assert stats(raw)["leases_granted"] == 0


def test_lock_fallback_failure_and_wait(client: PgCache) -> None:
    without_leases(client)

    def failing() -> bytes:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        client.get_or_compute("lkf", failing, ttl=60)
    started = time.monotonic()
    assert client.get_or_compute("lkf", lambda: b"second", ttl=60, wait=30) == b"second"
    assert time.monotonic() - started < 1
    # someone holds the lock and never finishes
    client.add(lock_key("lks"), b"other", ttl=60)
    started = time.monotonic()
    assert client.get_or_compute("lks", lambda: b"mine", ttl=60, wait=0.3) == b"mine"
    assert 0.3 <= time.monotonic() - started < 2


def test_arguments(client: PgCache) -> None:
    for bad in ({"lease_ttl": 0}, {"wait": -1}, {"beta": -1.0}, {"beta": float("nan")}, {"grace": -1}):
        with pytest.raises(ValueError):
            client.get_or_compute("args", lambda: b"v", **bad)
    with pytest.deprecated_call():
        assert client.get_or_compute("args", lambda: b"v", lock_ttl=5) == b"v"


# --- async -------------------------------------------------------------------------------------

def test_async_sixteen_tasks_on_a_cold_key_compute_once(url: str, raw: psycopg.Connection) -> None:
    calls = []

    async def factory() -> bytes:
        calls.append(1)
        await asyncio.sleep(0.3)
        return b"computed"

    async def main() -> tuple[list[bytes], float]:
        caches = [AsyncPgCache(url, min_size=1, max_size=1) for _ in range(16)]  # a connection each
        try:
            for c in caches:
                await c.open()
                assert (await c.features()).leases
            started = time.monotonic()
            results = await asyncio.gather(*(c.get_or_compute("acold", factory, ttl=60, lease_ttl=30, wait=20)
                                             for c in caches))
            return list(results), time.monotonic() - started
        finally:
            for c in caches:
                await c.close()

    results, elapsed = asyncio.run(main())
    assert len(calls) == 1 and results == [b"computed"] * 16
    assert elapsed < 5, elapsed
    counted = stats(raw)
    assert counted["leases_granted"] == 1 and counted["lease_waits"] == 0, counted


def test_async_tasks_sharing_one_client(url: str, raw: psycopg.Connection) -> None:
    calls = []

    def factory() -> bytes:  # a plain function works too
        calls.append(1)
        time.sleep(0.3)
        return b"shared"

    async def main() -> tuple[list[bytes], float]:
        async with AsyncPgCache(url, max_size=2) as cache:
            started = time.monotonic()
            results = await asyncio.gather(*(cache.get_or_compute("ashared", factory, ttl=60, lease_ttl=30, wait=20)
                                             for _ in range(16)))
            return list(results), time.monotonic() - started

    results, elapsed = asyncio.run(main())
    assert len(calls) == 1 and results == [b"shared"] * 16
    assert elapsed < 5, elapsed


def test_async_failure_and_cancellation_release_the_lease(url: str, raw: psycopg.Connection) -> None:
    async def main() -> None:
        async with AsyncPgCache(url, max_size=2) as cache:
            async def failing() -> bytes:
                raise RuntimeError("boom")

            with pytest.raises(RuntimeError):
                await cache.get_or_compute("afail", failing, ttl=60, lease_ttl=30)
            started = time.monotonic()
            assert await cache.get_or_compute("afail", lambda: b"second", ttl=60, wait=20) == b"second"
            assert time.monotonic() - started < 1

            computing = asyncio.Event()

            async def forever() -> bytes:
                computing.set()
                await asyncio.sleep(3600)
                return b"never"

            task = asyncio.create_task(cache.get_or_compute("acancel", forever, ttl=60, lease_ttl=30))
            await computing.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            started = time.monotonic()
            assert await cache.get_or_compute("acancel", lambda: b"next", ttl=60, wait=20) == b"next"
            assert time.monotonic() - started < 1

    asyncio.run(main())
    assert stats(raw)["leases_granted"] == 4


# --- grace (stale-while-revalidate) ------------------------------------------------------------

def test_grace_serves_the_expired_value_while_one_caller_recomputes(url: str, raw: psycopg.Connection) -> None:
    # Needs cache_get_or_lease(grace => ...) and pg_cache.stale_retention on the test database
    # (tests/python.sh sets it), so that the eviction worker keeps expired entries.
    assert raw.execute("SELECT 'grace' = ANY (proargnames) FROM pg_proc WHERE proname = 'cache_get_or_lease'"
                       ).fetchone()[0] is True
    assert raw.execute("SELECT setting::int FROM pg_settings WHERE name = 'pg_cache.stale_retention'"
                       ).fetchone()[0] >= 5
    raw.execute("SELECT cache_set('sw', 'old'::bytea, ttl => '0.5 s')")
    time.sleep(0.7)
    assert raw.execute("SELECT cache_get('sw')").fetchone()[0] is None  # expired ...
    assert raw.execute("SELECT count(*) FROM pg_cache_entries WHERE key = 'sw'").fetchone()[0] == 1  # ... and kept

    calls = []
    computing = threading.Event()
    finished: list[float] = []

    def factory() -> bytes:
        calls.append(1)
        computing.set()
        time.sleep(1.5)
        finished.append(time.monotonic())
        return b"new"

    clients = [PgCache(url, max_size=1) for _ in range(18)]
    try:
        for c in clients:
            assert c.features().lease_grace  # connected before the clock starts
        holder, waiter, stale_callers = clients[0], clients[1], clients[2:]
        results: dict[str, list] = {"holder": [], "stale": [], "waiter": []}

        def hold() -> None:
            results["holder"].append(holder.get_or_compute("sw", factory, ttl=60, grace=60, lease_ttl=30, wait=20))

        def stale(c: PgCache) -> None:
            started = time.monotonic()
            value = c.get_or_compute("sw", factory, ttl=60, grace=60, wait=20)
            results["stale"].append((value, started, time.monotonic()))

        def wait_for_it() -> None:  # no grace: waits for the fill
            results["waiter"].append(waiter.get_or_compute("sw", factory, ttl=60, wait=20))

        holding = threading.Thread(target=hold)
        holding.start()
        assert computing.wait(10)
        run_threads([wait_for_it] + [lambda c=c: stale(c) for c in stale_callers])
        holding.join(10)
    finally:
        for c in clients:
            c.close()
    assert len(calls) == 1
    assert results["holder"] == [b"new"] and results["waiter"] == [b"new"]
    assert [value for value, _, _ in results["stale"]] == [b"old"] * 16
    for _, started, done in results["stale"]:
        assert done < finished[0]       # answered while the computation was still running ...
        assert done - started < 0.75    # ... at once, without waiting for it
    assert raw.execute("SELECT cache_get('sw')").fetchone()[0] == b"new"
    counted = stats(raw)
    assert counted["stale_served"] == 16 and counted["leases_granted"] == 1, counted
