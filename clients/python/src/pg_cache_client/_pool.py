"""A small connection pool for the clients made from a connection string.

Measured with psycopg 3.3 (CPU time per cache_get, one thread): a plain connection 19 us,
psycopg_pool's ConnectionPool.connection() 30 us, this pool 19 us -- the pool's bookkeeping cost
more than the query. It keeps idle connections in a stack (the most recently used first, warm),
opens them on demand up to max_size, and discards a connection that comes back broken or inside
a transaction. A psycopg_pool.ConnectionPool given to PgCache is used as it is.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any, Callable, Mapping

import psycopg
from psycopg.pq import TransactionStatus


class PoolTimeout(psycopg.OperationalError):
    pass


class LightPool:
    def __init__(self, conninfo: str, max_size: int, kwargs: Mapping[str, Any],
                 configure: Callable[[psycopg.Connection], None] | None = None, timeout: float = 30.0):
        if max_size < 1:
            raise ValueError("max_size must be at least 1")
        self.conninfo = conninfo
        self.max_size = max_size
        self.timeout = timeout
        self._kwargs = dict(kwargs)
        self._configure = configure
        self._idle: deque[psycopg.Connection] = deque()
        self._lock = threading.Lock()
        self._available = threading.Condition(self._lock)
        self._size = 0
        self._closed = False

    def getconn(self) -> psycopg.Connection:
        with self._lock:
            while True:
                if self._closed:
                    raise psycopg.OperationalError("the pg_cache client is closed")
                if self._idle:
                    return self._idle.pop()
                if self._size < self.max_size:
                    self._size += 1
                    break
                if not self._available.wait(self.timeout):
                    raise PoolTimeout(f"no connection free within {self.timeout} s ({self.max_size} in use)")
        try:
            conn = psycopg.connect(self.conninfo, **self._kwargs)
            if self._configure is not None:
                self._configure(conn)
        except BaseException:
            self._release_slot()
            raise
        return conn

    def putconn(self, conn: psycopg.Connection) -> None:
        if conn.closed or conn.pgconn.transaction_status != TransactionStatus.IDLE:
            try:
                conn.close()
            finally:
                self._release_slot()
            return
        with self._lock:
            if not self._closed:
                self._idle.append(conn)
                self._available.notify()
                return
        conn.close()
        self._release_slot()

    def _release_slot(self) -> None:
        with self._lock:
            self._size -= 1
            self._available.notify()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = list(self._idle)
            self._idle.clear()
            self._size -= len(idle)
            self._available.notify_all()
        for conn in idle:
            conn.close()
