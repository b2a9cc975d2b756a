"""get_or_compute: one computation per key across processes, written once for both clients.

A protocol is a generator that yields what it needs done -- a `Call` to run (the driver sends the
result back), a `Sleep`, or `COMPUTE` (the driver runs the factory and sends its value back; when
the factory raises, the driver throws the exception in, so that the protocol can release what it
holds) -- and returns the value. The sync and async clients drive it.

Today's protocol takes a lock with cache_add beside the key. When the extension has the lease
functions (cache_get_or_lease, ...), `protocol` picks a lease-based generator instead; nothing
else changes.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generator, Iterable

from . import _ops
from ._types import Expiry, Value, to_bytes

LOCK_PREFIX = "pg_cache_client:lock:"
_MAX_KEY_BYTES = 2048


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


COMPUTE = object()

Protocol = Generator[Any, Any, bytes]


@dataclass(frozen=True, slots=True)
class ComputeOptions:
    ttl: Any = None
    sliding: Expiry = None
    expires_at: datetime | None = None
    tags: Iterable[str] | None = None
    lock_ttl: timedelta = timedelta(seconds=30)  # a crashed computer frees the key after this
    wait: float = 10.0                            # longest wait for another's computation
    poll_min: float = 0.005
    poll_max: float = 0.1


def lock_key(key: str) -> str:
    candidate = LOCK_PREFIX + key
    if len(candidate.encode()) <= _MAX_KEY_BYTES:
        return candidate
    return LOCK_PREFIX + "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def protocol(key: str, options: ComputeOptions, features: _ops.Features) -> Protocol:
    # if features.leases: return _lease_protocol(key, options)   (issue 23)
    return _lock_protocol(key, options, features.infinite_expiry)


def _lock_protocol(key: str, options: ComputeOptions, infinite_expiry: bool) -> Protocol:
    lock = lock_key(key)
    token = os.urandom(16)
    deadline = time.monotonic() + options.wait
    while True:
        value, locked = yield _ops.get_or_lock(key, lock, token, options.lock_ttl)
        if value is not None:
            return value
        if locked:
            # The last holder may have stored the value and dropped its lock between our read
            # and our cache_add: a new statement (a new snapshot) sees it then.
            value = yield _ops.get(key)
            if value is not None:
                yield _ops.unlock(lock, token)
                return value
            try:
                computed = to_bytes((yield COMPUTE))
            except BaseException:
                yield _ops.unlock(lock, token)
                raise
            yield _ops.set_and_unlock(key, computed, lock, token, options.ttl, options.sliding,
                                      options.expires_at, options.tags, infinite_expiry)
            return computed
        # Another process computes: wait for its value, or for its lock to go (it failed).
        pause = options.poll_min
        while True:
            if time.monotonic() >= deadline:
                # Waited long enough: compute without the lock and store it.
                computed = to_bytes((yield COMPUTE))
                yield _ops.set(key, computed, options.ttl, options.sliding, options.expires_at, options.tags,
                               infinite_expiry)
                return computed
            yield Sleep(pause)
            pause = min(pause * 2, options.poll_max)
            value, held = yield _ops.poll_locked(key, lock)
            if value is not None:
                return value
            if not held:
                break  # try to take the lock again
