"""pg_cache from Python with psycopg 3: a read-through cache, bytes and JSON, and removal.

PG_CACHE_URL selects the database (default: the cluster `make run` starts).
Exits non-zero on any unexpected result.
"""

import json
import os
import sys
import time
from datetime import timedelta

import cbor2
import psycopg

URL = os.environ.get("PG_CACHE_URL", "postgresql://postgres@127.0.0.1:5499/pg_cache")


def expect(condition, what):
    if not condition:
        sys.exit(f"unexpected: {what}")


def get_or_set(conn, key, loader, ttl=None, sliding=None):
    """The cached value of key, or loader()'s, stored for next time. Returns (value, was_hit)."""
    cached = conn.execute("SELECT cache_get(%s)", (key,)).fetchone()[0]
    if cached is not None:
        return bytes(cached), True
    value = loader()
    conn.execute("SELECT cache_set(%s, %s, ttl => %s, sliding => %s)", (key, value, ttl, sliding))
    return value, False


def slow_query():
    time.sleep(0.3)  # stands in for an expensive query
    return b"monthly report: 42 orders"


def main():
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute("SELECT cache_remove('example:python:report')")

        # 1. read-through: a miss runs the loader, the next read is a hit
        for expected_hit in (False, True):
            started = time.perf_counter()
            value, hit = get_or_set(conn, "example:python:report", slow_query,
                                    ttl=timedelta(minutes=10), sliding=timedelta(minutes=2))
            elapsed_ms = (time.perf_counter() - started) * 1000
            print(f"{'hit ' if hit else 'miss'} {elapsed_ms:7.1f} ms  {value.decode()}")
            expect(value == b"monthly report: 42 orders", "read-through value")
            expect(hit == expected_hit, f"hit should be {expected_hit}")

        # 2. bytes round-trip exactly; JSON travels as UTF-8 bytes
        blob = bytes(range(256))
        conn.execute("SELECT cache_set(%s, %s, ttl => %s)", ("example:python:blob", blob, timedelta(minutes=1)))
        stored = bytes(conn.execute("SELECT cache_get(%s)", ("example:python:blob",)).fetchone()[0])
        expect(stored == blob, "binary value round trip")
        print(f"bytes: {len(stored)} bytes back, identical")

        document = {"user": 42, "roles": ["admin", "dev"], "name": "Zoë"}
        conn.execute("SELECT cache_set(%s, %s, sliding => %s)",
                     ("example:python:json", json.dumps(document).encode(), timedelta(minutes=5)))
        raw = conn.execute("SELECT cache_get(%s)", ("example:python:json",)).fetchone()[0]
        expect(json.loads(bytes(raw)) == document, "JSON round trip")
        print(f"json: {json.loads(bytes(raw))}")

        # 3. jsonb values are stored as CBOR: any CBOR library reads the bytes, and CBOR written
        #    by a client reads back as jsonb
        conn.execute("SELECT cache_set_json(%s, %s::jsonb, ttl => %s)",
                     ("example:python:doc", json.dumps(document), timedelta(minutes=1)))
        stored = bytes(conn.execute("SELECT cache_get(%s)", ("example:python:doc",)).fetchone()[0])
        decoded = cbor2.loads(stored)  # plain CBOR (pg_cache 0.2.0 wrapped it in tag 55799)
        expect(type(decoded) is dict and decoded == document, "cbor2 decodes what cache_set_json stored as a dict")
        written = {"written": "by python", "n": [1, 2.5, None, True]}
        conn.execute("SELECT cache_set(%s, %s, ttl => %s)",
                     ("example:python:cbor", cbor2.dumps(written), timedelta(minutes=1)))
        as_json = conn.execute("SELECT cache_get_json(%s)", ("example:python:cbor",)).fetchone()[0]
        expect(as_json == written, "cache_get_json reads a map cbor2 wrote")
        print(f"cbor: {len(stored)} bytes stored for {len(json.dumps(document))} bytes of JSON; read back {as_json}")

        # 4. remove, then a miss
        removed = conn.execute("SELECT cache_remove(%s)", ("example:python:report",)).fetchone()[0]
        after = conn.execute("SELECT cache_get(%s)", ("example:python:report",)).fetchone()[0]
        expect(removed is True and after is None, "remove then miss")
        print("removed: the next read is a miss")
    print("python example: ok")


if __name__ == "__main__":
    main()
