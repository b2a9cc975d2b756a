"""AsyncPgCache: the same functions, awaited; its own pool per client, or a given connection."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from pg_cache_client import NEVER, AsyncPgCache, CacheStats, InvalidArgument, InvalidValue


def run(coro):
    return asyncio.run(coro)


def test_operations(url: str, raw: psycopg.Connection) -> None:
    async def main() -> None:
        async with AsyncPgCache(url, max_size=4) as cache:
            await cache.set("as:1", bytes(range(256)), ttl=60, tags=["t"])
            value = await cache.get("as:1")
            assert type(value) is bytes and value == bytes(range(256))
            assert await cache.get("as:absent") is None
            assert await cache.add("as:1", b"x") is False
            assert await cache.add("as:2", b"two", sliding=timedelta(minutes=1)) is True
            assert await cache.exists("as:2") is True
            assert await cache.refresh("as:2") is True
            assert timedelta(seconds=50) < await cache.ttl("as:2") <= timedelta(minutes=1)
            assert await cache.expire("as:2", ttl=NEVER) is True
            assert await cache.ttl("as:2") is NEVER
            assert raw.execute("SELECT expires_at = 'infinity' FROM pg_cache_entries WHERE key = 'as:2'").fetchone()[0]
            assert await cache.incr("as:n", 5) == 5
            assert await cache.incr_existing("as:n", 1) == 6
            assert await cache.incr_existing("as:none", 1) is None
            assert raw.execute("SELECT count(*) FROM pg_cache_entries WHERE key = 'as:none'").fetchone()[0] == 0
            await cache.set_many({"as:f1": b"1"}, ttl=NEVER)
            assert [(k.key, k.expires_at) for k in await cache.keys("as:f")] == [("as:f1", NEVER)]
            assert await cache.remove("as:f1") is True
            assert await cache.set_many({"as:m1": b"a", "as:m2": b"b"}, ttl=60) == 2
            assert await cache.get_many(["as:m2", "as:m1", "as:x"]) == {"as:m2": b"b", "as:m1": b"a"}
            assert await cache.remove_many(["as:m1", "as:m2"]) == 2
            assert [k.key for k in await cache.keys("as:")] == ["as:1", "as:2", "as:n"]
            assert await cache.tags("as:1") == ["t"]
            assert await cache.remove_by_tag(["t"]) == 1
            assert await cache.take("as:2") == b"two"
            assert await cache.remove("as:n") is True
            await cache.set_json("as:j", {"a": [1, 2]}, ttl=60)
            assert await cache.get_json("as:j") == {"a": [1, 2]}
            assert await cache.get_many_json(["as:j"]) == {"as:j": {"a": [1, 2]}}
            assert isinstance(await cache.stats(), CacheStats)
            assert await cache.remove_prefix("as:") == 1
            await cache.set("as:z", b"z")
            assert await cache.clear() == 1
            with pytest.raises(InvalidArgument) as caught:
                await cache.get("")
            assert caught.value.sqlstate == "22023" and caught.value.key == ""
            await cache.set("as:text", b"abc")
            with pytest.raises(InvalidValue):
                await cache.incr("as:text")

    run(main())


def test_over_a_connection_in_its_transaction(url: str, raw: psycopg.Connection) -> None:
    async def main() -> None:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            cache = AsyncPgCache(conn)
            await cache.set("atx:k", b"v", ttl=60)
            assert raw.execute("SELECT cache_get('atx:k')").fetchone()[0] is None
            await conn.rollback()
            assert await cache.get("atx:k") is None

    run(main())


def test_over_a_pool(url: str, raw: psycopg.Connection) -> None:
    async def main() -> None:
        async with AsyncConnectionPool(url, min_size=1, max_size=2, kwargs={"autocommit": True}, open=False) as pool:
            cache = AsyncPgCache(pool)
            await cache.set("ap:k", b"v", ttl=60)
            assert await cache.get("ap:k") == b"v"

    run(main())


def test_concurrent_calls_share_the_pool(url: str, raw: psycopg.Connection) -> None:
    async def main() -> None:
        async with AsyncPgCache(url, max_size=3) as cache:
            await asyncio.gather(*(cache.set(f"ac:{i}", str(i), ttl=60) for i in range(50)))
            values = await asyncio.gather(*(cache.get(f"ac:{i}") for i in range(50)))
            assert values == [str(i).encode() for i in range(50)]

    run(main())


# get_or_compute: tests/test_compute.py
