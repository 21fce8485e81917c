"""Store errors: driver failures, corruption, a wrong key, a broken chain.

Every class names what failed and, where there is one, the seq, so an operator can go
straight to the row (STYLE rule 6). Driver and ``cryptography`` exceptions never leave
``nocturnus.store``: each backend translates its driver's errors where they happen
(:mod:`nocturnus.store.sqlite`, :mod:`nocturnus.store.postgresql`), chained with
``from e``.
"""

from __future__ import annotations

from nocturnus.errors import StartupError, Unavailable


class StorageError(Unavailable):
    """The log cannot be read or written (SQLite failure, disk full, closed writer)."""

    code = "UNAVAILABLE"
    status = 503


class WriterClosed(StorageError):
    """An append or run reached a writer that is not running."""


class AppendConflict(StorageError):
    """Another writer appended to the stream since the append was decided (the
    optimistic check): catch up with the log and decide again.

    ``actual`` is the stream's position now; None when the append followed another
    append of this process that was itself refused.
    """

    code = "WRITE_CONFLICT"
    status = 503

    def __init__(self, stream: str, expected: int | None, actual: int | None) -> None:
        who = f"tenant {stream!r}" if stream else "the database level"
        if actual is None:
            why = "the write it followed was not stored"
        else:
            why = f"it was decided at seq {expected}, the log is at seq {actual}"
        super().__init__(
            f"another writer changed {who} first ({why}); retry the request",
            {"tenant": stream, "expected": expected, "actual": actual},
        )
        self.stream = stream
        self.expected = expected
        self.actual = actual


class InvalidRecord(StorageError):
    """A record handed to the log is malformed (a caller bug, not a storage failure)."""

    code = "INVALID_RECORD"
    status = 500

    def __init__(self, seq: int | None, reason: str) -> None:
        where = f"record seq {seq}" if seq is not None else "appended record"
        super().__init__(f"{where} is invalid: {reason}", {"seq": seq})
        self.seq = seq


class CorruptRecord(StorageError):
    """A stored event cannot be decrypted although its key exists (tampering, bit rot)."""

    code = "CORRUPT_RECORD"
    status = 500

    def __init__(
        self,
        seq: int,
        reason: str = "authentication tag does not match",
        tenant: str | None = None,
    ) -> None:
        super().__init__(f"event seq {seq} is corrupt: {reason}", {"seq": seq})
        self.seq = seq
        self.reason = reason
        self.tenant = tenant  # the stream the row names, when known


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
