"""Two processes: A (l1_cache.py serve) keeps an L1 cache; this process, B, changes entries through
its own connection with pg_cache.notify on. A must serve each change within 100 ms: after a set,
a removal by tag, a clear, and after its listening connection is terminated while B writes.
Exits non-zero on any stale value.
"""

import os
import subprocess
import sys
import time

import psycopg

URL = os.environ.get("PG_CACHE_URL", "postgresql://postgres@127.0.0.1:5499/pg_cache")
HERE = os.path.dirname(os.path.abspath(__file__))
WITHIN_SECONDS = 0.1


class ProcessA:
    def __init__(self):
        self.process = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "l1_cache.py"), "serve"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        if self.process.stdout.readline().strip() != "ready":
            sys.exit("A did not start listening")

    def ask(self, command):
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self.process.stdout.readline().strip()

    def get(self, key):
        value, source = self.ask(f"get {key}").rsplit(" ", 1)
        return value, source

    def close(self):
        if self.process.poll() is None:
            self.ask("quit")
        self.process.wait(timeout=10)


def expect(condition, what):
    if not condition:
        sys.exit(f"FAILED: {what}")
    print(f"ok - {what}")


def served_within(a, key, expected):
    """Seconds until A serves `expected` for key, asking without pause; None after the limit.
    Once served, A must keep serving it (no stale value comes back)."""
    start = time.monotonic()
    while time.monotonic() - start < 1.0:
        value, _ = a.get(key)
        if value == expected:
            elapsed = time.monotonic() - start
            for _ in range(20):
                if a.get(key)[0] != expected:
                    return None
            return elapsed
    return None


def ms(seconds):
    return "never" if seconds is None else f"{seconds * 1000:.1f} ms"


def cached_in_l1(a, key, value):
    """Whether A serves value for key from its L1 within a second, never another value. (An
    invalidation for B's last write may still be on its way: until it has arrived, A may keep
    reading from pg_cache.)"""
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        served, source = a.get(key)
        if served != value:
            return False
        if source == "l1":
            return True
        time.sleep(0.01)
    return False


def main():
    with psycopg.connect(URL, autocommit=True) as b:
        b.execute("SET pg_cache.notify = on")
        b.execute("SELECT cache_remove_prefix('l1:')")
        b.execute("SELECT cache_set('l1:k', 'v1', ttl => '1 hour', tags => '{users}')")
        b.execute("SELECT cache_set('l1:other', 'o1', ttl => '1 hour')")
        a = ProcessA()
        try:
            expect(cached_in_l1(a, "l1:k", "v1"), "A reads l1:k into its L1 and serves it from there")

            b.execute("SELECT cache_set('l1:k', 'v2', ttl => '1 hour', tags => '{users}')")
            elapsed = served_within(a, "l1:k", "v2")
            expect(elapsed is not None and elapsed <= WITHIN_SECONDS,
                   f"after B sets l1:k, A serves the new value within 100 ms ({ms(elapsed)})")

            expect(cached_in_l1(a, "l1:k", "v2") and cached_in_l1(a, "l1:other", "o1"),
                   "A caches l1:k and l1:other again")
            b.execute("SELECT cache_remove_by_tag('{users}')")
            elapsed = served_within(a, "l1:k", "NULL")
            expect(elapsed is not None and elapsed <= WITHIN_SECONDS,
                   f"after B removes tag users, A serves l1:k as absent within 100 ms ({ms(elapsed)})")
            expect(a.get("l1:other") == ("o1", "l1"), "an untagged entry stays in A's L1")

            b.execute("SELECT cache_set('l1:k', 'v3', ttl => '1 hour')")
            expect(cached_in_l1(a, "l1:k", "v3"), "A caches l1:k again")
            b.execute("SELECT cache_clear()")
            elapsed = served_within(a, "l1:other", "NULL")
            expect(elapsed is not None and elapsed <= WITHIN_SECONDS and a.get("l1:k")[0] == "NULL",
                   f"after B clears the cache, A serves nothing stale within 100 ms ({ms(elapsed)})")

            b.execute("SELECT cache_set('l1:k', 'v4', ttl => '1 hour')")
            expect(cached_in_l1(a, "l1:k", "v4"), "A caches l1:k once more")
            pid = int(a.ask("listener_pid"))
            # B ends A's listening session and writes before A can be listening again.
            b.execute("SELECT pg_terminate_backend(%s)", (pid,))
            b.execute("SELECT cache_set('l1:k', 'v5', ttl => '1 hour')")
            elapsed = served_within(a, "l1:k", "v5")
            expect(elapsed is not None and elapsed <= WITHIN_SECONDS,
                   f"with A's listener terminated while B writes, A serves the new value within 100 ms ({ms(elapsed)})")
            deadline = time.monotonic() + 5
            while a.ask("listener_pid") in ("down", str(pid)) and time.monotonic() < deadline:
                time.sleep(0.05)
            expect(a.ask("listener_pid") not in ("down", str(pid)), "A's listener reconnected")
            expect(cached_in_l1(a, "l1:k", "v5"), "after reconnecting, A caches again")
            b.execute("SELECT cache_set('l1:k', 'v6', ttl => '1 hour')")
            elapsed = served_within(a, "l1:k", "v6")
            expect(elapsed is not None and elapsed <= WITHIN_SECONDS,
                   f"and invalidations reach it again within 100 ms ({ms(elapsed)})")
        finally:
            a.close()
            b.execute("SELECT cache_remove_prefix('l1:')")


if __name__ == "__main__":
    main()
