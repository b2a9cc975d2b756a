"""PgCache: the synchronous client."""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import warnings
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Iterator, Mapping

import psycopg
from psycopg_pool import ConnectionPool

from . import _compute, _ops
from ._pool import LightPool
from ._errors import translate
from ._types import NEVER, CacheStats, Expiry, KeyInfo, Value, WorkerStatus, _Never

Source = str | psycopg.Connection | ConnectionPool


def _configure(notify: bool) -> Callable[[psycopg.Connection], None] | None:
    if not notify:
        return None

    def configure(conn: psycopg.Connection) -> None:
        conn.execute("SET pg_cache.notify = on")

    return configure


class _Flight:
    """The calls of get_or_compute for one key on one client: the first asks the server."""

    __slots__ = ("done", "value")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.value: bytes | None = None  # None when the leading call failed


class PgCache:
    """The pg_cache functions as methods, over one of:

    - a connection string: the client keeps its own pool (up to ``max_size`` connections, opened
      on demand, autocommit) and ``close()`` closes it;
    - a ``psycopg_pool.ConnectionPool``: each call borrows a connection;
    - a ``psycopg.Connection``: every call runs on it, in its transaction when it is not in
      autocommit mode (so cache writes commit or roll back with the caller's).

    ``notify=True`` sets ``pg_cache.notify = on`` on the connections the client opens itself
    (for L1 caches listening to the invalidation feed).

    ``cache`` names the pg_cache cache every call works on (extension 0.3.0, made with
    ``cache_create``); an unknown name raises ``UnknownCache`` at the first call. With
    ``"default"`` the calls are sent without a cache argument, so they work with 0.2.0 too.

    Values are ``bytes`` (``str`` is sent as UTF-8); expiries are ``timedelta`` or seconds,
    ``ttl=NEVER`` for none; ``expires_at`` a ``datetime``. Errors are ``PgCacheError``
    subclasses carrying the SQLSTATE and the key.
    """

    def __init__(self, source: Source, *, min_size: int = 1, max_size: int = 10, notify: bool = False,
                 connect_kwargs: Mapping[str, Any] | None = None, cache: str = _ops.DEFAULT_CACHE):
        self.cache = _ops.cache_name(cache)
        # None for the default cache: its calls go out unchanged (the hot path checks only this).
        self._named_cache = None if cache == _ops.DEFAULT_CACHE else cache
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}
        self._features: _ops.Features | None = None
        self._conn: psycopg.Connection | None = None
        self._pool: ConnectionPool | None = None
        self._own_pool: LightPool | None = None
        self.conninfo: str | None = None
        if isinstance(source, str):
            self.conninfo = source
            kwargs = {"autocommit": True, **(connect_kwargs or {})}
            self._own_pool = LightPool(source, max_size, kwargs, _configure(notify))
        elif isinstance(source, ConnectionPool):
            self._pool = source
            self.conninfo = source.conninfo
        elif isinstance(source, psycopg.Connection):
            self._conn = source
            if notify:
                source.execute("SET pg_cache.notify = on")
        else:
            raise TypeError("PgCache needs a connection string, a psycopg Connection or a ConnectionPool")

    # --- running calls ---------------------------------------------------------------------------

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        """A connection of the client's (the given one, or one borrowed from the pool)."""
        if self._own_pool is not None:
            conn = self._own_pool.getconn()
            try:
                yield conn
            finally:
                self._own_pool.putconn(conn)
        elif self._conn is not None:
            yield self._conn
        else:
            assert self._pool is not None
            with self._pool.connection() as conn:
                yield conn

    def _run(self, conn: psycopg.Connection, call: _ops.Call) -> Any:
        cursor = conn.execute(call.sql, call.params, binary=True)
        return call.parse(cursor.fetchall() if cursor.description is not None else [])

    def _execute(self, call: _ops.Call) -> Any:
        if self._named_cache is not None:
            call = _ops.in_cache(call, self._named_cache)
        attempts = 2 if call.idempotent and self._conn is None else 1
        for attempt in range(attempts):
            try:
                pool = self._own_pool
                if pool is not None:  # the hot path: no context manager
                    conn = pool.getconn()
                    try:
                        return self._run(conn, call)
                    finally:
                        pool.putconn(conn)
                with self.connection() as conn:
                    return self._run(conn, call)
            except psycopg.OperationalError as error:
                # A pooled connection that broke (server restart, terminated backend): the pool
                # replaces it; an idempotent call runs once more on another.
                if attempt + 1 < attempts and getattr(error, "sqlstate", None) in (None, "57P01", "57P02", "57P03"):
                    continue
                raise translate(error, call.function, call.key, call.keys) from error
            except psycopg.Error as error:
                raise translate(error, call.function, call.key, call.keys) from error
        raise AssertionError("unreachable")

    def features(self) -> _ops.Features:
        """Which functions of newer extension versions are installed (read once)."""
        if self._features is None:
            self._features = self._execute(_ops.features())
        return self._features

    def _infinite_expiry(self, ttl: Any) -> bool:
        """Whether ttl=NEVER goes as the server's expires_at => 'infinity' (probed only then, so
        clients that never use NEVER never ask)."""
        return ttl is NEVER and self.features().infinite_expiry

    def close(self) -> None:
        """Closes the pool the client opened (a given connection or pool stays open)."""
        if self._own_pool is not None:
            self._own_pool.close()

    def __enter__(self) -> "PgCache":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- entries ---------------------------------------------------------------------------------

    def get(self, key: str) -> bytes | None:
        """The value, or None when absent or expired; a hit on a sliding entry slides it."""
        return self._execute(_ops.get(key))

    def set(self, key: str, value: Value, *, ttl: Any = None, sliding: Expiry = None,
            expires_at: datetime | None = None, tags: Iterable[str] | None = None) -> None:
        """Inserts or replaces the entry. No expiry given: the server's default sliding window."""
        self._execute(_ops.set(key, value, ttl, sliding, expires_at, tags, self._infinite_expiry(ttl)))

    def add(self, key: str, value: Value, *, ttl: Any = None, sliding: Expiry = None,
            expires_at: datetime | None = None, tags: Iterable[str] | None = None) -> bool:
        """Sets the entry only when no live entry has the key; whether it did."""
        return self._execute(_ops.add(key, value, ttl, sliding, expires_at, tags, self._infinite_expiry(ttl)))

    def refresh(self, key: str) -> bool:
        return self._execute(_ops.refresh(key))

    def remove(self, key: str) -> bool:
        return self._execute(_ops.remove(key))

    def ttl(self, key: str) -> timedelta | _Never | None:
        """Time left, without sliding: a timedelta; NEVER when the entry never expires; None when
        absent or expired."""
        return self._execute(_ops.ttl(key))

    def exists(self, key: str) -> bool:
        """Whether a live entry has the key (does not slide it)."""
        return self._execute(_ops.exists(key))

    def take(self, key: str) -> bytes | None:
        return self._execute(_ops.take(key))

    def expire(self, key: str, *, ttl: Any = None, sliding: Expiry = None,
               expires_at: datetime | None = None) -> bool:
        return self._execute(_ops.expire(key, ttl, sliding, expires_at, self._infinite_expiry(ttl)))

    def incr(self, key: str, delta: int = 1, *, ttl: Any = None, sliding: Expiry = None,
             expires_at: datetime | None = None) -> int:
        return self._execute(_ops.incr(key, delta, ttl, sliding, expires_at, self._infinite_expiry(ttl)))

    def incr_existing(self, key: str, delta: int = 1) -> int | None:
        """Adds delta to a live counter; None (creating nothing) when the key is absent."""
        return self._execute(_ops.incr_existing(key, delta, self.features().incr_create_missing))

    # --- batches ---------------------------------------------------------------------------------

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes]:
        key_list = list(keys)
        if not key_list:
            return {}
        return self._execute(_ops.get_many(key_list))

    def set_many(self, items: Mapping[str, Value], *, ttl: Any = None, sliding: Expiry = None,
                 expires_at: datetime | None = None, tags: Iterable[str] | None = None) -> int:
        if not items:
            return 0
        return self._execute(_ops.set_many(items, ttl, sliding, expires_at, tags, self._infinite_expiry(ttl)))

    def remove_many(self, keys: Iterable[str]) -> int:
        key_list = list(keys)
        if not key_list:
            return 0
        return self._execute(_ops.remove_many(key_list))

    def keys(self, prefix: str = "", max_rows: int = 1000) -> list[KeyInfo]:
        return self._execute(_ops.keys(prefix, max_rows))

    def remove_prefix(self, prefix: str) -> int:
        return self._execute(_ops.remove_prefix(prefix))

    def clear(self) -> int:
        return self._execute(_ops.clear())

    # --- tags ------------------------------------------------------------------------------------

    def tags(self, key: str) -> list[str] | None:
        return self._execute(_ops.tags(key))

    def remove_by_tag(self, tags: Iterable[str], *, match_all: bool = False) -> int:
        return self._execute(_ops.remove_by_tag(tags, match_all))

    # --- JSON ------------------------------------------------------------------------------------

    def get_json(self, key: str) -> Any:
        """The value decoded by the server (cache_get_json) as dict, list, str, int, float, bool
        or None; None also when absent."""
        return self._execute(_ops.get_json(key))

    def set_json(self, key: str, value: Any, *, ttl: Any = None, sliding: Expiry = None,
                 expires_at: datetime | None = None, tags: Iterable[str] | None = None,
                 dumps: Callable[[Any], str] = json.dumps) -> None:
        self._execute(_ops.set_json(key, value, ttl, sliding, expires_at, tags, dumps, self._infinite_expiry(ttl)))

    def get_many_json(self, keys: Iterable[str]) -> dict[str, Any]:
        key_list = list(keys)
        if not key_list:
            return {}
        return self._execute(_ops.get_many_json(key_list))

    # --- statistics and maintenance --------------------------------------------------------------

    def stats(self) -> CacheStats:
        return self._execute(_ops.stats())

    def stats_reset(self) -> None:
        self._execute(_ops.stats_reset())

    def evict_expired(self, max_rows: int = 10000) -> int:
        return self._execute(_ops.evict_expired(max_rows))

    def worker_status(self) -> list[WorkerStatus]:
        return self._execute(_ops.worker_status())

    # --- compute once ----------------------------------------------------------------------------

    def get_or_compute(self, key: str, factory: Callable[[], Value], *, ttl: Any = None,
                       sliding: Expiry = None, expires_at: datetime | None = None,
                       tags: Iterable[str] | None = None, lease_ttl: Expiry = timedelta(seconds=10),
                       wait: Expiry = 10.0, grace: Expiry = None, beta: float = 1.0,
                       lock_ttl: Expiry = None) -> bytes:
        """The value of key; on a miss, ``factory()``'s, stored with the given expiry, computed by
        one caller at a time across processes while the others wait for it.

        With the extension's leases (``features().leases``, pg_cache 0.3.0 preloaded):

        - a hit returns the value (one round trip, ``cache_get_or_lease``);
        - a miss gets this caller the lease: it runs ``factory()`` and stores the value with
          ``cache_fill``, and returns it even when the fill is refused (the key was written since,
          or the lease expired and went to another caller: their value stays). When ``factory``
          raises, the lease is released (``cache_release``), so that the next caller computes at
          once, and the exception propagates;
        - another caller holding the lease: this one waits in the server (``wait =>``) until the
          value is filled -- then returns it -- or the lease is released or expires -- then it
          gets the lease itself. A holder that dies frees the key after ``lease_ttl``. When
          ``wait`` runs out first, this caller computes **without a lease**: it runs
          ``factory()``, stores the value with ``cache_add`` (so a value filled meanwhile is
          kept) and returns it. So ``factory`` may run more than once when a computation takes
          longer than ``wait``; with ``wait`` at least ``lease_ttl`` (the defaults: 10 s each) a
          waiter gets the lease instead whenever the holder takes longer than ``lease_ttl``.
          ``wait=0`` never waits;
        - early refresh (XFetch, ``beta`` > 0; 0 turns it off): shortly before a live entry expires
          the server may pick one caller to recompute it while everyone else keeps hitting; that
          caller runs ``factory()``, fills, and returns the new value (if ``factory`` raises then,
          the lease is released and the live value returned);
        - ``grace``: an entry that expired less than ``grace`` ago is served as it is (at once,
          without waiting) while one caller computes the new value (a server without ``grace``
          ignores it, and those callers wait as above).

        Concurrent calls for the same key on this client share one call: one of them asks the
        server, the others wait for its result in the process (they use no connection). Waiting
        in the server holds a connection for the wait. On a connection in a REPEATABLE READ or
        SERIALIZABLE transaction the server cannot wait (such a snapshot never sees the fill): a
        call finding the key leased computes without a lease at once; a fill in a caller's
        transaction ends its lease when that transaction commits.

        Without leases (pg_cache 0.2.0, or 0.3.0 not in ``shared_preload_libraries``, found out
        by the first call) one caller at a time computes under a lock taken with ``cache_add``
        beside the key (``pg_cache_client:lock:<key>``, held at most ``lease_ttl``); the others
        poll for the value, at most ``wait`` seconds, then compute themselves.

        ``lease_ttl`` and ``wait`` are timedeltas or seconds. ``lock_ttl`` is the 0.2 name of
        ``lease_ttl`` (deprecated).
        """
        if lock_ttl is not None:
            warnings.warn("get_or_compute(lock_ttl=...) is now lease_ttl=...", DeprecationWarning, stacklevel=2)
            lease_ttl = lock_ttl
        opts = _compute.options(ttl, sliding, expires_at, tags, lease_ttl, wait, grace, beta)
        deadline = time.monotonic() + opts.wait
        while True:
            with self._lock:
                flight = self._flights.get(key)
                leading = flight is None
                if flight is None:
                    flight = self._flights[key] = _Flight()
            if leading:
                try:
                    value = self._compute(key, factory, opts, deadline)
                    flight.value = value
                    return value
                finally:
                    with self._lock:
                        del self._flights[key]
                    flight.done.set()
            if flight.done.wait(max(0.0, deadline - time.monotonic())):
                if flight.value is not None:
                    return flight.value
                continue  # its factory raised: one of the waiters tries now
            # Waited long enough here: ask the server on our own (it says what to do).
            return self._compute(key, factory, opts, deadline)

    def _compute(self, key: str, factory: Callable[[], Value], opts: _compute.ComputeOptions,
                 deadline: float) -> bytes:
        gen = _compute.protocol(key, opts, self.features(), deadline)
        return _compute.drive_sync(gen, self._execute, factory, self._no_leases)

    def _no_leases(self) -> None:
        """The lease functions answered 55000 (pg_cache is not preloaded): do without them."""
        self._features = dataclasses.replace(self.features(), leases=False, lease_grace=False)

    def _get_for_l1(self, key: str) -> tuple[bytes | None, float | None, list[str] | None]:
        return self._execute(_ops.get_for_l1(key))

