"""Exceptions: every error of a cache call keeps the SQLSTATE PostgreSQL gave and the key."""

from __future__ import annotations

import re
from typing import Sequence

__all__ = [
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


class PgCacheError(Exception):
    """A cache call failed.

    ``sqlstate`` is PostgreSQL's five-character code (``None`` when the connection failed before
    the server answered), ``key`` the key the call was about (for a batch, the element the server
    named, else ``None``), ``message`` the server's primary message. The psycopg exception is
    the ``__cause__``.
    """

    def __init__(self, message: str, *, sqlstate: str | None = None, key: str | None = None,
                 function: str | None = None):
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate
        self.key = key
        self.function = function

    def __str__(self) -> str:
        where = f" [{self.sqlstate}]" if self.sqlstate else ""
        about = f" (key {self.key!r})" if self.key is not None else ""
        return f"{self.message}{where}{about}"


class InvalidArgument(PgCacheError, ValueError):
    """22023: an argument the function refuses (empty key, ttl with expires_at, ...)."""


class NullArgument(InvalidArgument):
    """22004: NULL where a value is required (a key, a value, an array element)."""


class LimitExceeded(PgCacheError, ValueError):
    """54000: a key, value, tag or batch beyond the extension's limits."""


class InvalidValue(PgCacheError, TypeError):
    """22P02: the stored value is not what the call needs (cache_incr of a non-integer, cache_get_json
    of bytes that are not JSON in CBOR)."""


class OutOfRange(PgCacheError, OverflowError):
    """22003 (a counter overflows bigint) or 22008 (an expiry beyond timestamptz)."""


class PermissionDenied(PgCacheError, PermissionError):
    """42501: the role may not read or write the cache table."""


class ReadOnly(PgCacheError):
    """25006 (a write in a read-only transaction) or 0A000 (a hot standby)."""


class UnknownCache(PgCacheError, LookupError):
    """42704: no cache of that name (the client's ``cache`` option); cache_create makes one."""


class CacheUnavailable(PgCacheError, ConnectionError):
    """The connection to PostgreSQL failed (no SQLSTATE), or the extension is not installed."""


_BY_SQLSTATE: dict[str, type[PgCacheError]] = {
    "22023": InvalidArgument,
    "22004": NullArgument,
    "54000": LimitExceeded,
    "22P02": InvalidValue,
    "22003": OutOfRange,
    "22008": OutOfRange,
    "42501": PermissionDenied,
    "25006": ReadOnly,
    "0A000": ReadOnly,
    "42704": UnknownCache,  # undefined_object: the named cache does not exist
    "42883": CacheUnavailable,  # undefined_function: CREATE EXTENSION pg_cache is missing
}

_POSITION = re.compile(r"\b(?:keys|vals)\[(\d+)\]")


def sqlstate_of(error: BaseException) -> str | None:
    """The SQLSTATE of a psycopg error, also when wrapped (Django's database errors keep the
    psycopg error as their cause)."""
    seen = 0
    current: BaseException | None = error
    while current is not None and seen < 5:
        state = getattr(current, "sqlstate", None)
        if state:
            return state
        current = current.__cause__
        seen += 1
    return None


def _primary_message(error: BaseException) -> str:
    current: BaseException | None = error
    for _ in range(5):
        if current is None:
            break
        diag = getattr(current, "diag", None)
        primary = getattr(diag, "message_primary", None) if diag is not None else None
        if primary:
            return primary
        current = current.__cause__
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def translate(error: BaseException, function: str | None, key: str | None = None,
              keys: Sequence[str] | None = None) -> PgCacheError:
    """The PgCacheError for a driver error raised by a call of `function`."""
    sqlstate = sqlstate_of(error)
    message = _primary_message(error)
    if key is None and keys is not None:
        match = _POSITION.search(message)
        if match:
            index = int(match.group(1)) - 1  # the server counts from 1
            if 0 <= index < len(keys):
                key = keys[index]
    if sqlstate is None:
        cls: type[PgCacheError] = CacheUnavailable
    else:
        cls = _BY_SQLSTATE.get(sqlstate, PgCacheError)
    return cls(message, sqlstate=sqlstate, key=key, function=function)
