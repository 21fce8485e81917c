"""Which tenant projections stay in memory: a per-process budget, least recently used
evicted first (issue 16, item 6).

Without a budget every tenant ever used stays loaded, so a node's memory grows with the
history of its traffic. With one (``NOCTURNUS_MEMORY_BUDGET_MB``), the projections of
every database of the process share it: each use of a tenant makes it the most recently
used, and while the estimated total is over the budget the least recently used *idle*
tenant is snapshotted (when its log holds events after its newest snapshot) and dropped
from memory. Its next use loads it again, snapshot + tail, as after a restart: the
answers are the same (the log is the truth, the projection a cache of it), and so are
context windows and diffs: uses are logged, sessions are in the shared store, and the
ranking and cached windows, dropped with the projection
(:meth:`~nocturnus.service.readmodels.ReadModels.drop`), are rebuilt from the same
knowledge.

Idle means nothing could lose by the eviction: no request of that tenant in flight
(:meth:`Database.pin`), no commit of it in flight, not being loaded, and no holder of
per-process state on it (a cached view of an open transaction: ``holds``). A tenant
that is not idle is skipped and stays, even over the budget; the budget is a target,
not a hard limit.

Size is an estimate (:func:`estimate_bytes`), not a measurement: walking a projection's
objects costs as much as building it. The constants are calibrated against
``tracemalloc`` on snapshot loads of several fact shapes (``benchmarks/reload.py``
prints estimate / measured for two of them): a plain fact costs 290-440 bytes,
depending on how many of its argument strings other facts share, a fact with metadata
or a confidence ~600 bytes more; the estimate lands within 0.7-1.4 of the measurement
on every shape tried. The per-fact figure of a tenant comes from a sample of its
facts, taken again whenever its fact count doubles; the estimate covers facts, their
indexes and rules, not the ranking and cached windows built from them.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from nocturnus.service.facts import FactRecord
from nocturnus.service.projection import TenantState

log = logging.getLogger("nocturnus.service")

TENANT_BYTES = 4096
"""An empty projection: its dicts, rulebook and read-path caches."""
RELATION_BYTES = 1024
"""One (scope, predicate) relation: its group, its index tables."""
FACT_BYTES = 280
"""A plain fact: its args tuple, its entries in the scope's group and index."""
ARG_BYTES = 10
STRING_BYTES = 40
CHAR_BYTES_DIVISOR = 2
"""A string argument: an object of its own when no other fact shares it (~50 bytes +
its length), nothing when interned with an equal one: counted half-way."""
RICH_FACT_BYTES = 300
"""A fact with a confidence, a validity window, a TTL or metadata keeps a full record."""
METADATA_ENTRY_BYTES = 100
RULE_BYTES = 4096
SAMPLE_FACTS = 64


def fact_bytes(record: FactRecord) -> int:
    """The estimated memory of one stored fact (see the module docstring)."""
    args = record.key.args
    size = FACT_BYTES + ARG_BYTES * len(args)
    for arg in args:
        if isinstance(arg, str):
            size += STRING_BYTES + len(arg) // CHAR_BYTES_DIVISOR
    if record.metadata or record.confidence is not None or record.ttl is not None or (
        record.valid_until is not None
    ):
        size += RICH_FACT_BYTES + METADATA_ENTRY_BYTES * len(record.metadata)
    return size


def sample_fact_bytes(state: TenantState) -> int:
    """The mean :func:`fact_bytes` of up to :data:`SAMPLE_FACTS` of the tenant's facts."""
    records = itertools.islice(
        itertools.chain.from_iterable(s.records() for s in state.facts.values()),
        SAMPLE_FACTS,
    )
    sizes = [fact_bytes(r) for r in records]
    return sum(sizes) // len(sizes) if sizes else FACT_BYTES


def estimate_bytes(state: TenantState, per_fact_bytes: int) -> int:
    """The estimated memory of a projection, given its mean bytes per fact."""
    facts = relations = 0
    for scoped in state.facts.values():
        facts += len(scoped)
        relations += len(scoped.relations())
    return (
        TENANT_BYTES
        + RELATION_BYTES * relations
        + per_fact_bytes * facts
        + RULE_BYTES * len(state.rules)
    )


class Host(Protocol):
    """A database as the residency sees it (``service.database.Database``)."""

    name: str

    def is_idle(self, tenant: str) -> bool:
        """Loaded, and no request, commit, load or snapshot of it is running."""
        ...

    async def persist(self, tenant: str) -> bool:
        """Make the newest snapshot cover every event; False when it could not."""
        ...

    def unload(self, tenant: str) -> bool:
        """Drop the tenant if still idle and fully snapshotted; True when dropped."""
        ...


