"""A Django cache backend on pg_cache.

    CACHES = {
        "default": {
            "BACKEND": "pg_cache_client.django.PgCache",
            "LOCATION": "postgresql://app@db/app",
        }
    }

OPTIONS:

- ``POOL_SIZE`` (10) and ``POOL_MIN_SIZE`` (1): the connection pool per process, shared by the
  threads and by every cache alias with the same LOCATION and options. Async methods (``aget``,
  ``aset``, ...) run on an asyncio pool of the same size per event loop.
- ``DATABASE``: a Django database alias (e.g. ``"default"``, a PostgreSQL database with
  ``CREATE EXTENSION pg_cache``) to run on instead of LOCATION. The cache then uses Django's own
  connection, so ``cache.set`` / ``cache.delete`` inside ``transaction.atomic()`` commit or roll
  back with the data. Django's connections are synchronous: the async methods run the sync ones
  in a thread (``sync_to_async``) in this mode.
- ``CACHE``: the pg_cache cache to work on (``"default"``; others are made with
  ``cache_create``, extension 0.3.0). Aliases with different CACHE keep their keys apart.
- ``CLEAR``: ``"all"`` (default: ``clear()`` removes every entry of the cache, as Django
  documents) or ``"prefix"`` (only keys starting with ``KEY_PREFIX + ":"``).
- ``NOTIFY``: ``True`` sets ``pg_cache.notify = on`` on the pool's connections, for L1 caches
  listening to the invalidation feed.

``MAX_ENTRIES`` and ``CULL_FREQUENCY`` are not used: the size cap is ``pg_cache.max_size``, and
expired entries are removed by the server's eviction worker.

Values: ``int`` (not ``bool``) in the bigint range is stored as its decimal text, so ``incr`` and
``decr`` run on the server (``cache_incr``, atomic); everything else is pickled (the pickle's
protocol byte ``0x80`` tells the two apart). ``TIMEOUT`` None never expires (the server's
``expires_at => 'infinity'``; a 1000-year ttl on pg_cache 0.2.0), 0 and negative expire at once.
``incr`` / ``decr`` of a missing key raise ValueError and create nothing. ``get_or_set`` /
``aget_or_set`` with a callable default compute it once across processes
(``PgCache.get_or_compute``: the server's leases), on Django's connection too outside an atomic
block.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pickle
import re
import threading
import time
import weakref
from datetime import timedelta
from typing import Any, Callable, Iterable

from asgiref.sync import sync_to_async
from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache
from django.core.exceptions import ImproperlyConfigured

from . import _compute, _ops
from ._async import AsyncPgCache
from ._errors import translate
from ._sync import PgCache as _SyncClient
from ._types import NEVER

__all__ = ["PgCache", "dumps", "loads"]

_PICKLE_MARK = 0x80  # every pickle of protocol 2 or later starts with PROTO (0x80)
_INT = re.compile(rb"-?[0-9]+\Z")
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
_EXPIRED = object()


def dumps(value: Any) -> bytes:
    """Django value -> stored bytes: an int as decimal text (cache_incr's form), else a pickle."""
    if type(value) is int and _INT_MIN <= value <= _INT_MAX:
        return str(value).encode()
    return pickle.dumps(value, pickle.HIGHEST_PROTOCOL)


def loads(data: bytes) -> Any:
    if data[:1] and data[0] == _PICKLE_MARK:
        return pickle.loads(data)
    if _INT.match(data):
        return int(data)
    return pickle.loads(data)  # not ours: pickle says what is wrong


# One sync client per process and settings, shared by threads and aliases; one async client per
# event loop as well (a psycopg async pool belongs to the loop that opened it).
_clients_lock = threading.Lock()
_sync_clients: dict[tuple, _SyncClient] = {}
_async_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple, AsyncPgCache]]" = \
    weakref.WeakKeyDictionary()
_features_by_alias: dict[str, _ops.Features] = {}


