"""The suite runs against PG_CACHE_TEST_URL: a database with the pg_cache extension, which the
tests empty (tests/python.sh starts a cluster of its own for it), connecting as a superuser (the
named caches are made with cache_create, which needs the extension's owner)."""

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


# Caches besides "default" that the tests of named caches work on (pg_cache 0.3.0).
NAMED_CACHES = ("py_sessions", "py_other")


@pytest.fixture(scope="session")
def _created_caches(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        for name in NAMED_CACHES:
            try:
                conn.execute("SELECT cache_create(%s)", (name,))
            except psycopg.errors.DuplicateObject:
                pass  # made by an earlier run on this database


@pytest.fixture
def named_caches(_created_caches: None, raw: psycopg.Connection) -> tuple[str, ...]:
    """NAMED_CACHES, existing and empty (and the default cache emptied by `raw`)."""
    for name in NAMED_CACHES:
        raw.execute("SELECT cache_clear(cache => %s)", (name,))
    return NAMED_CACHES
