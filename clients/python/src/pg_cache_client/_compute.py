"""get_or_compute: one computation per key across processes, written once for both clients.

A protocol is a generator that yields what it needs done -- a `Call` to run (the driver sends the
result back, or throws the call's error in), a `Sleep`, `COMPUTE` (the driver runs the factory and
sends its value back; when the factory raises, the driver throws the exception in, so that the
protocol can give up what it holds) or `NO_LEASES` (the server has the lease functions but cannot
grant leases: the client stops trying them) -- and returns the value. The sync and async clients
and the Django backend's connection mode drive it (`drive_sync`, `drive_async`).

With the extension's lease functions (`Features.leases`) the protocol is `_lease_protocol`: the
server hands one caller a lease and makes the others wait for its fill (`wait =>`, no polling).
Without them, `_lock_protocol` takes a lock with cache_add beside the key and polls.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Awaitable, Callable, Generator, Iterable

from . import _ops
from ._errors import PgCacheError
from ._types import Expiry, to_bytes, to_interval

LOCK_PREFIX = "pg_cache_client:lock:"
_MAX_KEY_BYTES = 2048


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


COMPUTE = object()
NO_LEASES = object()

Protocol = Generator[Any, Any, bytes]


@dataclass(frozen=True, slots=True)
class ComputeOptions:
    ttl: Any = None
    sliding: Expiry = None
    expires_at: datetime | None = None
    tags: Iterable[str] | None = None
    # How long a caller may compute before another caller gets the key (a crashed computer frees
    # it after this); also the lock's ttl of the fallback protocol.
    lease_ttl: timedelta = timedelta(seconds=10)
    wait: float = 10.0                 # seconds: longest wait for another caller's computation
    grace: timedelta | None = None     # serve an entry expired less than this ago ('stale')
    beta: float = 1.0                  # XFetch early refresh (0: never refresh early)
    poll_min: float = 0.005            # the fallback protocol's polling
    poll_max: float = 0.1


def options(ttl: Any = None, sliding: Expiry = None, expires_at: datetime | None = None,
            tags: Iterable[str] | None = None, lease_ttl: Expiry = timedelta(seconds=10),
            wait: Expiry = 10.0, grace: Expiry = None, beta: float = 1.0) -> ComputeOptions:
    """The arguments of get_or_compute, checked and converted."""
    lease = to_interval(lease_ttl, "lease_ttl")
    if lease is None or lease <= timedelta(0):
        raise ValueError(f"lease_ttl must be positive, got {lease_ttl!r}")
    waiting = to_interval(wait, "wait")
    if waiting is None or waiting < timedelta(0):
        raise ValueError(f"wait must be at least 0, got {wait!r}")
    grace_interval = to_interval(grace, "grace")
    if grace_interval is not None and grace_interval < timedelta(0):
        raise ValueError(f"grace must be at least 0, got {grace!r}")
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0 or beta == float("inf"):
        raise ValueError(f"beta must be a finite number of at least 0, got {beta!r}")
    return ComputeOptions(ttl, sliding, expires_at, tags, lease, waiting.total_seconds(),
                          grace_interval or None, float(beta))


def lock_key(key: str) -> str:
    candidate = LOCK_PREFIX + key
    if len(candidate.encode()) <= _MAX_KEY_BYTES:
        return candidate
    return LOCK_PREFIX + "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def protocol(key: str, options: ComputeOptions, features: _ops.Features, deadline: float) -> Protocol:
    """The protocol for this server; `deadline` (time.monotonic()) ends the waiting."""
    if features.leases:
        return _lease_protocol(key, options, features, deadline)
    return _lock_protocol(key, options, features.infinite_expiry, deadline)


def _lease_protocol(key: str, options: ComputeOptions, features: _ops.Features, deadline: float) -> Protocol:
    grace = options.grace if features.lease_grace else None
    infinite = features.infinite_expiry
    while True:
        remaining = max(0.0, deadline - time.monotonic())
        try:
            answer: _ops.LeaseAnswer = yield _ops.get_or_lease(
                key, options.lease_ttl, timedelta(seconds=remaining), options.beta, grace)
        except PgCacheError as error:
            if error.sqlstate == "55000":
                # The functions exist but pg_cache is not in shared_preload_libraries: no leases
                # on this server. The lock protocol from now on.
                yield NO_LEASES
                return (yield from _lock_protocol(key, options, infinite, deadline))
            if error.sqlstate == "53400":
                # The lease table is full (pg_cache.max_leases_per_database): no protection now.
                return (yield from _unleased(key, options, infinite))
            raise
        status = answer.status
        if status == "hit" or status == "stale":
            # 'stale': expired less than grace ago, and another caller is computing it.
            assert answer.value is not None
            return answer.value
        if status == "miss" or status == "refresh":
            # This caller holds the lease. 'refresh': the value is live, and XFetch picked this
            # caller to compute the next one before it expires.
            try:
                computed = to_bytes((yield COMPUTE))
            except BaseException as failure:
                try:
                    yield _ops.release(key, answer.lease)  # the next caller computes at once
                except Exception:
                    pass  # (a broken connection or an aborted transaction): the lease expires
                if status == "refresh" and answer.value is not None and isinstance(failure, Exception):
                    return answer.value  # an early refresh failed: the live value still holds
                raise
            # Refused (False) when the key was written since the lease, or the lease expired and
            # went to another caller: their value stays, and this caller still gets its own.
            yield _ops.fill(key, computed, answer.lease, options.ttl, options.sliding, options.expires_at,
                            options.tags, infinite)
            return computed
        if status != "wait":
            raise PgCacheError(f"cache_get_or_lease answered {status!r}", key=key, function="cache_get_or_lease")
        if not answer.could_not_wait and remaining > 0 and time.monotonic() < deadline:
            continue  # woken before the deadline while the key kept changing: ask again
        # Waited `wait` (or could not wait: REPEATABLE READ) and another caller still computes.
        return (yield from _unleased(key, options, infinite))


def _unleased(key: str, options: ComputeOptions, infinite: bool) -> Protocol:
    """Computes without a lease, and stores the value unless one arrived meanwhile (cache_add)."""
    computed = to_bytes((yield COMPUTE))
    yield _ops.add(key, computed, options.ttl, options.sliding, options.expires_at, options.tags, infinite)
    return computed


def _lock_protocol(key: str, options: ComputeOptions, infinite_expiry: bool, deadline: float) -> Protocol:
    """For servers without leases: a lock taken with cache_add beside the key; waiters poll."""
    lock = lock_key(key)
    token = os.urandom(16)
    while True:
        value, locked = yield _ops.get_or_lock(key, lock, token, options.lease_ttl)
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


def drive_sync(gen: Protocol, execute: Callable[[_ops.Call], Any], factory: Callable[[], Any],
               no_leases: Callable[[], None]) -> bytes:
    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = gen.throw(error) if error is not None else gen.send(reply)
        except StopIteration as done:
            return done.value
        reply, error = None, None
        if isinstance(step, _ops.Call):
            try:
                reply = execute(step)
            except Exception as failure:  # the protocol may give up what it holds, then re-raises
                error = failure
        elif step is COMPUTE:
            try:
                reply = factory()
            except BaseException as failure:  # handed to the protocol, which re-raises it
                error = failure
        elif isinstance(step, Sleep):
            time.sleep(step.seconds)
        elif step is NO_LEASES:
            no_leases()
        else:
            raise AssertionError(f"unknown step {step!r}")


async def drive_async(gen: Protocol, execute: Callable[[_ops.Call], Awaitable[Any]],
                      factory: Callable[[], Any], no_leases: Callable[[], None]) -> bytes:
    import asyncio

    reply: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = gen.throw(error) if error is not None else gen.send(reply)
        except StopIteration as done:
            return done.value
        reply, error = None, None
        if isinstance(step, _ops.Call):
            try:
                reply = await execute(step)
            except Exception as failure:
                error = failure
        elif step is COMPUTE:
            try:
                reply = factory()
                if inspect.isawaitable(reply):
                    reply = await reply
            except BaseException as failure:  # CancelledError too: the lease is released
                error = failure
        elif isinstance(step, Sleep):
            await asyncio.sleep(step.seconds)
        elif step is NO_LEASES:
            no_leases()
        else:
            raise AssertionError(f"unknown step {step!r}")
