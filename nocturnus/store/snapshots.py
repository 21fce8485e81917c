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
it, is written last (:meth:`Snapshots.finish`), after checking every part is there. A
crash in between leaves parts that no row names: never read, and removed by the
tenant's next snapshot.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from nocturnus.store.crypto import AesGcmCipher
from nocturnus.store.errors import CryptoError, InvalidRecord
from nocturnus.store.keys import KeyRing
from nocturnus.store.record import snapshot_aad

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
    """Encrypt ``body`` under ``key`` (from :meth:`Snapshots.key_for`) and cut it up.

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


class Snapshots:
    """The snapshots table of one log connection."""

    def __init__(self, conn: sqlite3.Connection, database: str, keys: KeyRing) -> None:
        self._conn = conn
        self._database = database
        self._keys = keys

    def key_for(self, tenant: str, seq: int, *, head: int) -> tuple[int, AesGcmCipher] | None:
        """The key a snapshot of ``tenant`` as of ``seq`` is sealed with, if it may be stored.

        None when the tenant has no live key (a snapshot of a deleted incarnation
        must not be stored under a new key: that would resurrect shredded data).

        :raises InvalidRecord: ``seq`` is beyond the head.
        """
        if seq > head or seq < 0:
            raise InvalidRecord(
                seq, f"a snapshot cannot cover a seq beyond the head {head}"
            )
        return self._keys.current(tenant)

    def write_part(self, sealed: SealedSnapshot, part: int) -> None:
        """Store piece ``part`` (< ``sealed.parts``) in a transaction of its own."""
        if not 0 <= part < sealed.parts:
            raise ValueError(f"part {part} of a snapshot with {sealed.parts} parts")
        conn = self._conn
        with _transaction(conn):
            conn.execute(
                "INSERT OR REPLACE INTO snapshot_parts (tenant, seq, part, data)"
                " VALUES (?, ?, ?, ?)",
                (sealed.tenant, sealed.seq, part, sealed.pieces[part]),
            )

    def finish(self, sealed: SealedSnapshot) -> bool:
        """Write the row that makes the snapshot visible; prune old ones and orphans.

        Returns False without storing when the tenant was shredded since the key was
        taken, or a part is missing (another connection's save of the same tenant
        removed it as an orphan): the snapshot is just not stored, the log has it all.
        """
        tenant, seq = sealed.tenant, sealed.seq
        conn = self._conn
        with _transaction(conn):
            # Re-check under the lock: this may be a second connection, and the writer
            # may have shredded the tenant since (then the state must not be stored).
            live = conn.execute(
                "SELECT created_seq FROM data_keys WHERE key_id = ? AND wrapped IS NOT NULL",
                (sealed.key_id,),
            ).fetchone()
            if live is None or live[0] > seq:
                conn.execute("DELETE FROM snapshot_parts WHERE tenant = ?", (tenant,))
                return False
            stored = conn.execute(
                "SELECT count(*) FROM snapshot_parts WHERE tenant = ? AND seq = ?",
                (tenant, seq),
            ).fetchone()[0]
            if stored != sealed.parts:
                return False
            conn.execute(
                "INSERT OR REPLACE INTO snapshots"
                " (tenant, seq, ts_ms, key_id, nonce, payload, parts)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    tenant, seq, int(time.time() * 1000), sealed.key_id, sealed.nonce,
                    sealed.pieces[-1], sealed.parts,
                ),
            )
            conn.execute(
                "DELETE FROM snapshots WHERE tenant = ? AND seq NOT IN"
                " (SELECT seq FROM snapshots WHERE tenant = ? ORDER BY seq DESC LIMIT ?)",
                (tenant, tenant, KEEP),
            )
            conn.execute(
                "DELETE FROM snapshot_parts WHERE tenant = ? AND seq <= ? AND seq NOT IN"
                " (SELECT seq FROM snapshots WHERE tenant = ?)",
                (tenant, seq, tenant),
            )
        return True

    def latest(self, tenant: str) -> tuple[int, bytes] | None:
        """Return the newest snapshot that decrypts, as (seq, body).

        A snapshot under a destroyed key is skipped by design. A damaged one is logged
        as an error and the next older one is tried: the caller then replays a longer
        tail from the log, which yields the same state, and ``verify`` names the seq.
        """
        rows = self._conn.execute(
            "SELECT seq, key_id, nonce, payload, parts FROM snapshots WHERE tenant = ?"
            " ORDER BY seq DESC",
            (tenant,),
        ).fetchall()
        for seq, key_id, nonce, payload, parts in rows:
            ciphertext = snapshot_ciphertext(self._conn, tenant, seq, payload, parts)
            if ciphertext is None:
                log.error(
                    "snapshot of tenant %r at seq %d misses some of its %d parts; "
                    "falling back to an older snapshot (run `nocturnus verify`)",
                    tenant,
                    seq,
                    parts,
                )
                continue
            body = self.open_one(tenant, seq, key_id, nonce, ciphertext)
            if body is not None:
                return seq, body
        return None

    def open_one(
        self, tenant: str, seq: int, key_id: int, nonce: bytes, payload: bytes
    ) -> bytes | None:
        """Decrypt one snapshot's ciphertext; None when shredded or damaged (damage is
        logged)."""
        try:
            cipher = self._keys.cipher(key_id)
        except KeyError:
            log.error(
                "snapshot of tenant %r at seq %d names missing data key %d; skipped",
                tenant,
                seq,
                key_id,
            )
            return None
        if cipher is None:
            return None
        try:
            return cipher.decrypt(
                nonce,
                payload,
                snapshot_aad(self._database, tenant, seq),
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


def snapshot_ciphertext(
    conn: sqlite3.Connection, tenant: str, seq: int, payload: bytes, parts: int
) -> bytes | None:
    """A snapshot row's whole ciphertext: its parts in order, then its payload.

    None when a part is missing (never a partial ciphertext: its tag would fail).
    """
    if not parts:
        return payload
    pieces = [
        data
        for (data,) in conn.execute(
            "SELECT data FROM snapshot_parts WHERE tenant = ? AND seq = ? ORDER BY part",
            (tenant, seq),
        )
    ]
    if len(pieces) != parts:
        return None
    pieces.append(payload)
    return b"".join(pieces)


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` … ``COMMIT`` (also on an early return), rolled back on errors."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
