"""Key operations on a data directory with no server running (``nocturnus keys …``).

They lock the directory (refusing to run beside a server, which would neither see their
writes nor survive the seq collision), open only the ``_system`` log, act through the same
service functions as the HTTP routes, and record the same audit entries.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from nocturnus.errors import StartupError
from nocturnus.service import apikeys, audit
from nocturnus.service.apikeys import KeyRecord, NewKey
from nocturnus.service.database import Database
from nocturnus.service.databases import Registry, system_database
from nocturnus.service.datadir import store_of
from nocturnus.settings import Settings
from nocturnus.store.crypto import load_master_key
from nocturnus.store.dirlock import DataDirLock

T = TypeVar("T")
CLI_ACTOR: dict[str, Any] = {"keyId": None, "name": "cli", "role": "admin", "client": "cli"}


async def with_system(settings: Settings, fn: Callable[[Database[Registry]], Awaitable[T]]) -> T:
    """Run ``fn`` on the opened ``_system`` database of ``settings.data_dir``.

    :raises StartupError: a server (or another command) holds the data dir, or the
        master key is wrong or unreadable.
    """
    try:
        lock = DataDirLock(settings.data_dir).acquire("nocturnus keys")
    except StartupError as e:
        raise StartupError(f"{e.message}; while it runs, manage keys with /auth/keys") from None
    with lock:
        master_key = load_master_key(settings.data_dir, settings.master_key)
        with store_of(settings) as store:
            system = system_database(store, master_key)
            await system.open()
            try:
                return await fn(system)
            finally:
                await system.close()


async def create_key(settings: Settings, spec: NewKey) -> tuple[KeyRecord, str]:
    """Mint an API key in a stopped server's data dir (``nocturnus keys create``)."""
    async def run(system: Database[Registry]) -> tuple[KeyRecord, str]:
        record, key = await apikeys.create_key(system, spec, "cli")
        await audit.record(
            system, "key_created", actor=CLI_ACTOR, target=record.id,
            details={"role": record.role, "databases": list(record.databases),
                     "tenants": list(record.tenants), "expiresAt": record.expires_at},
        )
        return record, key

    return await with_system(settings, run)


async def list_keys(settings: Settings) -> list[KeyRecord]:
    """Every API key of a stopped server's data dir (``nocturnus keys list``)."""
    async def run(system: Database[Registry]) -> list[KeyRecord]:
        return apikeys.list_keys(system)

    return await with_system(settings, run)


async def revoke_key(settings: Settings, key_id: str) -> KeyRecord:
    """:raises NotFound: no live key ``key_id``."""

    async def run(system: Database[Registry]) -> KeyRecord:
        record = await apikeys.revoke_key(system, key_id, "cli")
        await audit.record(system, "key_revoked", actor=CLI_ACTOR, target=record.id)
        return record

    return await with_system(settings, run)
