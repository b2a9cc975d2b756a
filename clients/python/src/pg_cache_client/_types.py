"""Result types and the conversion of Python expiry arguments."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Union

__all__ = ["CacheStats", "KeyInfo", "WorkerStatus", "NEVER", "Expiry", "Value", "to_interval",
           "LEGACY_NO_EXPIRY_TTL"]


class _Never(enum.Enum):
    NEVER = "never"

    def __repr__(self) -> str:
        return "pg_cache_client.NEVER"


NEVER = _Never.NEVER
"""Give as ``ttl=NEVER``: the entry never expires; only a removal or the size cap ends it. Also
what ``ttl()`` and ``KeyInfo`` report for such an entry (the server's infinite expiry)."""

# pg_cache 0.2.0 refuses an infinite expiry, so against it ttl=NEVER is a ttl far beyond any
# cache's life (an expiry past the end of timestamptz would be 22008). From 0.3.0 on (detected by
# Features.infinite_expiry) the client sends expires_at => 'infinity' instead.
LEGACY_NO_EXPIRY_TTL = timedelta(days=365 * 1000)


Expiry = Union[timedelta, int, float, None]
Value = Union[bytes, bytearray, memoryview, str]


def to_interval(value: Expiry | _Never, argument: str) -> timedelta | None:
    """A ttl or sliding argument as what psycopg sends as an interval: a timedelta, or seconds.
    NEVER (ttl only) is the 0.2.0 stand-in; callers with infinite expiry never pass it here."""
    if value is None:
        return None
    if value is NEVER:
        if argument != "ttl":
            raise TypeError(f"{argument}=NEVER: only ttl can be NEVER")
        return LEGACY_NO_EXPIRY_TTL
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{argument} must be a timedelta or a number of seconds, not {type(value).__name__}")
    return timedelta(seconds=value)


def to_bytes(value: Value) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(f"cache values are bytes (or str, sent as UTF-8), not {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class CacheStats:
    """One row of ``cache_stats()``; the counters and ``since`` are None without preloading."""

    hits: int | None
    misses: int | None
    sets: int | None
    removes: int | None
    evicted: int | None
    evicted_for_size: int | None
    live_bytes: int | None
    entries: int | None
    total_bytes: int | None
    since: datetime | None
    # Stampede protection (extension 0.3.0; None where the server does not count it): leases
    # granted (a miss's or an early refresh's), calls answered 'wait', fills refused because their
    # lease was no longer current, expired values served within their grace ('stale').
    leases_granted: int | None = None
    lease_waits: int | None = None
    fills_rejected: int | None = None
    stale_served: int | None = None

    @property
    def hit_ratio(self) -> float | None:
        if self.hits is None or self.misses is None or self.hits + self.misses == 0:
            return None
        return self.hits / (self.hits + self.misses)


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """One row of ``cache_keys()``."""

    key: str
    expires_at: datetime | _Never           # NEVER: the entry never expires
    sliding: timedelta | None
    absolute_expires_at: datetime | _Never | None  # None: sliding with no cap
    value_bytes: int


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """One row of ``cache_worker_status()``."""

    database: str | None
    pid: int | None
    last_sweep_at: datetime | None
    evicted_total: int
    last_error: str | None
    last_error_at: datetime | None
