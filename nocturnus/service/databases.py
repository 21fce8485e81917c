"""The database registry: which databases exist, opened from the ``_system`` log.

``_system`` is an ordinary event log whose database-level events register and delete
databases; every other database has an event log of its own in the same store (a SQLite
file in the data dir, or a PostgreSQL schema). Other processes on the same store may
register and delete databases too: :meth:`Databases.refresh` follows them.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from nocturnus.engine.prepared import PlanCache
from nocturnus.errors import NotFound, ValidationError
from nocturnus.service.apikeys import KeyTable, apply_key_event
from nocturnus.service.database import (
    DATABASE_LEVEL,
    DEFAULT_SNAPSHOT_EVERY,
    DEFAULT_USES_FLUSH_MS,
    Database,
    DatabaseState,
    apply_database_event,
    now_ms,
)
from nocturnus.service.evaluation import Evaluator
from nocturnus.service.events import DatabaseCreated, DatabaseDeleted, Event
from nocturnus.service.residency import Residency
from nocturnus.service.retry import attempt
from nocturnus.service.shared import Shared
from nocturnus.store.backends import open_store
from nocturnus.store.crypto import MasterKey
from nocturnus.store.files import private_dir
from nocturnus.store.recorder import Store

SYSTEM_DATABASE = "_system"
DEFAULT_DATABASE = "default"


@dataclass(frozen=True, slots=True)
class DatabaseInfo:
    """A registered database (a ``database_created`` event of ``_system``)."""

    name: str
    created_at: int
    default_conflict_strategy: str


@dataclass(slots=True)
class Registry:
    """Projection of the ``_system`` database-level events: databases and API keys."""

    databases: dict[str, DatabaseInfo] = field(default_factory=dict)
    keys: KeyTable = field(default_factory=KeyTable)
    last_seq: int = 0


def apply_registry_event(state: Registry, seq: int, event: Event) -> None:
    """Fold one ``_system`` database-level event into the registry."""
    if isinstance(event, DatabaseCreated):
        state.databases[event.name] = DatabaseInfo(
            event.name, event.created_at, event.default_conflict_strategy
        )
    elif isinstance(event, DatabaseDeleted):
        state.databases.pop(event.name, None)
    else:
        apply_key_event(state.keys, event)
    state.last_seq = seq


def system_database(store: Store, master_key: MasterKey) -> Database[Registry]:
    """The ``_system`` database of ``store`` (not yet opened); the CLI uses it alone."""
    return Database(
        SYSTEM_DATABASE,
        store,
        master_key,
        root_factory=Registry,
        root_apply=apply_registry_event,
    )


class Databases:
    """Every open database of one store: by default the SQLite files of ``data_dir``
    (which also holds the master key file and backups, and is the disk ``/metrics``
    reports on)."""

    def __init__(
        self,
        data_dir: Path,
        master_key: MasterKey,
        *,
        store: Store | None = None,
        snapshot_every: int = DEFAULT_SNAPSHOT_EVERY,
        uses_flush_ms: int = DEFAULT_USES_FLUSH_MS,
        plans: PlanCache | None = None,
        evaluator: Evaluator | None = None,
        residency: Residency | None = None,
    ) -> None:
        self.store = store if store is not None else open_store("", data_dir)
        # What every process on the store must see that is not knowledge (sessions,
        # counters): beside the store, like it shared by every worker and node.
        self.shared = Shared(self.store.shared())
        # The memory budget shared by every database's tenants (None: no budget).
        self.residency = residency
        # One cache of prepared plans for every database: its bounds are the process's.
        self.plans = plans if plans is not None else PlanCache()
        # One pool of evaluation workers and one budget policy too (issue 13).
        self.evaluator = evaluator if evaluator is not None else Evaluator()
        self.data_dir = data_dir
        self._master_key = master_key
        self.snapshot_every = snapshot_every
        self.uses_flush_ms = uses_flush_ms
        self.system = system_database(self.store, master_key)
        self._open: dict[str, Database[DatabaseState]] = {}
        self._lock = asyncio.Lock()
        self._closing: asyncio.Future[None] | None = None

    async def open(self) -> None:
        """Open the registry and every registered database; create ``default`` once."""
        private_dir(self.data_dir)
        await self.system.open()
        if DEFAULT_DATABASE not in self.system.root.databases:
            await self.create(DEFAULT_DATABASE)
        for info in self.infos():
            if info.name not in self._open:
                await self._open_database(info)

    async def close(self) -> None:
        """Close every database (snapshots included); a second call waits for the first."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        for database in list(self._open.values()):
            await database.settle_uses()  # may load tenants: before the evictions end
        if self.residency is not None:  # an eviction round in progress ends first
            await self.residency.settled()
        for database in list(self._open.values()):
            await database.close()
        self._open.clear()
        await self.system.close()
        self.shared.close()

    async def _open_database(self, info: DatabaseInfo) -> Database[DatabaseState]:
        database: Database[DatabaseState] = Database(
            info.name,
            self.store,
            self._master_key,
            root_factory=DatabaseState,
            root_apply=apply_database_event,
            default_conflict_strategy=info.default_conflict_strategy,
            snapshot_every=self.snapshot_every,
            uses_flush_ms=self.uses_flush_ms,
            plans=self.plans,
            evaluator=self.evaluator,
            residency=self.residency,
        )
        await database.open()
        self._open[info.name] = database
        return database

    def seems_fresh(self) -> bool:
        """Whether no other process changed the registry or the keys (see
        :meth:`Database.seems_fresh`): when True, :meth:`refresh` has nothing to do."""
        return self.system.seems_fresh()

    async def refresh(self) -> None:
        """Open the databases other processes registered, close those they deleted.

        One probe of ``_system`` when nothing changed (what every request pays).
        """
        await self.system.fresh()
        if self.system.root.databases.keys() == self._open.keys():
            return
        async with self._lock:
            await self._follow_registry()

    async def _follow_registry(self) -> None:
        registered = self.system.root.databases
        for info in self.infos():
            if info.name not in self._open:
                await self._open_database(info)
        for name in [n for n in self._open if n not in registered]:
            gone = self._open.pop(name)
            gone.uses.clear()  # nothing is appended to a deleted database
            await gone.close()

    def get(self, name: str) -> Database[DatabaseState]:
        """:raises NotFound: no database of that name."""
        database = self._open.get(name)
        if database is None:
            raise NotFound(f"Database '{name}' not found", {"database": name})
        return database

    def infos(self) -> list[DatabaseInfo]:
        """Every registered database, by name."""
        return sorted(self.system.root.databases.values(), key=lambda i: i.name)

    def all(self) -> list[Database[DatabaseState]]:
        """Every open database, by name."""
        return [self._open[i.name] for i in self.infos() if i.name in self._open]

    async def create(
        self, name: str, default_conflict_strategy: str = "REJECT"
    ) -> tuple[DatabaseInfo, bool]:
        """Register and open a database; an existing name is returned unchanged."""
        if name == SYSTEM_DATABASE:
            raise ValidationError(f"database name '{name}' is reserved", field="name")
        async with self._lock:
            return await attempt(
                self.system, lambda: self._create(name, default_conflict_strategy)
            )

    async def _create(
        self, name: str, default_conflict_strategy: str
    ) -> tuple[DatabaseInfo, bool]:
        await self.system.fresh()
        await self._follow_registry()
        known = self.system.root.databases.get(name)
        if known is not None:
            return known, False
        now = now_ms()
        event = DatabaseCreated(name, now, default_conflict_strategy)
        await self.system.commit(DATABASE_LEVEL, [event], now)
        info = self.system.root.databases[name]
        await self._open_database(info)
        return info, True

    async def delete(self, name: str) -> None:
        """Close and remove a database and its rows.

        :raises ValidationError: for ``default``.
        :raises NotFound: for an unknown name.
        """
        if name == DEFAULT_DATABASE:
            raise ValidationError("the default database cannot be deleted", field="name")
        async with self._lock:
            await attempt(self.system, lambda: self._delete(name))

    async def _delete(self, name: str) -> None:
        await self.system.fresh()
        await self._follow_registry()
        database = self.get(name)
        await self.system.commit(DATABASE_LEVEL, [DatabaseDeleted(name)], now_ms())
        del self._open[name]
        database.uses.clear()  # nothing is appended to a deleted database
        await database.close()
        await asyncio.to_thread(self.store.remove, name)
