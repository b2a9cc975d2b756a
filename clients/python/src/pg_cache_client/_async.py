"""AsyncPgCache: the asyncio client (the same methods as PgCache, awaited)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import warnings
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, Mapping

import psycopg
from psycopg_pool import AsyncConnectionPool

from . import _compute, _ops
from ._errors import translate
from ._types import NEVER, CacheStats, Expiry, KeyInfo, Value, WorkerStatus, _Never

AsyncSource = str | psycopg.AsyncConnection | AsyncConnectionPool


class _Flight:
    """The calls of get_or_compute for one key on one client: the first asks the server."""

    __slots__ = ("done", "value")

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.value: bytes | None = None  # None when the leading call failed


class AsyncPgCache:
    """As PgCache, for asyncio: over a connection string (a pool of the client's, opened on first
    use in the running event loop), an ``AsyncConnectionPool`` or an ``AsyncConnection``;
    ``cache`` as for PgCache."""

    def __init__(self, source: AsyncSource, *, min_size: int = 1, max_size: int = 10, notify: bool = False,
                 connect_kwargs: Mapping[str, Any] | None = None, cache: str = _ops.DEFAULT_CACHE):
        self.cache = _ops.cache_name(cache)
        # None for the default cache: its calls go out unchanged.
        self._named_cache = None if cache == _ops.DEFAULT_CACHE else cache
        self._features: _ops.Features | None = None
        self._flights: dict[str, _Flight] = {}
        self._conn: psycopg.AsyncConnection | None = None
        self._pool: AsyncConnectionPool | None = None
        self._owns_pool = False
        self._opened = False
        self._open_lock: asyncio.Lock | None = None
        self._notify = notify
        self.conninfo: str | None = None
        if isinstance(source, str):
            self.conninfo = source

            async def configure(conn: psycopg.AsyncConnection) -> None:
                await conn.execute("SET pg_cache.notify = on")

            kwargs = {"autocommit": True, **(connect_kwargs or {})}
            self._pool = AsyncConnectionPool(source, min_size=min_size, max_size=max_size, kwargs=kwargs,
                                             configure=configure if notify else None, open=False,
                                             name="pg_cache_async")
            self._owns_pool = True
        elif isinstance(source, AsyncConnectionPool):
            self._pool = source
            self.conninfo = source.conninfo
            self._opened = True
        elif isinstance(source, psycopg.AsyncConnection):
            self._conn = source
            self._opened = not notify
        else:
            raise TypeError("AsyncPgCache needs a connection string, a psycopg AsyncConnection or an AsyncConnectionPool")

    async def open(self) -> None:
        """Opens the client's pool (done by the first call when not called)."""
        if self._opened:
            return
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if self._opened:
                return
            if self._owns_pool and self._pool is not None:
                await self._pool.open()
            elif self._conn is not None and self._notify:
                await self._conn.execute("SET pg_cache.notify = on")
            self._opened = True

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[psycopg.AsyncConnection]:
        if not self._opened:
            await self.open()
        if self._conn is not None:
            yield self._conn
        else:
            assert self._pool is not None
            async with self._pool.connection() as conn:
                yield conn

    async def _execute(self, call: _ops.Call) -> Any:
        if self._named_cache is not None:
            call = _ops.in_cache(call, self._named_cache)
        attempts = 2 if call.idempotent and self._conn is None else 1
        for attempt in range(attempts):
            try:
                async with self.connection() as conn:
                    cursor = await conn.execute(call.sql, call.params, binary=True)
                    rows = await cursor.fetchall() if cursor.description is not None else []
                return call.parse(rows)
            except psycopg.OperationalError as error:
                if attempt + 1 < attempts and getattr(error, "sqlstate", None) in (None, "57P01", "57P02", "57P03"):
                    continue
                raise translate(error, call.function, call.key, call.keys) from error
            except psycopg.Error as error:
                raise translate(error, call.function, call.key, call.keys) from error
        raise AssertionError("unreachable")

    async def features(self) -> _ops.Features:
        if self._features is None:
            self._features = await self._execute(_ops.features())
        return self._features

    async def _infinite_expiry(self, ttl: Any) -> bool:
        """Whether ttl=NEVER goes as the server's expires_at => 'infinity' (probed only then)."""
        return ttl is NEVER and (await self.features()).infinite_expiry

    async def close(self) -> None:
        if self._owns_pool and self._pool is not None and self._opened:
            await self._pool.close()
            self._opened = False

    async def __aenter__(self) -> "AsyncPgCache":
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # --- entries ---------------------------------------------------------------------------------

    async def get(self, key: str) -> bytes | None:
        return await self._execute(_ops.get(key))

    async def set(self, key: str, value: Value, *, ttl: Any = None, sliding: Expiry = None,
                  expires_at: datetime | None = None, tags: Iterable[str] | None = None) -> None:
        await self._execute(_ops.set(key, value, ttl, sliding, expires_at, tags, await self._infinite_expiry(ttl)))

    async def add(self, key: str, value: Value, *, ttl: Any = None, sliding: Expiry = None,
                  expires_at: datetime | None = None, tags: Iterable[str] | None = None) -> bool:
        infinite = await self._infinite_expiry(ttl)
        return await self._execute(_ops.add(key, value, ttl, sliding, expires_at, tags, infinite))

    async def refresh(self, key: str) -> bool:
        return await self._execute(_ops.refresh(key))

    async def remove(self, key: str) -> bool:
        return await self._execute(_ops.remove(key))

    async def ttl(self, key: str) -> timedelta | _Never | None:
        return await self._execute(_ops.ttl(key))

    async def exists(self, key: str) -> bool:
        return await self._execute(_ops.exists(key))

    async def take(self, key: str) -> bytes | None:
        return await self._execute(_ops.take(key))

    async def expire(self, key: str, *, ttl: Any = None, sliding: Expiry = None,
                     expires_at: datetime | None = None) -> bool:
        return await self._execute(_ops.expire(key, ttl, sliding, expires_at, await self._infinite_expiry(ttl)))

    async def incr(self, key: str, delta: int = 1, *, ttl: Any = None, sliding: Expiry = None,
                   expires_at: datetime | None = None) -> int:
        return await self._execute(_ops.incr(key, delta, ttl, sliding, expires_at, await self._infinite_expiry(ttl)))

    async def incr_existing(self, key: str, delta: int = 1) -> int | None:
        return await self._execute(_ops.incr_existing(key, delta, (await self.features()).incr_create_missing))

    # --- batches ---------------------------------------------------------------------------------

    async def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        key_list = list(keys)
        if not key_list:
            return {}
        return await self._execute(_ops.get_many(key_list))

    async def set_many(self, items: Mapping[str, Value], *, ttl: Any = None, sliding: Expiry = None,
                       expires_at: datetime | None = None, tags: Iterable[str] | None = None) -> int:
        if not items:
            return 0
        infinite = await self._infinite_expiry(ttl)
        return await self._execute(_ops.set_many(items, ttl, sliding, expires_at, tags, infinite))

    async def remove_many(self, keys: Iterable[str]) -> int:
        key_list = list(keys)
        if not key_list:
            return 0
        return await self._execute(_ops.remove_many(key_list))

    async def keys(self, prefix: str = "", max_rows: int = 1000) -> list[KeyInfo]:
        return await self._execute(_ops.keys(prefix, max_rows))

    async def remove_prefix(self, prefix: str) -> int:
        return await self._execute(_ops.remove_prefix(prefix))

    async def clear(self) -> int:
        return await self._execute(_ops.clear())

    # --- tags ------------------------------------------------------------------------------------

    async def tags(self, key: str) -> list[str] | None:
        return await self._execute(_ops.tags(key))

    async def remove_by_tag(self, tags: Iterable[str], *, match_all: bool = False) -> int:
        return await self._execute(_ops.remove_by_tag(tags, match_all))

    # --- JSON ------------------------------------------------------------------------------------

    async def get_json(self, key: str) -> Any:
        return await self._execute(_ops.get_json(key))

    async def set_json(self, key: str, value: Any, *, ttl: Any = None, sliding: Expiry = None,
                       expires_at: datetime | None = None, tags: Iterable[str] | None = None,
                       dumps: Callable[[Any], str] = json.dumps) -> None:
        infinite = await self._infinite_expiry(ttl)
        await self._execute(_ops.set_json(key, value, ttl, sliding, expires_at, tags, dumps, infinite))

    async def get_many_json(self, keys: Iterable[str]) -> dict[str, Any]:
        key_list = list(keys)
        if not key_list:
            return {}
        return await self._execute(_ops.get_many_json(key_list))

    # --- statistics and maintenance --------------------------------------------------------------

    async def stats(self) -> CacheStats:
        return await self._execute(_ops.stats())

    async def stats_reset(self) -> None:
        await self._execute(_ops.stats_reset())

    async def evict_expired(self, max_rows: int = 10000) -> int:
        return await self._execute(_ops.evict_expired(max_rows))

    async def worker_status(self) -> list[WorkerStatus]:
        return await self._execute(_ops.worker_status())

    # --- compute once ----------------------------------------------------------------------------

    async def get_or_compute(self, key: str, factory: Callable[[], Value | Awaitable[Value]], *,
                             ttl: Any = None, sliding: Expiry = None, expires_at: datetime | None = None,
                             tags: Iterable[str] | None = None, lease_ttl: Expiry = timedelta(seconds=10),
                             wait: Expiry = 10.0, grace: Expiry = None, beta: float = 1.0,
                             lock_ttl: Expiry = None) -> bytes:
        """As PgCache.get_or_compute (leases, waiting in the server, computing without a lease
        once ``wait`` has passed); ``factory`` may be a coroutine function. Concurrent calls for
        the same key on this client share one call; a caller cancelled while computing releases
        its lease."""
        if lock_ttl is not None:
            warnings.warn("get_or_compute(lock_ttl=...) is now lease_ttl=...", DeprecationWarning, stacklevel=2)
            lease_ttl = lock_ttl
        opts = _compute.options(ttl, sliding, expires_at, tags, lease_ttl, wait, grace, beta)
        deadline = time.monotonic() + opts.wait
        while True:
            flight = self._flights.get(key)
            if flight is None:
                flight = self._flights[key] = _Flight()
                try:
                    value = await self._compute(key, factory, opts, deadline)
                    flight.value = value
                    return value
                finally:
                    del self._flights[key]
                    flight.done.set()
            try:
                await asyncio.wait_for(flight.done.wait(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                # Waited long enough here: ask the server on our own (it says what to do).
                return await self._compute(key, factory, opts, deadline)
            if flight.value is not None:
                return flight.value
            # its factory raised (or it was cancelled): one of the waiters tries now

    async def _compute(self, key: str, factory: Callable[[], Any], opts: _compute.ComputeOptions,
                       deadline: float) -> bytes:
        gen = _compute.protocol(key, opts, await self.features(), deadline)
        return await _compute.drive_async(gen, self._execute, factory, self._no_leases)

    def _no_leases(self) -> None:
        """The lease functions answered 55000 (pg_cache is not preloaded): do without them."""
        if self._features is not None:
            self._features = dataclasses.replace(self._features, leases=False, lease_grace=False)

    async def _get_for_l1(self, key: str) -> tuple[bytes | None, float | None, list[str] | None]:
        return await self._execute(_ops.get_for_l1(key))
