"""The service's face of the shared state store (``store/shared``): async, and sealed
where a value holds tenant data.

A call runs inline on SQLite (a local statement of microseconds) and in a thread on
PostgreSQL (a round trip the event loop must not wait for).

Sealed values: a diff session's last window, a conversation's turns, a transaction's
steps hold a tenant's facts, so they are stored as the log stores them: AES-256-GCM
under the tenant's data key, with the database, tenant, space and key as associated
data (a value cannot be moved to another key). A value opens only under the tenant's
*current* key: once the tenant is deleted (its key destroyed) or deleted and created
again (a new key), what its former incarnation left reads as absent.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from nocturnus.store.crypto import NONCE_BYTES, AesGcmCipher
from nocturnus.store.errors import CryptoError
from nocturnus.store.sealer import Sealer
from nocturnus.store.shared import SharedEntry, SharedState, shared_key

if TYPE_CHECKING:
    from nocturnus.service.database import Database

__all__ = ["Shared", "shared_key"]

T = TypeVar("T")
_FORMAT = 1
_HEADER = struct.Struct(">BI")  # format, key id


class Shared:
    """Shared state for the service layer (``Databases.shared``)."""

    def __init__(self, state: SharedState) -> None:
        self.state = state
        self._inline = state.local

    @property
    def where(self) -> str:
        """Where the entries are, for messages."""
        return self.state.where

    async def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if self._inline:
            return fn(*args, **kwargs)
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def get(self, space: str, key: str) -> SharedEntry | None:
        """The live entry, or None."""
        return await self._call(self.state.get, space, key)

    async def put(
        self,
        space: str,
        key: str,
        value: bytes,
        *,
        ttl_s: float,
        expect: int | None = None,
    ) -> int | None:
        """Store ``value``; the new version, or None when ``expect`` did not hold."""
        return await self._call(
            self.state.put, space, key, value, ttl_s=ttl_s, expect=expect
        )

    async def delete(self, space: str, key: str) -> bool:
        """Remove an entry; False when there was no live one."""
        return await self._call(self.state.delete, space, key)

    async def delete_prefix(self, space: str, prefix: str) -> int:
        """Remove every entry under ``prefix``; how many were live."""
        return await self._call(self.state.delete_prefix, space, prefix)

    async def add(self, space: str, key: str, delta: int, *, ttl_s: float) -> int:
        """Add to a fixed-window counter; its new total."""
        return await self._call(self.state.add, space, key, delta, ttl_s=ttl_s)

    async def scan(self, space: str, prefix: str = "") -> list[tuple[str, SharedEntry]]:
        """The live entries under ``prefix``, in key order."""
        return await self._call(self.state.scan, space, prefix)

    async def get_sealed(
        self, db: Database[Any], tenant: str, space: str, key: str
    ) -> tuple[bytes, int] | None:
        """The opened value and its version, or None: absent, expired, or sealed under
        a key that is no longer the tenant's."""
        entry = await self.get(space, key)
        if entry is None:
            return None
        value = entry.value
        if len(value) < _HEADER.size + NONCE_BYTES or value[0] != _FORMAT:
            return None
        key_id = _HEADER.unpack_from(value)[1]
        current = await db.writer.run(lambda log: Sealer.tenant_key(log, tenant))
        if current is None or current[0] != key_id:
            return None
        start = _HEADER.size
        nonce = value[start : start + NONCE_BYTES]
        try:
            plaintext = current[1].decrypt(
                nonce,
                value[start + NONCE_BYTES :],
                _aad(db.name, tenant, space, key),
                what="shared state",
            )
        except CryptoError:
            return None
        return plaintext, entry.version

    async def put_sealed(
        self,
        db: Database[Any],
        tenant: str,
        space: str,
        key: str,
        plaintext: bytes,
        *,
        ttl_s: float,
        expect: int | None = None,
    ) -> int | None:
        """Seal ``plaintext`` under the tenant's data key and store it (as :meth:`put`).

        :raises LookupError: the tenant has no live key (it was deleted).
        """
        current = await db.writer.run(lambda log: Sealer.tenant_key(log, tenant))
        if current is None:
            raise LookupError(f"tenant {tenant!r} of {db.name!r} has no live data key")
        sealed = _seal(current, _aad(db.name, tenant, space, key), plaintext)
        return await self.put(space, key, sealed, ttl_s=ttl_s, expect=expect)

    def close(self) -> None:
        """Release this process's connections."""
        self.state.close()


def _seal(key: tuple[int, AesGcmCipher], aad: bytes, plaintext: bytes) -> bytes:
    key_id, cipher = key
    nonce, ciphertext = cipher.encrypt(plaintext, aad)
    return _HEADER.pack(_FORMAT, key_id) + nonce + ciphertext


def _aad(database: str, tenant: str, space: str, key: str) -> bytes:
    return orjson.dumps(["nocturnus-shared-1", database, tenant, space, key])
