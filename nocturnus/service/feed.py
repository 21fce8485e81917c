"""The live change feed of a tenant (issue 18): its committed events, read from the log.

A feed reads the tenant's events after a log position (:func:`read_after`) and waits for
the next commit of the database (:meth:`Database.next_commit`: this process's at once,
other processes' within a probe interval) or, at the latest, the keepalive interval
before reading again. Reading the log rather than listening to in-process callbacks
means a feed shows every committed event however it was written: later, writes of other
processes or nodes sharing the store appear too.

The log read is in one place, :func:`read_after`: ``Sealer.entries`` after the feed's
position, on the database's reader thread. It does not use ``Sealer.tail``, which blocks
its thread until the head moves: the reader thread is shared (tenant loads, time
travel), so a feed waits on the loop instead and reads without blocking.

Each event is rendered as zero or more :class:`Change` records (a
``transaction_committed`` event gives one per event it holds, all at its position), with
the original's two naming schemes: ``/memory/events`` (``fact_asserted``...) and
``/memory/stream`` (``told``...).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from nocturnus.service.codec import CODEC, unnest
from nocturnus.service.database import Database, DatabaseState
from nocturnus.service.events import (
    ConstraintAdded,
    ConstraintRemoved,
    Event,
    FactExpired,
    FactRetracted,
    FactTold,
    PrioritySet,
    RuleRemoved,
    RuleTaught,
    ScopeDeleted,
    ScopeForked,
    ScopeMerged,
    TenantCreated,
    TenantDeleted,
    TransactionCommitted,
)
from nocturnus.service.facts import FactKey, FactRecord
from nocturnus.service.rulebook import RuleRecord
from nocturnus.store.sealer import Sealer

Db = Database[DatabaseState]

CHANGE_TYPES: dict[str, tuple[str, str]] = {
    # kind -> (/memory/events name, /memory/stream name)
    FactTold.kind: ("fact_asserted", "told"),
    FactRetracted.kind: ("fact_retracted", "forgotten"),
    FactExpired.kind: ("fact_expired", "expired"),
    "consolidation": ("consolidation", "compressed"),
    RuleTaught.kind: ("rule_asserted", "rule_taught"),
    RuleRemoved.kind: ("rule_removed", "rule_removed"),
    ScopeForked.kind: ("scope_forked", "scope_forked"),
    ScopeMerged.kind: ("scope_merged", "scope_merged"),
    ScopeDeleted.kind: ("scope_deleted", "scope_deleted"),
    PrioritySet.kind: ("priority_set", "priority_set"),
    TenantCreated.kind: ("tenant_created", "tenant_created"),
    ConstraintAdded.kind: ("constraint_added", "constraint_added"),
    ConstraintRemoved.kind: ("constraint_removed", "constraint_removed"),
    TenantDeleted.kind: ("tenant_deleted", "tenant_deleted"),
}
"""Every change type, in both of the original's naming schemes."""
NAMES = frozenset(name for pair in CHANGE_TYPES.values() for name in pair)


@dataclass(frozen=True, slots=True)
class Change:
    """One change as a feed shows it: what happened, at which log position, to what."""

    seq: int
    ts_ms: int
    kind: str
    """A key of :data:`CHANGE_TYPES`."""
    event: Event
    transaction: str | None = None

    @property
    def scope(self) -> str | None:
        """The scope it changed (a fork's or merge's target); None for a whole tenant."""
        event = self.event
        if isinstance(event, (ScopeForked, ScopeMerged)):
            return event.target
        scope = getattr(event, "scope", None)
        return scope if isinstance(scope, str) else None

    @property
    def predicate(self) -> str | None:
        """The predicate it is about (a rule's head predicate); None for others."""
        if isinstance(self.event, RuleTaught):
            return str(self.event.head["predicate"])
        return getattr(self.event, "predicate", None)


