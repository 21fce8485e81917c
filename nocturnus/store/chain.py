"""The hash chain over the events table.

``hash = sha256(frame(prev_hash, seq, ts_ms, tenant, kind, key_id, nonce, payload))``.
The design's formula (prev_hash ‖ seq ‖ ts ‖ tenant ‖ kind ‖ ciphertext) is covered in
full; ``key_id`` and ``nonce`` are added so that no stored column of an event can
change without the chain noticing. The first event's ``prev_hash`` is
:data:`GENESIS`. The log also records its head (seq, hash) in ``meta`` in the same
transaction as every append, so removing the newest rows is detected too.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from nocturnus.store.record import frame

GENESIS = bytes(32)
_HEAD = struct.Struct(">q32s")

# (seq, ts_ms, tenant, kind, key_id, nonce, payload, prev_hash, hash)
Row = tuple[int, int, str, str, int, bytes, bytes, bytes, bytes]


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
    """Return the chain hash of one stored event."""
    return hashlib.sha256(
        frame(prev_hash, seq, ts_ms, tenant, kind, key_id, nonce, payload)
    ).digest()


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
    rows: Iterable[Row],
    prev_seq: int,
    prev_hash: bytes | None,
    gaps: Mapping[int, int] | None = None,
) -> Iterator[Break | Row]:
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
        if (
            event_hash(row_prev, seq, ts_ms, tenant, kind, key_id, nonce, payload)
            != row_hash
        ):
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
