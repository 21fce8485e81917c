"""Store errors: driver failures, corruption, a wrong key, a broken chain.

Every class names what failed and, where there is one, the seq, so an operator can go
straight to the row (STYLE rule 6). ``sqlite3`` and ``cryptography`` exceptions never
leave ``nocturnus.store``; they are translated here, chained with ``from e``.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from nocturnus.errors import StartupError, Unavailable


class StorageError(Unavailable):
    """The log cannot be read or written (SQLite failure, disk full, closed writer)."""

    code = "UNAVAILABLE"
    status = 503


class WriterClosed(StorageError):
    """An append or run reached a writer that is not running."""


class SeqConflict(StorageError):
    """An append's seqs do not continue the log head contiguously."""

    code = "SEQ_CONFLICT"
    status = 500

    def __init__(self, seq: int, expected: int) -> None:
        super().__init__(
            f"seq {seq} conflicts with the event log: expected seq {expected}",
            {"seq": seq, "expected": expected},
        )
        self.seq = seq
        self.expected = expected


class InvalidRecord(StorageError):
    """A record handed to the log is malformed (a caller bug, not a storage failure)."""

    code = "INVALID_RECORD"
    status = 500

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"record seq {seq} is invalid: {reason}", {"seq": seq})
        self.seq = seq


class CorruptRecord(StorageError):
    """A stored event cannot be decrypted although its key exists (tampering, bit rot)."""

    code = "CORRUPT_RECORD"
    status = 500

    def __init__(
        self, seq: int, reason: str = "authentication tag does not match"
    ) -> None:
        super().__init__(f"event seq {seq} is corrupt: {reason}", {"seq": seq})
        self.seq = seq


class CorruptSnapshot(StorageError):
    """A stored snapshot cannot be decrypted although its key exists."""

    code = "CORRUPT_SNAPSHOT"
    status = 500

    def __init__(self, tenant: str, seq: int, reason: str) -> None:
        super().__init__(
            f"snapshot of tenant {tenant!r} at seq {seq} is corrupt: {reason}",
            {"tenant": tenant, "seq": seq},
        )
        self.tenant = tenant
        self.seq = seq


class ChainBroken(StorageError, StartupError):
    """The hash chain shows a changed, removed or reordered event; start-up stops."""

    code = "CHAIN_BROKEN"
    status = 500

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"hash chain broken at seq {seq}: {reason}", {"seq": seq})
        self.seq = seq


class WrongMasterKey(StartupError):
    """The master key cannot unwrap this database's data keys."""

    code = "WRONG_MASTER_KEY"


class CorruptKey(StorageError, StartupError):
    """One wrapped data key fails to unwrap although the master key is right."""

    code = "CORRUPT_KEY"
    status = 500

    def __init__(self, key_id: int, tenant: str, reason: str) -> None:
        super().__init__(
            f"data key {key_id} of tenant {tenant!r} cannot be unwrapped: {reason}",
            {"key_id": key_id, "tenant": tenant},
        )
        self.key_id = key_id
        self.tenant = tenant


class CryptoError(StorageError):
    """Decryption failed; the caller rewraps it with the record it was reading."""

    code = "CRYPTO_ERROR"
    status = 500


class MigrationError(StorageError, StartupError):
    """The schema cannot be brought up to date (bad file, edited or unknown migration)."""

    code = "MIGRATION_ERROR"
    status = 500


def storage_error(e: sqlite3.Error, doing: str, where: Any = None) -> StorageError:
    """Translate a ``sqlite3`` error into a StorageError naming what was being done.

    The caller raises the result ``from e`` so the driver traceback stays attached.
    """
    name = getattr(e, "sqlite_errorname", None) or type(e).__name__
    place = f" ({where})" if where is not None else ""
    if name in {"SQLITE_FULL"}:
        reason = "the disk is full"
    elif name.startswith("SQLITE_BUSY") or "locked" in str(e):
        reason = "the database file is locked by another writer"
    elif name.startswith("SQLITE_READONLY"):
        reason = "the database file is read-only"
    elif name.startswith("SQLITE_CORRUPT") or name == "SQLITE_NOTADB":
        reason = "the database file is damaged or not a Nocturnus log"
    else:
        reason = str(e)
    return StorageError(f"event log failed while {doing}{place}: {reason} [{name}]")
