"""Shared state in table ``nocturnus.shared_state`` of the store's PostgreSQL database.

Every node on the store sees it. The schema ``nocturnus`` (no ``nocturnus_`` prefix,
so never mistaken for a Nocturnus database's schema) and its one table are created on
first use, under an advisory lock so two nodes starting together do not race; nothing
in the table outlives its expiry, so a schema change can create a new table instead of
migrating. Each call is one statement on a connection of the store's pool (autocommit):
compare-and-set and counters are single ``INSERT ... ON CONFLICT`` / ``UPDATE``
statements, atomic under the row lock. Keys use the ``C`` collation, so a prefix is a
key range.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import psycopg

from nocturnus.store.postgresql import PostgresStore
from nocturnus.store.shared import (
    SWEEP_EVERY_S,
    SharedEntry,
    counter_value,
    now_ms,
    prefix_end,
)

TABLE = "nocturnus.shared_state"
_LOCK_ID = 0x6E6F6374  # "noct": the advisory lock of the one-time creation
_CREATE = f"""
CREATE SCHEMA IF NOT EXISTS nocturnus;
CREATE TABLE IF NOT EXISTS {TABLE} (
    space text COLLATE "C" NOT NULL,
    key text COLLATE "C" NOT NULL,
    value bytea NOT NULL,
    version bigint NOT NULL,
    expires_ms bigint NOT NULL,
    PRIMARY KEY (space, key)
)
"""
_AS_INT = "('x' || encode({}, 'hex'))::bit(64)::bigint"
_UPSERT = f"""
INSERT INTO {TABLE} AS t (space, key, value, version, expires_ms)
VALUES (%(space)s, %(key)s, %(value)s, 1, %(expires)s)
ON CONFLICT (space, key) DO UPDATE
SET value = EXCLUDED.value, version = t.version + 1, expires_ms = EXCLUDED.expires_ms
"""
_ADD = f"""
INSERT INTO {TABLE} AS t (space, key, value, version, expires_ms)
VALUES (%(space)s, %(key)s, int8send(%(delta)s::bigint), 1, %(expires)s)
ON CONFLICT (space, key) DO UPDATE
SET value = CASE WHEN t.expires_ms > %(now)s
                 THEN int8send({_AS_INT.format("t.value")} + %(delta)s)
                 ELSE EXCLUDED.value END,
    expires_ms = CASE WHEN t.expires_ms > %(now)s THEN t.expires_ms
                      ELSE EXCLUDED.expires_ms END,
    version = t.version + 1
RETURNING value
"""


class PostgresShared:
    """The shared state of every node on one PostgreSQL store."""

    def __init__(self, store: PostgresStore) -> None:
        self._store = store
        self._ready = False
        self._lock = threading.Lock()
        self._swept = 0.0

    @property
    def local(self) -> bool:
        return False

    @property
    def where(self) -> str:
        return f"table {TABLE} of {self._store.where}"

    def _run(self, doing: str, query: str, params: Any = None) -> list[Sequence[Any]]:
        # connection() turns a psycopg error into a StorageError naming ``doing``
        with self._store.connection(f"{doing} shared state", self.where) as conn:
            if not self._ready:
                self._create(conn)
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description is not None else []

    def _create(self, conn: psycopg.Connection[Any]) -> None:
        with self._lock:
            if self._ready:
                return
            exists = conn.execute("SELECT to_regclass(%s)", (TABLE,)).fetchone()
            if exists is None or exists[0] is None:
                with conn.transaction():
                    conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
                    conn.execute(_CREATE)
            self._ready = True

    def get(self, space: str, key: str) -> SharedEntry | None:
        rows = self._run(
            "reading",
            f"SELECT value, version, expires_ms FROM {TABLE}"
            " WHERE space = %s AND key = %s AND expires_ms > %s",
            (space, key, now_ms()),
        )
        return _entry(rows[0]) if rows else None

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
        params = {
            "space": space,
            "key": key,
            "value": value,
            "expires": now + int(ttl_s * 1000),
            "now": now,
            "expect": expect,
        }
        if expect is None:
            query = _UPSERT + " RETURNING version"
        elif expect == 0:  # only over nothing live: a live row is left as it is
            query = _UPSERT + " WHERE t.expires_ms <= %(now)s RETURNING version"
        else:
            query = (
                f"UPDATE {TABLE} SET value = %(value)s, version = version + 1,"
                " expires_ms = %(expires)s WHERE space = %(space)s AND key = %(key)s"
                " AND version = %(expect)s AND expires_ms > %(now)s RETURNING version"
            )
        rows = self._run("writing", query, params)
        self._maybe_sweep(now)
        return int(rows[0][0]) if rows else None

    def delete(self, space: str, key: str) -> bool:
        rows = self._run(
            "deleting",
            f"DELETE FROM {TABLE} WHERE space = %s AND key = %s RETURNING expires_ms",
            (space, key),
        )
        return any(row[0] > now_ms() for row in rows)

    def delete_prefix(self, space: str, prefix: str) -> int:
        where, args = _range(space, prefix)
        rows = self._run(
            "deleting", f"DELETE FROM {TABLE} WHERE {where} RETURNING expires_ms", args
        )
        now = now_ms()
        return sum(1 for row in rows if row[0] > now)

    def add(self, space: str, key: str, delta: int, *, ttl_s: float) -> int:
        now = now_ms()
        rows = self._run(
            "counting",
            _ADD,
            {
                "space": space,
                "key": key,
                "delta": delta,
                "expires": now + int(ttl_s * 1000),
                "now": now,
            },
        )
        self._maybe_sweep(now)
        return counter_value(bytes(rows[0][0]))

    def scan(self, space: str, prefix: str = "") -> list[tuple[str, SharedEntry]]:
        where, args = _range(space, prefix)
        rows = self._run(
            "reading",
            f"SELECT key, value, version, expires_ms FROM {TABLE}"
            f" WHERE {where} AND expires_ms > %s ORDER BY key",
            (*args, now_ms()),
        )
        return [(str(row[0]), _entry(row[1:])) for row in rows]

    def _maybe_sweep(self, now: int) -> None:
        if time.monotonic() - self._swept < SWEEP_EVERY_S:
            return
        self._swept = time.monotonic()
        self._run("sweeping", f"DELETE FROM {TABLE} WHERE expires_ms <= %s", (now,))

    def close(self) -> None:
        """Nothing of its own: the connections are the store's pool."""


def _entry(row: Sequence[Any]) -> SharedEntry:
    return SharedEntry(bytes(row[0]), int(row[1]), int(row[2]))


def _range(space: str, prefix: str) -> tuple[str, tuple[str, ...]]:
    if not prefix:
        return "space = %s", (space,)
    return "space = %s AND key >= %s AND key < %s", (space, prefix, prefix_end(prefix))
