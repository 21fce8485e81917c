"""Open a SQLite event log file directly (tests that look at a server's files)."""

from __future__ import annotations

from pathlib import Path

from nocturnus.store.crypto import MasterKey
from nocturnus.store.sealer import Sealer
from nocturnus.store.sqlite import SqliteRecorder


def sqlite_log(
    path: Path,
    database: str,
    key: MasterKey,
    *,
    readonly: bool = False,
    check_tail: int | None = 1000,
) -> Sealer:
    """The log of ``database`` in the file ``path``."""
    return Sealer.open(
        SqliteRecorder(Path(path), database, readonly=readonly), key, check_tail=check_tail
    )
