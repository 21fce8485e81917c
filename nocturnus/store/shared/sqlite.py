"""Shared state in ``<data dir>/shared.sqlite``, for the processes of one data dir.

One table, created when the file is opened (nothing in it outlives its expiry, so a
schema change can simply start a new file: :data:`FILE` carries the version). WAL and
``synchronous = NORMAL``: writers do not fsync per commit, readers never wait, and a
crashed process loses nothing it committed. Each process (a forked worker included)
opens its own connection on first use; the connection is shared by the threads of the
process under a lock, each call being one short statement or transaction.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nocturnus.store.errors import StorageError
from nocturnus.store.files import private_dir, private_file
from nocturnus.store.shared import (
    SWEEP_EVERY_S,
    SharedEntry,
    counter_bytes,
    counter_value,
    now_ms,
    prefix_end,
)

FILE = "shared.sqlite"
BUSY_TIMEOUT_MS = 10_000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS shared_state (
    space TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    version INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    PRIMARY KEY (space, key)
) WITHOUT ROWID
"""


class SqliteShared:
    """The shared state of one data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / FILE
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        self._lock = threading.Lock()
        self._swept = 0.0

    @property
    def local(self) -> bool:
        return True

    @property
    def where(self) -> str:
        return str(self.path)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is not None and self._pid == os.getpid():
            return self._conn
        try:
            private_dir(self.path.parent)
            if not self.path.exists():
                private_file(self.path)
            conn = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute(_SCHEMA)
        except (sqlite3.Error, OSError) as e:
            raise StorageError(f"shared state {self.path} cannot be opened: {e}") from e
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _failed(self, e: sqlite3.Error, doing: str) -> StorageError:
        return StorageError(f"shared state {self.path} failed while {doing}: {e}")

    def get(self, space: str, key: str) -> SharedEntry | None:
        with self._lock:
            try:
                row = (
                    self._connection()
                    .execute(
                        "SELECT value, version, expires_ms FROM shared_state"
                        " WHERE space = ? AND key = ? AND expires_ms > ?",
                        (space, key, now_ms()),
                    )
                    .fetchone()
                )
            except sqlite3.Error as e:
                raise self._failed(e, "reading") from e
        return None if row is None else SharedEntry(bytes(row[0]), row[1], row[2])

    def put(
        self,
        space: str,
        key: str,
        value: bytes,
        *,
        ttl_s: float,
        expect: int | None = None,
    ) -> int | None:
        now = now_ms()
        expires = now + int(ttl_s * 1000)
        with self._transaction("writing") as conn:
            row = conn.execute(
                "SELECT version, expires_ms FROM shared_state WHERE space = ? AND key = ?",
                (space, key),
            ).fetchone()
            live = row is not None and row[1] > now
            if expect is not None and expect != (row[0] if live else 0):
                return None
            # an expired row's version goes on counting: a stale expect never matches
            # an entry made after the expiry
            version = (row[0] if row is not None else 0) + 1
            self._store(conn, (space, key, value, version, expires), now)
        return version

    def delete(self, space: str, key: str) -> bool:
        with self._lock:
            try:
                gone = (
                    self._connection()
                    .execute(
                        "DELETE FROM shared_state WHERE space = ? AND key = ?"
                        " RETURNING expires_ms",
                        (space, key),
                    )
                    .fetchall()
                )
            except sqlite3.Error as e:
                raise self._failed(e, "deleting") from e
        return any(row[0] > now_ms() for row in gone)

    def delete_prefix(self, space: str, prefix: str) -> int:
        where, args = _range(space, prefix)
        with self._lock:
            try:
                gone = (
                    self._connection()
                    .execute(
                        f"DELETE FROM shared_state WHERE {where} RETURNING expires_ms",
                        args,
                    )
                    .fetchall()
                )
            except sqlite3.Error as e:
                raise self._failed(e, "deleting") from e
        now = now_ms()
        return sum(1 for row in gone if row[0] > now)

    def add(self, space: str, key: str, delta: int, *, ttl_s: float) -> int:
        now = now_ms()
        with self._transaction("counting") as conn:
            row = conn.execute(
                "SELECT value, version, expires_ms FROM shared_state"
                " WHERE space = ? AND key = ?",
                (space, key),
            ).fetchone()
            if row is not None and row[2] > now:
                total = counter_value(bytes(row[0])) + delta
                version, expires = row[1] + 1, row[2]
            else:
                total = delta
                version = (row[1] if row is not None else 0) + 1
                expires = now + int(ttl_s * 1000)
            self._store(conn, (space, key, counter_bytes(total), version, expires), now)
        return total

    def scan(self, space: str, prefix: str = "") -> list[tuple[str, SharedEntry]]:
        where, args = _range(space, prefix)
        with self._lock:
            try:
                rows = (
                    self._connection()
                    .execute(
                        "SELECT key, value, version, expires_ms FROM shared_state"
                        f" WHERE {where} AND expires_ms > ? ORDER BY key",
                        (*args, now_ms()),
                    )
                    .fetchall()
                )
            except sqlite3.Error as e:
                raise self._failed(e, "reading") from e
        return [(row[0], SharedEntry(bytes(row[1]), row[2], row[3])) for row in rows]

    @contextmanager
    def _transaction(self, doing: str) -> Iterator[sqlite3.Connection]:
        """One write transaction (``BEGIN IMMEDIATE``: the file's write lock), committed
        when the block ends, rolled back when it raises."""
        with self._lock:
            conn = self._connection()
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as e:
                raise self._failed(e, doing) from e

    def _store(
        self, conn: sqlite3.Connection, row: tuple[str, str, bytes, int, int], now: int
    ) -> None:
        conn.execute(
            "INSERT OR REPLACE INTO shared_state (space, key, value, version, expires_ms)"
            " VALUES (?, ?, ?, ?, ?)",
            row,
        )
        self._maybe_sweep(conn, now)

    def _maybe_sweep(self, conn: sqlite3.Connection, now: int) -> None:
        if time.monotonic() - self._swept < SWEEP_EVERY_S:
            return
        self._swept = time.monotonic()
        conn.execute("DELETE FROM shared_state WHERE expires_ms <= ?", (now,))

    def close(self) -> None:
        with self._lock:
            if self._conn is not None and self._pid == os.getpid():
                self._conn.close()
            self._conn = None


def _range(space: str, prefix: str) -> tuple[str, tuple[str, ...]]:
    if not prefix:
        return "space = ?", (space,)
    return "space = ? AND key >= ? AND key < ?", (space, prefix, prefix_end(prefix))
