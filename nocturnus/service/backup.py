"""Online backup of one database and its restore into a data dir (issue 3).

A backup is one SQLite file: a consistent copy of the database's log taken with
SQLite's online backup API (safe while the server writes), holding the events, the
snapshots and the *wrapped* data keys, plus a ``backup_info`` meta row with what the
registry knows about the database. It never holds the master key: restoring needs the
same master key the data was written under (rotate first to move data between keys).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from nocturnus import __version__
from nocturnus.errors import StartupError
from nocturnus.service.database import DATABASE_LEVEL, now_ms
from nocturnus.service.databases import SYSTEM_DATABASE, system_database
from nocturnus.service.datadir import database_info, database_path, read_registry
from nocturnus.service.events import DatabaseCreated
from nocturnus.store.crypto import MasterKey
from nocturnus.store.log import EventLog

BACKUP_INFO = "backup_info"
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class BackupInfo:
    """What a backup file says about itself."""

    database: str
    created_at: int
    default_conflict_strategy: str
    head: int
    taken_at: int
    version: str

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "database": self.database,
                "createdAt": self.created_at,
                "defaultConflictStrategy": self.default_conflict_strategy,
                "head": self.head,
                "takenAt": self.taken_at,
                "version": self.version,
            }
        )

    @classmethod
    def from_json(cls, data: bytes) -> BackupInfo:
        body = orjson.loads(data)
        return cls(
            database=body["database"],
            created_at=body["createdAt"],
            default_conflict_strategy=body["defaultConflictStrategy"],
            head=body["head"],
            taken_at=body["takenAt"],
            version=body["version"],
        )


def backup_database(data_dir: Path, key: MasterKey, name: str, out: Path) -> BackupInfo:
    """Copy database ``name`` to the new file ``out`` (online: the server may run).

    :raises StartupError: unknown database, or ``out`` exists.
    """
    info = database_info(data_dir, key, name)
    out = Path(out)
    if out.exists():
        raise StartupError(f"{out} already exists; choose a new backup file")
    event_log = EventLog.open(database_path(data_dir, name), name, key, readonly=True)
    try:
        head = event_log.head()
        backup = BackupInfo(
            name,
            info.created_at,
            info.default_conflict_strategy,
            head,
            now_ms(),
            __version__,
        )
        event_log.backup(out, {BACKUP_INFO: backup.to_json()})
    finally:
        event_log.close()
    # Re-open the copy: its key token, migrations and chain tail must all check out.
    copy = EventLog.open(out, name, key, readonly=True)
    try:
        head = copy.head()
    finally:
        copy.close()
    return BackupInfo(
        name,
        info.created_at,
        info.default_conflict_strategy,
        head,
        backup.taken_at,
        __version__,
    )


def read_backup(path: Path, key: MasterKey) -> tuple[BackupInfo, EventLog]:
    """Open a backup file read-only; the caller closes the returned log.

    :raises StartupError: not a backup (no ``backup_info``), or unreadable.
    :raises WrongMasterKey: the backup was written under another master key.
    """
    path = Path(path)
    if not path.is_file():
        raise StartupError(f"no backup file {path}")
    name = EventLog.stored_name(path)
    if name is None:
        raise StartupError(f"{path} is not a Nocturnus backup (no database name)")
    event_log = EventLog.open(path, name, key, readonly=True)
    try:
        raw = event_log.meta_value(BACKUP_INFO)
        if raw is None:
            raise StartupError(
                f"{path} is a Nocturnus log but not a backup; make one with "
                "`nocturnus backup`"
            )
        return BackupInfo.from_json(raw), event_log
    except BaseException:
        event_log.close()
        raise


@dataclass(frozen=True, slots=True)
class RestoreResult:
    info: BackupInfo
    path: Path
    replaced: bool


def restore_database(
    data_dir: Path,
    key: MasterKey,
    source: Path,
    name: str | None = None,
    *,
    replace: bool = False,
    progress: Progress | None = None,
) -> RestoreResult:
    """Restore a backup into ``data_dir`` and register it (offline: hold the lock).

    The backup is verified in full first (chain, tags, snapshots). Its database name
    is bound into every ciphertext, so it can only be restored under that name.

    :raises StartupError: a bad backup, a different ``name``, or a database of that
        name already in ``data_dir`` (unless ``replace``).
    """
    info, backup_log = read_backup(source, key)
    try:
        if name is not None and name != info.database:
            raise StartupError(
                f"{source} holds database {info.database!r}; its encryption binds that "
                f"name, so it can only be restored as {info.database!r}, not {name!r}"
            )
        if info.database == SYSTEM_DATABASE:
            raise StartupError("the _system registry is not restored from a backup")
        report = backup_log.verify(progress)
        if not report.ok:
            raise StartupError(f"backup {source} does not verify: {report.summary()}")
        registry = read_registry(data_dir, key)
        dest = database_path(data_dir, info.database)
        known = info.database in registry.databases
        if (known or dest.exists()) and not replace:
            raise StartupError(
                f"database {info.database!r} already exists in {data_dir}; delete it "
                "first or pass --replace"
            )
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.{os.getpid()}.restore")
        tmp.unlink(missing_ok=True)
        backup_log.backup(tmp)
    finally:
        backup_log.close()
    for suffix in ("-wal", "-shm"):
        Path(f"{dest}{suffix}").unlink(missing_ok=True)
    os.replace(tmp, dest)
    EventLog.open(dest, info.database, key).close()  # back to WAL, tail checked
    if not known:
        _register(data_dir, key, info)
    return RestoreResult(info, dest, replaced=known)


def _register(data_dir: Path, key: MasterKey, info: BackupInfo) -> None:
    """Append ``database_created`` for the restored database to ``_system``."""

    async def run() -> None:
        system = system_database(Path(data_dir), key)
        await system.open()
        try:
            event = DatabaseCreated(
                info.database, info.created_at, info.default_conflict_strategy
            )
            await system.commit(DATABASE_LEVEL, [event], now_ms())
        finally:
            await system.close()

    asyncio.run(run())


def describe(info: BackupInfo) -> str:
    taken = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(info.taken_at / 1000))
    return f"database {info.database!r} to seq {info.head}, taken {taken} UTC"
