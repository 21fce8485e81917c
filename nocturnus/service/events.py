"""Event types: the only way state changes.

Each event is a frozen record with a stable ``kind`` (stored in the log, never a Python
path) and an integer ``version``. An old version is upgraded on read by an explicit
upcaster (:func:`upcaster`). How an event is written to the log and read back is
``codec.py``'s business; what it does to a tenant is its applier's (``projection.py``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

Scalar = str | int | float


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event; subclasses set ``kind`` and ``version``."""

    kind: ClassVar[str] = ""
    version: ClassVar[int] = 1


@dataclass(frozen=True, slots=True)
class FactTold(Event):
    """A fact was stored, or an identical fact's attributes were replaced."""

    kind: ClassVar[str] = "fact_told"
    predicate: str
    args: tuple[Scalar, ...]
    negated: bool
    scope: str
    created_at: int
    valid_from: int
    valid_until: int | None = None
    ttl: int | None = None
    confidence: float | None = None
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class FactRetracted(Event):
    """A stored fact was removed."""

    kind: ClassVar[str] = "fact_retracted"
    predicate: str
    args: tuple[Scalar, ...]
    negated: bool
    scope: str


@dataclass(frozen=True, slots=True)
class FactExpired(Event):
    """A stored fact that can never be visible again was removed by decay (issue 18)."""

    kind: ClassVar[str] = "fact_expired"
    predicate: str
    args: tuple[Scalar, ...]
    negated: bool
    scope: str


@dataclass(frozen=True, slots=True)
class RuleTaught(Event):
    """A rule was added (to a tenant, or database-wide when logged under tenant "")."""

    kind: ClassVar[str] = "rule_taught"
    id: str
    head: dict[str, Any]
    body: tuple[dict[str, Any], ...]
    created_at: int
    scope: str | None = None
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class RuleRemoved(Event):
    """A rule was removed (a tenant's, or database-wide when logged under tenant "")."""

    kind: ClassVar[str] = "rule_removed"
    id: str


@dataclass(frozen=True, slots=True)
class TenantCreated(Event):
    """A tenant was registered explicitly (``POST /admin/databases/<db>/tenants``)."""

    kind: ClassVar[str] = "tenant_created"
    created_at: int


@dataclass(frozen=True, slots=True)
class TenantDeleted(Event):
    """The tenant's data key is destroyed with this event; replay starts it over empty."""

    kind: ClassVar[str] = "tenant_deleted"
    facts: int
    rules: int


@dataclass(frozen=True, slots=True)
class ScopeForked(Event):
    """Scope ``target`` became a copy of scope ``source``: its facts and scoped rules.

    Only names travel: replay derives the copy (and the copied rules' ids) from the
    state at this point of the log, so the event is the same size for any scope.
    """

    kind: ClassVar[str] = "scope_forked"
    source: str
    target: str
    created_at: int


@dataclass(frozen=True, slots=True)
class ScopeMerged(Event):
    """Facts of ``source`` were merged into ``target`` in one step.

    ``facts`` are told into ``target`` with the attributes they have in ``source``
    (each a ``fact_told`` event's fields without its scope); ``retracted``
    (``{predicate, args, negated}``) are removed from it first — the target's side of
    conflicts the source won.
    """

    kind: ClassVar[str] = "scope_merged"
    source: str
    target: str
    strategy: str
    facts: tuple[dict[str, Any], ...] = ()
    retracted: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class ScopeDeleted(Event):
    """Every fact of ``scope`` and the tenant rules scoped to it were removed."""

    kind: ClassVar[str] = "scope_deleted"
    scope: str
    facts: int
    rules: int


@dataclass(frozen=True, slots=True)
class PrioritySet(Event):
    """A stored fact's explicit salience priority (0..1) was set (issue 6)."""

    kind: ClassVar[str] = "priority_set"
    predicate: str
    args: tuple[Scalar, ...]
    negated: bool
    scope: str
    priority: float


@dataclass(frozen=True, slots=True)
class FactsUsed(Event):
    """Stored facts were used (salience, issue 16): what one process buffered.

    Each entry of ``facts`` is ``[scope, predicate, negated, args, uses, last_used_ms]``:
    the fact's key, how often it was used, and its latest use. Uses are aggregated per
    fact and at most :data:`MAX_USED_FACTS` facts travel in one event (``uses.py``).
    Applying it adds the uses to the facts still stored and ignores the others; it
    changes no fact.
    """

    kind: ClassVar[str] = "facts_used"
    facts: tuple[tuple[Any, ...], ...]


MAX_USED_FACTS = 1000
"""Most facts one ``facts_used`` event carries; a bigger buffer is split."""


@dataclass(frozen=True, slots=True)
class ConstraintAdded(Event):
    """A RESTRICT constraint: its ``body`` (literals as in ``rule_taught``) must never
    hold in any scope of the tenant (issue 18)."""

    kind: ClassVar[str] = "constraint_added"
    id: str
    body: tuple[dict[str, Any], ...]
    created_at: int


