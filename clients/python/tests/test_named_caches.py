"""Named caches (pg_cache 0.3.0): a client's `cache` option. The default cache's SQL is the SQL of
before (so that the client still works with 0.2.0 servers); a named cache's calls each pass
`cache => %s`, and keys, values, clear, stats, leases and L1 invalidations stay within the cache."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import time
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from pg_cache_client import NEVER, AsyncPgCache, Features, L1Cache, PgCache, UnknownCache, _ops

SESSIONS, OTHER = "py_sessions", "py_other"


def stored(raw: psycopg.Connection, key: str, cache: str | None = None) -> bytes | None:
    """The value as the server reads it: `cache_get(key)`, or `cache_get(key, cache => ...)`."""
    if cache is None:
        return raw.execute("SELECT cache_get(%s)", (key,)).fetchone()[0]
    return raw.execute("SELECT cache_get(%s, cache => %s)", (key, cache)).fetchone()[0]


# --- names ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["Sessions", "1st", "a-b", "", "a" * 64, "sessions\n", "é", " x"])
def test_names_the_server_refuses_fail_when_the_client_is_made(name: str) -> None:
    with pytest.raises(ValueError, match="invalid cache name"):
        PgCache("postgresql://unused", cache=name)
    with pytest.raises(ValueError, match="invalid cache name"):
        AsyncPgCache("postgresql://unused", cache=name)


def test_a_cache_name_is_a_str() -> None:
    with pytest.raises(TypeError):
        PgCache("postgresql://unused", cache=None)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["default", "_", "a" * 63, "sessions_2", "x9"])
def test_names_the_server_accepts(name: str) -> None:
    with PgCache("postgresql://unused", cache=name) as client:
        assert client.cache == name


# --- the SQL sent --------------------------------------------------------------------------------

# What every method of PgCache sends for the default cache: the text of before named caches,
# character for character (pg_cache 0.2.0 has no `cache` argument).
_STATS_SQL = ("SELECT hits, misses, sets, removes, evicted, evicted_for_size, live_bytes, entries, "
              "total_bytes, since, (to_jsonb(s) ->> 'leases_granted')::bigint, "
              "(to_jsonb(s) ->> 'lease_waits')::bigint, (to_jsonb(s) ->> 'fills_rejected')::bigint, "
              "(to_jsonb(s) ->> 'stale_served')::bigint FROM cache_stats() AS s")
DEFAULT_SQL: list[tuple[str, Any, str]] = [
    ("get", lambda c: c.get("k"), "SELECT cache_get(%s)"),
    ("set", lambda c: c.set("k", b"v", ttl=60, tags=["t"]), "SELECT cache_set(%s, %s, ttl => %s, tags => %s)"),
    ("set NEVER", lambda c: c.set("k", b"v", ttl=NEVER), "SELECT cache_set(%s, %s, expires_at => 'infinity')"),
    ("add", lambda c: c.add("k", b"v", sliding=5), "SELECT cache_add(%s, %s, sliding => %s)"),
    ("refresh", lambda c: c.refresh("k"), "SELECT cache_refresh(%s)"),
    ("remove", lambda c: c.remove("k"), "SELECT cache_remove(%s)"),
    ("ttl", lambda c: c.ttl("k"),
     "SELECT CASE WHEN t <= interval '1000000 years' THEN t END, t > interval '1000000 years' "
     "FROM cache_ttl(%s) AS t"),
    ("exists", lambda c: c.exists("k"), "SELECT cache_ttl(%s) IS NOT NULL"),
    ("take", lambda c: c.take("k"), "SELECT cache_take(%s)"),
    ("expire", lambda c: c.expire("k", ttl=5), "SELECT cache_expire(%s, ttl => %s)"),
    ("incr", lambda c: c.incr("k", 2), "SELECT cache_incr(%s, %s::bigint)"),
    ("incr_existing", lambda c: c.incr_existing("k"), "SELECT cache_incr(%s, %s::bigint, create_missing => false)"),
    ("get_many", lambda c: c.get_many(["k"]), "SELECT key, value FROM cache_get_many(%s::text[])"),
    ("set_many", lambda c: c.set_many({"k": b"v"}, ttl=5), "SELECT cache_set_many(%s::text[], %s::bytea[], ttl => %s)"),
    ("remove_many", lambda c: c.remove_many(["k"]), "SELECT cache_remove_many(%s::text[])"),
    ("keys", lambda c: c.keys("p"),
     "SELECT key, nullif(expires_at, 'infinity'), expires_at = 'infinity', sliding, "
     "nullif(absolute_expires_at, 'infinity'), absolute_expires_at = 'infinity', value_bytes "
     "FROM cache_keys(%s, %s::int)"),
    ("remove_prefix", lambda c: c.remove_prefix("p"), "SELECT cache_remove_prefix(%s)"),
    ("clear", lambda c: c.clear(), "SELECT cache_clear()"),
    ("tags", lambda c: c.tags("k"), "SELECT cache_tags(%s)"),
    ("remove_by_tag", lambda c: c.remove_by_tag(["t"]), "SELECT cache_remove_by_tag(%s::text[], match_all => %s)"),
    ("get_json", lambda c: c.get_json("k"), "SELECT cache_get_json(%s)"),
    ("set_json", lambda c: c.set_json("k", {}), "SELECT cache_set_json(%s, %s::jsonb)"),
    ("get_many_json", lambda c: c.get_many_json(["k"]), "SELECT key, value FROM cache_get_many_json(%s::text[])"),
    ("stats", lambda c: c.stats(), _STATS_SQL),
    ("stats_reset", lambda c: c.stats_reset(), "SELECT cache_stats_reset()"),
    ("evict_expired", lambda c: c.evict_expired(), "SELECT cache_evict_expired(%s::int)"),
    ("worker_status", lambda c: c.worker_status(),
     "SELECT database, pid, last_sweep_at, evicted_total, last_error, last_error_at FROM cache_worker_status()"),
    ("L1 read", lambda c: c._get_for_l1("k"),
     "SELECT v, extract(epoch FROM cache_ttl(%(k)s))::float8, cache_tags(%(k)s) FROM cache_get(%(k)s) AS v"),
]


def sent_by(client: PgCache, method: Any) -> list[_ops.Call]:
    """The calls `method(client)` hands to the connection (none is run)."""
    sent: list[_ops.Call] = []

    def record(conn: Any, call: _ops.Call) -> None:
        sent.append(call)

    client._features = Features(incr_create_missing=True, leases=True, lease_grace=True, infinite_expiry=True)
    client._run = record  # type: ignore[method-assign]
    method(client)
    return sent


@pytest.mark.parametrize("name, method, sql", DEFAULT_SQL, ids=[row[0] for row in DEFAULT_SQL])
def test_the_default_cache_sends_the_sql_of_before(url: str, name: str, method: Any, sql: str) -> None:
    for cache in ({}, {"cache": "default"}):
        with PgCache(url, max_size=1, **cache) as client:
            sent = sent_by(client, method)
        assert [call.sql for call in sent] == [sql]
        assert "cache =>" not in sent[0].sql


@pytest.mark.parametrize("name, method, sql", DEFAULT_SQL, ids=[row[0] for row in DEFAULT_SQL])
def test_a_named_cache_passes_its_name_to_every_function(url: str, name: str, method: Any, sql: str) -> None:
    with PgCache(url, max_size=1, cache="sessions") as client, PgCache(url, max_size=1) as default:
        [call] = sent_by(client, method)
        [default_call] = sent_by(default, method)
    if name == "worker_status":  # the one function without a cache argument
        assert (call.sql, call.params) == (default_call.sql, default_call.params)
        return
    # As many `cache =>` as pg_cache function calls, each inside its call's parentheses.
    calls = len(re.findall(r"\bcache_[a-z_]+\(", sql))
    placeholder = "%(cache)s" if isinstance(call.params, dict) else "%s"
    assert call.sql.count(f"cache => {placeholder}") == calls
    assert call.sql.replace(f", cache => {placeholder}", "").replace(f"cache => {placeholder}", "") == sql
    if isinstance(call.params, dict):
        assert call.params == {**default_call.params, "cache": "sessions"}
    else:
        assert list(call.params).count("sessions") == calls
        assert [p for p in call.params if p != "sessions"] == list(default_call.params)


def test_named_sql_puts_each_cache_parameter_beside_its_function() -> None:
    call = _ops.in_cache(_ops.incr_existing("k", 2, native=False), "sessions")
    assert call.sql == ("SELECT CASE WHEN cache_ttl(%s, cache => %s) IS NOT NULL "
                        "THEN cache_incr(%s, %s::bigint, cache => %s) END")
    assert call.params == ("k", "sessions", "k", 2, "sessions")
    call = _ops.in_cache(_ops.clear(), "sessions")
    assert (call.sql, call.params) == ("SELECT cache_clear(cache => %s)", ("sessions",))
    call = _ops.in_cache(_ops.add_expired("k", b"v"), "sessions")
    assert call.sql == "SELECT cache_add(%s, %s, ttl => interval '1 microsecond', cache => %s)"
    lock = _ops.in_cache(_ops.set_and_unlock("k", b"v", "lock", b"t", 5, None, None, None), "s")
    assert lock.sql == ("SELECT cache_set(%s, %s, ttl => %s, cache => %s), CASE WHEN cache_get(%s, cache => %s) = %s "
                        "THEN cache_remove(%s, cache => %s) END")
    assert lock.params == ("k", b"v", timedelta(seconds=5), "s", "lock", "s", b"t", "lock", "s")
    assert _ops.in_cache(_ops.features(), "s") == _ops.features()


# --- against the server --------------------------------------------------------------------------

def test_two_caches_keep_their_keys_values_clear_and_stats_apart(url: str, raw: psycopg.Connection,
                                                                  named_caches: tuple[str, ...]) -> None:
    with PgCache(url, max_size=2, cache=SESSIONS) as sessions, PgCache(url, max_size=2, cache=OTHER) as other, \
            PgCache(url, max_size=2) as default:
        for client in (sessions, other, default):
            client.stats_reset()
        sessions.set("k", b"session", ttl=60)
        sessions.set("only-sessions", b"s", ttl=60)
        other.set("k", b"other", ttl=60)
        default.set("k", b"default", ttl=60)
        assert (sessions.get("k"), other.get("k"), default.get("k")) == (b"session", b"other", b"default")
        assert stored(raw, "k", SESSIONS) == b"session" and stored(raw, "k", OTHER) == b"other"
        assert stored(raw, "k") == b"default"
        assert other.get("only-sessions") is None and default.get("only-sessions") is None
        assert sorted(info.key for info in sessions.keys()) == ["k", "only-sessions"]
        assert [info.key for info in other.keys()] == ["k"]

        assert (sessions.stats().sets, other.stats().sets, default.stats().sets) == (2, 1, 1)
        sessions.stats_reset()
        assert (sessions.stats().sets, other.stats().sets, default.stats().sets) == (0, 1, 1)

        assert sessions.clear() == 2
        assert sessions.get("k") is None and sessions.keys() == []
        assert other.get("k") == b"other" and default.get("k") == b"default"
        assert other.remove("k") is True
        assert default.get("k") == b"default"


def test_every_method_works_on_a_named_cache(url: str, raw: psycopg.Connection,
                                             named_caches: tuple[str, ...]) -> None:
    with PgCache(url, max_size=2, cache=SESSIONS) as cache:
        cache.set("m:k", b"v", ttl=60, tags=["t1"])
        assert cache.get("m:k") == b"v" and cache.tags("m:k") == ["t1"]
        assert cache.add("m:k", b"w") is False and cache.add("m:a", b"a", sliding=60) is True
        assert cache.refresh("m:a") is True and cache.exists("m:a") is True
        assert timedelta(seconds=50) < cache.ttl("m:k") <= timedelta(seconds=60)
        assert cache.expire("m:k", ttl=NEVER) is True and cache.ttl("m:k") is NEVER
        assert cache.incr("m:n", 5) == 5 and cache.incr_existing("m:n", 1) == 6
        assert cache.incr_existing("m:none", 1) is None
        assert cache.set_many({"m:1": b"1", "m:2": b"2"}, ttl=60) == 2
        assert cache.get_many(["m:1", "m:2", "m:x"]) == {"m:1": b"1", "m:2": b"2"}
        cache.set_json("m:j", {"a": [1, 2]}, ttl=60)
        assert cache.get_json("m:j") == {"a": [1, 2]}
        assert cache.get_many_json(["m:j"]) == {"m:j": {"a": [1, 2]}}
        assert {info.key for info in cache.keys("m:")} == {"m:k", "m:a", "m:n", "m:1", "m:2", "m:j"}
        # none of it reached the default cache
        assert raw.execute("SELECT count(*) FROM cache_keys('m:')").fetchone()[0] == 0
        assert stored(raw, "m:k", SESSIONS) == b"v"
        assert cache.take("m:a") == b"a" and stored(raw, "m:a", SESSIONS) is None
        assert cache.remove_many(["m:1", "m:x"]) == 1
        assert cache.remove_by_tag(["t1"]) == 1 and cache.get("m:k") is None
        assert cache.remove_prefix("m:") == 3
        assert cache.remove("m:2") is False
        assert cache.evict_expired() >= 0
        assert isinstance(cache.worker_status(), list)
        assert cache._get_for_l1("m:none") == (None, None, None)


def test_get_or_compute_stores_in_its_cache(url: str, raw: psycopg.Connection,
                                            named_caches: tuple[str, ...]) -> None:
    with PgCache(url, max_size=2, cache=SESSIONS) as cache:
        assert cache.features().leases, "the suite's cluster preloads pg_cache"
        assert cache.get_or_compute("c:leased", lambda: b"computed", ttl=60) == b"computed"
        assert stored(raw, "c:leased", SESSIONS) == b"computed" and stored(raw, "c:leased") is None
        assert cache.get_or_compute("c:leased", lambda: b"again", ttl=60) == b"computed"
        # the fallback of servers without leases: its lock lives in the same cache
        cache._features = dataclasses.replace(cache.features(), leases=False, lease_grace=False)
        assert cache.get_or_compute("c:locked", lambda: b"by lock", ttl=60) == b"by lock"
        assert stored(raw, "c:locked", SESSIONS) == b"by lock" and stored(raw, "c:locked") is None


def test_an_unknown_cache_raises_unknown_cache(url: str, raw: psycopg.Connection) -> None:
    with PgCache(url, max_size=1, cache="py_no_such_cache") as cache:
        for method in (lambda: cache.get("k"), lambda: cache.set("k", b"v"), cache.clear, cache.stats):
            with pytest.raises(UnknownCache) as caught:
                method()
            assert caught.value.sqlstate == "42704" and "py_no_such_cache" in caught.value.message
            assert isinstance(caught.value, LookupError)

    async def main() -> None:
        async with AsyncPgCache(url, max_size=1, cache="py_no_such_cache") as cache:
            with pytest.raises(UnknownCache):
                await cache.get("k")

    asyncio.run(main())


def test_async_client_on_a_named_cache(url: str, raw: psycopg.Connection, named_caches: tuple[str, ...]) -> None:
    async def main() -> None:
        async with AsyncPgCache(url, max_size=2, cache=SESSIONS) as sessions, AsyncPgCache(url, max_size=2) as default:
            await sessions.set("a:k", b"session", ttl=60)
            await default.set("a:k", b"default", ttl=60)
            assert await sessions.get("a:k") == b"session" and await default.get("a:k") == b"default"
            assert await sessions.get_or_compute("a:c", lambda: b"c", ttl=60) == b"c"
            assert await sessions.clear() == 2
            assert await default.get("a:k") == b"default"

    asyncio.run(main())
    assert stored(raw, "a:c", SESSIONS) is None and stored(raw, "a:c") is None


# --- L1 ------------------------------------------------------------------------------------------

def cached(l1: L1Cache, key: str) -> bool:
    """Whether the L1 serves `key` from memory now."""
    return l1.get_with_source(key)[1]


def test_l1_applies_only_its_own_caches_invalidations(url: str, raw: psycopg.Connection,
                                                      named_caches: tuple[str, ...]) -> None:
    with PgCache(url, max_size=2, cache=SESSIONS) as sessions_client, PgCache(url, max_size=2) as default_client, \
            L1Cache(sessions_client) as sessions, L1Cache(default_client) as default:
        assert sessions.cache == SESSIONS and default.cache == "default"
        assert sessions.wait_listening(5) and default.wait_listening(5)
        # written without notifications, so that none arrives during the checks
        raw.execute("SELECT cache_set('k', 's', cache => %s), cache_set('k', 'd')", (SESSIONS,))
        assert sessions.get("k") == b"s" and default.get("k") == b"d"
        assert cached(sessions, "k") and cached(default, "k")

        for change in ({"cache": OTHER, "keys": ["k"]}, {"cache": OTHER, "all": True},
                       {"keys": ["k"]}, {"all": True}, {"tags": ["t"], "prefixes": [""]}):
            sessions._invalidate(json.dumps(change))
        assert cached(sessions, "k"), "the default cache's and other caches' changes leave it"
        sessions._invalidate(json.dumps({"cache": SESSIONS, "keys": ["k"]}))
        assert not cached(sessions, "k")
        for unreadable in ('{"cache": null, "keys": []}', "[1]", "not json"):
            sessions.get("k")
            sessions._invalidate(unreadable)
            assert not cached(sessions, "k"), f"a payload of unknown cache flushes: {unreadable}"

        for change in ({"cache": SESSIONS, "keys": ["k"]}, {"cache": SESSIONS, "all": True},
                       {"cache": "default_2", "all": True}):
            default._invalidate(json.dumps(change))
        assert cached(default, "k"), "a named cache's changes leave the default cache's L1"
        default._invalidate(json.dumps({"keys": ["k"]}))
        assert not cached(default, "k")
        default.get("k")
        default._invalidate(json.dumps({"cache": "default", "all": True}))
        assert not cached(default, "k")
        assert default.stats().invalidations == 2


def test_l1_follows_the_servers_notifications_of_its_cache(url: str, raw: psycopg.Connection,
                                                           named_caches: tuple[str, ...]) -> None:
    with PgCache(url, max_size=2, cache=SESSIONS) as client, L1Cache(client) as l1, \
            psycopg.connect(url, autocommit=True) as writer:
        writer.execute("SET pg_cache.notify = on")
        assert l1.wait_listening(5)
        raw.execute("SELECT cache_set('k', 'v1', cache => %s)", (SESSIONS,))
        assert l1.get("k") == b"v1" and cached(l1, "k")
        invalidations = l1.stats().invalidations

        # Changes of the other caches, then one of ours to another key: once that one has been
        # applied, the others have been heard (one listening connection, in commit order).
        writer.execute("SELECT cache_set('k', 'x', cache => %s)", (OTHER,))
        writer.execute("SELECT cache_clear(cache => %s)", (OTHER,))
        writer.execute("SELECT cache_set('k', 'd')")
        writer.execute("SELECT cache_clear()")
        writer.execute("SELECT cache_set('marker', 'm', cache => %s)", (SESSIONS,))
        deadline = time.monotonic() + 2
        while l1.stats().invalidations == invalidations and time.monotonic() < deadline:
            time.sleep(0.01)
        assert l1.stats().invalidations == invalidations + 1, "only its own cache's notification counts"
        assert l1.get_with_source("k") == (b"v1", True)

        writer.execute("SELECT cache_set('k', 'v2', cache => %s)", (SESSIONS,))
        deadline = time.monotonic() + 1
        while l1.get("k") != b"v2" and time.monotonic() < deadline:
            time.sleep(0.005)
        assert l1.get("k") == b"v2"
        writer.execute("SELECT cache_clear(cache => %s)", (SESSIONS,))
        deadline = time.monotonic() + 1
        while l1.get("k") is not None and time.monotonic() < deadline:
            time.sleep(0.005)
        assert l1.get("k") is None