@dataclass(frozen=True, slots=True)
class Filter:
    """Which changes a feed shows: ``None`` lets everything through."""

    predicate: str | None = None
    """An exact predicate, or a prefix ending with ``*``."""
    scope: str | None = None
    types: frozenset[str] | None = None
    """Type names in either scheme."""

    def admits(self, change: Change) -> bool:
        """Whether ``change`` passes every filter given."""
        if self.types is not None and not (set(CHANGE_TYPES[change.kind]) & self.types):
            return False
        if self.scope is not None and change.scope not in (self.scope, None):
            return False
        if self.predicate is not None:
            predicate = change.predicate
            if predicate is None:
                return False
            if self.predicate.endswith("*"):
                return predicate.startswith(self.predicate[:-1])
            return predicate == self.predicate
        return True


def changes_of(seq: int, ts_ms: int, event: Event) -> Iterator[Change]:
    """The changes one logged event shows (a transaction's: each event it holds)."""
    if isinstance(event, TransactionCommitted):
        for inner in unnest(event.events):
            for change in changes_of(seq, ts_ms, inner):
                yield Change(change.seq, ts_ms, change.kind, change.event, event.id)
        return
    kind = event.kind
    if isinstance(event, FactTold) and event.metadata.get("source") == "consolidation":
        kind = "consolidation"
    if kind in CHANGE_TYPES:
        yield Change(seq, ts_ms, kind, event)


@dataclass(frozen=True, slots=True)
class Page:
    """Events read after a position: the readable ones and the position reached."""

    events: list[tuple[int, int, Event]]
    """``(seq, ts_ms, event)`` in log order (a deleted incarnation's are left out)."""
    position: int
    full: bool
    """The read stopped at its limit: more may follow at once."""


async def read_after(db: Db, tenant: str, after_seq: int, limit: int) -> Page:
    """The tenant's logged events after ``after_seq``, at most ``limit`` rows."""

    def read(log: Sealer) -> list[tuple[int, int, str, bytes | None]]:
        rows = log.entries(after_seq, tenant=tenant, limit=limit)
        with contextlib.closing(rows):
            return [(seq, ts, kind, body) for seq, ts, _, kind, body in rows]

    rows = await db.read_log(read)
    events = [
        (seq, ts, CODEC.decode(kind, body))
        for seq, ts, kind, body in rows
        if body is not None
    ]
    position = rows[-1][0] if rows else after_seq
    return Page(events, position, len(rows) >= limit)


def fact_of(event: FactTold) -> FactRecord:
    """The fact a ``fact_told`` event stores, as the API renders facts."""
    return FactRecord.from_event(event)


def key_of(event: FactRetracted | FactExpired | PrioritySet) -> FactKey:
    """The fact an event removes or re-prioritizes."""
    return FactKey(event.scope, event.predicate, event.negated, tuple(event.args))


def rule_of(event: RuleTaught) -> RuleRecord:
    """The tenant rule a ``rule_taught`` event teaches."""
    return RuleRecord.from_event(event, level="tenant")


__all__ = [
    "CHANGE_TYPES",
    "NAMES",
    "Change",
    "Filter",
    "Page",
    "changes_of",
    "describe",
    "fact_of",
    "key_of",
    "read_after",
    "rule_of",
]


def describe(change: Change) -> dict[str, Any]:
    """Plain fields of a change that are not facts or rules (scopes, counts)."""
    event = change.event
    if isinstance(event, ScopeForked):
        return {"source": event.source, "target": event.target}
    if isinstance(event, ScopeMerged):
        return {"source": event.source, "target": event.target, "strategy": event.strategy,
                "merged": len(event.facts)}
    if isinstance(event, ScopeDeleted):
        return {"scope": event.scope, "facts": event.facts, "rules": event.rules}
    if isinstance(event, PrioritySet):
        return {"priority": event.priority}
    if isinstance(event, RuleRemoved):
        return {"ruleId": event.id}
    if isinstance(event, (ConstraintAdded, ConstraintRemoved)):
        return {"constraintId": event.id}
    return {}
