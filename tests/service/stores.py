"""Databases over one store standing in for several processes (issues 15, 16): the same
data dir's SQLite files or one PostgreSQL database. The ``location`` fixture
(tests/service/conftest.py) runs a test on both."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from nocturnus.service import tenants
from nocturnus.service.commands import TellFact
from nocturnus.service.database import Database, DatabaseState
from nocturnus.service.databases import Databases
from nocturnus.store.backends import open_store
from nocturnus.store.crypto import MasterKey
from nocturnus.store.recorder import Store

MASTER = MasterKey(bytes(range(32)))


class Blind:
    """A store whose probe always says nothing changed: its process decides on what
    it last saw, as one racing another writer does."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def probe(self, database: str) -> int:
        return 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def databases(
    data_dir: Path, location: str = "", flush_ms: int = 0, *, blind: bool = False
) -> Databases:
    """One process's databases (not opened yet) on the store at ``location``; uses of
    facts are logged with writes only unless ``flush_ms``."""
    store = open_store(location, data_dir)
    return Databases(
        data_dir, MASTER, store=Blind(store) if blind else store, uses_flush_ms=flush_ms
    )


async def close(*all_databases: Databases) -> None:
    """Close each process's databases and its store."""
    for each in all_databases:
        await each.close()
        each.store.close()


def run_with_tenant(
    tmp_path: Path,
    tenant: str,
    scenario: Callable[[Databases, Database[DatabaseState]], Awaitable[None]],
) -> None:
    """``scenario`` on one process's Databases (and their shared store) in ``tmp_path``,
    once ``tenant`` of ``default`` holds a fact (and so a data key)."""

    async def main() -> None:
        dbs = Databases(tmp_path, MASTER)
        await dbs.open()
        try:
            db = dbs.get("default")
            await tenants.tell_many(db, tenant, [TellFact("p", ("a",))], atomic=True)
            await scenario(dbs, db)
        finally:
            await dbs.close()

    asyncio.run(main())
