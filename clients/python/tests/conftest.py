"""The suite runs against PG_CACHE_TEST_URL: a database with the pg_cache extension, which the
tests empty (tests/python.sh starts a cluster of its own for it)."""

from __future__ import annotations

import os

import psycopg
import pytest

URL = os.environ.get("PG_CACHE_TEST_URL")


def pytest_configure(config: pytest.Config) -> None:
    if not URL:
        raise pytest.UsageError("set PG_CACHE_TEST_URL to a database with pg_cache (tests/python.sh does)")


@pytest.fixture(scope="session")
def url() -> str:
    assert URL
    return URL


@pytest.fixture
def raw(url: str):
    """A plain autocommit connection for checking what the client did."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT cache_clear()")
        yield conn


@pytest.fixture
def client(url: str, raw):
    from pg_cache_client import PgCache

    with PgCache(url, max_size=4) as cache:
        yield cache
