"""pg_cache_client.django.PgCache beyond Django's own suite (which tests/python.sh runs): the stored
forms, server-side incr, native async, the transactional DATABASE option, get_or_set once, the
CACHE option (a named cache)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from unittest import mock

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

django = pytest.importorskip("django")
from django.conf import settings  # noqa: E402

_params = conninfo_to_dict(os.environ["PG_CACHE_TEST_URL"])
if not settings.configured:
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": _params.get("dbname"),
                "USER": _params.get("user", "postgres"),
                "HOST": _params.get("host", "127.0.0.1"),
                "PORT": _params.get("port", "5432"),
            }
        },
        CACHES={
            "default": {"BACKEND": "pg_cache_client.django.PgCache", "LOCATION": os.environ["PG_CACHE_TEST_URL"],
                        "OPTIONS": {"POOL_SIZE": 4}},
            "tx": {"BACKEND": "pg_cache_client.django.PgCache", "OPTIONS": {"DATABASE": "default"}},
            "prefixed": {"BACKEND": "pg_cache_client.django.PgCache", "LOCATION": os.environ["PG_CACHE_TEST_URL"],
                         "KEY_PREFIX": "site1", "OPTIONS": {"CLEAR": "prefix"}},
            "never": {"BACKEND": "pg_cache_client.django.PgCache", "LOCATION": os.environ["PG_CACHE_TEST_URL"],
                      "TIMEOUT": None},
            # conftest.NAMED_CACHES
            "sessions": {"BACKEND": "pg_cache_client.django.PgCache", "LOCATION": os.environ["PG_CACHE_TEST_URL"],
                         "OPTIONS": {"CACHE": "py_sessions", "POOL_SIZE": 2}},
            "sessions_tx": {"BACKEND": "pg_cache_client.django.PgCache",
                            "OPTIONS": {"DATABASE": "default", "CACHE": "py_sessions"}},
            "unknown": {"BACKEND": "pg_cache_client.django.PgCache", "LOCATION": os.environ["PG_CACHE_TEST_URL"],
                        "OPTIONS": {"CACHE": "py_no_such_cache"}},
        },
        USE_TZ=True,
    )
    django.setup()

from django.core.cache import caches  # noqa: E402
from django.db import connection, transaction  # noqa: E402

from pg_cache_client import django as backend  # noqa: E402
from pg_cache_client.django import loads  # noqa: E402


@pytest.fixture(autouse=True)
def _empty(raw):
    yield
    connection.close()


def stored(raw: psycopg.Connection, key: str, cache: str | None = None) -> bytes | None:
    if cache is None:
        return raw.execute("SELECT cache_get(%s)", (key,)).fetchone()[0]
    return raw.execute("SELECT cache_get(%s, cache => %s)", (key, cache)).fetchone()[0]


def rows(raw: psycopg.Connection, key: str) -> int:
    """Rows of the key in the table, live or expired."""
    return raw.execute("SELECT count(*) FROM pg_cache_entries WHERE key = %s", (key,)).fetchone()[0]


def expires_at(raw: psycopg.Connection, key: str) -> str | None:
    """The row's expiry as text ('infinity' for one that never expires)."""
    row = raw.execute("SELECT expires_at::text FROM pg_cache_entries WHERE key = %s", (key,)).fetchone()
    return row and row[0]


def test_stored_forms_and_server_side_incr(raw: psycopg.Connection) -> None:
    cache = caches["default"]
    cache.set("n", 41)
    assert stored(raw, ":1:n") == b"41"  # decimal text, as cache_incr keeps it
    assert cache.incr("n") == 42
    raw.execute("SELECT cache_incr(':1:n', 8)")  # another client counts on the server
    assert cache.get("n") == 50
    assert cache.decr("n", 10) == 40
    cache.set("flag", True)
    assert stored(raw, ":1:flag")[:1] == b"\x80" and cache.get("flag") is True
    cache.set("big", 2**70)
    assert cache.get("big") == 2**70
    with pytest.raises(ValueError):
        cache.incr("absent")
    assert rows(raw, ":1:absent") == 0  # incr of a missing key creates nothing
    with pytest.raises(ValueError):
        cache.decr("absent")
    assert rows(raw, ":1:absent") == 0
    cache.set("text", "abc")
    with pytest.raises(TypeError):
        cache.incr("text")


