"""Online backup of one database and its restore into a data dir (issue 3).

A backup is one SQLite file: a consistent copy of the database's log taken with
SQLite's online backup API (safe while the server writes), holding the events, the
snapshots and the *wrapped* data keys, plus a ``backup_info`` meta row with what the
registry knows about the database. It never holds the master key: restoring needs the
same master key the data was written under (rotate first to move data between keys).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson

from nocturnus import __version__
from nocturnus.errors import StartupError
from nocturnus.service.database import DATABASE_LEVEL, now_ms
from nocturnus.service.databases import SYSTEM_DATABASE, system_database
from nocturnus.service.datadir import database_info, open_log, read_registry
from nocturnus.service.events import DatabaseCreated
from nocturnus.store.backup import backup_database_name, open_backup, write_backup
from nocturnus.store.crypto import MasterKey
from nocturnus.store.recorder import Store
from nocturnus.store.sealer import Sealer
from nocturnus.store.verify import verify_log

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


def backup_database(store: Store, key: MasterKey, name: str, out: Path) -> BackupInfo:
    """Copy database ``name`` to the new file ``out`` (online: the server may run).

    :raises StartupError: unknown database, or ``out`` exists.
    """
    info = database_info(store, key, name)
    out = Path(out)
    if out.exists():
        raise StartupError(f"{out} already exists; choose a new backup file")
    with open_log(store, key, name) as event_log:
        head = event_log.head()
        backup = BackupInfo(
            name,
            info.created_at,
            info.default_conflict_strategy,
            head,
            now_ms(),
            __version__,
        )
        write_backup(event_log, out, {BACKUP_INFO: backup.to_json()})
    # Re-open the copy: its key token, migrations and chain tail must all check out.
    copy = open_backup(out, name, key)
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


def read_backup(path: Path, key: MasterKey) -> tuple[BackupInfo, Sealer]:
    """Open a backup file read-only; the caller closes the returned log.

    :raises StartupError: not a backup (no ``backup_info``), or unreadable.
    :raises WrongMasterKey: the backup was written under another master key.
    """
    path = Path(path)
    if not path.is_file():
        raise StartupError(f"no backup file {path}")
    name = backup_database_name(path)
    if name is None:
        raise StartupError(f"{path} is not a Nocturnus backup (no database name)")
    event_log = open_backup(path, name, key)
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
    where: str
    replaced: bool


def restore_database(
    store: Store,
    key: MasterKey,
    source: Path,
    name: str | None = None,
    *,
    replace: bool = False,
    progress: Progress | None = None,
) -> RestoreResult:
    """Restore a backup into ``store`` and register it (offline: hold the lock).

    The backup is verified in full first (chain, tags, snapshots). Its database name
    is bound into every ciphertext, so it can only be restored under that name.

    :raises StartupError: a bad backup, a different ``name``, or a database of that
        name already in ``store`` (unless ``replace``).
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
        report = verify_log(backup_log, progress)
        if not report.ok:
            raise StartupError(f"backup {source} does not verify: {report.summary()}")
        registry = read_registry(store, key)
        known = info.database in registry.databases
        if (known or store.exists(info.database)) and not replace:
            raise StartupError(
                f"database {info.database!r} already exists in {store.where}; delete "
                "it first or pass --replace"
            )
    finally:
        backup_log.close()
    store.restore(info.database, Path(source))
    Sealer.open(store.recorder(info.database), key).close()  # key and tail checked
    if not known:
        _register(store, key, info)
    return RestoreResult(info, store.where_is(info.database), replaced=known)


def _register(store: Store, key: MasterKey, info: BackupInfo) -> None:
    """Append ``database_created`` for the restored database to ``_system``."""

    async def run() -> None:
        system = system_database(store, key)
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
