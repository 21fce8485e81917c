"""Backups of one database, online, and their restore: one home for both (issue 14).

A backup is one file, the same on both backends: a SQLite log holding a consistent copy
of the database's events, snapshots and *wrapped* data and chain keys, plus a
``backup_info`` meta row with what the registry knows about the database. It never holds
the master key: restoring needs the master key the data was written under (rotate first
to move data between keys). ``nocturnus backup`` writes one where the operator says;
``POST /admin/backups`` writes one into ``<data dir>/backups``, where backups older than
``NOCTURNUS_BACKUP_RETENTION`` days are pruned (a deleted tenant's key lives on in the
backups taken before its deletion until then). ``nocturnus restore`` takes either.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

from nocturnus import __version__
from nocturnus.errors import NotFound, StartupError
from nocturnus.progress import Progress
from nocturnus.service.database import DATABASE_LEVEL, now_ms
from nocturnus.service.databases import (
    SYSTEM_DATABASE,
    DatabaseInfo,
    Databases,
    system_database,
)
from nocturnus.service.datadir import database_info, open_log, read_registry
from nocturnus.service.events import DatabaseCreated
from nocturnus.store.backup import backup_database_name, open_backup, write_backup
from nocturnus.store.crypto import MasterKey
from nocturnus.store.files import private_dir
from nocturnus.store.recorder import Store
from nocturnus.store.sealer import Sealer
from nocturnus.store.verify import verify_log

BACKUP_INFO = "backup_info"
BACKUP_DIR = "backups"
SUFFIX = ".nocturnus-backup"
DAY_MS = 86_400_000


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
        """The info as the backup file stores it."""
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
        """The info a backup file stores (:meth:`to_json`)."""
        body = orjson.loads(data)
        return cls(
            database=body["database"],
            created_at=body["createdAt"],
            default_conflict_strategy=body["defaultConflictStrategy"],
            head=body["head"],
            taken_at=body["takenAt"],
            version=body["version"],
        )


def _info(info: DatabaseInfo, head: int, taken_at: int) -> BackupInfo:
    return BackupInfo(
        info.name,
        info.created_at,
        info.default_conflict_strategy,
        head,
        taken_at,
        __version__,
    )


def backup_database(store: Store, key: MasterKey, name: str, out: Path) -> BackupInfo:
    """Copy database ``name`` to the new file ``out`` (online: the server may run).

    :raises StartupError: unknown database, or ``out`` exists.
    """
    info = database_info(store, key, name)
    out = Path(out)
    if out.exists():
        raise StartupError(f"{out} already exists; choose a new backup file")
    taken_at = now_ms()
    with open_log(store, key, name) as event_log:
        head = event_log.head()
        write_backup(event_log, out, {BACKUP_INFO: _info(info, head, taken_at).to_json()})
    # Re-open the copy: its key token, migrations and chain tail must all check out.
    copy = open_backup(out, name, key)
    try:
        head = copy.head()
    finally:
        copy.close()
    return _info(info, head, taken_at)


@dataclass(frozen=True, slots=True)
class ServerBackup:
    """A backup ``POST /admin/backups`` wrote, and the old ones it pruned."""

    info: BackupInfo
    path: Path
    size_bytes: int
    pruned: tuple[Path, ...]


async def take_backup(
    databases: Databases, name: str, *, retention_days: int
) -> ServerBackup:
    """Back up database ``name`` into ``<data dir>/backups`` while the server writes.

    The copy is read on the database's read-only connection after every write queued
    before the call, so it is one consistent cut and the writer keeps committing. The
    file is what ``nocturnus restore`` takes. Backups there older than
    ``retention_days`` (0: kept forever) are pruned afterwards.

    :raises NotFound: no database ``name``.
    """
    database = databases.get(name)
    info = databases.system.root.databases.get(name)
    if info is None:
        raise NotFound(f"Database '{name}' not found", {"database": name})
    taken_at = now_ms()
    directory = Path(databases.data_dir) / BACKUP_DIR
    dest = directory / f"{name}-{taken_at}{SUFFIX}"

    def copy(event_log: Sealer) -> tuple[int, int]:
        private_dir(directory)
        head = event_log.head()
        write_backup(event_log, dest, {BACKUP_INFO: _info(info, head, taken_at).to_json()})
        return head, dest.stat().st_size

    head, size = await database.read_log(copy)
    pruned = await asyncio.to_thread(
        prune_backups, Path(databases.data_dir), retention_days, now_ms()
    )
    return ServerBackup(_info(info, head, taken_at), dest, size, tuple(pruned))


def prune_backups(data_dir: Path, retention_days: int, at_ms: int) -> list[Path]:
    """Delete the server's backups (``<data dir>/backups``) older than the retention.

    A deleted tenant's data key survives in backups taken before its deletion: after
    ``retention_days`` none of those is left here (``0`` keeps every backup, and
    with it that key). Backups written elsewhere by ``nocturnus backup`` are the
    operator's (``ops/backup.sh`` prunes its own by age).
    """
    if retention_days <= 0:
        return []
    directory = Path(data_dir) / BACKUP_DIR
    if not directory.is_dir():
        return []
    cutoff_s = (at_ms - retention_days * DAY_MS) / 1000
    pruned = []
    for path in sorted([*directory.glob(f"*{SUFFIX}"), *directory.glob("*.db")]):
        if path.is_file() and path.stat().st_mtime < cutoff_s:
            path.unlink(missing_ok=True)
            pruned.append(path)
    return pruned


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """What a restore did: the backup's info, where it went, whether it replaced one."""

    info: BackupInfo
    where: str
    replaced: bool