@dataclass(frozen=True, slots=True)
class ConstraintRemoved(Event):
    """A RESTRICT constraint was removed (issue 18)."""

    kind: ClassVar[str] = "constraint_removed"
    id: str


@dataclass(frozen=True, slots=True)
class TransactionCommitted(Event):
    """A transaction's writes, applied at once and in order (issue 18).

    ``events`` are the writes' events as ``{"kind", "body"}``, ``body`` being what
    the codec makes of the event (its own ``_v`` included), so each is upcast on
    its own when its kind gets a new version (``codec.nest``, ``codec.unnest``).
    """

    kind: ClassVar[str] = "transaction_committed"
    id: str
    events: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True)
class DatabaseCreated(Event):
    """Registry event in the ``_system`` database."""

    kind: ClassVar[str] = "database_created"
    name: str
    created_at: int
    default_conflict_strategy: str = "REJECT"


@dataclass(frozen=True, slots=True)
class DatabaseDeleted(Event):
    """Registry event in the ``_system`` database: the database and its log are gone."""

    kind: ClassVar[str] = "database_deleted"
    name: str


@dataclass(frozen=True, slots=True)
class LogCompacted(Event):
    """Database-level marker: ``nocturnus compact`` dropped shredded rows (issue 3).

    Counts only: the names of the deleted tenants left the file with their rows.
    """

    kind: ClassVar[str] = "log_compacted"
    dropped_events: int
    dropped_keys: int
    tenants: int
    first_dropped_seq: int
    last_dropped_seq: int
    rechained: int


# -- API keys and the audit trail (``_system`` database; issue 7) ---------------------


@dataclass(frozen=True, slots=True)
class KeyCreated(Event):
    """An API key was minted; only its argon2id hash is kept, never the key."""

    kind: ClassVar[str] = "key_created"
    id: str
    name: str
    prefix: str
    hash: str
    role: str
    databases: tuple[str, ...]
    tenants: tuple[str, ...]
    description: str
    created_at: int
    created_by: str
    expires_at: int | None = None


@dataclass(frozen=True, slots=True)
class KeyUpdated(Event):
    """A key's attributes changed; ``None`` leaves a field as it was."""

    kind: ClassVar[str] = "key_updated"
    id: str
    enabled: bool | None = None
    role: str | None = None
    databases: tuple[str, ...] | None = None
    tenants: tuple[str, ...] | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class KeyRevoked(Event):
    """An API key was revoked for good."""

    kind: ClassVar[str] = "key_revoked"
    id: str
    revoked_at: int
    revoked_by: str


@dataclass(frozen=True, slots=True)
class AuditRecorded(Event):
    """One entry of the audit trail (logged under the ``_audit`` tenant of ``_system``)."""

    kind: ClassVar[str] = "audit_recorded"
    action: str
    outcome: str
    actor: dict[str, Any]
    target: str | None = None
    details: dict[str, Any] = dataclasses.field(default_factory=dict)


EVENT_TYPES: dict[str, type[Event]] = {}
"""Every event class by its ``kind``: what the log can hold (``codec.py`` reads it)."""

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
_UPCASTERS: dict[tuple[str, int], Upcaster] = {}


def register(cls: type[Event]) -> type[Event]:
    """Make ``cls`` decodable from the log; later issues register their own events.

    :raises ValueError: another class already has its ``kind``.
    """
    if cls.kind in EVENT_TYPES and EVENT_TYPES[cls.kind] is not cls:
        raise ValueError(f"duplicate event kind {cls.kind!r}")
    EVENT_TYPES[cls.kind] = cls
    return cls


def upcaster(kind: str, version: int) -> Callable[[Upcaster], Upcaster]:
    """Register the function below as the upgrade of ``kind``'s bodies from ``version``
    to ``version + 1`` (a dict of fields in, a dict of fields out)."""

    def register_upcaster(fn: Upcaster) -> Upcaster:
        if (kind, version) in _UPCASTERS:
            raise ValueError(f"duplicate upcaster for {kind!r} v{version}")
        _UPCASTERS[(kind, version)] = fn
        return fn

    return register_upcaster


def upcast(kind: str, version: int, body: dict[str, Any]) -> dict[str, Any]:
    """``body``, logged as ``version`` of ``kind``, as the current version's fields.

    :raises KeyError: an unknown kind, or a missing step of the upgrade.
    """
    current = EVENT_TYPES[kind].version
    while version < current:
        body = _UPCASTERS[(kind, version)](body)
        version += 1
    return body


for _cls in (
    FactTold,
    FactRetracted,
    RuleTaught,
    RuleRemoved,
    TenantCreated,
    TenantDeleted,
    ScopeForked,
    ScopeMerged,
    ScopeDeleted,
    PrioritySet,
    ConstraintAdded,
    ConstraintRemoved,
    DatabaseCreated,
    DatabaseDeleted,
    LogCompacted,
    KeyCreated,
    KeyUpdated,
    KeyRevoked,
    AuditRecorded,
    FactExpired,
    TransactionCommitted,
    FactsUsed,
):
    register(_cls)
