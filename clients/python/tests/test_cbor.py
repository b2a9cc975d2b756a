"""JSON values read as bytes and decoded client-side: plain dict and list whatever cbor2 (5.x
decodes a tagged value mutable, 6.x immutable) and whether the value carries the self-describe
tag 55799 (pg_cache 0.2.0 wrote it; 0.3.0 does not). tests/python.sh runs this with cbor2 6.x and
5.9."""

from __future__ import annotations

from decimal import Decimal
from importlib.metadata import version

import psycopg
import pytest

from pg_cache_client import PgCache
from pg_cache_client import cbor as pg_cbor

cbor2 = pytest.importorskip("cbor2")
CBOR2 = version("cbor2")


def _plain(value) -> None:
    """Only dict, list and scalars, recursively."""
    if isinstance(value, dict):
        assert type(value) is dict, type(value)
        for item in value.values():
            _plain(item)
    elif isinstance(value, (list, tuple)):
        assert type(value) is list, type(value)
        for item in value:
            _plain(item)
    else:
        assert value is None or type(value) in (str, int, float, bool, Decimal), type(value)


DOCUMENT = {"user": 42, "roles": ["admin", {"scopes": ["a", "b"]}], "name": "Zoë",
            "price": 12.25, "exact": 0.1, "nested": {"deep": [[1], [2, [3]]]}, "none": None, "ok": True}


def test_cbor2_version_under_test() -> None:
    print(f"cbor2 {CBOR2}")
    assert CBOR2.split(".")[0] in ("5", "6")


def test_values_written_by_cache_set_json_decode_plain(client: PgCache, raw: psycopg.Connection) -> None:
    client.set_json("cbor:doc", DOCUMENT, ttl=60)
    stored = client.get("cbor:doc")
    assert stored is not None
    value = pg_cbor.loads(stored)
    _plain(value)
    assert value["roles"][1] == {"scopes": ["a", "b"]}
    assert value["exact"] == Decimal("0.1") and value["price"] == 12.25
    assert {k: v for k, v in value.items() if k != "exact"} == {k: v for k, v in DOCUMENT.items() if k != "exact"}


def test_cache_set_json_writes_untagged_cbor(client: PgCache) -> None:
    # cbor2 alone, without the client's helper: no tag 55799 in front, so no frozendict / tuple
    client.set_json("cbor:plain", DOCUMENT, ttl=60)
    stored = client.get("cbor:plain")
    assert stored is not None and not stored.startswith(pg_cbor.SELF_DESCRIBE_PREFIX)
    value = cbor2.loads(stored)
    _plain(value)
    assert value["roles"] == ["admin", {"scopes": ["a", "b"]}]


def test_values_written_by_0_2_0_still_decode(client: PgCache) -> None:
    # the bytes pg_cache 0.2.0 stored: tag 55799 around the value
    tagged = pg_cbor.SELF_DESCRIBE_PREFIX + cbor2.dumps({"a": [1, {"b": [2]}], "n": None})
    client.set("cbor:0.2.0", tagged, ttl=60)
    stored = client.get("cbor:0.2.0")
    assert stored == tagged
    value = pg_cbor.loads(stored)
    _plain(value)
    assert value == {"a": [1, {"b": [2]}], "n": None}
    assert client.get_json("cbor:0.2.0") == {"a": [1, {"b": [2]}], "n": None}  # the server reads them too


def test_tagged_and_untagged_bytes(client: PgCache) -> None:
    untagged = cbor2.dumps({"a": [1, {"b": 2}]})
    tagged = pg_cbor.SELF_DESCRIBE_PREFIX + untagged
    for data in (untagged, tagged, pg_cbor.SELF_DESCRIBE_PREFIX + tagged):
        value = pg_cbor.loads(data)
        _plain(value)
        assert value == {"a": [1, {"b": 2}]}
    # a tag 55799 inside a value (another writer's) decodes plain as well
    inner = cbor2.dumps([cbor2.CBORTag(55799, {"x": [1]})])
    assert pg_cbor.loads(inner) == [{"x": [1]}]
    _plain(pg_cbor.loads(inner))


def test_client_cbor_reads_back_as_json(client: PgCache) -> None:
    client.set("cbor:written", pg_cbor.dumps({"n": [1, 2.5, None, True]}), ttl=60)
    assert client.get_json("cbor:written") == {"n": [1, 2.5, None, True]}