def restore_database(
    store: Store,
    key: MasterKey,
    source: Path,
    name: str | None = None,
    *,
    scratch_dir: Path,
    replace: bool = False,
    progress: Progress | None = None,
) -> RestoreResult:
    """Restore a backup into ``store`` and register it (offline: hold the lock).

    The backup is copied into ``scratch_dir`` and opened read-write there first, so a
    backup written by an older version is migrated and its chain upgraded like any
    log; then it is verified in full (chain, tags, snapshots). Its database name is
    bound into every ciphertext, so it can only be restored under that name.

    :raises StartupError: a bad backup, a different ``name``, or a database of that
        name already in ``store`` (unless ``replace``).
    """
    source = Path(source)
    if not source.is_file():
        raise StartupError(f"no backup file {source}")
    stored_name = backup_database_name(source)
    if stored_name is None:
        raise StartupError(f"{source} is not a Nocturnus backup (no database name)")
    if name is not None and name != stored_name:
        raise StartupError(
            f"{source} holds database {stored_name!r}; its encryption binds that "
            f"name, so it can only be restored as {stored_name!r}, not {name!r}"
        )
    if stored_name == SYSTEM_DATABASE:
        raise StartupError("the _system registry is not restored from a backup")
    private_dir(Path(scratch_dir))
    scratch = Path(scratch_dir) / f".{stored_name}.{os.getpid()}.restore"
    try:
        shutil.copyfile(source, scratch)
        os.chmod(scratch, 0o600)
        working = open_backup(scratch, stored_name, key, readonly=False)
        try:
            raw = working.meta_value(BACKUP_INFO)
            if raw is None:
                raise StartupError(
                    f"{source} is a Nocturnus log but not a backup; make one with "
                    "`nocturnus backup` or POST /admin/backups"
                )
            info = BackupInfo.from_json(raw)
            report = verify_log(working, progress)
            if not report.ok:
                raise StartupError(f"backup {source} does not verify: {report.summary()}")
        finally:
            working.close()
        registry = read_registry(store, key)
        known = info.database in registry.databases
        if (known or store.exists(info.database)) and not replace:
            raise StartupError(
                f"database {info.database!r} already exists in {store.where}; delete "
                "it first or pass --replace"
            )
        store.restore(info.database, scratch)
    finally:
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{scratch}{suffix}").unlink(missing_ok=True)
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
    """One line naming a backup: its database, head seq and when it was taken."""
    taken = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(info.taken_at / 1000))
    return f"database {info.database!r} to seq {info.head}, taken {taken} UTC"
