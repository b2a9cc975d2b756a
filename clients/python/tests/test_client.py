"""PgCache, the sync client: every function, its Python types and its errors."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from pg_cache_client import (NEVER, CacheStats, CacheUnavailable, Features, InvalidArgument, InvalidValue,
                             KeyInfo, LimitExceeded, OutOfRange, PgCache, PgCacheError, WorkerStatus)
from pg_cache_client._types import LEGACY_NO_EXPIRY_TTL


def test_bytes_round_trip_exactly_and_as_bytes(client: PgCache) -> None:
    every_byte = bytes(range(256))
    client.set("b:all", every_byte, ttl=60)
    client.set("b:empty", b"", ttl=60)
    client.set("b:text", "Zoë", ttl=60)
    value = client.get("b:all")
    assert type(value) is bytes and value == every_byte
    assert client.get("b:empty") == b"" and type(client.get("b:empty")) is bytes
    assert client.get("b:text") == "Zoë".encode()
    assert client.get("b:absent") is None
    many = client.get_many(["b:all", "b:empty"])
    assert all(type(v) is bytes for v in many.values())
    taken = client.take("b:all")
    assert type(taken) is bytes and taken == every_byte
    assert client.get("b:all") is None


def test_rejects_values_that_are_not_bytes(client: PgCache) -> None:
    with pytest.raises(TypeError):
        client.set("k", 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        client.get(42)  # type: ignore[arg-type]


def test_expiry_arguments(client: PgCache, raw: psycopg.Connection) -> None:
    client.set("e:ttl", b"x", ttl=timedelta(minutes=10))
    client.set("e:seconds", b"x", ttl=90.5)
    client.set("e:sliding", b"x", sliding=timedelta(minutes=5), ttl=timedelta(hours=1))
    at = datetime.now(timezone.utc) + timedelta(hours=2)
    client.set("e:at", b"x", expires_at=at)
    ttl = client.ttl("e:ttl")
    assert isinstance(ttl, timedelta) and timedelta(minutes=9) < ttl <= timedelta(minutes=10)
    assert timedelta(seconds=85) < client.ttl("e:seconds") <= timedelta(seconds=90.5)
    assert timedelta(minutes=4) < client.ttl("e:sliding") <= timedelta(minutes=5)
    assert timedelta(hours=1, minutes=59) < client.ttl("e:at") <= timedelta(hours=2)
    infos = {info.key: info for info in client.keys("e:")}
    assert infos["e:sliding"].sliding == timedelta(minutes=5)
    assert infos["e:at"].absolute_expires_at is not None
    assert client.ttl("e:absent") is None


def stored_expiry(raw: psycopg.Connection, key: str) -> tuple[str, str | None, str | None] | None:
    """The row's expiry columns as text: 'infinity' is what psycopg cannot load as a datetime."""
    return raw.execute("SELECT expires_at::text, absolute_expires_at::text, sliding::text "
                       "FROM pg_cache_entries WHERE key = %s", (key,)).fetchone()


def test_never_expires_is_the_servers_infinity(client: PgCache, raw: psycopg.Connection) -> None:
    client.set("n:k", b"forever", ttl=NEVER)
    assert stored_expiry(raw, "n:k") == ("infinity", "infinity", None)
    assert client.ttl("n:k") is NEVER
    assert client.add("n:add", b"x", ttl=NEVER) is True
    assert client.set_many({"n:m1": b"1", "n:m2": b"2"}, ttl=NEVER) == 2
    client.set_json("n:json", {"a": 1}, ttl=NEVER)
    assert client.incr("n:count", 5, ttl=NEVER) == 5
    for key in ("n:add", "n:m1", "n:m2", "n:json", "n:count"):
        assert stored_expiry(raw, key) == ("infinity", "infinity", None), key
    # expire(ttl=NEVER) makes a live entry permanent (Redis PERSIST)
    client.set("n:short", b"x", ttl=1)
    assert client.expire("n:short", ttl=NEVER) is True
    assert stored_expiry(raw, "n:short")[0] == "infinity"
    assert client.ttl("n:short") is NEVER
    # with sliding: a window without a cap
    client.set("n:slide", b"x", ttl=NEVER, sliding=timedelta(minutes=5))
    assert stored_expiry(raw, "n:slide")[1:] == (None, "00:05:00")
    assert timedelta(minutes=4) < client.ttl("n:slide") <= timedelta(minutes=5)
    # get_or_compute stores with the same form
    assert client.get_or_compute("n:computed", lambda: b"c", ttl=NEVER) == b"c"
    assert stored_expiry(raw, "n:computed")[0] == "infinity"
    with pytest.raises(TypeError):
        client.set("n:k", b"x", sliding=NEVER)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        client.set("n:k", b"x", ttl=NEVER, expires_at=datetime.now(timezone.utc))


