"""Encrypted per-tenant snapshots: the state of one tenant as of a seq.

A snapshot is encrypted like an event, under the tenant's current data key, with
AAD = frame("snapshot", database, tenant, seq). Destroying the key (tenant deletion)
makes every snapshot under it unreadable; the log also deletes them in that
transaction. Only the newest :data:`KEEP` per tenant are kept.
"""

from __future__ import annotations

import logging
import sqlite3
import time

from nocturnus.store.errors import CryptoError, InvalidRecord
from nocturnus.store.keys import KeyRing
from nocturnus.store.record import snapshot_aad

log = logging.getLogger("nocturnus.store")

KEEP = 3


class Snapshots:
    """The snapshots table of one log connection."""

    def __init__(self, conn: sqlite3.Connection, database: str, keys: KeyRing) -> None:
        self._conn = conn
        self._database = database
        self._keys = keys

    def save(self, tenant: str, seq: int, body: bytes, *, head: int) -> bool:
        """Encrypt and store ``body``; see :meth:`EventLog.save_snapshot`."""
        if not isinstance(body, bytes):
            raise InvalidRecord(seq, "snapshot body must be bytes")
        if seq > head or seq < 0:
            raise InvalidRecord(
                seq, f"a snapshot cannot cover a seq beyond the head {head}"
            )
        found = self._keys.current(tenant)
        if found is None:
            return False
        key_id, cipher = found
        # Encrypt before taking the write lock: a large snapshot must not stall appends.
        nonce, payload = cipher.encrypt(body, snapshot_aad(self._database, tenant, seq))
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Re-check under the lock: this may be a second connection, and the writer
            # may have shredded the tenant since (then the state must not be stored).
            live = conn.execute(
                "SELECT created_seq FROM data_keys WHERE key_id = ? AND wrapped IS NOT NULL",
                (key_id,),
            ).fetchone()
            if live is None or live[0] > seq:
                conn.execute("ROLLBACK")
                return False
            conn.execute(
                "INSERT OR REPLACE INTO snapshots (tenant, seq, ts_ms, key_id, nonce, payload)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (tenant, seq, int(time.time() * 1000), key_id, nonce, payload),
            )
            conn.execute(
                "DELETE FROM snapshots WHERE tenant = ? AND seq NOT IN"
                " (SELECT seq FROM snapshots WHERE tenant = ? ORDER BY seq DESC LIMIT ?)",
                (tenant, tenant, KEEP),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return True

    def latest(self, tenant: str) -> tuple[int, bytes] | None:
        """Return the newest snapshot that decrypts, as (seq, body).

        A snapshot under a destroyed key is skipped by design. A damaged one is logged
        as an error and the next older one is tried: the caller then replays a longer
        tail from the log, which yields the same state, and ``verify`` names the seq.
        """
        rows = self._conn.execute(
            "SELECT seq, key_id, nonce, payload FROM snapshots WHERE tenant = ?"
            " ORDER BY seq DESC",
            (tenant,),
        ).fetchall()
        for seq, key_id, nonce, payload in rows:
            body = self.open_one(tenant, seq, key_id, nonce, payload)
            if body is not None:
                return seq, body
        return None

    def open_one(
        self, tenant: str, seq: int, key_id: int, nonce: bytes, payload: bytes
    ) -> bytes | None:
        """Decrypt one snapshot row; None when shredded or damaged (damage is logged)."""
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
