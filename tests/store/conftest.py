"""Factories for store tests: real recorders (SQLite files in tmp_path, PostgreSQL
databases of their own), real crypto, and raw access for tampering like an attacker."""

from __future__ import annotations

import itertools
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import orjson
import pytest

from nocturnus.store.anchor import Anchor
from nocturnus.store.chain import GENESIS, PLAIN, Chain, pack_head
from nocturnus.store.crypto import MasterKey
from nocturnus.store.record import LogRecord
from nocturnus.store.recorder import Store, Tip
from nocturnus.store.sealer import Append, Sealer
from nocturnus.store.sqlite import SqliteStore

TS0 = 1_700_000_000_000
DATABASE = "acme"
_bodies = itertools.count(1)


class Backend(Protocol):
    """How a test makes recorders of one backend and reaches under them."""

    name: str
    store: Store

    def sql(self, database: str, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """Run ``statement`` (``?`` placeholders) on the raw rows, outside the store."""
        ...


class SqliteBackend:
    name = "sqlite"

    def __init__(self, data_dir: Path) -> None:
        self.store = SqliteStore(data_dir)

    def sql(self, database: str, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        conn = sqlite3.connect(str(self.store.path(database)), isolation_level=None)
        try:
            return conn.execute(statement, params).fetchall()
        finally:
            conn.close()


class PostgresBackend:
    name = "postgresql"

    def __init__(self, url: str) -> None:
        from nocturnus.store.postgresql import PostgresStore

        self.location = url
        self.store = PostgresStore(url)

    def sql(self, database: str, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
        import psycopg
        from psycopg import sql

        from nocturnus.store.postgresql import schema_name

        with psycopg.connect(self.location, autocommit=True) as conn:
            conn.execute(
                sql.SQL("SET search_path TO {}").format(sql.Identifier(schema_name(database)))
            )
            cur = conn.execute(statement.replace("?", "%s"), params)
            return [tuple(row) for row in cur.fetchall()] if cur.description else []


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """Each recorder backend in turn (the contract suite runs against all of them)."""
    if request.param == "sqlite":
        chosen: Backend = SqliteBackend(tmp_path / "data")
        yield chosen
        chosen.store.close()
        return
    from tests.pg import fresh_database

    with fresh_database() as url:
        chosen = PostgresBackend(url)
        try:
            yield chosen
        finally:
            chosen.store.close()


@pytest.fixture
def master_key_bytes() -> bytes:
    return os.urandom(32)


@pytest.fixture
def master_key(master_key_bytes: bytes) -> MasterKey:
    return MasterKey(master_key_bytes)


def open_log(
    backend: Backend,
    key: MasterKey,
    database: str = DATABASE,
    *,
    readonly: bool = False,
    check_tail: int | None = 1000,
) -> Sealer:
    return Sealer.open(
        backend.store.recorder(database, readonly=readonly), key, check_tail=check_tail
    )


@pytest.fixture
def log(backend: Backend, master_key: MasterKey) -> Iterator[Sealer]:
    opened = open_log(backend, master_key)
    yield opened
    opened.close()


def body(tenant: str = "acme") -> bytes:
    return orjson.dumps({"n": next(_bodies), "t": tenant})


def put(
    log: Sealer,
    tenant: str = "acme",
    n: int = 1,
    *,
    kind: str = "fact_told",
    expected: int | Append | None = None,
    ends_stream: bool = False,
    bodies: list[bytes] | None = None,
) -> list[LogRecord]:
    """Append ``n`` events of ``tenant`` in one append; return them as stored.

    :raises: the append's refusal, if it was refused.
    """
    payloads = bodies if bodies is not None else [body(tenant) for _ in range(n)]
    append = Append(
        tenant, expected, TS0, [(kind, p) for p in payloads], ends_stream=ends_stream
    )
    log.append([append])
    if append.error is not None:
        raise append.error
    assert append.seqs is not None
    return [
        LogRecord(seq, TS0, tenant, kind, p)
        for seq, p in zip(append.seqs, payloads, strict=True)
    ]


def delete(log: Sealer, tenant: str, expected: int | None = None) -> LogRecord:
    """Append ``tenant``'s deletion marker (ending its stream, shredding it)."""
    return put(
        log, tenant, kind="tenant_deleted", ends_stream=True, expected=expected,
        bodies=[b'{"deleted":true}'],
    )[0]


def flip_bit(data: bytes, index: int = 3) -> bytes:
    b = bytearray(data)
    b[index] ^= 0x01
    return bytes(b)


def flip_payload(backend: Backend, seq: int, database: str = DATABASE) -> None:
    ((payload,),) = backend.sql(database, "SELECT payload FROM events WHERE seq = ?", (seq,))
    backend.sql(
        database,
        "UPDATE events SET payload = ? WHERE seq = ?",
        (flip_bit(bytes(payload)), seq),
    )


def rechain(backend: Backend, chain: Chain = PLAIN, database: str = DATABASE) -> None:
    """Recompute every hash and the recorded head: with the plain formula as an
    attacker knowing the scheme but not the master key would, or with the log's own
    ``chain`` (its key comes from the master key) to reach the layer below it."""
    rows = backend.sql(
        database,
        "SELECT seq, ts_ms, tenant, kind, key_id, nonce, payload FROM events ORDER BY seq",
    )
    prev = GENESIS
    for seq, ts, tenant, kind, key_id, nonce, payload in rows:
        h = chain.hash(prev, seq, ts, tenant, kind, key_id, bytes(nonce), bytes(payload))
        backend.sql(
            database,
            "UPDATE events SET prev_hash = ?, hash = ? WHERE seq = ?",
            (prev, h, seq),
        )
        prev = h
    if rows:
        backend.sql(
            database,
            "UPDATE meta SET value = ? WHERE name = 'head'",
            (pack_head(rows[-1][0], prev),),
        )
        anchor_key = chain.subkey("anchor", database)
        if anchor_key is not None:  # a master-key holder re-anchors the new head too
            reanchor(backend, database, anchor_key, Tip(rows[-1][0], prev))


def anchor_path(backend: Backend, database: str = DATABASE) -> Path | None:
    """Where the log's head anchor lives (None: the backend keeps none)."""
    recorder = backend.store.recorder(database, readonly=True)
    try:
        return recorder.anchor_path
    finally:
        recorder.close()


def reanchor(backend: Backend, database: str, key: bytes, tip: Tip) -> None:
    """Replace the log's head anchor with one holding ``tip`` (needs the master key)."""
    path = anchor_path(backend, database)
    if path is None:
        return
    path.unlink(missing_ok=True)
    anchor = Anchor(path, key, database, writable=True)
    try:
        anchor.advance(tip)
    finally:
        anchor.close()