def test_ttl_and_keys_of_entries_another_client_made_permanent(client: PgCache, raw: psycopg.Connection) -> None:
    # written in SQL, as any client may: psycopg alone fails to load both the interval cache_ttl
    # returns for it (before PostgreSQL 17) and timestamptz 'infinity'
    raw.execute("SELECT cache_set('inf:a', 'x', expires_at => 'infinity')")
    raw.execute("SELECT cache_set('inf:b', 'y', ttl => '1 hour')")
    raw.execute("SELECT cache_set('inf:c', 'z', sliding => '1 min', expires_at => 'infinity')")
    assert client.ttl("inf:a") is NEVER
    assert client.exists("inf:a") is True
    assert client.ttl("inf:absent") is None
    infos = {info.key: info for info in client.keys("inf:")}
    assert infos["inf:a"].expires_at is NEVER and infos["inf:a"].absolute_expires_at is NEVER
    assert isinstance(infos["inf:b"].expires_at, datetime)
    assert isinstance(infos["inf:b"].absolute_expires_at, datetime)
    assert isinstance(infos["inf:c"].expires_at, datetime) and infos["inf:c"].absolute_expires_at is None
    assert infos["inf:c"].sliding == timedelta(minutes=1)


def test_never_expires_on_a_0_2_0_server(client: PgCache, raw: psycopg.Connection) -> None:
    # pg_cache 0.2.0 has neither create_missing nor infinite expiry: the client falls back
    client._features = Features()
    client.set("old:k", b"x", ttl=NEVER)
    expires_at = raw.execute("SELECT expires_at FROM pg_cache_entries WHERE key = 'old:k'").fetchone()[0]
    assert expires_at > datetime.now(timezone.utc) + LEGACY_NO_EXPIRY_TTL - timedelta(days=1)
    assert client.ttl("old:k") > timedelta(days=365 * 999)
    client.set("old:n", b"1", ttl=60)
    assert client.incr_existing("old:n", 2) == 3
    assert client.incr_existing("old:absent", 2) is None
    assert raw.execute("SELECT count(*) FROM pg_cache_entries WHERE key = 'old:absent'").fetchone()[0] == 0


def test_entries_expire(client: PgCache) -> None:
    client.set("x:short", b"v", ttl=timedelta(milliseconds=300))
    assert client.get("x:short") == b"v"
    deadline = time.monotonic() + 5
    while client.get("x:short") is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get("x:short") is None
    assert client.exists("x:short") is False


def test_add_refresh_remove_exists(client: PgCache) -> None:
    assert client.add("a:k", b"1", ttl=60) is True
    assert client.add("a:k", b"2", ttl=60) is False
    assert client.get("a:k") == b"1"
    assert client.exists("a:k") is True
    assert client.refresh("a:k") is True
    assert client.remove("a:k") is True
    assert client.remove("a:k") is False
    assert client.refresh("a:k") is False
    assert client.exists("a:k") is False


def test_incr(client: PgCache) -> None:
    assert client.incr("c:n") == 1
    assert client.incr("c:n", 41) == 42
    assert client.incr("c:n", -2) == 40
    assert client.get("c:n") == b"40"
    assert client.incr_existing("c:n", 2) == 42
    assert client.incr_existing("c:absent", 2) is None
    assert client.get("c:absent") is None  # nothing created
    client.set("c:text", b"not a number")
    with pytest.raises(InvalidValue) as caught:
        client.incr("c:text")
    assert caught.value.sqlstate == "22P02" and caught.value.key == "c:text"
    assert isinstance(caught.value, TypeError)
    client.set("c:max", str(2**63 - 1))
    with pytest.raises(OutOfRange) as overflow:
        client.incr("c:max")
    assert overflow.value.sqlstate == "22003"


def test_expire(client: PgCache) -> None:
    assert client.expire("x:absent", ttl=60) is False
    client.set("x:k", b"v", ttl=60)
    assert client.expire("x:k", ttl=timedelta(hours=3)) is True
    assert client.ttl("x:k") > timedelta(hours=2)
    with pytest.raises(InvalidArgument) as caught:
        client.expire("x:k")
    assert caught.value.sqlstate == "22023"


