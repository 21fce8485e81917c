"""Per-tenant data keys: created lazily, wrapped by the master key, destroyed to shred.

The :class:`KeyRing` caches the unwrapped ciphers of one database's keys for one
recorder. Changes made inside a write transaction are staged and only become visible to
the cache after the transaction commits (:meth:`KeyRing.commit`), so a rolled-back batch
leaves no key behind. Keys live in the recorder as wrapped bytes only: the store never
sees a data key.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from nocturnus.store.crypto import KEY_BYTES, AesGcmCipher, MasterKey
from nocturnus.store.errors import CorruptKey, CryptoError, WrongMasterKey
from nocturnus.store.recorder import KeyRow, Recorder, WriteTransaction

# A cached entry: the cipher of a live key, or None for a destroyed (shredded) key.
CachedCipher = AesGcmCipher | None


class KeyRing:
    """Data keys of one database, for one recorder."""

    def __init__(self, recorder: Recorder, master_key: MasterKey) -> None:
        self._recorder = recorder
        self._database = recorder.database
        self._master = master_key
        self._by_id: dict[int, CachedCipher] = {}
        self._current: dict[str, int] = {}
        # Staged by the open transaction, merged by commit(), dropped by rollback().
        self._staged_ids: dict[int, CachedCipher] = {}
        self._staged_current: dict[str, int | None] = {}

    def load(self, *, master_checked: bool, rows: Iterable[KeyRow] | None = None) -> None:
        """Unwrap every live key and remember destroyed ones (``rows``: as read inside
        a write transaction; else read now).

        :raises WrongMasterKey: no live key unwraps and the master key was not already
            confirmed by the log's check token.
        :raises CorruptKey: a key fails to unwrap under a confirmed master key.
        """
        by_id: dict[int, CachedCipher] = {}
        current: dict[str, int] = {}
        failures: list[tuple[int, str, Exception]] = []
        opened = 0
        known = self._by_id
        for row in self._recorder.key_rows() if rows is None else rows:
            key_id, tenant, wrapped = row.key_id, row.tenant, row.wrapped
            if wrapped is None:
                by_id[key_id] = None
                continue
            cached = known.get(key_id)
            try:
                by_id[key_id] = cached or self._unwrap(key_id, tenant, wrapped)
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

    def cipher(self, key_id: int) -> CachedCipher:
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
        row = self._recorder.key_row(key_id)
        if row is None:
            raise KeyError(key_id)
        entry: CachedCipher = None
        if row.wrapped is not None:
            try:
                entry = self._unwrap(key_id, row.tenant, row.wrapped)
            except CryptoError as e:
                raise CorruptKey(key_id, row.tenant, "authentication failed") from e
        self._by_id[key_id] = entry
        return entry

    def refresh(self, rows: Iterable[KeyRow] | None = None) -> None:
        """Follow key changes another writer made: destroyed keys, new current keys."""
        self.load(master_checked=True, rows=rows)

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

    def create(
        self, tx: WriteTransaction, tenant: str, seq: int, ts_ms: int
    ) -> tuple[int, AesGcmCipher]:
        """Create, wrap and store a new key for ``tenant`` inside ``tx``."""
        key = os.urandom(KEY_BYTES)
        key_id = tx.create_key(
            tenant,
            seq,
            ts_ms,
            lambda key_id: self._master.wrap(
                key, database=self._database, key_id=key_id, tenant=tenant
            ),
        )
        cipher = AesGcmCipher(key)
        self._staged_ids[key_id] = cipher
        self._staged_current[tenant] = key_id
        return key_id, cipher

    def destroy(
        self, tx: WriteTransaction, tenant: str, seq: int, ts_ms: int
    ) -> int | None:
        """Destroy the live key of ``tenant`` inside ``tx``; return its id."""
        found = self.current(tenant)
        if found is None:
            return None
        key_id = found[0]
        tx.destroy_key(key_id, seq, ts_ms)
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

    def rewrap(self, tx: WriteTransaction, new_master: MasterKey) -> int:
        """Re-wrap every live key under ``new_master`` inside ``tx``; return how many."""
        rows = [row for row in tx.key_rows() if row.wrapped is not None]
        for row in rows:
            assert row.wrapped is not None  # filtered above
            try:
                key = self._master.unwrap(
                    row.wrapped,
                    database=self._database,
                    key_id=row.key_id,
                    tenant=row.tenant,
                )
            except CryptoError as e:
                raise CorruptKey(row.key_id, row.tenant, "authentication failed") from e
            tx.rewrap_key(
                row.key_id,
                new_master.wrap(
                    key, database=self._database, key_id=row.key_id, tenant=row.tenant
                ),
            )
        return len(rows)

    def use_master(self, master: MasterKey) -> None:
        """Switch to ``master`` after a committed :meth:`rewrap`."""
        self._master = master

    def live_tenants(self) -> dict[str, int]:
        """Return tenant -> created ts_ms for tenants with a live key, excluding ''."""
        return dict(
            sorted(
                (row.tenant, row.created_ts_ms)
                for row in self._recorder.key_rows()
                if row.wrapped is not None and row.tenant
            )
        )