def test_timeouts(raw: psycopg.Connection) -> None:
    cache = caches["default"]
    cache.set("default-timeout", 1)
    ttl = raw.execute("SELECT extract(epoch FROM cache_ttl(':1:default-timeout'))").fetchone()[0]
    assert 290 < ttl <= 300
    cache.set("forever", 1, None)
    assert expires_at(raw, ":1:forever") == "infinity"
    caches["never"].set("forever2", 1)
    assert expires_at(raw, ":1:forever2") == "infinity"
    assert cache.add("forever3", 1, None) is True
    cache.set_many({"forever4": 1}, None)
    assert expires_at(raw, ":1:forever3") == expires_at(raw, ":1:forever4") == "infinity"
    cache.set("made-permanent", 1, 60)
    assert cache.touch("made-permanent", None) is True
    assert expires_at(raw, ":1:made-permanent") == "infinity"
    assert cache.get("made-permanent") == 1
    assert cache.get_or_set("forever5", lambda: 5, None) == 5
    assert expires_at(raw, ":1:forever5") == "infinity"
    cache.set("gone", 1, 0)
    cache.set("gone2", 1, -5)
    assert stored(raw, ":1:gone") is None and stored(raw, ":1:gone2") is None
    assert cache.add("gone3", 1, 0) is True and stored(raw, ":1:gone3") is None
    cache.set("x", 1, 60)
    assert cache.add("x", 2, 0) is False and cache.get("x") == 1
    assert cache.touch("x", 3600) is True
    assert raw.execute("SELECT cache_ttl(':1:x') > interval '59 min'").fetchone()[0]


def test_many_in_one_call_each(raw: psycopg.Connection) -> None:
    cache = caches["default"]
    with mock.patch.object(backend.PgCache, "_run", wraps=cache._run) as run:
        cache.set_many({"a": 1, "b": "two", "c": [3]})
        assert cache.get_many(["a", "b", "c", "d"]) == {"a": 1, "b": "two", "c": [3]}
        cache.delete_many(["a", "b"])
        cache.clear()
    assert run.call_count == 4
    assert stored(raw, ":1:c") is None


def test_clear_prefix_only(raw: psycopg.Connection) -> None:
    caches["default"].set("other-site", 1)
    caches["prefixed"].set("mine", 1)
    caches["prefixed"].clear()
    assert caches["prefixed"].get("mine") is None
    assert caches["default"].get("other-site") == 1


def test_async_is_native(raw: psycopg.Connection) -> None:
    cache = caches["default"]

    async def main() -> None:
        # no call may go through the sync client (sync_to_async would)
        with mock.patch.object(backend._SyncClient, "_execute", side_effect=AssertionError("sync path")):
            await cache.aset("k", {"v": 1})
            assert await cache.aget("k") == {"v": 1}
            assert await cache.aadd("k", 2) is False
            assert await cache.ahas_key("k") is True
            await cache.aset_many({"n": 1, "m": 2})
            assert await cache.aget_many(["n", "m", "z"]) == {"n": 1, "m": 2}
            assert await cache.aincr("n", 5) == 6
            assert await cache.adecr("n") == 5
            with pytest.raises(ValueError):
                await cache.aincr("z")
            assert rows(raw, ":1:z") == 0
            await cache.aset("forever", 1, None)
            assert await cache.atouch("n", None) is True
            assert expires_at(raw, ":1:forever") == expires_at(raw, ":1:n") == "infinity"
            assert await cache.atouch("n", 60) is True
            assert await cache.adelete("n") is True
            await cache.adelete_many(["m"])
            assert await cache.aget_or_set("computed", lambda: "made") == "made"
            assert await cache.aget("computed") == "made"
            await cache.aclear()
            assert await cache.aget("k") is None

    asyncio.run(main())
    asyncio.run(main())  # a second event loop gets its own pool


