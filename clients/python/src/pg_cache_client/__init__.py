"""pg_cache from Python: sync and asyncio clients, an L1 cache, a Django cache backend.

>>> from pg_cache_client import PgCache
>>> cache = PgCache("postgresql://app@db/app")
>>> cache.set("user:42", b"Ada", ttl=600, tags=["user:42"])
>>> cache.get("user:42")
b'Ada'
"""

from ._async import AsyncPgCache
from ._errors import (CacheUnavailable, InvalidArgument, InvalidValue, LimitExceeded, NullArgument,
                      OutOfRange, PermissionDenied, PgCacheError, ReadOnly, UnknownCache)
from ._ops import Features
from ._sync import PgCache
from ._types import NEVER, CacheStats, KeyInfo, WorkerStatus
from .l1 import L1Cache, L1Stats

__version__ = "0.3.0"

__all__ = [
    "PgCache",
    "AsyncPgCache",
    "L1Cache",
    "L1Stats",
    "NEVER",
    "CacheStats",
    "KeyInfo",
    "WorkerStatus",
    "Features",
    "PgCacheError",
    "InvalidArgument",
    "NullArgument",
    "LimitExceeded",
    "InvalidValue",
    "OutOfRange",
    "PermissionDenied",
    "ReadOnly",
    "CacheUnavailable",
    "UnknownCache",
]
