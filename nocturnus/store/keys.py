"""Per-tenant data keys: created lazily, wrapped by the master key, destroyed to shred.

The :class:`KeyRing` caches unwrapped ciphers for one connection. Changes made inside a
transaction are staged and only become visible to the cache after the transaction
commits (:meth:`KeyRing.commit`), so a rolled-back batch leaves no key behind.
"""

from __future__ import annotations

import os
import sqlite3

from nocturnus.store.crypto import KEY_BYTES, AesGcmCipher, MasterKey
from nocturnus.store.errors import CorruptKey, CryptoError, WrongMasterKey

# A cached entry: the cipher of a live key, or None for a destroyed (shredded) key.
Entry = AesGcmCipher | None


class KeyRing:
    """Data keys of one database file, for one connection."""

    def __init__(
        self, conn: sqlite3.Connection, database: str, master_key: MasterKey
    ) -> None:
        self._conn = conn
        self._database = database
        self._master = master_key
        self._by_id: dict[int, Entry] = {}
        self._current: dict[str, int] = {}
        # Staged by the open transaction, merged by commit(), dropped by rollback().
        self._staged_ids: dict[int, Entry] = {}
        self._staged_current: dict[str, int | None] = {}

    def load(self, *, master_checked: bool) -> None:
        """Unwrap every live key and remember destroyed ones.

        :raises WrongMasterKey: no live key unwraps and the master key was not already
            confirmed by the log's check token.
        :raises CorruptKey: a key fails to unwrap under a confirmed master key.
        """
        rows = self._conn.execute(
            "SELECT key_id, tenant, wrapped FROM data_keys ORDER BY key_id"
        ).fetchall()
        by_id: dict[int, Entry] = {}
        current: dict[str, int] = {}
        failures: list[tuple[int, str, Exception]] = []
        opened = 0
        for key_id, tenant, wrapped in rows:
            if wrapped is None:
                by_id[key_id] = None
                continue
            try:
                by_id[key_id] = self._unwrap(key_id, tenant, wrapped)
                opened += 1
            except CryptoError as e:
                failures.append((key_id, tenant, e))
                continue
            current[tenant] = key_id
        if failures:
            key_id, tenant, cause = failures[0]
            if opened == 0 and not master_checked:
                raise WrongMasterKey(
                    f"the master key cannot unwrap the data keys of database "
                    f"{self._database!r}: wrong NOCTURNUS_MASTER_KEY or master.key"
                ) from cause
            raise CorruptKey(key_id, tenant, "authentication failed") from cause
        self._by_id = by_id
        self._current = current

    def _unwrap(self, key_id: int, tenant: str, wrapped: bytes) -> AesGcmCipher:
        key = self._master.unwrap(
            wrapped, database=self._database, key_id=key_id, tenant=tenant
        )
        return AesGcmCipher(key)

    def cipher(self, key_id: int) -> Entry:
        """Return the cipher of ``key_id``, or None if it was destroyed.

        :raises KeyError: no such key row (the caller reports the record as corrupt).
        :raises CorruptKey: the row exists but does not unwrap.
        """
        try:
            return (
                self._staged_ids[key_id]
                if key_id in self._staged_ids
                else self._by_id[key_id]
            )
        except KeyError:
            pass
        row = self._conn.execute(
            "SELECT tenant, wrapped FROM data_keys WHERE key_id = ?", (key_id,)
        ).fetchone()
        if row is None:
            raise KeyError(key_id)
        tenant, wrapped = row
        entry: Entry = None
        if wrapped is not None:
            try:
                entry = self._unwrap(key_id, tenant, wrapped)
            except CryptoError as e:
                raise CorruptKey(key_id, tenant, "authentication failed") from e
        self._by_id[key_id] = entry
        return entry

    def refresh_destroyed(self) -> None:
        """Forget keys another connection destroyed (read-only replay connections)."""
        for (key_id,) in self._conn.execute(
            "SELECT key_id FROM data_keys WHERE wrapped IS NULL"
        ):
            if self._by_id.get(key_id, 0) is not None:
                self._by_id[key_id] = None
        self._current = dict(
            self._conn.execute(
                "SELECT tenant, key_id FROM data_keys WHERE wrapped IS NOT NULL"
            )
        )

    def current(self, tenant: str) -> tuple[int, AesGcmCipher] | None:
        """Return the live key of ``tenant`` (staged changes included), if any."""
        if tenant in self._staged_current:
            key_id = self._staged_current[tenant]
        else:
            key_id = self._current.get(tenant)
        if key_id is None:
            return None
        entry = self.cipher(key_id)
        return None if entry is None else (key_id, entry)

    def create(self, tenant: str, seq: int, ts_ms: int) -> tuple[int, AesGcmCipher]:
        """Create, wrap and insert a new key for ``tenant`` inside the open transaction."""
        cur = self._conn.execute(
            "INSERT INTO data_keys (tenant, wrapped, created_seq, created_ts_ms)"
            " VALUES (?, ?, ?, ?)",
            (tenant, b"", seq, ts_ms),
        )
        key_id = cur.lastrowid
        assert key_id is not None
        key = os.urandom(KEY_BYTES)
        wrapped = self._master.wrap(
            key, database=self._database, key_id=key_id, tenant=tenant
        )
        self._conn.execute(
            "UPDATE data_keys SET wrapped = ? WHERE key_id = ?", (wrapped, key_id)
        )
        cipher = AesGcmCipher(key)
        self._staged_ids[key_id] = cipher
        self._staged_current[tenant] = key_id
        return key_id, cipher

    def destroy(self, tenant: str, seq: int, ts_ms: int) -> int | None:
        """Destroy the live key of ``tenant`` inside the open transaction; return its id."""
        found = self.current(tenant)
        if found is None:
            return None
        key_id = found[0]
        self._conn.execute(
            "UPDATE data_keys SET wrapped = NULL, destroyed_seq = ?, destroyed_ts_ms = ?"
            " WHERE key_id = ?",
            (seq, ts_ms, key_id),
        )
        self._staged_ids[key_id] = None
        self._staged_current[tenant] = None
        return key_id

    def commit(self) -> None:
        """Make the staged changes visible: call after the transaction committed."""
        self._by_id.update(self._staged_ids)
        for tenant, key_id in self._staged_current.items():
            if key_id is None:
                self._current.pop(tenant, None)
            else:
                self._current[tenant] = key_id
        self.rollback()

    def rollback(self) -> None:
        """Drop the staged changes: call after the transaction rolled back."""
        self._staged_ids = {}
        self._staged_current = {}

    def rewrap(self, new_master: MasterKey) -> int:
        """Re-wrap every live key under ``new_master`` inside the open transaction."""
        rows = self._conn.execute(
            "SELECT key_id, tenant, wrapped FROM data_keys WHERE wrapped IS NOT NULL"
        ).fetchall()
        for key_id, tenant, wrapped in rows:
            try:
                key = self._master.unwrap(
                    wrapped, database=self._database, key_id=key_id, tenant=tenant
                )
            except CryptoError as e:
                raise CorruptKey(key_id, tenant, "authentication failed") from e
            self._conn.execute(
                "UPDATE data_keys SET wrapped = ? WHERE key_id = ?",
                (
                    new_master.wrap(
                        key, database=self._database, key_id=key_id, tenant=tenant
                    ),
                    key_id,
                ),
            )
        return len(rows)

    def use_master(self, master: MasterKey) -> None:
        """Switch to ``master`` after a committed :meth:`rewrap`."""
        self._master = master

    def live_tenants(self) -> dict[str, int]:
        """Return tenant -> created ts_ms for tenants with a live key, excluding ''."""
        return dict(
            self._conn.execute(
                "SELECT tenant, created_ts_ms FROM data_keys"
                " WHERE wrapped IS NOT NULL AND tenant != '' ORDER BY tenant"
            )
        )
