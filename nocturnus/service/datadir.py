"""The data directory: who holds it, which databases it registers, the start-up check.

A running server holds the data dir's lock (:mod:`nocturnus.store.dirlock`); offline
commands that write (``snapshot``, ``compact``, ``restore``, ``rotate-master-key``,
``keys``) take the same lock and refuse with one line while a server runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

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
from nocturnus.store.dirlock import DataDirLock
from nocturnus.store.log import EventLog


def lock_data_dir(data_dir: Path, holder: str) -> DataDirLock:
    """Take the data dir's lock for an offline command that writes (release: ``with``).

    :raises StartupError: a server or another command holds it, naming which.
    """
    try:
        return DataDirLock(data_dir).acquire(holder)
    except StartupError as e:
        raise StartupError(
            f"{e.message}; stop it first (`nocturnus backup` works while it runs)"
        ) from None


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
