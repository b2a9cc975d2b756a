"""Decoding the bytes of JSON values client-side (cache_get of a key set with cache_set_json).

``cache_get_json`` decodes on the server and needs nothing here; this is for values read as bytes
(``get``, ``get_many``, ``take``) with ``cbor2`` (``pip install pg-cache-client[cbor]``).

pg_cache 0.3.0 writes plain CBOR, which any CBOR library decodes to ``dict`` and ``list``. Values
written by 0.2.0 are wrapped in the self-described CBOR tag 55799 (``d9 d9 f7``), and cbor2 6
decodes what a tag wraps as immutable (``frozendict``, ``tuple``), cbor2 5 as ``dict`` and
``list``; ``loads`` gives plain ``dict`` and ``list`` with either, for tagged and untagged values.
"""

from __future__ import annotations

from typing import Any

SELF_DESCRIBE_PREFIX = b"\xd9\xd9\xf7"  # tag 55799

__all__ = ["loads", "dumps", "SELF_DESCRIBE_PREFIX"]


def _cbor2() -> Any:
    try:
        import cbor2
    except ImportError as error:  # pragma: no cover
        raise ImportError("pg_cache_client.cbor needs cbor2: pip install 'pg-cache-client[cbor]'") from error
    return cbor2


def _thaw(value: Any) -> Any:
    """frozendict -> dict, tuple -> list, recursively (JSON has neither)."""
    if isinstance(value, list):
        return [_thaw(item) for item in value]
    if isinstance(value, tuple):
        return [_thaw(item) for item in value]
    if isinstance(value, dict):
        return {key: _thaw(item) for key, item in value.items()}
    if isinstance(value, (str, bytes, int, float, bool)) or value is None:
        return value
    if hasattr(value, "items") and hasattr(value, "keys"):  # cbor2's frozendict
        return {key: _thaw(item) for key, item in value.items()}
    return value


def loads(data: bytes | bytearray | memoryview) -> Any:
    """The JSON-like value of CBOR bytes: dict, list, str, int, float, Decimal (decimal
    fractions), bool or None."""
    raw = bytes(data)
    while raw.startswith(SELF_DESCRIBE_PREFIX):
        raw = raw[len(SELF_DESCRIBE_PREFIX):]
    return _thaw(_cbor2().loads(raw))


def dumps(value: Any) -> bytes:
    """CBOR bytes of a JSON-like value, which cache_get_json reads back."""
    return _cbor2().dumps(value)
