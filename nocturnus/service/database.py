"""One database: its event log writer, its database-level state and its tenants.

Writes: a decision produces events; :meth:`Database.commit` numbers them, applies them to
the projection at once (so the next decision in write order sees them) and waits until the
writer has made the batch durable. If the commit fails, the touched projections are
dropped and rebuilt from the log on next use, so memory never keeps what the disk lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from nocturnus.errors import NocturnusError, Unavailable
from nocturnus.service.events import (
    Event,
    RuleRemoved,
    RuleTaught,
    TenantDeleted,
    decode,
    encode,
)
from nocturnus.service.rulebook import RuleRecord, Rulebook
from nocturnus.service.tenant import TenantState, apply
from nocturnus.store import distribution
from nocturnus.store.crypto import MasterKey
from nocturnus.store.distribution import Distribution
from nocturnus.store.log import EventLog
from nocturnus.store.record import LogRecord
from nocturnus.store.writer import Writer

DATABASE_LEVEL = ""


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(slots=True)
class DatabaseState:
    """Database-level knowledge: the rules every tenant of the database shares."""

    rules: Rulebook = field(default_factory=Rulebook)
    last_seq: int = 0


def apply_database_event(state: DatabaseState, seq: int, event: Event) -> None:
    """Apply a database-level (tenant "") event."""
    if isinstance(event, RuleTaught):
        state.rules.add(RuleRecord.from_event(event, level="database"))
    elif isinstance(event, RuleRemoved):
        state.rules.remove(event.id)
    state.last_seq = seq


@dataclass(slots=True)
class DatabaseStats:
    """What ``/metrics`` and ``/health`` report about replays and snapshots (issue 9).

    Cheap to keep: a few additions per tenant load or snapshot, read at scrape time.
    """

    replays: Distribution = field(default_factory=distribution.seconds)
    snapshots: Distribution = field(default_factory=distribution.seconds)
    # time.time() of the newest snapshot written or found (0.0: none known).
    last_snapshot_at: float = 0.0

    def record_snapshot(self, seconds: float, at: float | None = None) -> None:
        """The hook for whoever writes snapshots: call once per snapshot written."""
        self.snapshots.observe(seconds)
        self.last_snapshot_at = time.time() if at is None else at


RootState = TypeVar("RootState")


class Database(Generic[RootState]):
    """A database file: a writer, a root (database-level) projection, lazy tenants."""

    def __init__(
        self,
        name: str,
        path: Path,
        master_key: MasterKey,
        *,
        root_factory: Callable[[], RootState],
        root_apply: Callable[[RootState, int, Event], None],
        default_conflict_strategy: str = "REJECT",
    ) -> None:
        self.name = name
        self.path = path
        self.default_conflict_strategy = default_conflict_strategy
        self._master_key = master_key
        self._root_factory = root_factory
        self._root_apply = root_apply
        self.root: RootState = root_factory()
        self.writer = Writer(lambda: EventLog.open(path, name, master_key))
        self._tenants: dict[str, TenantState] = {}
        self._loading: dict[str, asyncio.Future[TenantState]] = {}
        self._next_seq = 1
        self.tenant_names: dict[str, int] = {}
        self.stats = DatabaseStats()

    async def open(self) -> None:
        """Start the writer and replay the database-level events."""
        await self.writer.start()
        await self._replay_root()
        self.tenant_names = await self.writer.run(lambda log: log.tenants())

    async def _replay_root(self) -> None:
        self.root = self._root_factory()
        head, records = await self.writer.run(
            lambda log: (log.head(), list(log.read(tenant=DATABASE_LEVEL)))
        )
        self._next_seq = head + 1
        for record in records:
            if record.body is not None:
                self._root_apply(self.root, record.seq, decode(record.kind, record.body))

    async def close(self) -> None:
        await self.writer.close()

    @property
    def head(self) -> int:
        """The seq of the last event handed to the writer."""
        return self._next_seq - 1

    # -- tenants --------------------------------------------------------------------

    async def tenant(self, name: str) -> TenantState:
        """The tenant's projection, replayed from the log on first use."""
        state = self._tenants.get(name)
        if state is not None:
            return state
        pending = self._loading.get(name)
        if pending is None:
            pending = asyncio.get_running_loop().create_future()
            self._loading[name] = pending
            try:
                started = time.perf_counter()
                state = await self._load_tenant(name)
                self.stats.replays.observe(time.perf_counter() - started)
            except BaseException as e:
                pending.set_exception(e)
                pending.exception()  # mark retrieved; waiters re-raise it
                raise
            finally:
                del self._loading[name]
            self._tenants[name] = state
            pending.set_result(state)
            return state
        return await asyncio.shield(pending)

    def loaded_tenants(self) -> Iterator[TenantState]:
        """The tenant projections in memory now (for metrics; never loads one)."""
        return iter(list(self._tenants.values()))

    async def _load_tenant(self, name: str) -> TenantState:
        records = await self.writer.run(lambda log: list(log.read(tenant=name)))
        return await asyncio.to_thread(replay_tenant, name, records)

    # -- writes ---------------------------------------------------------------------

    async def commit(self, tenant: str, events: Sequence[Event], now: int) -> None:
        """Log ``events`` for ``tenant`` (``""`` = database level) and apply them.

        Must be called right after the decision, with no ``await`` in between, so that
        decisions and seqs follow one order.
        """
        if not events:
            return
        records = []
        state = self._tenants.get(tenant) if tenant != DATABASE_LEVEL else None
        if tenant != DATABASE_LEVEL:
            self._track_tenant(tenant, events[-1], now)
        for event in events:
            seq = self._next_seq
            self._next_seq += 1
            records.append(LogRecord(seq, now, tenant, event.kind, encode(event)))
            if tenant == DATABASE_LEVEL:
                self._root_apply(self.root, seq, event)
            elif state is not None:
                apply(state, seq, event)
        try:
            await self.writer.append(records)
        except NocturnusError as e:
            await self._recover()
            raise Unavailable(f"database '{self.name}' could not store the write: {e}") from e

    def _track_tenant(self, tenant: str, last: Event, now: int) -> None:
        if isinstance(last, TenantDeleted):
            self.tenant_names.pop(tenant, None)
        else:
            self.tenant_names.setdefault(tenant, now)

    async def _recover(self) -> None:
        """After a failed commit: forget projections and renumber from the durable head."""
        self._tenants.clear()
        try:
            await self._replay_root()
            self.tenant_names = await self.writer.run(lambda log: log.tenants())
        except NocturnusError:
            pass  # the writer is broken; the next write reports it again


def replay_tenant(name: str, records: Sequence[LogRecord]) -> TenantState:
    """Fold a tenant's logged events into a fresh projection (shredded records skipped)."""
    state = TenantState(name)
    for record in records:
        if record.body is None:
            continue
        apply(state, record.seq, decode(record.kind, record.body))
    return state
