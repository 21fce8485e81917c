"""The data directory and the store: who holds them, which databases the store
registers, the start-up check.

The store holds the event logs (:func:`open_store`: the SQLite files of the data dir).
The data dir holds the master key file (unless ``NOCTURNUS_MASTER_KEY`` is set) and the
lock: a running server holds it (:mod:`nocturnus.store.dirlock`); offline commands that
write (``snapshot``, ``compact``, ``restore``, ``rotate-master-key``, ``keys``) take the
same lock and refuse with one line while a server runs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nocturnus.errors import StartupError
from nocturnus.service.codec import CODEC
from nocturnus.service.databases import (
    SYSTEM_DATABASE,
    DatabaseInfo,
    Databases,
    Registry,
    apply_registry_event,
)
from nocturnus.settings import Settings
from nocturnus.store.backends import open_store as open_location
from nocturnus.store.crypto import (
    MASTER_KEY_ENV,
    MASTER_KEY_FILE,
    MasterKey,
    load_master_key,
)
from nocturnus.store.dirlock import DataDirLock
from nocturnus.store.recorder import Store
from nocturnus.store.sealer import Sealer


def open_store(settings: Settings) -> Store:
    """The store ``settings`` name (by default the SQLite files of the data dir)."""
    return open_location(
        settings.store, settings.data_dir, pool_size=settings.store_pool_size
    )


@contextmanager
def store_of(settings: Settings) -> Iterator[Store]:
    """:func:`open_store` for one command: closed (its pool released) afterwards."""
    store = open_store(settings)
    try:
        yield store
    finally:
        store.close()


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


def require_data_dir(store: Store) -> None:
    """:raises StartupError: ``store`` holds no Nocturnus registry."""
    if not store.exists(SYSTEM_DATABASE):
        raise StartupError(
            f"{store.where} is not a Nocturnus data dir (no {SYSTEM_DATABASE} log); "
            "pass --data-dir or set NOCTURNUS_DATA_DIR"
        )


def read_registry(store: Store, key: MasterKey) -> Registry:
    """Replay the ``_system`` registry read-only (safe while a server runs).

    An empty registry when ``store`` has none yet (a restore into a new store).
    """
    if not store.exists(SYSTEM_DATABASE):
        return Registry()
    registry = Registry()
    event_log = Sealer.open(store.recorder(SYSTEM_DATABASE, readonly=True), key)
    try:
        for record in event_log.read(tenant=""):
            if record.body is not None:
                apply_registry_event(
                    registry, record.seq, CODEC.decode(record.kind, record.body)
                )
    finally:
        event_log.close()
    return registry


def database_info(store: Store, key: MasterKey, name: str) -> DatabaseInfo:
    """:raises StartupError: no database ``name`` is registered in ``store``."""
    require_data_dir(store)
    registry = read_registry(store, key)
    info = registry.databases.get(name)
    if info is None:
        known = ", ".join(sorted(registry.databases)) or "none"
        raise StartupError(
            f"no database {name!r} in {store.where} (databases: {known})"
        )
    return info


@contextmanager
def open_log(
    store: Store,
    key: MasterKey,
    name: str,
    *,
    readonly: bool = True,
    check_tail: int | None = 1000,
) -> Iterator[Sealer]:
    """Open a registered database's log; checks key, migrations and the chain tail."""
    if name != SYSTEM_DATABASE:
        database_info(store, key, name)
    event_log = Sealer.open(
        store.recorder(name, readonly=readonly), key, check_tail=check_tail
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

    async def open_and_close(store: Store) -> None:
        databases = Databases(settings.data_dir, key, store=store, snapshot_every=0)
        try:
            await databases.open()
        finally:
            await databases.close()

    with store_of(settings) as store:
        asyncio.run(open_and_close(store))