def test_writes_commit_and_roll_back_with_the_transaction(raw: psycopg.Connection) -> None:
    cache = caches["tx"]
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            cache.set("order:1", "pending")
            assert cache.get("order:1") == "pending"  # the transaction sees its own write
            assert stored(raw, ":1:order:1") is None  # nobody else does yet
            raise RuntimeError("the order failed")
    assert stored(raw, ":1:order:1") is None
    assert cache.get("order:1") is None

    caches["default"].set("order:2", "old")
    with transaction.atomic():
        cache.set("order:2", "new")
        cache.delete("order:3")
        assert caches["default"].get("order:2") == "old"  # the pool's connection: not committed yet
    assert caches["default"].get("order:2") == "new"

    with transaction.atomic():
        cache.delete("order:2")
        transaction.set_rollback(True)
    assert caches["default"].get("order:2") == "new"
    # outside a transaction: autocommit
    cache.set("order:4", 4)
    assert stored(raw, ":1:order:4") is not None
    assert cache.incr("order:4") == 5
    with pytest.raises(ValueError):
        cache.incr("order:none")
    assert rows(raw, ":1:order:none") == 0
    cache.set("order:5", 5, None)
    assert expires_at(raw, ":1:order:5") == "infinity"


def test_database_mode_errors_keep_sqlstate(raw: psycopg.Connection) -> None:
    from pg_cache_client import LimitExceeded

    cache = caches["tx"]
    with pytest.raises(LimitExceeded) as caught:
        cache.set("k" * 3000, 1)
    assert caught.value.sqlstate == "54000" and caught.value.key.endswith("k" * 100)


def lease_stats(raw: psycopg.Connection) -> tuple[int, int]:
    """(leases_granted, lease_waits) since the last cache_stats_reset()."""
    row = raw.execute("SELECT to_jsonb(s) FROM cache_stats() AS s").fetchone()[0]
    return row["leases_granted"], row["lease_waits"]


@pytest.mark.parametrize("alias", ["default", "tx"])
def test_get_or_set_computes_once(raw: psycopg.Connection, alias: str) -> None:
    # "default": the pool of LOCATION (POOL_SIZE 4 for 8 threads); "tx": each thread on its own
    # Django connection, in autocommit (outside an atomic block), so each waits in the server.
    calls = []

    def slow() -> dict:
        calls.append(1)
        time.sleep(0.3)
        return {"report": 42}

    raw.execute("SELECT cache_stats_reset()")
    results = []
    barrier = threading.Barrier(8)

    def call() -> None:
        try:
            barrier.wait()
            results.append(caches[alias].get_or_set("report", slow, 60))
        finally:
            connection.close()

    started = time.monotonic()
    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    elapsed = time.monotonic() - started
    assert results == [{"report": 42}] * 8
    assert len(calls) == 1
    assert elapsed < 5, elapsed  # woken by the fill, not by lease_ttl or the wait's end (10 s)
    assert lease_stats(raw) == (1, 0)
    assert caches[alias].get("report") == {"report": 42}
    assert 55 < raw.execute("SELECT extract(epoch FROM cache_ttl(%s))", (stored_key(alias, "report"),)).fetchone()[0] <= 60


def stored_key(alias: str, key: str) -> str:
    return caches[alias].make_key(key)


def test_get_or_set_in_an_atomic_block_is_djangos(raw: psycopg.Connection) -> None:
    # On Django's connection inside atomic(): a fill would end its lease only at the commit, so
    # this is Django's own get_or_set (get, add, get), with no lease.
    cache = caches["tx"]
    raw.execute("SELECT cache_stats_reset()")
    with transaction.atomic():
        assert cache.get_or_set("atomic", lambda: "v", 60) == "v"
    assert cache.get("atomic") == "v"
    assert lease_stats(raw) == (0, 0)


