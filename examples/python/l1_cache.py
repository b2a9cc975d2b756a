"""An in-process (L1) cache in front of pg_cache, kept coherent by pg_cache's invalidation feed.

Reads are served from process memory when possible; every committed change to an entry, made by
any client, reaches each L1 through LISTEN pg_cache_invalidation (the writers' sessions need
pg_cache.notify = on, e.g. ALTER DATABASE ... SET pg_cache.notify = on) and drops the copies it
names. The rules that keep it correct:

- An L1 copy never outlives the shared entry's expiry at the time it was read (and at most
  max_seconds), since eviction sends no notification. L1 hits do not slide the shared entry.
- A read that was under way when an invalidation arrived is not kept: each invalidation bumps a
  generation, and a value is stored only if no generation it depends on moved during the read.
- Notifications are not replayed: while the listening connection is down nothing is served from
  or stored in L1, and on reconnecting the whole L1 is emptied (after LISTEN, so no change falls
  in between).

Run as `python l1_cache.py serve` it answers commands on stdin, one per line ("get KEY",
"listener_pid", "quit"), for the two-process test in l1_cache_test.py.
"""

import json
import os
import sys
import threading
import time

import psycopg

URL = os.environ.get("PG_CACHE_URL", "postgresql://postgres@127.0.0.1:5499/pg_cache")
CHANNEL = "pg_cache_invalidation"


class L1Cache:
    def __init__(self, url, max_seconds=30.0, max_entries=10_000):
        self.url = url
        self.max_seconds = max_seconds
        self.max_entries = max_entries
        self.lock = threading.Lock()
        self.entries = {}  # key -> (value, tags, monotonic deadline)
        self.generation = 0  # moved by every invalidation; entries with it
        self.listening = False
        self.listener_pid = None
        self.reads = psycopg.connect(url, autocommit=True)
        self.stopping = False
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def get(self, key):
        """The value of key (bytes or None), and whether L1 served it."""
        with self.lock:
            cached = self.entries.get(key)
            if self.listening and cached is not None and cached[2] > time.monotonic():
                return cached[0], True
            generation = self.generation
        value, remaining, tags = self.reads.execute(
            "SELECT v, extract(epoch FROM cache_ttl(%(k)s)), cache_tags(%(k)s) FROM cache_get(%(k)s) AS v",
            {"k": key},
        ).fetchone()
        with self.lock:
            # Kept only if nothing was invalidated while we read and the feed is up.
            if value is not None and self.listening and self.generation == generation and remaining:
                if len(self.entries) >= self.max_entries:
                    self.entries.pop(next(iter(self.entries)))
                deadline = time.monotonic() + min(float(remaining), self.max_seconds)
                self.entries[key] = (bytes(value), set(tags or ()), deadline)
        return (bytes(value) if value is not None else None), False

    def close(self):
        self.stopping = True
        self.thread.join(timeout=5)
        self.reads.close()

    def _invalidate(self, payload):
        change = json.loads(payload)
        with self.lock:
            self.generation += 1
            if change.get("all"):
                self.entries.clear()
                return
            for key in change.get("keys", ()):
                self.entries.pop(key, None)
            tags = set(change.get("tags", ()))
            prefixes = tuple(change.get("prefixes", ()))
            if tags or prefixes:
                for key in [k for k, (_, entry_tags, _) in self.entries.items()
                            if entry_tags & tags or k.startswith(prefixes)]:
                    del self.entries[key]

    def _listen(self):
        while not self.stopping:
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    with self.lock:
                        # Changes made while we were not listening were never heard: forget all.
                        self.entries.clear()
                        self.generation += 1
                        self.listening = True
                        self.listener_pid = conn.info.backend_pid
                    while not self.stopping:
                        for notification in conn.notifies(timeout=0.5):
                            self._invalidate(notification.payload)
            except psycopg.OperationalError:
                pass
            finally:
                with self.lock:
                    self.listening = False
                    self.generation += 1
            if not self.stopping:
                time.sleep(0.05)


def serve():
    cache = L1Cache(URL)
    deadline = time.monotonic() + 10
    while not cache.listening and time.monotonic() < deadline:
        time.sleep(0.01)
    print("ready", flush=True)
    for line in sys.stdin:
        command, _, key = line.strip().partition(" ")
        if command == "get":
            value, from_l1 = cache.get(key)
            text = value.decode() if value is not None else "NULL"
            print(f"{text} {'l1' if from_l1 else 'shared'}", flush=True)
        elif command == "listener_pid":
            with cache.lock:
                print(cache.listener_pid if cache.listening else "down", flush=True)
        elif command == "quit":
            break
    cache.close()


if __name__ == "__main__" and sys.argv[1:] == ["serve"]:
    serve()