def test_batches(client: PgCache) -> None:
    assert client.set_many({"m:1": b"a", "m:2": b"b", "m:3": b"c"}, ttl=60, tags=["batch"]) == 3
    assert client.get_many(["m:3", "m:1", "m:absent", "m:1"]) == {"m:3": b"c", "m:1": b"a"}
    assert list(client.get_many(["m:3", "m:1"])) == ["m:3", "m:1"]
    assert client.get_many([]) == {}
    assert client.tags("m:2") == ["batch"]
    assert client.remove_many(["m:1", "m:2", "m:absent"]) == 2
    assert client.get_many(["m:1", "m:2", "m:3"]) == {"m:3": b"c"}


def test_keys_prefix_and_clear(client: PgCache) -> None:
    client.set_many({"p:a": b"1", "p:b": b"22", "q:c": b"333"}, ttl=60)
    infos = client.keys("p:")
    assert [info.key for info in infos] == ["p:a", "p:b"]
    assert all(isinstance(info, KeyInfo) for info in infos)
    assert infos[1].value_bytes == 2 and isinstance(infos[0].expires_at, datetime)
    assert len(client.keys(max_rows=1)) == 1
    assert client.remove_prefix("p:") == 2
    assert [info.key for info in client.keys()] == ["q:c"]
    assert client.clear() == 1
    assert client.keys() == []


def test_tags(client: PgCache) -> None:
    client.set("t:1", b"x", ttl=60, tags=["user:42", "tenant:7"])
    client.set("t:2", b"y", ttl=60, tags=["user:42"])
    client.set("t:3", b"z", ttl=60)
    assert client.tags("t:1") == ["user:42", "tenant:7"]
    assert client.tags("t:3") == []
    assert client.tags("t:absent") is None
    assert client.remove_by_tag(["user:42", "tenant:7"], match_all=True) == 1
    assert client.remove_by_tag(["user:42"]) == 1
    assert client.get("t:3") == b"z"
    with pytest.raises(InvalidArgument):
        client.remove_by_tag([])


def test_json(client: PgCache) -> None:
    document = {"name": "Ada", "roles": ["admin", "dev"], "n": 3, "nested": {"ok": True, "none": None}}
    client.set_json("j:1", document, ttl=60)
    value = client.get_json("j:1")
    assert value == document
    assert type(value) is dict and type(value["roles"]) is list
    client.set_json("j:2", [1, 2, 3], ttl=60)
    assert client.get_many_json(["j:2", "j:1", "j:absent"]) == {"j:2": [1, 2, 3], "j:1": document}
    assert client.get_json("j:absent") is None
    client.set("j:bytes", b"\xff\xfe")
    with pytest.raises(InvalidValue) as caught:
        client.get_json("j:bytes")
    assert caught.value.sqlstate == "22P02" and caught.value.key == "j:bytes"


def test_stats(client: PgCache) -> None:
    client.stats_reset()
    client.set("s:1", b"x", ttl=60)
    client.get("s:1")
    client.get("s:absent")
    stats = client.stats()
    assert isinstance(stats, CacheStats)
    assert (stats.hits, stats.misses, stats.sets) == (1, 1, 1)
    assert stats.hit_ratio == 0.5
    assert isinstance(stats.since, datetime) and stats.total_bytes > 0


def test_maintenance(client: PgCache) -> None:
    assert client.evict_expired(100) >= 0
    statuses = client.worker_status()
    assert all(isinstance(status, WorkerStatus) for status in statuses)


def test_errors_keep_sqlstate_and_key(client: PgCache) -> None:
    with pytest.raises(InvalidArgument) as empty:
        client.get("")
    assert empty.value.sqlstate == "22023" and empty.value.key == "" and empty.value.function == "cache_get"
    assert isinstance(empty.value.__cause__, psycopg.Error)
    long_key = "k" * 2049
    with pytest.raises(LimitExceeded) as long:
        client.set(long_key, b"x")
    assert long.value.sqlstate == "54000" and long.value.key == long_key
    with pytest.raises(InvalidArgument) as both:
        client.set("k", b"x", ttl=60, expires_at=datetime.now(timezone.utc) + timedelta(hours=1))
    assert both.value.sqlstate == "22023"
    with pytest.raises(InvalidArgument):
        client.set("k", b"x", ttl=-5)
    with pytest.raises(OutOfRange) as far:
        client.set("k", b"x", ttl=timedelta(days=365 * 400_000))
    assert far.value.sqlstate == "22008"
    # a batch: the element the server names
    with pytest.raises(InvalidArgument) as batch:
        client.set_many({"ok": b"1", "": b"2"})
    assert batch.value.key == ""
    with pytest.raises(PgCacheError) as batch_get:
        client.get_many(["fine", "x" * 3000])
    assert batch_get.value.sqlstate == "54000" and batch_get.value.key == "x" * 3000
    assert "[54000]" in str(batch_get.value)