Holds = Callable[[str, str], bool]
"""``holds(database, tenant)``: per-process state (an open transaction) needs the
tenant's projection to stay."""


@dataclass(slots=True)
class _Resident:
    host: Host
    tenant: str
    size_bytes: int
    per_fact_bytes: int
    sampled_facts: int
    """The fact count when ``per_fact_bytes`` was sampled."""
    tick: int
    """When it was last used, in :meth:`Residency.touch` calls."""


class Residency:
    """The tenant projections in memory of one process, least recently used first."""

    def __init__(self, budget_bytes: int, holds: Holds = lambda db, tenant: False) -> None:
        self.budget_bytes = budget_bytes
        self.holds = holds
        self.evictions = 0
        self.resident_bytes = 0
        self._order: OrderedDict[tuple[str, str], _Resident] = OrderedDict()
        self._ticks = itertools.count(1)
        self._settling: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._order)

    def touch(self, host: Host, state: TenantState) -> None:
        """``state`` (a tenant of ``host``) is used now: make it the most recent,
        update its size, and start evicting in the background if over the budget."""
        key = (host.name, state.name)
        entry = self._order.get(key)
        if entry is None:
            per_fact_bytes = sample_fact_bytes(state)
            entry = _Resident(host, state.name, 0, per_fact_bytes, state.fact_count(), 0)
            self._order[key] = entry
        else:
            self._order.move_to_end(key)
            facts = state.fact_count()
            if facts > 2 * entry.sampled_facts:
                entry.per_fact_bytes, entry.sampled_facts = sample_fact_bytes(state), facts
        entry.tick = next(self._ticks)
        size_bytes = estimate_bytes(state, entry.per_fact_bytes)
        self.resident_bytes += size_bytes - entry.size_bytes
        entry.size_bytes = size_bytes
        self.settle_soon()

    def forget(self, database: str, tenant: str) -> None:
        """The tenant is no longer in memory (evicted, or its database closed)."""
        entry = self._order.pop((database, tenant), None)
        if entry is not None:
            self.resident_bytes -= entry.size_bytes

    def forget_database(self, database: str) -> None:
        """Every tenant of ``database`` (closed or deleted) leaves the accounting."""
        for name, tenant in [k for k in self._order if k[0] == database]:
            self.forget(name, tenant)

    def resident(self, database: str) -> list[str]:
        """The tenants of ``database`` in memory, least recently used first."""
        return [tenant for (name, tenant) in self._order if name == database]

    @property
    def is_over(self) -> bool:
        """The estimated total exceeds the budget."""
        return self.resident_bytes > self.budget_bytes

    @property
    def is_settling(self) -> bool:
        """A round of evictions is running."""
        return self._settling is not None

    def settle_soon(self) -> None:
        """Start :meth:`settle` in the background when over the budget (one at a time)."""
        if self.is_over and self._settling is None:
            self._settling = asyncio.get_running_loop().create_task(self._settle())

    async def settled(self) -> None:
        """Wait for the background round of evictions in progress, if any."""
        while self._settling is not None:
            await asyncio.shield(self._settling)

    async def _settle(self) -> None:
        """Evict idle tenants, least recently used first, until within the budget or
        no idle tenant is left (each is tried once per round)."""
        try:
            skipped: set[tuple[str, str]] = set()
            while self.is_over:
                entry = next(self._victims(skipped), None)
                if entry is None:
                    return
                key = (entry.host.name, entry.tenant)
                skipped.add(key)
                await self._evict(entry)
        finally:
            self._settling = None

    def _victims(self, skipped: set[tuple[str, str]]) -> Iterator[_Resident]:
        for key, entry in self._order.items():
            if key not in skipped and self._is_idle(entry):
                yield entry

    def _is_idle(self, entry: _Resident) -> bool:
        return entry.host.is_idle(entry.tenant) and not self.holds(
            entry.host.name, entry.tenant
        )

    async def _evict(self, entry: _Resident) -> None:
        """Snapshot the tenant if needed, then drop it unless it was used meanwhile."""
        tick = entry.tick
        try:
            persisted = await entry.host.persist(entry.tenant)
        except Exception:  # a bug must not stop the requests that triggered it
            log.exception("snapshot before evicting tenant %r of %r failed",
                          entry.tenant, entry.host.name)
            return
        if not persisted or entry.tick != tick or not self._is_idle(entry):
            return
        if entry.host.unload(entry.tenant):
            self.evictions += 1
