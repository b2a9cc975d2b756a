"""L1Cache: two processes. A (tests/l1_process.py) keeps an L1 in front of PgCache; this process,
B, changes entries with pg_cache.notify on. A must serve every change within 100 ms and never the
old value again: after a set, a removal by tag, a prefix removal, a clear, and a set made while
A's listening connection is being terminated (A reconnects and flushes)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psycopg
import pytest

from pg_cache_client import NEVER, L1Cache, PgCache

WITHIN_SECONDS = 0.1
HERE = os.path.dirname(os.path.abspath(__file__))


class ProcessA:
    def __init__(self, url: str):
        self.process = subprocess.Popen([sys.executable, os.path.join(HERE, "l1_process.py"), url],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout.readline().strip() == "ready", "A did not start listening"

    def ask(self, command: str) -> str:
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def get(self, key: str) -> tuple[str, str]:
        value, source = self.ask(f"get {key}").rsplit(" ", 1)
        return value, source

    def close(self) -> None:
        if self.process.poll() is None:
            self.ask("quit")
        self.process.wait(timeout=10)


def served_within(a: ProcessA, key: str, expected: str) -> float | None:
    """Seconds until A serves `expected`, asking without pause; None after a second or if a stale
    value comes back after it."""
    start = time.monotonic()
    while time.monotonic() - start < 1.0:
        if a.get(key)[0] == expected:
            elapsed = time.monotonic() - start
            if any(a.get(key)[0] != expected for _ in range(20)):
                return None
            return elapsed
    return None


def cached_in_l1(a: ProcessA, key: str, value: str) -> bool:
    """A serves value from its L1 within a second, never another value. (The invalidation of B's
    last write may still be on its way: until it has arrived, A reads from pg_cache.)"""
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        served, source = a.get(key)
        if served != value:
            return False
        if source == "l1":
            return True
    return False


@pytest.fixture
def b(url: str, raw):
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SET pg_cache.notify = on")
        yield conn


def test_two_processes(url: str, b: psycopg.Connection) -> None:
    b.execute("SELECT cache_set('l1:k', 'v1', ttl => '1 hour', tags => '{users}')")
    b.execute("SELECT cache_set('l1:other', 'o1', ttl => '1 hour')")
    a = ProcessA(url)
    try:
        assert cached_in_l1(a, "l1:k", "v1")

        b.execute("SELECT cache_set('l1:k', 'v2', ttl => '1 hour', tags => '{users}')")
        elapsed = served_within(a, "l1:k", "v2")
        assert elapsed is not None and elapsed <= WITHIN_SECONDS, f"set: {elapsed}"

        assert cached_in_l1(a, "l1:k", "v2") and cached_in_l1(a, "l1:other", "o1")
        b.execute("SELECT cache_remove_by_tag('{users}')")
        elapsed = served_within(a, "l1:k", "NULL")
        assert elapsed is not None and elapsed <= WITHIN_SECONDS, f"tag: {elapsed}"
        assert a.get("l1:other") == ("o1", "l1"), "an untagged entry stays in A's L1"

        b.execute("SELECT cache_set('l1:p:1', 'p1', ttl => '1 hour')")
        assert cached_in_l1(a, "l1:p:1", "p1")
        b.execute("SELECT cache_remove_prefix('l1:p:')")
        elapsed = served_within(a, "l1:p:1", "NULL")
        assert elapsed is not None and elapsed <= WITHIN_SECONDS, f"prefix: {elapsed}"

        b.execute("SELECT cache_set('l1:k', 'v3', ttl => '1 hour')")
        assert cached_in_l1(a, "l1:k", "v3")
        b.execute("SELECT cache_clear()")
        elapsed = served_within(a, "l1:other", "NULL")
        assert elapsed is not None and elapsed <= WITHIN_SECONDS and a.get("l1:k")[0] == "NULL", f"clear: {elapsed}"

        b.execute("SELECT cache_set('l1:k', 'v4', ttl => '1 hour')")
        assert cached_in_l1(a, "l1:k", "v4")
        pid = int(a.ask("listener_pid"))
        # B ends A's listening session and writes before A can be listening again.
        b.execute("SELECT pg_terminate_backend(%s)", (pid,))
        b.execute("SELECT cache_set('l1:k', 'v5', ttl => '1 hour')")
        elapsed = served_within(a, "l1:k", "v5")
        assert elapsed is not None and elapsed <= WITHIN_SECONDS, f"terminated listener: {elapsed}"
        deadline = time.monotonic() + 5
        while a.ask("listener_pid") in ("down", str(pid)) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert a.ask("listener_pid") not in ("down", str(pid)), "A's listener reconnected"
        assert cached_in_l1(a, "l1:k", "v5")
        b.execute("SELECT cache_set('l1:k', 'v6', ttl => '1 hour')")
        elapsed = served_within(a, "l1:k", "v6")
        assert elapsed is not None and elapsed <= WITHIN_SECONDS, f"after reconnecting: {elapsed}"
        hits, misses, _ = (int(x) for x in a.ask("stats").split())
        assert hits > 0 and misses > 0
    finally:
        a.close()


def test_in_process_rules(url: str, raw: psycopg.Connection) -> None:
    with PgCache(url, max_size=2, notify=True) as client, L1Cache(client, max_entries=2, max_seconds=30) as l1:
        assert l1.wait_listening(5)
        # written without notifications, so that none arrives during the reads below
        PgCache(raw).set_many({"r:1": b"1", "r:2": b"2", "r:3": b"3"}, ttl=60)
        assert l1.get_with_source("r:1") == (b"1", False)
        assert l1.get_with_source("r:1") == (b"1", True)
        l1.get("r:2")
        assert l1.get_with_source("r:1") == (b"1", True)  # r:1 is now the most recent
        l1.get("r:3")  # max_entries 2: the least recent (r:2) goes
        stats = l1.stats()
        assert stats.entries == 2 and stats.hits == 2 and stats.misses == 3
        assert l1.get_with_source("r:3") == (b"3", True)
        assert l1.get_with_source("r:1") == (b"1", True)
        assert l1.get_with_source("r:2") == (b"2", False)
        # a write through the L1 is read back at once by this process
        l1.set("r:1", b"new", ttl=60)
        assert l1.get("r:1") == b"new"
        assert l1.remove("r:1") is True
        assert l1.get("r:1") is None
        # the copy does not outlive the shared entry's expiry
        client.set("r:short", b"s", ttl=0.4)
        assert l1.get("r:short") == b"s"
        deadline = time.monotonic() + 3
        while l1.get("r:short") is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert l1.get("r:short") is None
        # an entry that never expires is kept (for max_seconds), like any other; written without
        # a notification, which could arrive between the two reads
        PgCache(raw).set("r:forever", b"f", ttl=NEVER)
        assert l1.get_with_source("r:forever") == (b"f", False)
        assert l1.get_with_source("r:forever") == (b"f", True)


def test_async_client(url: str, b: psycopg.Connection) -> None:
    import asyncio

    from pg_cache_client import AsyncPgCache

    async def main() -> None:
        async with AsyncPgCache(url, max_size=2) as client:
            l1 = L1Cache(client)
            try:
                assert l1.wait_listening(5)
                await client.set("al:k", b"v", ttl=60)
                assert await l1.aget_with_source("al:k") == (b"v", False)
                assert await l1.aget_with_source("al:k") == (b"v", True)
                b.execute("SELECT cache_set('al:k', 'w', ttl => '1 hour')")
                deadline = time.monotonic() + 1
                while await l1.aget("al:k") != b"w" and time.monotonic() < deadline:
                    await asyncio.sleep(0.005)
                assert await l1.aget("al:k") == b"w"
            finally:
                l1.close()

    asyncio.run(main())