def test_unreachable_server_is_cache_unavailable() -> None:
    pool = ConnectionPool("postgresql://postgres@127.0.0.1:9/none?connect_timeout=1", min_size=0, max_size=1,
                          timeout=1.0, open=True)
    try:
        with pytest.raises(CacheUnavailable) as caught:
            PgCache(pool).get("k")
        assert caught.value.sqlstate is None and caught.value.key == "k"
        assert isinstance(caught.value, ConnectionError)
    finally:
        pool.close()


def test_in_the_callers_transaction(url: str, raw: psycopg.Connection) -> None:
    with psycopg.connect(url) as conn:  # not autocommit: calls join its transaction
        cache = PgCache(conn)
        cache.set("tx:k", b"v", ttl=60)
        assert raw.execute("SELECT cache_get('tx:k')").fetchone()[0] is None  # not committed yet
        conn.rollback()
        assert cache.get("tx:k") is None
        cache.set("tx:k", b"v2", ttl=60)
        conn.commit()
    assert raw.execute("SELECT cache_get('tx:k')").fetchone()[0] == b"v2"


def test_over_a_pool(url: str, raw: psycopg.Connection) -> None:
    with ConnectionPool(url, min_size=1, max_size=2, kwargs={"autocommit": True}, open=True) as pool:
        cache = PgCache(pool)
        cache.set("pool:k", b"v", ttl=60)
        assert cache.get("pool:k") == b"v"
        assert cache.conninfo == url
        cache.close()  # the pool is the caller's: still open
        assert cache.get("pool:k") == b"v"


def test_a_broken_pooled_connection_is_replaced(url: str, raw: psycopg.Connection) -> None:
    with PgCache(url, min_size=1, max_size=1) as cache:
        cache.set("r:k", b"v", ttl=60)
        with cache.connection() as conn:
            pid = conn.info.backend_pid
        raw.execute("SELECT pg_terminate_backend(%s)", (pid,))
        # a read runs again on a new connection
        assert cache.get("r:k") == b"v"
        with cache.connection() as conn:
            assert conn.info.backend_pid != pid


def test_features(client: PgCache) -> None:
    # the suite runs against pg_cache 0.3.0: cache_incr has create_missing, expiry can be infinite
    features = client.features()
    assert features.incr_create_missing is True and features.infinite_expiry is True
    # ... and leases (the suite's cluster preloads pg_cache)
    assert features.leases is True


def test_incr_existing_creates_nothing(client: PgCache, raw: psycopg.Connection) -> None:
    assert client.incr_existing("live:absent", 1) is None
    assert raw.execute("SELECT count(*) FROM pg_cache_entries WHERE key = 'live:absent'").fetchone()[0] == 0
    client.set("live:expired", b"7", ttl=timedelta(milliseconds=1))
    time.sleep(0.05)
    assert client.incr_existing("live:expired", 1) is None
    assert client.ttl("live:expired") is None  # not brought back to life
    client.set("live:n", b"7", ttl=60)
    assert client.incr_existing("live:n", 1) == 8
    # atomic: one cache_incr with create_missing => false, not the check-then-increment fallback
    sent = []
    execute = client._execute
    client._execute = lambda call: (sent.append(call.sql), execute(call))[1]  # type: ignore[method-assign]
    assert client.incr_existing("live:n", 1) == 9
    assert sent == ["SELECT cache_incr(%s, %s::bigint, create_missing => false)"]


def test_notify_announces_writes(url: str, raw: psycopg.Connection) -> None:
    raw.execute("LISTEN pg_cache_invalidation")
    with PgCache(url, notify=True) as cache:
        cache.set("notify:k", b"v", ttl=60)
    payloads = [n.payload for n in raw.notifies(timeout=5, stop_after=1)]
    assert payloads and "notify:k" in payloads[0]


# get_or_compute: tests/test_compute.py
