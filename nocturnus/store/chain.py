"""The chain over the events table: keyed, so only a master-key holder can forge it.

``hash = HMAC-SHA256(chain key, frame(prev_hash, seq, ts_ms, tenant, kind, key_id,
nonce, payload))``. The design's formula (prev_hash ‖ seq ‖ ts ‖ tenant ‖ kind ‖
ciphertext) is covered in full; ``key_id`` and ``nonce`` are added so that no stored
column of an event can change without the chain noticing. The first event's
``prev_hash`` is :data:`GENESIS`. The log also records its head (seq, hash) in ``meta``
in the same transaction as every append, so removing the newest rows is detected too.

The chain key is a random 32-byte key per log, stored wrapped by the master key (issue
14: with a plain SHA-256 chain anyone could delete a retraction and recompute the chain;
with a key, recomputing it needs the master key). Each compacted seq range carries a
MAC under the same key, so the only gaps the chain accepts are ones a master-key holder
recorded. Logs written before keep their plain chain (:data:`PLAIN`) until their first
read-write open upgrades them (:mod:`nocturnus.store.sealer`).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from nocturnus.store.record import frame
from nocturnus.store.recorder import ChainRow

GENESIS = bytes(32)
_HEAD = struct.Struct(">q32s")



class Chain:
    """How one log links its rows: HMAC-SHA256 under its chain key (None: the plain
    SHA-256 chain of a log from before issue 14)."""

    __slots__ = ("_base", "_key", "keyed")

    def __init__(self, key: bytes | None) -> None:
        self.keyed = key is not None
        self._key = key
        self._base: Any = (
            hashlib.sha256() if key is None else hmac.new(key, digestmod=hashlib.sha256)
        )

    def hash(
        self,
        prev_hash: bytes,
        seq: int,
        ts_ms: int,
        tenant: str,
        kind: str,
        key_id: int,
        nonce: bytes,
        payload: bytes,
    ) -> bytes:
        """The chain hash of one stored event.

        The fixed-size part of the frame is packed by one cached struct per
        combination of lengths (every write and every verified row hashes one).
        """
        digest = self._base.copy()  # cheaper than setting the key up again
        if (
            type(seq) is not int
            or type(ts_ms) is not int
            or type(key_id) is not int
            or type(tenant) is not str
            or type(kind) is not str
        ):  # frame() checks and encodes anything else
            digest.update(
                frame(prev_hash, seq, ts_ms, tenant, kind, key_id, nonce, payload)
            )
            return bytes(digest.digest())
        t, k = tenant.encode(), kind.encode()
        shape = (len(prev_hash), len(t), len(k), len(nonce))
        pack = _HEADS.get(shape)
        if pack is None:
            pack = _HEADS[shape] = _head_struct(*shape)
        digest.update(
            pack(
                b"b", len(prev_hash), prev_hash, b"i", seq, b"i", ts_ms,
                b"s", len(t), t, b"s", len(k), k, b"i", key_id,
                b"b", len(nonce), nonce, b"b", len(payload),
            )
        )
        digest.update(payload)
        return bytes(digest.digest())

    def subkey(self, purpose: str, database: str) -> bytes | None:
        """A key for ``purpose`` derived from the chain key (None for a plain chain):
        what else only a master-key holder may write (the head anchor) is MAC'd with
        it, and it survives master-key rotation as the chain key does."""
        if self._key is None:
            return None
        return hmac.digest(self._key, frame("subkey", purpose, database), "sha256")

    def range_mac(self, database: str, first: int, last: int, compacted_seq: int) -> bytes:
        """The MAC of one compacted seq range (empty for a plain chain: none exist)."""
        if self._key is None:
            return b""
        return hmac.digest(
            self._key,
            frame("compacted", database, first, last, compacted_seq),
            "sha256",
        )

    def gaps(
        self, database: str, ranges: Iterable[tuple[int, int, int, bytes | None]]
    ) -> tuple[dict[int, int], list[Break]]:
        """The compacted ranges the chain may skip (first -> last), and a Break for
        each recorded range whose MAC does not hold (it is not skipped)."""
        gaps: dict[int, int] = {}
        bad: list[Break] = []
        for first, last, compacted_seq, mac in ranges:
            if not self.keyed or (
                mac is not None
                and hmac.compare_digest(
                    mac, self.range_mac(database, first, last, compacted_seq)
                )
            ):
                gaps[first] = last
            else:
                bad.append(
                    Break(
                        first,
                        f"the compacted range {first}..{last} was not recorded by a "
                        "holder of the master key",
                    )
                )
        return gaps, bad


PLAIN = Chain(None)


def event_hash(
    prev_hash: bytes,
    seq: int,
    ts_ms: int,
    tenant: str,
    kind: str,
    key_id: int,
    nonce: bytes,
    payload: bytes,
) -> bytes:
    """The plain (unkeyed) chain hash: ``sha256(frame(prev_hash, ..., payload))``."""
    return PLAIN.hash(prev_hash, seq, ts_ms, tenant, kind, key_id, nonce, payload)


_HEADS: dict[tuple[int, int, int, int], Callable[..., bytes]] = {}


def _head_struct(prev: int, tenant: int, kind: int, nonce: int) -> Callable[..., bytes]:
    """frame()'s layout of everything but the payload's bytes, for these lengths."""
    return struct.Struct(
        f">cI{prev}scqcqcI{tenant}scI{kind}scqcI{nonce}scI"
    ).pack


def pack_head(seq: int, hash_: bytes) -> bytes:
    return _HEAD.pack(seq, hash_)


def unpack_head(value: bytes) -> tuple[int, bytes]:
    seq, hash_ = _HEAD.unpack(value)
    return seq, hash_


@dataclass(frozen=True, slots=True)
class Break:
    """One place where the chain does not hold: the seq to look at and why."""

    seq: int
    reason: str


def is_compacted(gaps: Mapping[int, int], first: int, last: int) -> bool:
    """Tell whether seqs ``first..last`` were all dropped by recorded compactions.

    ``gaps`` maps the first seq of each recorded dropped range to its last seq.
    """
    pos = first
    while pos <= last:
        end = gaps.get(pos)
        if end is None:
            return False
        pos = end + 1
    return pos == last + 1


def walk(
    rows: Iterable[ChainRow],
    prev_seq: int,
    prev_hash: bytes | None,
    gaps: Mapping[int, int] | None = None,
    chain: Chain = PLAIN,
) -> Iterator[Break | ChainRow]:
    """Yield each row, and a :class:`Break` before any row where the chain fails.

    ``prev_seq``/``prev_hash`` anchor the walk (``0``/:data:`GENESIS` from the start);
    ``prev_hash=None`` trusts the first row's link (a tail check starting mid-log).
    After a break the walk resynchronises on the row, so later breaks are found too.
    The seq named is the row that was changed where that can be told: a row whose own
    hash fails was changed; a row that is self-consistent but whose ``prev_hash`` does
    not match means the row before it was rewritten with a recomputed hash.
    Missing seqs are allowed only inside the ranges ``gaps`` records as compacted
    (compaction re-chains the rows around them, so the links still hold).
    """
    for row in rows:
        seq, ts_ms, tenant, kind, key_id, nonce, payload, row_prev, row_hash = row
        if seq != prev_seq + 1 and not (
            gaps and is_compacted(gaps, prev_seq + 1, seq - 1)
        ):
            yield Break(
                prev_seq + 1,
                f"event missing (the next stored event is seq {seq}): "
                "a row was removed or renumbered",
            )
            prev_hash = None
        if chain.hash(row_prev, seq, ts_ms, tenant, kind, key_id, nonce, payload) != row_hash:
            yield Break(seq, "the row does not match its hash: it was changed or moved")
        elif prev_hash is not None and row_prev != prev_hash:
            if prev_seq == 0:
                yield Break(seq, "the first event does not start from the genesis hash")
            else:
                yield Break(
                    prev_seq,
                    f"its hash does not match the prev_hash recorded by seq {seq}: "
                    "the row was changed or rows were reordered",
                )
        yield row
        prev_seq, prev_hash = seq, row_hash


def head_break(
    meta_head: tuple[int, bytes] | None, last_seq: int, last_hash: bytes | None
) -> Break | None:
    """Compare the recorded head with the last stored row (tail removal, stray rows)."""
    recorded_seq, recorded_hash = meta_head if meta_head is not None else (0, GENESIS)
    if recorded_seq > last_seq:
        return Break(
            last_seq + 1,
            f"events {last_seq + 1}..{recorded_seq} are missing: the log recorded "
            f"head seq {recorded_seq}",
        )
    if recorded_seq < last_seq:
        return Break(
            recorded_seq + 1,
            f"events after seq {recorded_seq} were not written by the event log",
        )
    if last_seq and recorded_hash != last_hash:
        return Break(last_seq, "the last event does not match the recorded head hash")
    return None