def test_aget_or_set_computes_once(raw: psycopg.Connection) -> None:
    calls = []

    def slow() -> str:
        calls.append(1)
        time.sleep(0.3)  # blocks the loop: the other tasks wait for the one that computes
        return "report"

    async def main() -> list:
        cache = caches["default"]
        try:
            return list(await asyncio.gather(*(cache.aget_or_set("areport", slow, 60) for _ in range(8))))
        finally:
            await cache.async_client.close()

    raw.execute("SELECT cache_stats_reset()")
    assert asyncio.run(main()) == ["report"] * 8
    assert len(calls) == 1
    assert lease_stats(raw)[0] == 1
    assert caches["default"].get("areport") == "report"


def test_one_pool_per_process(raw: psycopg.Connection) -> None:
    seen = []

    def use() -> None:
        cache = caches["default"]  # a backend instance per thread, as Django makes them
        cache.get("x")
        seen.append(cache.client)

    threads = [threading.Thread(target=use) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(client) for client in seen}) == 1


# --- OPTIONS CACHE -------------------------------------------------------------------------------

@pytest.mark.parametrize("alias", ["sessions", "sessions_tx"])
def test_option_cache_writes_into_that_cache(raw: psycopg.Connection, named_caches: tuple, alias: str) -> None:
    cache = caches[alias]
    caches["default"].set("user", "in default")
    cache.set("user", "in sessions")
    assert loads(stored(raw, ":1:user", "py_sessions")) == "in sessions"
    assert loads(stored(raw, ":1:user")) == "in default"
    assert cache.get("user") == "in sessions" and caches["default"].get("user") == "in default"
    cache.set("n", 1)
    assert cache.incr("n", 4) == 5 and stored(raw, ":1:n", "py_sessions") == b"5"
    assert stored(raw, ":1:n") is None
    assert cache.get_or_set("computed", lambda: "once", 60) == "once"
    assert loads(stored(raw, ":1:computed", "py_sessions")) == "once" and stored(raw, ":1:computed") is None
    cache.set_many({"a": 1, "b": 2})
    assert cache.get_many(["a", "b", "user"]) == {"a": 1, "b": 2, "user": "in sessions"}
    assert cache.delete("a") is True and stored(raw, ":1:a", "py_sessions") is None
    cache.clear()
    assert stored(raw, ":1:user", "py_sessions") is None and stored(raw, ":1:b", "py_sessions") is None
    assert caches["default"].get("user") == "in default"  # clear() empties its own cache only


def test_option_cache_in_a_transaction(raw: psycopg.Connection, named_caches: tuple) -> None:
    cache = caches["sessions_tx"]
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            cache.set("order", "pending")
            assert cache.get("order") == "pending"
            raise RuntimeError("rolled back")
    assert stored(raw, ":1:order", "py_sessions") is None
    with transaction.atomic():
        cache.set("order", "paid")
    assert loads(stored(raw, ":1:order", "py_sessions")) == "paid" and stored(raw, ":1:order") is None


def test_option_cache_async(raw: psycopg.Connection, named_caches: tuple) -> None:
    async def main() -> None:
        cache = caches["sessions"]
        await cache.aset("k", "async")
        assert await cache.aget("k") == "async"
        assert await cache.aget_or_set("ac", lambda: "made", 60) == "made"
        await cache.async_client.close()

    asyncio.run(main())
    assert loads(stored(raw, ":1:k", "py_sessions")) == "async" and stored(raw, ":1:k") is None
    assert loads(stored(raw, ":1:ac", "py_sessions")) == "made"


def test_option_cache_unknown_and_invalid(raw: psycopg.Connection) -> None:
    from django.core.exceptions import ImproperlyConfigured

    from pg_cache_client import UnknownCache

    with pytest.raises(UnknownCache) as caught:
        caches["unknown"].set("k", 1)
    assert caught.value.sqlstate == "42704" and "py_no_such_cache" in caught.value.message
    for name in ("Sessions", "a-b", "", 7):
        with pytest.raises(ImproperlyConfigured, match="CACHE"):
            backend.PgCache(os.environ["PG_CACHE_TEST_URL"], {"OPTIONS": {"CACHE": name}})
