"""The log record and its canonical byte encodings (AAD, hash input).

Every byte string that is authenticated or hashed is built by :func:`frame`, a
length-prefixed, type-tagged encoding, so two different field lists can never encode
to the same bytes (``("ab", "c")`` and ``("a", "bc")`` differ, and so do an int and an
8-character string).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from nocturnus.frozen import slot_builder

_INT = struct.Struct(">q")
_LEN = struct.Struct(">I")


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One event as the service hands it to the log and gets it back.

    ``seq`` is assigned by the caller and must continue the log head contiguously.
    ``tenant`` is ``""`` for database-level events. ``body`` is the plaintext orjson
    payload; on read it is ``None`` when the record was crypto-shredded.
    """

    seq: int
    ts_ms: int
    tenant: str
    kind: str
    body: bytes | None


    def __iter__(self) -> Iterator[Any]:
        """Unpack as a :data:`RecordTuple`, ``(seq, ts_ms, tenant, kind, body)``."""
        return iter((self.seq, self.ts_ms, self.tenant, self.kind, self.body))


RecordTuple = tuple[int, int, str, str, bytes | None]
"""A log record as a plain tuple, ``(seq, ts_ms, tenant, kind, body)``: what
``Sealer.entries`` yields and replay folds (a :class:`LogRecord` unpacks alike)."""

build_record: Callable[[int, int, str, str, bytes | None], LogRecord] = slot_builder(
    LogRecord
)
"""``LogRecord(...)`` about twice as fast: replay's hot path (``nocturnus.frozen``)."""


def frame(*parts: bytes | str | int) -> bytes:
    """Encode ``parts`` unambiguously: a type tag, then a length or a fixed-width int."""
    out = bytearray()
    for part in parts:
        if isinstance(part, bool):
            raise TypeError("frame() does not encode bools")
        if isinstance(part, int):
            out += b"i"
            out += _INT.pack(part)
        elif isinstance(part, str):
            data = part.encode()
            out += b"s"
            out += _LEN.pack(len(data))
            out += data
        else:
            out += b"b"
            out += _LEN.pack(len(part))
            out += part
    return bytes(out)


def record_aad(database: str, seq: int, tenant: str, kind: str) -> bytes:
    """AAD that binds an event's ciphertext to its database, seq, tenant and kind."""
    return frame("event", database, seq, tenant, kind)


def snapshot_aad(database: str, tenant: str, seq: int) -> bytes:
    """AAD that binds a snapshot's ciphertext to its database, tenant and covered seq."""
    return frame("snapshot", database, tenant, seq)


def key_aad(database: str, key_id: int, tenant: str) -> bytes:
    """AAD that binds a wrapped data key to its database, key id and tenant."""
    return frame("data-key", database, key_id, tenant)
