"""The data directory: who holds it, which databases it registers, the start-up check.

A running server holds an exclusive ``flock`` on ``<data_dir>/nocturnus.lock``; offline
commands that write (``snapshot``, ``compact``, ``restore``, ``rotate-master-key``) take
the same lock and refuse with one line while a server runs. The kernel drops the lock
when its process dies, ``kill -9`` included, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

from nocturnus.errors import StartupError
from nocturnus.service.databases import (
    SYSTEM_DATABASE,
    DatabaseInfo,
    Databases,
    Registry,
    apply_registry_event,
)
from nocturnus.service.events import decode
from nocturnus.settings import Settings
from nocturnus.store.crypto import (
    MASTER_KEY_ENV,
    MASTER_KEY_FILE,
    MasterKey,
    load_master_key,
)
from nocturnus.store.log import EventLog

LOCK_FILE = "nocturnus.lock"


class DataDirBusy(StartupError):
    """Another process (a server, another offline command) holds the data dir."""

    code = "DATA_DIR_BUSY"


class DataDirLock:
    """An exclusive advisory lock on a data dir, held from :meth:`acquire` to release."""

    def __init__(self, data_dir: Path, holder: str) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        self.holder = holder
        self._fd: int | None = None

    def acquire(self) -> DataDirLock:
        """:raises DataDirBusy: naming who holds it (as the holder wrote it)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as e:
            raise StartupError(
                f"cannot open lock file {self.path}: {e.strerror}"
            ) from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held_by = os.pread(fd, 200, 0).decode(errors="replace").strip()
            os.close(fd)
            raise DataDirBusy(
                f"data dir {self.path.parent} is in use by {held_by or 'another process'}; "
                "stop it first (online backups use `nocturnus backup`)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"nocturnus {self.holder} (pid {os.getpid()})\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def master_key(settings: Settings) -> MasterKey:
    """The data dir's master key (env, else ``master.key``, created on first start)."""
    return load_master_key(settings.data_dir, settings.master_key)


def existing_master_key(settings: Settings) -> MasterKey:
    """The master key for an offline command: never creates a key file.

    :raises StartupError: neither ``NOCTURNUS_MASTER_KEY`` nor ``master.key`` is there.
    """
    given = settings.master_key is not None and settings.master_key.strip()
    if not given and not (Path(settings.data_dir) / MASTER_KEY_FILE).is_file():
        raise StartupError(
            f"no master key: set {MASTER_KEY_ENV} or put the {MASTER_KEY_FILE} the data "
            f"was written with into {settings.data_dir}"
        )
    return master_key(settings)


def database_path(data_dir: Path, name: str) -> Path:
    return Path(data_dir) / f"{name}.db"


def require_data_dir(data_dir: Path) -> None:
    """:raises StartupError: ``data_dir`` holds no Nocturnus registry."""
    if not database_path(data_dir, SYSTEM_DATABASE).is_file():
        raise StartupError(
            f"{data_dir} is not a Nocturnus data dir (no {SYSTEM_DATABASE}.db); "
            "pass --data-dir or set NOCTURNUS_DATA_DIR"
        )


def read_registry(data_dir: Path, key: MasterKey) -> Registry:
    """Replay the ``_system`` registry read-only (safe while a server runs).

    An empty registry when ``data_dir`` has none yet (a restore into a new data dir).
    """
    if not database_path(data_dir, SYSTEM_DATABASE).is_file():
        return Registry()
    registry = Registry()
    event_log = EventLog.open(
        database_path(data_dir, SYSTEM_DATABASE), SYSTEM_DATABASE, key, readonly=True
    )
    try:
        for record in event_log.read(tenant=""):
            if record.body is not None:
                apply_registry_event(
                    registry, record.seq, decode(record.kind, record.body)
                )
    finally:
        event_log.close()
    return registry


def database_info(data_dir: Path, key: MasterKey, name: str) -> DatabaseInfo:
    """:raises StartupError: no database ``name`` is registered in ``data_dir``."""
    require_data_dir(data_dir)
    registry = read_registry(data_dir, key)
    info = registry.databases.get(name)
    if info is None:
        known = ", ".join(sorted(registry.databases)) or "none"
        raise StartupError(f"no database {name!r} in {data_dir} (databases: {known})")
    return info


@contextmanager
def open_log(
    data_dir: Path, key: MasterKey, name: str, *, readonly: bool = True
) -> Iterator[EventLog]:
    """Open a registered database's log; checks key, migrations and the chain tail."""
    if name != SYSTEM_DATABASE:
        database_info(data_dir, key, name)
    event_log = EventLog.open(
        database_path(data_dir, name), name, key, readonly=readonly
    )
    try:
        yield event_log
    finally:
        event_log.close()


def check_data_dir(settings: Settings) -> None:
    """Open and close every database exactly as the server will, before it listens.

    This turns a wrong master key, a failed migration or a changed, removed or
    reordered event in a log's tail into one clear :class:`StartupError` line from
    ``nocturnus serve`` instead of a traceback from inside the server's start-up.
    """
    key = master_key(settings)

    async def open_and_close() -> None:
        databases = Databases(settings.data_dir, key, snapshot_every=0)
        try:
            await databases.open()
        finally:
            await databases.close()

    asyncio.run(open_and_close())
