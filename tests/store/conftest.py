"""Small factories for store tests: real SQLite files in tmp_path, real crypto."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from nocturnus.store.chain import GENESIS, event_hash, pack_head
from nocturnus.store.crypto import MasterKey
from nocturnus.store.record import LogRecord

TS0 = 1_700_000_000_000


@pytest.fixture
def master_key() -> MasterKey:
    return MasterKey.generate()


@pytest.fixture
def records() -> Callable[..., list[LogRecord]]:
    """records(start_seq, n, tenant="acme", kind="fact_told") -> contiguous records."""

    def make(
        start: int, n: int, tenant: str = "acme", kind: str = "fact_told"
    ) -> list[LogRecord]:
        return [
            LogRecord(
                seq, TS0 + seq, tenant, kind, orjson.dumps({"n": seq, "t": tenant})
            )
            for seq in range(start, start + n)
        ]

    return make


@pytest.fixture
def record() -> Callable[..., LogRecord]:
    """record(seq, tenant="acme", kind="fact_told", body=None) -> one record."""

    def make(
        seq: int,
        tenant: str = "acme",
        kind: str = "fact_told",
        body: bytes | None = None,
    ) -> LogRecord:
        payload = body if body is not None else orjson.dumps({"n": seq})
        return LogRecord(seq, TS0 + seq, tenant, kind, payload)

    return make


class Raw:
    """Direct SQLite access to a log file, for tampering like an attacker or bit rot."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> sqlite3.Connection:
        self.conn = sqlite3.connect(str(self.path), isolation_level=None)
        return self.conn

    def __exit__(self, *exc: object) -> None:
        self.conn.close()


class Tamper:
    """Ways to damage a log file from outside, for detection tests."""

    raw = Raw

    @staticmethod
    def flip_bit(data: bytes, index: int = 3) -> bytes:
        b = bytearray(data)
        b[index] ^= 0x01
        return bytes(b)

    @staticmethod
    def sql(path: Path, sql: str, params: tuple[object, ...] = ()) -> None:
        with Raw(path) as conn:
            conn.execute(sql, params)

    @staticmethod
    def flip_payload(path: Path, seq: int) -> None:
        with Raw(path) as conn:
            (payload,) = conn.execute(
                "SELECT payload FROM events WHERE seq = ?", (seq,)
            ).fetchone()
            conn.execute(
                "UPDATE events SET payload = ? WHERE seq = ?",
                (Tamper.flip_bit(payload), seq),
            )

    @staticmethod
    def rechain(path: Path) -> None:
        """Recompute every hash and the recorded head, as an attacker knowing the scheme."""
        with Raw(path) as conn:
            rows = conn.execute(
                "SELECT seq, ts_ms, tenant, kind, key_id, nonce, payload FROM events"
                " ORDER BY seq"
            ).fetchall()
            prev = GENESIS
            conn.execute("BEGIN")
            for seq, ts, tenant, kind, key_id, nonce, payload in rows:
                h = event_hash(prev, seq, ts, tenant, kind, key_id, nonce, payload)
                conn.execute(
                    "UPDATE events SET prev_hash = ?, hash = ? WHERE seq = ?",
                    (prev, h, seq),
                )
                prev = h
            if rows:
                conn.execute(
                    "UPDATE meta SET value = ? WHERE name = 'head'",
                    (pack_head(rows[-1][0], prev),),
                )
            conn.execute("COMMIT")


@pytest.fixture
def tamper() -> type[Tamper]:
    return Tamper
