"""Encrypted per-tenant snapshots: the state of one tenant as of a seq.

A snapshot is encrypted like an event, under the tenant's current data key, with
AAD = frame("snapshot", database, tenant, seq). Destroying the key (tenant deletion)
makes every snapshot under it unreadable; the log also deletes them in that
transaction. Only the newest :data:`KEEP` per tenant are kept.

Storing one takes several short transactions so that it never stalls the appends of a
running server (a 90 MB snapshot in one INSERT held the writer for about a second):
the body is sealed (encrypted) outside the writer, its ciphertext is cut into
:data:`PART_BYTES` pieces, every piece but the last is written in a transaction of its
own, and the ``snapshots`` row, carrying the last piece and the number of parts before
it, is written last (``Recorder.finish_snapshot``), after checking every part is there. A
crash in between leaves parts that no row names: never read, and removed by the
tenant's next snapshot.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nocturnus.store.crypto import AesGcmCipher
from nocturnus.store.errors import CryptoError, InvalidRecord
from nocturnus.store.keys import KeyRing
from nocturnus.store.record import snapshot_aad
from nocturnus.store.recorder import SnapshotRow

log = logging.getLogger("nocturnus.store")

KEEP = 3
PART_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class SealedSnapshot:
    """A snapshot encrypted and cut into pieces, ready to store step by step."""

    tenant: str
    seq: int
    key_id: int
    nonce: bytes
    pieces: tuple[bytes, ...]

    @property
    def parts(self) -> int:
        """Pieces stored in ``snapshot_parts`` (every piece but the last)."""
        return len(self.pieces) - 1


def seal(
    database: str,
    tenant: str,
    seq: int,
    key: tuple[int, AesGcmCipher],
    body: bytes,
    part_bytes: int = PART_BYTES,
) -> SealedSnapshot:
    """Encrypt ``body`` under ``key`` (from ``Sealer.snapshot_key``) and cut it up.

    Pure CPU: callers run it outside the writer thread for big bodies.
    """
    if not isinstance(body, bytes):
        raise InvalidRecord(seq, "snapshot body must be bytes")
    key_id, cipher = key
    nonce, payload = cipher.encrypt(body, snapshot_aad(database, tenant, seq))
    view = memoryview(payload)
    pieces = tuple(
        bytes(view[start : start + part_bytes])
        for start in range(0, max(len(payload), 1), part_bytes)
    )
    return SealedSnapshot(tenant, seq, key_id, nonce, pieces)


def open_snapshot(
    keys: KeyRing, database: str, row: SnapshotRow
) -> bytes | None:
    """Decrypt one stored snapshot; None when shredded or damaged (damage is logged).

    A damaged snapshot is never used partially: the caller falls back to an older one
    and a longer replay from the log, which yields the same state, and ``verify`` names
    the seq.
    """
    tenant, seq = row.tenant, row.seq
    if row.ciphertext is None:
        log.error(
            "snapshot of tenant %r at seq %d misses some of its %d parts; "
            "falling back to an older snapshot (run `nocturnus verify`)",
            tenant,
            seq,
            row.parts,
        )
        return None
    try:
        cipher = keys.cipher(row.key_id)
    except KeyError:
        log.error(
            "snapshot of tenant %r at seq %d names missing data key %d; skipped",
            tenant,
            seq,
            row.key_id,
        )
        return None
    if cipher is None:
        return None
    try:
        return cipher.decrypt(
            row.nonce,
            row.ciphertext,
            snapshot_aad(database, tenant, seq),
            what="snapshot",
        )
    except CryptoError:
        log.error(
            "snapshot of tenant %r at seq %d is corrupt; falling back to an older "
            "snapshot and a longer replay (run `nocturnus verify`)",
            tenant,
            seq,
        )
        return None
