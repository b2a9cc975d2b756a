"""L1Cache: an in-process LRU in front of PgCache or AsyncPgCache, kept coherent by pg_cache's
invalidation feed (LISTEN pg_cache_invalidation on a connection of its own, in a thread).

The rules that keep it correct (README, Invalidation feed):

- A copy never outlives the shared entry's expiry at the time it was read (nor ``max_seconds``):
  eviction sends no notification. L1 hits do not slide the shared entry.
- A read that was under way when an invalidation arrived is not kept: every invalidation moves a
  generation, and a value is stored only if the generation did not move during its read.
- Notifications are not replayed: while the listening connection is down nothing is served from
  or stored in L1, and once listening again (after LISTEN) the whole L1 is emptied.
- Writers must announce their changes: ``pg_cache.notify = on`` in their sessions (PgCache(...,
  notify=True), or ``ALTER DATABASE ... SET pg_cache.notify = on``). Writes made through this
  L1Cache also drop the local copy at once, so this process reads its own writes.
- An L1 holds entries of its client's cache only, and applies only that cache's notifications
  (those of named caches carry ``"cache": "<name>"``, those of the default cache no such member).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable

import psycopg

from ._async import AsyncPgCache
from ._ops import DEFAULT_CACHE
from ._sync import PgCache
from ._types import Value

CHANNEL = "pg_cache_invalidation"

__all__ = ["L1Cache", "L1Stats", "CHANNEL"]


@dataclass(frozen=True, slots=True)
class L1Stats:
    hits: int
    misses: int
    entries: int
    invalidations: int
    flushes: int  # whole-L1 flushes: reconnects and {"all": true}
    listening: bool


class L1Cache:
    """``get`` (with PgCache) or ``aget`` (with AsyncPgCache) serve from memory while no change to
    the key was announced; ``get_with_source`` says where a value came from.

    ``conninfo`` is what the listening connection connects with; by default the client's
    connection string (give it when the client was made from a connection, whose ``dsn`` lacks
    the password)."""

    def __init__(self, client: PgCache | AsyncPgCache, *, conninfo: str | None = None,
                 max_entries: int = 10_000, max_seconds: float = 30.0, reconnect_delay: float = 0.05):
        self.client = client
        self.cache = client.cache
        self.conninfo = conninfo or client.conninfo
        if not self.conninfo:
            raise ValueError("L1Cache needs conninfo= when the client was not made from a connection string or pool")
        self.max_entries = max_entries
        self.max_seconds = max_seconds
        self.reconnect_delay = reconnect_delay
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[bytes, frozenset[str], float]] = OrderedDict()
        self._generation = 0
        self._listening = False
        self._listening_event = threading.Event()
        self._stopping = threading.Event()
        self.listener_pid: int | None = None
        self.hits = 0
        self.misses = 0
        self.invalidations = 0
        self.flushes = 0
        self._thread = threading.Thread(target=self._listen, name="pg_cache L1 listener", daemon=True)
        self._thread.start()

    # --- reads -----------------------------------------------------------------------------------

    def _lookup(self, key: str) -> tuple[bytes | None, bool, int]:
        with self._lock:
            entry = self._entries.get(key)
            if self._listening and entry is not None:
                if entry[2] > time.monotonic():
                    self._entries.move_to_end(key)
                    self.hits += 1
                    return entry[0], True, self._generation
                del self._entries[key]
            self.misses += 1
            return None, False, self._generation

    def _keep(self, key: str, generation: int, value: bytes | None, remaining: float | None,
              tags: Iterable[str] | None) -> None:
        with self._lock:
            # Kept only if nothing was invalidated while we read and the feed is up.
            if value is None or not remaining or not self._listening or self._generation != generation:
                return
            deadline = time.monotonic() + min(float(remaining), self.max_seconds)
            self._entries[key] = (value, frozenset(tags or ()), deadline)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def get_with_source(self, key: str) -> tuple[bytes | None, bool]:
        """(value, served from L1)."""
        value, hit, generation = self._lookup(key)
        if hit:
            return value, True
        assert isinstance(self.client, PgCache), "use aget_with_source with AsyncPgCache"
        value, remaining, tags = self.client._get_for_l1(key)
        self._keep(key, generation, value, remaining, tags)
        return value, False

    def get(self, key: str) -> bytes | None:
        return self.get_with_source(key)[0]

    async def aget_with_source(self, key: str) -> tuple[bytes | None, bool]:
        value, hit, generation = self._lookup(key)
        if hit:
            return value, True
        assert isinstance(self.client, AsyncPgCache), "use get_with_source with PgCache"
        value, remaining, tags = await self.client._get_for_l1(key)
        self._keep(key, generation, value, remaining, tags)
        return value, False

    async def aget(self, key: str) -> bytes | None:
        return (await self.aget_with_source(key))[0]

    # --- writes through this process -------------------------------------------------------------

    def discard(self, *keys: str) -> None:
        """Drops local copies (and any read of them under way)."""
        with self._lock:
            self._generation += 1
            for key in keys:
                self._entries.pop(key, None)

    def set(self, key: str, value: Value, **expiry: Any) -> None:
        self.discard(key)
        try:
            self.client.set(key, value, **expiry)  # type: ignore[union-attr]
        finally:
            self.discard(key)

    def remove(self, key: str) -> bool:
        self.discard(key)
        try:
            return self.client.remove(key)  # type: ignore[union-attr,return-value]
        finally:
            self.discard(key)

    async def aset(self, key: str, value: Value, **expiry: Any) -> None:
        self.discard(key)
        try:
            await self.client.set(key, value, **expiry)  # type: ignore[misc]
        finally:
            self.discard(key)

    async def aremove(self, key: str) -> bool:
        self.discard(key)
        try:
            return await self.client.remove(key)  # type: ignore[misc]
        finally:
            self.discard(key)

    # --- state -----------------------------------------------------------------------------------

    @property
    def listening(self) -> bool:
        return self._listening

    def wait_listening(self, timeout: float | None = None) -> bool:
        """Blocks until the feed is listened to (L1 serves nothing before)."""
        return self._listening_event.wait(timeout)

    def stats(self) -> L1Stats:
        with self._lock:
            return L1Stats(self.hits, self.misses, len(self._entries), self.invalidations, self.flushes,
                           self._listening)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._generation += 1

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> "L1Cache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the feed --------------------------------------------------------------------------------

    def _invalidate(self, payload: str) -> None:
        try:
            change: Any = json.loads(payload)
        except ValueError:
            change = None
        cache = change.get("cache", DEFAULT_CACHE) if isinstance(change, dict) else None
        if not isinstance(cache, str):
            change = {"all": True}  # not ours to understand, of whichever cache: be safe
        elif cache != self.cache:
            return  # another cache's change: our copies and the reads under way stay valid
        with self._lock:
            self._generation += 1
            self.invalidations += 1
            if change.get("all"):
                self._entries.clear()
                self.flushes += 1
                return
            for key in change.get("keys", ()):
                self._entries.pop(key, None)
            tags = set(change.get("tags", ()))
            prefixes = tuple(change.get("prefixes", ()))
            if tags or prefixes:
                doomed = [k for k, (_, entry_tags, _) in self._entries.items()
                          if (tags and not entry_tags.isdisjoint(tags)) or (prefixes and k.startswith(prefixes))]
                for key in doomed:
                    del self._entries[key]

    def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    with self._lock:
                        # Changes made while nobody listened were never heard: forget them all.
                        self._entries.clear()
                        self._generation += 1
                        self.flushes += 1
                        self._listening = True
                        self.listener_pid = conn.info.backend_pid
                    self._listening_event.set()
                    while not self._stopping.is_set():
                        for notification in conn.notifies(timeout=0.2):
                            self._invalidate(notification.payload)
            except psycopg.Error:
                pass
            finally:
                with self._lock:
                    self._listening = False
                    self._generation += 1
                self._listening_event.clear()
            if not self._stopping.is_set():
                self._stopping.wait(self.reconnect_delay)
