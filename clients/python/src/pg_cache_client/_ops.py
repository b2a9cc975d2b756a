"""The cache operations as data: the SQL of each call, its parameters and how its rows become the
Python result. The sync and async clients and the Django backend's connection mode only run them,
so every operation is written once."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Callable, Iterable, Mapping, Sequence

from ._types import (NEVER, CacheStats, Expiry, KeyInfo, Value, WorkerStatus, _Never, to_bytes,
                     to_interval)

Rows = list[tuple]


@dataclass(frozen=True, slots=True)
class Call:
    function: str
    sql: str
    params: tuple
    parse: Callable[[Rows], Any]
    key: str | None = None
    keys: Sequence[str] | None = None
    # Safe to run again on a fresh connection when the first one broke before answering.
    idempotent: bool = False


def _bytes_or_none(value: Any) -> bytes | None:
    if value is None or type(value) is bytes:
        return value
    return bytes(value)


def _scalar(rows: Rows) -> Any:
    return rows[0][0] if rows else None


def _bytes(rows: Rows) -> bytes | None:
    return _bytes_or_none(rows[0][0]) if rows else None


def _bool(rows: Rows) -> bool:
    return bool(rows[0][0])


def _int(rows: Rows) -> int:
    return int(rows[0][0])


def _none(rows: Rows) -> None:
    return None


def _json_value(value: Any) -> Any:
    # Django's psycopg adapters hand jsonb over as text.
    return json.loads(value) if isinstance(value, str) else value


def _json(rows: Rows) -> Any:
    return _json_value(rows[0][0]) if rows else None


def _key(key: str) -> str:
    if not isinstance(key, str):
        raise TypeError(f"cache keys are str, not {type(key).__name__}")
    return key


def _key_list(keys: Iterable[str]) -> list[str]:
    result = list(keys)
    for key in result:
        _key(key)
    return result


def _tags(tags: Iterable[str] | None) -> list[str] | None:
    if tags is None:
        return None
    if isinstance(tags, str):
        raise TypeError("tags is a list of str, not one str")
    return list(tags)


# SQL text by function and the arguments present, so that every distinct call is one statement
# text (psycopg prepares a statement after a few executions of the same text).
_TEMPLATES: dict[tuple, str] = {}


def _sql(function: str, leading: str, named: tuple[str, ...], select: str = "SELECT {call}") -> str:
    """`named` holds argument names (sent as parameters) or whole `name => literal` arguments."""
    cache_key = (function, leading, named, select)
    sql = _TEMPLATES.get(cache_key)
    if sql is None:
        arguments = [leading] if leading else []
        arguments += [name if "=>" in name else f"{name} => %s" for name in named]
        sql = select.format(call=f"{function}({', '.join(arguments)})")
        _TEMPLATES[cache_key] = sql
    return sql


# ttl=NEVER with Features.infinite_expiry: the server's own never-expiring form (with sliding, a
# window without a cap). A literal in the SQL text, so the statement stays one prepared text.
_EXPIRES_NEVER = "expires_at => 'infinity'"


def _expiry(ttl: Any, sliding: Expiry, expires_at: datetime | None,
            tags: Iterable[str] | None = None, with_tags: bool = False,
            infinite_expiry: bool = False) -> tuple[tuple[str, ...], tuple]:
    names: list[str] = []
    values: list[Any] = []
    if ttl is NEVER and expires_at is not None:
        raise TypeError("ttl=NEVER and expires_at: give one of them")
    if ttl is NEVER and infinite_expiry:
        names.append(_EXPIRES_NEVER)
    elif ttl is not None:
        names.append("ttl")
        values.append(to_interval(ttl, "ttl"))
    if sliding is not None:
        names.append("sliding")
        values.append(to_interval(sliding, "sliding"))
    if expires_at is not None:
        if not isinstance(expires_at, datetime):
            raise TypeError(f"expires_at must be a datetime, not {type(expires_at).__name__}")
        names.append("expires_at")
        values.append(expires_at)
    if with_tags and tags is not None:
        names.append("tags")
        values.append(_tags(tags))
    return tuple(names), tuple(values)


# --- named caches (extension 0.3.0) -------------------------------------------------------------

DEFAULT_CACHE = "default"
# The server's rule for cache names (it refuses others with 22023): checked when a client is made,
# so that a typo fails there rather than at the first call.
_CACHE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def cache_name(name: str) -> str:
    if not isinstance(name, str):
        raise TypeError(f"a cache name is a str, not {type(name).__name__}")
    if not _CACHE_NAME.fullmatch(name):
        raise ValueError(f"invalid cache name {name!r}: lowercase letters, digits and _, not starting "
                         "with a digit, at most 63 characters")
    return name


# Every pg_cache function takes `cache` as its last argument, except these.
_WITHOUT_CACHE_ARGUMENT = frozenset({"cache_worker_status"})
_FUNCTION_CALL = re.compile(r"\b(cache_[a-z_]+)\(")
_PLACEHOLDER = re.compile(r"%%|%[sbt]|%\([a-z_]+\)[sbt]")


def _closing_parenthesis(sql: str, start: int) -> int:
    """The index of the ")" that closes the argument list opened just before `start`."""
    depth, quoted = 1, False
    for index in range(start, len(sql)):
        char = sql[index]
        if char == "'":
            quoted = not quoted  # '' inside a literal toggles twice
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
            if depth == 0:
                return index
    raise ValueError(f"unbalanced parentheses in {sql!r}")


# SQL text of the default cache -> (the text for a named cache, how many of the call's positional
# parameters come before each added cache parameter).
_NAMED_TEMPLATES: dict[tuple[str, bool], tuple[str, tuple[int, ...]]] = {}


def _named_template(sql: str, named_params: bool) -> tuple[str, tuple[int, ...]]:
    template = _NAMED_TEMPLATES.get((sql, named_params))
    if template is not None:
        return template
    closings = sorted(_closing_parenthesis(sql, match.end()) for match in _FUNCTION_CALL.finditer(sql)
                      if match.group(1) not in _WITHOUT_CACHE_ARGUMENT)
    parts: list[str] = []
    before: list[int] = []
    last = 0
    for close in closings:
        has_arguments = sql[:close].rstrip()[-1:] != "("
        placeholder = "%(cache)s" if named_params else "%s"
        parts += [sql[last:close], f"{', ' if has_arguments else ''}cache => {placeholder}"]
        before.append(sum(1 for p in _PLACEHOLDER.findall(sql, 0, close) if p != "%%"))
        last = close
    parts.append(sql[last:])
    template = _NAMED_TEMPLATES[(sql, named_params)] = ("".join(parts), tuple(before))
    return template


def in_cache(call: Call, cache: str) -> Call:
    """The call on the named cache `cache`: `cache => %s` added to every pg_cache function it
    calls. Calls of the default cache are sent without it, exactly as to pg_cache 0.2.0, which
    has no `cache` argument."""
    if isinstance(call.params, dict):
        sql, _ = _named_template(call.sql, True)
        params: Any = {**call.params, "cache": cache}
    else:
        sql, before = _named_template(call.sql, False)
        if not before:
            return call
        if len(before) == 1 and before[0] == len(call.params):
            params = call.params + (cache,)  # one function, cache last: most calls
        else:
            params, taken = [], 0
            for count in before:
                params += call.params[taken:count]
                params.append(cache)
                taken = count
            params = tuple(params + list(call.params[taken:]))
    # (not dataclasses.replace: this runs on every call of a named cache, and replace costs 1 us)
    return Call(call.function, sql, params, call.parse, call.key, call.keys, call.idempotent)


# --- entries -------------------------------------------------------------------------------------

def get(key: str) -> Call:
    return Call("cache_get", "SELECT cache_get(%s)", (_key(key),), _bytes, key=key, idempotent=True)


def set(key: str, value: Value, ttl: Any = None, sliding: Expiry = None,
        expires_at: datetime | None = None, tags: Iterable[str] | None = None,
        infinite_expiry: bool = False) -> Call:
    names, values = _expiry(ttl, sliding, expires_at, tags, True, infinite_expiry)
    return Call("cache_set", _sql("cache_set", "%s, %s", names), (_key(key), to_bytes(value)) + values,
                _none, key=key, idempotent=True)


def add(key: str, value: Value, ttl: Any = None, sliding: Expiry = None,
        expires_at: datetime | None = None, tags: Iterable[str] | None = None,
        infinite_expiry: bool = False) -> Call:
    names, values = _expiry(ttl, sliding, expires_at, tags, True, infinite_expiry)
    return Call("cache_add", _sql("cache_add", "%s, %s", names), (_key(key), to_bytes(value)) + values,
                _bool, key=key)


def add_expired(key: str, value: Value) -> Call:
    """Whether `add` would set the key, leaving nothing readable (Django's timeout 0): an entry
    that expires a microsecond after it is added (the eviction worker removes the row)."""
    return Call("cache_add", "SELECT cache_add(%s, %s, ttl => interval '1 microsecond')",
                (_key(key), to_bytes(value)), _bool, key=key)


def refresh(key: str) -> Call:
    return Call("cache_refresh", "SELECT cache_refresh(%s)", (_key(key),), _bool, key=key, idempotent=True)


def remove(key: str) -> Call:
    return Call("cache_remove", "SELECT cache_remove(%s)", (_key(key),), _bool, key=key)


# cache_ttl of an entry that never expires: 'infinity' on PostgreSQL 17+, before that the interval
# with every field at its maximum, which psycopg cannot load as a timedelta. No finite expiry lies
# this far ahead (timestamptz ends in 294276 AD), so the server says "never" as a second column.
_TTL_SQL = ("SELECT CASE WHEN t <= interval '1000000 years' THEN t END, t > interval '1000000 years' "
            "FROM cache_ttl(%s) AS t")


def _ttl(rows: Rows) -> timedelta | _Never | None:
    remaining, never = rows[0]
    return NEVER if never else remaining


def ttl(key: str) -> Call:
    return Call("cache_ttl", _TTL_SQL, (_key(key),), _ttl, key=key, idempotent=True)


def take(key: str) -> Call:
    return Call("cache_take", "SELECT cache_take(%s)", (_key(key),), _bytes, key=key)


def expire(key: str, ttl: Any = None, sliding: Expiry = None, expires_at: datetime | None = None,
           infinite_expiry: bool = False) -> Call:
    names, values = _expiry(ttl, sliding, expires_at, infinite_expiry=infinite_expiry)
    return Call("cache_expire", _sql("cache_expire", "%s", names), (_key(key),) + values, _bool,
                key=key, idempotent=True)


def exists(key: str) -> Call:
    """Whether a live entry has the key, without sliding it."""
    return Call("cache_ttl", "SELECT cache_ttl(%s) IS NOT NULL", (_key(key),), _bool, key=key,
                idempotent=True)


# --- counters ------------------------------------------------------------------------------------

def incr(key: str, delta: int = 1, ttl: Any = None, sliding: Expiry = None,
         expires_at: datetime | None = None, infinite_expiry: bool = False) -> Call:
    names, values = _expiry(ttl, sliding, expires_at, infinite_expiry=infinite_expiry)
    return Call("cache_incr", _sql("cache_incr", "%s, %s::bigint", names), (_key(key), int(delta)) + values,
                _int, key=key)


def incr_existing(key: str, delta: int, native: bool) -> Call:
    """cache_incr of a live entry only; None when absent (then nothing is created).

    With `create_missing => false` (extension 0.3.0, router 0.2.0: Features.incr_create_missing)
    this is atomic. Without it, the existence check and the increment are two function calls of
    one statement: an entry removed or expiring between them is created again as `delta`, with
    the default sliding window."""
    if native:
        sql = "SELECT cache_incr(%s, %s::bigint, create_missing => false)"
        params: tuple = (_key(key), int(delta))
    else:
        sql = "SELECT CASE WHEN cache_ttl(%s) IS NOT NULL THEN cache_incr(%s, %s::bigint) END"
        params = (_key(key), key, int(delta))
    return Call("cache_incr", sql, params, _scalar, key=key)


# --- batches -------------------------------------------------------------------------------------

def _pairs(rows: Rows) -> dict[str, bytes]:
    return {key: _bytes_or_none(value) for key, value in rows}


def get_many(keys: Iterable[str]) -> Call:
    key_list = _key_list(keys)
    return Call("cache_get_many", "SELECT key, value FROM cache_get_many(%s::text[])", (key_list,),
                _pairs, keys=key_list, idempotent=True)


def set_many(items: Mapping[str, Value], ttl: Any = None, sliding: Expiry = None,
             expires_at: datetime | None = None, tags: Iterable[str] | None = None,
             infinite_expiry: bool = False) -> Call:
    key_list = _key_list(items.keys())
    value_list = [to_bytes(items[key]) for key in key_list]
    names, values = _expiry(ttl, sliding, expires_at, tags, True, infinite_expiry)
    return Call("cache_set_many", _sql("cache_set_many", "%s::text[], %s::bytea[]", names),
                (key_list, value_list) + values, _int, keys=key_list, idempotent=True)


def remove_many(keys: Iterable[str]) -> Call:
    key_list = _key_list(keys)
    return Call("cache_remove_many", "SELECT cache_remove_many(%s::text[])", (key_list,), _int,
                keys=key_list)


def _key_infos(rows: Rows) -> list[KeyInfo]:
    return [KeyInfo(key, NEVER if never else expires_at, sliding, NEVER if never_absolute else absolute,
                    value_bytes)
            for key, expires_at, never, sliding, absolute, never_absolute, value_bytes in rows]


# psycopg cannot load timestamptz 'infinity' (an entry that never expires): the server sends
# NULL in its place and a flag beside it.
_KEYS_SQL = ("SELECT key, nullif(expires_at, 'infinity'), expires_at = 'infinity', sliding, "
             "nullif(absolute_expires_at, 'infinity'), absolute_expires_at = 'infinity', value_bytes "
             "FROM cache_keys(%s, %s::int)")


def keys(prefix: str = "", max_rows: int = 1000) -> Call:
    return Call("cache_keys", _KEYS_SQL, (prefix, int(max_rows)), _key_infos, idempotent=True)


def remove_prefix(prefix: str) -> Call:
    return Call("cache_remove_prefix", "SELECT cache_remove_prefix(%s)", (prefix,), _int)


def clear() -> Call:
    return Call("cache_clear", "SELECT cache_clear()", (), _int)


# --- tags ----------------------------------------------------------------------------------------

def tags(key: str) -> Call:
    return Call("cache_tags", "SELECT cache_tags(%s)", (_key(key),),
                lambda rows: None if rows[0][0] is None else list(rows[0][0]), key=key, idempotent=True)


def remove_by_tag(tag_list: Iterable[str], match_all: bool = False) -> Call:
    return Call("cache_remove_by_tag", "SELECT cache_remove_by_tag(%s::text[], match_all => %s)",
                (_tags(tag_list), bool(match_all)), _int)


# --- JSON ----------------------------------------------------------------------------------------

def get_json(key: str) -> Call:
    return Call("cache_get_json", "SELECT cache_get_json(%s)", (_key(key),), _json, key=key, idempotent=True)


def set_json(key: str, value: Any, ttl: Any = None, sliding: Expiry = None,
             expires_at: datetime | None = None, tags: Iterable[str] | None = None,
             dumps: Callable[[Any], str] = json.dumps, infinite_expiry: bool = False) -> Call:
    names, values = _expiry(ttl, sliding, expires_at, tags, True, infinite_expiry)
    return Call("cache_set_json", _sql("cache_set_json", "%s, %s::jsonb", names),
                (_key(key), dumps(value)) + values, _none, key=key, idempotent=True)


def get_many_json(keys: Iterable[str]) -> Call:
    key_list = _key_list(keys)
    return Call("cache_get_many_json", "SELECT key, value FROM cache_get_many_json(%s::text[])", (key_list,),
                lambda rows: {key: _json_value(value) for key, value in rows}, keys=key_list, idempotent=True)


# --- statistics and maintenance ------------------------------------------------------------------

# The lease counters came with the lease functions (extension 0.3.0): read by name through
# to_jsonb, so that one statement works with every version (NULL where a column is missing).
_STATS_SQL = ("SELECT hits, misses, sets, removes, evicted, evicted_for_size, live_bytes, entries, "
              "total_bytes, since, (to_jsonb(s) ->> 'leases_granted')::bigint, "
              "(to_jsonb(s) ->> 'lease_waits')::bigint, (to_jsonb(s) ->> 'fills_rejected')::bigint, "
              "(to_jsonb(s) ->> 'stale_served')::bigint "
              "FROM cache_stats() AS s")


def stats() -> Call:
    return Call("cache_stats", _STATS_SQL, (), lambda rows: CacheStats(*rows[0]), idempotent=True)


def stats_reset() -> Call:
    return Call("cache_stats_reset", "SELECT cache_stats_reset()", (), _none, idempotent=True)


def evict_expired(max_rows: int = 10000) -> Call:
    return Call("cache_evict_expired", "SELECT cache_evict_expired(%s::int)", (int(max_rows),), _int)


def worker_status() -> Call:
    return Call("cache_worker_status",
                "SELECT database, pid, last_sweep_at, evicted_total, last_error, last_error_at "
                "FROM cache_worker_status()", (),
                lambda rows: [WorkerStatus(*row) for row in rows], idempotent=True)


# --- reads for the L1 cache and get_or_compute ---------------------------------------------------

def get_for_l1(key: str) -> Call:
    """The value, the seconds it has left (without sliding again) and its tags, in one round trip."""
    return Call("cache_get",
                "SELECT v, extract(epoch FROM cache_ttl(%(k)s))::float8, cache_tags(%(k)s) FROM cache_get(%(k)s) AS v",
                {"k": _key(key)},  # type: ignore[arg-type]
                lambda rows: (_bytes_or_none(rows[0][0]), rows[0][1], rows[0][2]), key=key, idempotent=True)


def get_or_lock(key: str, lock_key: str, token: bytes, lock_ttl: timedelta) -> Call:
    """The value of key; on a miss, also an attempt to take the lock (cache_add of lock_key).
    Returns (value, took_lock)."""
    sql = ("SELECT v, CASE WHEN v IS NULL THEN cache_add(%s, %s, ttl => %s) END "
           "FROM cache_get(%s) AS v")
    return Call("cache_get", sql, (lock_key, token, lock_ttl, _key(key)),
                lambda rows: (_bytes_or_none(rows[0][0]), bool(rows[0][1])), key=key)


def poll_locked(key: str, lock_key: str) -> Call:
    """While waiting for another process's computation: (value, lock still held)."""
    return Call("cache_get", "SELECT cache_get(%s), cache_ttl(%s) IS NOT NULL", (_key(key), lock_key),
                lambda rows: (_bytes_or_none(rows[0][0]), bool(rows[0][1])), key=key, idempotent=True)


def set_and_unlock(key: str, value: Value, lock_key: str, token: bytes, ttl: Any, sliding: Expiry,
                   expires_at: datetime | None, tags: Iterable[str] | None,
                   infinite_expiry: bool = False) -> Call:
    names, values = _expiry(ttl, sliding, expires_at, tags, True, infinite_expiry)
    set_sql = _sql("cache_set", "%s, %s", names, select="{call}")
    sql = (f"SELECT {set_sql}, CASE WHEN cache_get(%s) = %s THEN cache_remove(%s) END")
    return Call("cache_set", sql, (_key(key), to_bytes(value)) + values + (lock_key, token, lock_key),
                _none, key=key)


def unlock(lock_key: str, token: bytes) -> Call:
    return Call("cache_remove", "SELECT CASE WHEN cache_get(%s) = %s THEN cache_remove(%s) END",
                (lock_key, token, lock_key), _none, key=lock_key)


# --- leases (stampede protection, extension 0.3.0) ----------------------------------------------

@dataclass(frozen=True, slots=True)
class LeaseAnswer:
    """One row of cache_get_or_lease: status 'hit', 'refresh', 'miss', 'wait' or 'stale'."""

    status: str
    value: bytes | None
    lease: Any  # uuid.UUID, handed back to cache_fill / cache_release as it came
    # The transaction is REPEATABLE READ or SERIALIZABLE: the call only read (the server grants
    # no lease and does not wait there), so 'wait' means a miss.
    could_not_wait: bool


# The server grants leases and waits for fills only under READ COMMITTED (a longer-lived snapshot
# could compute a value older than a write, or never see the fill; it raises 0A000 instead): under
# REPEATABLE READ or SERIALIZABLE the statement only reads (cache_get), so that a call in a
# caller's transaction never aborts it, and says so ('wait' on a miss: compute without a lease).
_LEASE_SQL = ("SELECT l.status, l.value, l.lease, s.no_wait "
              "FROM (SELECT current_setting('transaction_isolation') "
              "NOT IN ('read committed', 'read uncommitted') AS no_wait) AS s, "
              "LATERAL (SELECT g.status, g.value, g.lease "
              "FROM cache_get_or_lease(%s, lease_ttl => %s, wait => %s, beta => %s::float8{grace}) AS g "
              "WHERE NOT s.no_wait "
              "UNION ALL SELECT CASE WHEN v IS NULL THEN 'wait' ELSE 'hit' END, v, NULL::uuid "
              "FROM cache_get(%s) AS v WHERE s.no_wait) AS l")
_LEASE_SQL_PLAIN = _LEASE_SQL.format(grace="")
_LEASE_SQL_GRACE = _LEASE_SQL.format(grace=", grace => %s")


def _lease_answer(rows: Rows) -> LeaseAnswer:
    status, value, lease, no_wait = rows[0]
    return LeaseAnswer(status, _bytes_or_none(value), lease, bool(no_wait))


def get_or_lease(key: str, lease_ttl: timedelta, wait: timedelta, beta: float,
                 grace: timedelta | None = None) -> Call:
    """cache_get_or_lease, waiting up to `wait` in the server for another caller's fill."""
    if grace is None:
        sql, params = _LEASE_SQL_PLAIN, (_key(key), lease_ttl, wait, float(beta), _key(key))
    else:
        sql, params = _LEASE_SQL_GRACE, (_key(key), lease_ttl, wait, float(beta), grace, _key(key))
    return Call("cache_get_or_lease", sql, params, _lease_answer, key=key)


def fill(key: str, value: Value, lease: Any, ttl: Any = None, sliding: Expiry = None,
         expires_at: datetime | None = None, tags: Iterable[str] | None = None,
         infinite_expiry: bool = False) -> Call:
    """cache_fill: stores the value only while `lease` is the key's lease; whether it did."""
    names, values = _expiry(ttl, sliding, expires_at, tags, True, infinite_expiry)
    return Call("cache_fill", _sql("cache_fill", "%s, %s, %s", names),
                (_key(key), to_bytes(value), lease) + values, _bool, key=key)


def release(key: str, lease: Any) -> Call:
    return Call("cache_release", "SELECT cache_release(%s, %s)", (_key(key), lease), _bool, key=key)


# --- what the extension offers -------------------------------------------------------------------

FEATURES_SQL = (
    "SELECT"
    " EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'cache_incr' AND 'create_missing' = ANY (proargnames)),"
    " EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'cache_get_or_lease'),"
    " EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'cache_get_or_lease' AND 'grace' = ANY (proargnames))"
)


@dataclass(frozen=True, slots=True)
class Features:
    """Functions of newer extension versions the client uses when present."""

    incr_create_missing: bool = False  # cache_incr(..., create_missing => false): live-only increment
    # cache_get_or_lease, cache_fill, cache_release (stampede protection). They also need pg_cache
    # in shared_preload_libraries, which the catalog does not tell: get_or_compute finds out from
    # its first call (55000) and then sets this to False in the client's copy.
    leases: bool = False
    lease_grace: bool = False          # cache_get_or_lease(..., grace => ...): 'stale' answers
    # expires_at => 'infinity'. It came with create_missing (extension 0.3.0, router 0.2.0), so
    # the same catalog probe tells; without it ttl=NEVER is LEGACY_NO_EXPIRY_TTL.
    infinite_expiry: bool = False


def _features(rows: Rows) -> Features:
    create_missing, leases, grace = (bool(column) for column in rows[0])
    return Features(incr_create_missing=create_missing, leases=leases, lease_grace=leases and grace,
                    infinite_expiry=create_missing)


def features() -> Call:
    return Call("features", FEATURES_SQL, (), _features, idempotent=True)


__all__ = [name for name in dir() if not name.startswith("_")] + ["NEVER"]
