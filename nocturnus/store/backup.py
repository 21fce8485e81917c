"""Backup files: one consistent copy of a database's rows, the same on every backend.

A backup is a SQLite log file (the portable format: a PostgreSQL store writes the same
kind of file) holding the events, the snapshots and the *wrapped* data keys, plus the
metadata its writer adds (``backup_info``). It never holds the master key: opening one
needs the master key the data was written under. Restoring goes through
``Store.restore``, so a backup of either backend restores into either.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from nocturnus.store.crypto import MasterKey
from nocturnus.store.sealer import Sealer
from nocturnus.store.sqlite import SqliteRecorder, read_database_name


def write_backup(sealer: Sealer, dest: Path, meta: Mapping[str, bytes]) -> None:
    """Copy every row of ``sealer``'s log consistently into the new file ``dest``."""
    sealer.recorder.backup_to(Path(dest), meta)


def backup_database_name(path: Path) -> str | None:
    """The database a backup file holds, read without any key.

    :raises StorageError: the file is missing or not a Nocturnus log.
    """
    return read_database_name(Path(path))


def open_backup(
    path: Path,
    database: str,
    key: MasterKey,
    *,
    readonly: bool = True,
    check_tail: int | None = 1000,
) -> Sealer:
    """Open a backup file as the log of ``database`` (read-write: a working copy,
    migrated and upgraded like any log when it comes from an older version).

    :raises WrongMasterKey: it was written under another master key.
    :raises ChainBroken: its newest events do not chain.
    """
    return Sealer.open(
        SqliteRecorder(Path(path), database, readonly=readonly),
        key,
        check_tail=check_tail,
    )