class PgCache(BaseCache):
    def __init__(self, location: str, params: dict[str, Any]):
        super().__init__(params)
        options = params.get("OPTIONS", {}) or {}
        self._location = location or ""
        self._database: str | None = options.get("DATABASE")
        self._pool_min = int(options.get("POOL_MIN_SIZE", 1))
        self._pool_size = int(options.get("POOL_SIZE", 10))
        self._notify = bool(options.get("NOTIFY", False))
        cache = options.get("CACHE", _ops.DEFAULT_CACHE)
        try:
            self._cache = _ops.cache_name(cache)
        except (TypeError, ValueError) as error:
            raise ImproperlyConfigured(f'pg_cache OPTIONS["CACHE"]: {error}') from error
        # DATABASE mode runs calls itself: None for the default cache, whose calls go out unchanged.
        self._named_cache = None if cache == _ops.DEFAULT_CACHE else cache
        clear = options.get("CLEAR", "all")
        if clear not in ("all", "prefix"):
            raise ImproperlyConfigured('pg_cache OPTIONS["CLEAR"] is "all" or "prefix"')
        self._clear_prefix_only = clear == "prefix"
        if not self._location and not self._database:
            raise ImproperlyConfigured('pg_cache needs LOCATION (a PostgreSQL URL) or OPTIONS["DATABASE"]')
        self._settings_key = (self._location, self._pool_min, self._pool_size, self._notify, self._cache)

    # --- where calls run -------------------------------------------------------------------------

    @property
    def client(self) -> _SyncClient:
        """The PgCache client of this process (LOCATION mode)."""
        key = self._settings_key + (os.getpid(),)
        client = _sync_clients.get(key)
        if client is None:
            with _clients_lock:
                client = _sync_clients.get(key)
                if client is None:
                    client = _SyncClient(self._location, min_size=self._pool_min, max_size=self._pool_size,
                                         notify=self._notify, cache=self._cache)
                    _sync_clients[key] = client
        return client

    @property
    def async_client(self) -> AsyncPgCache:
        """The AsyncPgCache client of the running event loop (LOCATION mode)."""
        loop = asyncio.get_running_loop()
        with _clients_lock:
            by_settings = _async_clients.setdefault(loop, {})
            client = by_settings.get(self._settings_key)
            if client is None:
                client = AsyncPgCache(self._location, min_size=self._pool_min, max_size=self._pool_size,
                                      notify=self._notify, cache=self._cache)
                by_settings[self._settings_key] = client
        return client

    def _run(self, call: _ops.Call) -> Any:
        if self._database is None:
            return self.client._execute(call)
        from django.db import DatabaseError, connections

        connection = connections[self._database]
        if self._named_cache is not None:
            call = _ops.in_cache(call, self._named_cache)
        try:
            with connection.cursor() as cursor:
                cursor.execute(call.sql, call.params)
                rows = cursor.fetchall() if cursor.description is not None else []
        except DatabaseError as error:
            raise translate(error, call.function, call.key, call.keys) from error
        return call.parse(rows)

    async def _arun(self, call: _ops.Call) -> Any:
        if self._database is None:
            return await self.async_client._execute(call)
        return await sync_to_async(self._run, thread_sensitive=True)(call)

    def _features(self) -> _ops.Features:
        if self._database is None:
            return self.client.features()
        features = _features_by_alias.get(self._database)
        if features is None:
            features = _features_by_alias[self._database] = self._run(_ops.features())
        return features

    async def _afeatures(self) -> _ops.Features:
        if self._database is None:
            return await self.async_client.features()
        return await sync_to_async(self._features, thread_sensitive=True)()

    # TIMEOUT None: expires_at => 'infinity' where the server has it, else a 1000-year ttl (see
    # _ops._expiry). The probe runs only when a timeout is None.
    def _infinite_expiry(self, ttl: Any) -> bool:
        return ttl is NEVER and self._features().infinite_expiry

    async def _ainfinite_expiry(self, ttl: Any) -> bool:
        return ttl is NEVER and (await self._afeatures()).infinite_expiry

    # --- timeouts --------------------------------------------------------------------------------

    def get_backend_timeout(self, timeout: Any = DEFAULT_TIMEOUT) -> Any:
        """The ttl for pg_cache: NEVER (timeout None), _EXPIRED (0 or negative) or a timedelta."""
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        if timeout is None:
            return NEVER
        if timeout <= 0:
            return _EXPIRED
        return timedelta(seconds=timeout)

    # --- the operations, as calls ----------------------------------------------------------------

    # Each takes the backend ttl (get_backend_timeout) and whether NEVER may be sent as infinity.

    def _add_call(self, key: str, value: Any, ttl: Any, infinite: bool) -> _ops.Call:
        if ttl is _EXPIRED:
            return _ops.add_expired(key, dumps(value))
        return _ops.add(key, dumps(value), ttl=ttl, infinite_expiry=infinite)

    def _set_call(self, key: str, value: Any, ttl: Any, infinite: bool) -> _ops.Call:
        data = dumps(value)  # pickling errors surface whatever the timeout
        if ttl is _EXPIRED:
            return _ops.remove(key)
        return _ops.set(key, data, ttl=ttl, infinite_expiry=infinite)

    def _touch_call(self, key: str, ttl: Any, infinite: bool) -> _ops.Call:
        if ttl is _EXPIRED:
            return _ops.remove(key)
        return _ops.expire(key, ttl=ttl, infinite_expiry=infinite)

    def _set_many_call(self, data: dict[str, Any], ttl: Any, infinite: bool, version: Any) -> _ops.Call:
        items = {self.make_and_validate_key(key, version=version): dumps(value) for key, value in data.items()}
        if ttl is _EXPIRED:
            return _ops.remove_many(list(items))
        return _ops.set_many(items, ttl=ttl, infinite_expiry=infinite)

    def _clear_call(self) -> _ops.Call:
        if self._clear_prefix_only and self.key_prefix:
            return _ops.remove_prefix(f"{self.key_prefix}:")
        return _ops.clear()

    @staticmethod
    def _missing(key: str) -> ValueError:
        return ValueError("Key '%s' not found." % key)

    # --- sync API --------------------------------------------------------------------------------

    def add(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        ttl = self.get_backend_timeout(timeout)
        return self._run(self._add_call(key, value, ttl, self._infinite_expiry(ttl)))

    def get(self, key: str, default: Any = None, version: Any = None) -> Any:
        key = self.make_and_validate_key(key, version=version)
        data = self._run(_ops.get(key))
        return default if data is None else loads(data)

    def set(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> None:
        key = self.make_and_validate_key(key, version=version)
        ttl = self.get_backend_timeout(timeout)
        self._run(self._set_call(key, value, ttl, self._infinite_expiry(ttl)))

    def touch(self, key: str, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        ttl = self.get_backend_timeout(timeout)
        return self._run(self._touch_call(key, ttl, self._infinite_expiry(ttl)))

    def delete(self, key: str, version: Any = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        return self._run(_ops.remove(key))

    def get_many(self, keys: Iterable[str], version: Any = None) -> dict[str, Any]:
        key_map = {self.make_and_validate_key(key, version=version): key for key in keys}
        if not key_map:
            return {}
        found = self._run(_ops.get_many(list(key_map)))
        return {key_map[key]: loads(data) for key, data in found.items()}

    def has_key(self, key: str, version: Any = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        return self._run(_ops.exists(key))

    def incr(self, key: str, delta: int = 1, version: Any = None) -> int:
        key = self.make_and_validate_key(key, version=version)
        result = self._run(_ops.incr_existing(key, delta, self._features().incr_create_missing))
        if result is None:
            raise self._missing(key)
        return result

    def set_many(self, data: dict[str, Any], timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> list:
        if not data:
            return []
        ttl = self.get_backend_timeout(timeout)
        self._run(self._set_many_call(data, ttl, self._infinite_expiry(ttl), version))
        return []

    def delete_many(self, keys: Iterable[str], version: Any = None) -> None:
        safe_keys = [self.make_and_validate_key(key, version=version) for key in keys]
        if safe_keys:
            self._run(_ops.remove_many(safe_keys))

    def clear(self) -> bool:
        self._run(self._clear_call())
        return True

    def get_or_set(self, key: str, default: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> Any:
        """With a callable default: computed by one caller at a time across processes, the others
        waiting for its value (PgCache.get_or_compute: leases where the server has them). Django's
        own get_or_set otherwise, and on Django's connection (OPTIONS DATABASE) inside an atomic
        block or without leases."""
        ttl = self.get_backend_timeout(timeout)
        if not callable(default) or ttl is _EXPIRED:
            return super().get_or_set(key, default, timeout=timeout, version=version)
        if self._database is None:
            made = self.make_and_validate_key(key, version=version)
            return loads(self.client.get_or_compute(made, lambda: dumps(default()), ttl=ttl))
        if not self._leases_on_connection():
            return super().get_or_set(key, default, timeout=timeout, version=version)
        made = self.make_and_validate_key(key, version=version)
        return loads(self._compute_on_connection(made, lambda: dumps(default()), ttl))

    def _leases_on_connection(self) -> bool:
        """OPTIONS DATABASE: leases in autocommit only. In an atomic block the fill would commit
        with the caller's transaction, and every other caller would wait for the rest of it."""
        from django.db import connections

        return self._features().leases and not connections[self._database].in_atomic_block

    def _compute_on_connection(self, key: str, factory: Callable[[], bytes], ttl: Any) -> bytes:
        features = self._features()
        opts = _compute.options(ttl=ttl)
        gen = _compute.protocol(key, opts, features, time.monotonic() + opts.wait)

        def no_leases() -> None:
            assert self._database is not None
            _features_by_alias[self._database] = dataclasses.replace(features, leases=False, lease_grace=False)

        return _compute.drive_sync(gen, self._run, factory, no_leases)

    def close(self, **kwargs: Any) -> None:
        """Django calls this after every request: the pool stays open for the next one."""

    # --- async API (native in LOCATION mode) -----------------------------------------------------

    async def aadd(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        ttl = self.get_backend_timeout(timeout)
        return await self._arun(self._add_call(key, value, ttl, await self._ainfinite_expiry(ttl)))

    async def aget(self, key: str, default: Any = None, version: Any = None) -> Any:
        key = self.make_and_validate_key(key, version=version)
        data = await self._arun(_ops.get(key))
        return default if data is None else loads(data)

    async def aset(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> None:
        key = self.make_and_validate_key(key, version=version)
        ttl = self.get_backend_timeout(timeout)
        await self._arun(self._set_call(key, value, ttl, await self._ainfinite_expiry(ttl)))

    async def atouch(self, key: str, timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        ttl = self.get_backend_timeout(timeout)
        return await self._arun(self._touch_call(key, ttl, await self._ainfinite_expiry(ttl)))

    async def adelete(self, key: str, version: Any = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        return await self._arun(_ops.remove(key))

    async def aget_many(self, keys: Iterable[str], version: Any = None) -> dict[str, Any]:
        key_map = {self.make_and_validate_key(key, version=version): key for key in keys}
        if not key_map:
            return {}
        found = await self._arun(_ops.get_many(list(key_map)))
        return {key_map[key]: loads(data) for key, data in found.items()}

    async def ahas_key(self, key: str, version: Any = None) -> bool:
        key = self.make_and_validate_key(key, version=version)
        return await self._arun(_ops.exists(key))

    async def aincr(self, key: str, delta: int = 1, version: Any = None) -> int:
        key = self.make_and_validate_key(key, version=version)
        features = await self._afeatures()
        result = await self._arun(_ops.incr_existing(key, delta, features.incr_create_missing))
        if result is None:
            raise self._missing(key)
        return result

    async def aset_many(self, data: dict[str, Any], timeout: Any = DEFAULT_TIMEOUT, version: Any = None) -> list:
        if not data:
            return []
        ttl = self.get_backend_timeout(timeout)
        await self._arun(self._set_many_call(data, ttl, await self._ainfinite_expiry(ttl), version))
        return []

    async def adelete_many(self, keys: Iterable[str], version: Any = None) -> None:
        safe_keys = [self.make_and_validate_key(key, version=version) for key in keys]
        if safe_keys:
            await self._arun(_ops.remove_many(safe_keys))

    async def aclear(self) -> bool:
        await self._arun(self._clear_call())
        return True

    async def aget_or_set(self, key: str, default: Any, timeout: Any = DEFAULT_TIMEOUT,
                          version: Any = None) -> Any:
        """As get_or_set: on AsyncPgCache.get_or_compute (LOCATION), or the sync get_or_set in a
        thread (DATABASE)."""
        ttl = self.get_backend_timeout(timeout)
        if not callable(default) or ttl is _EXPIRED:
            return await super().aget_or_set(key, default, timeout=timeout, version=version)
        if self._database is not None:
            return await sync_to_async(self.get_or_set, thread_sensitive=True)(key, default, timeout, version)
        made = self.make_and_validate_key(key, version=version)
        factory: Callable[[], bytes] = lambda: dumps(default())  # noqa: E731
        return loads(await self.async_client.get_or_compute(made, factory, ttl=ttl))

    async def aclose(self, **kwargs: Any) -> None:
        pass
