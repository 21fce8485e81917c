"""Event types: the only way state changes.

Each event is a frozen record with a stable ``kind`` (stored in the log, never a Python
path) and an integer ``version``. Bodies are orjson dicts of the fields. An old version is
upgraded on read by an explicit upcaster registered in ``_UPCASTERS``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, ClassVar

import orjson

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
    kind: ClassVar[str] = "rule_removed"
    id: str


@dataclass(frozen=True, slots=True)
class TenantCreated(Event):
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
    (``{predicate, args, negated, created_at, valid_from, valid_until, ttl, confidence,
    metadata}``); ``retracted`` (``{predicate, args, negated}``) are removed from it
    first — the target's side of conflicts the source won.
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
class ConstraintAdded(Event):
    """A RESTRICT constraint: its ``body`` (literals as in ``rule_taught``) must never
    hold in any scope of the tenant (issue 18)."""

    kind: ClassVar[str] = "constraint_added"
    id: str
    body: tuple[dict[str, Any], ...]
    created_at: int


@dataclass(frozen=True, slots=True)
class ConstraintRemoved(Event):
    kind: ClassVar[str] = "constraint_removed"
    id: str


@dataclass(frozen=True, slots=True)
class TransactionCommitted(Event):
    """A transaction's writes, applied at once and in order (issue 18).

    ``events`` are the writes' events as ``{"kind", "body"}``, ``body`` being what
    :func:`encode` makes of the event (its own ``_v`` included), so each is upcast on
    its own when its kind gets a new version (:func:`nest`, :func:`unnest`).
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
_TUPLE_FIELDS: dict[str, frozenset[str]] = {}
_FIELD_NAMES: dict[type[Event], tuple[str, ...]] = {}
_BUILDERS: dict[str, Callable[[dict[str, Any]], Event | None]] = {}
FIELD_READERS: dict[str, Callable[[bytes], tuple[Any, ...] | None]] = {}
_DIRECT: set[type[Event]] = set()  # orjson writes their dataclass as encode's body
_UPCASTERS: dict[tuple[str, int], Callable[[dict[str, Any]], dict[str, Any]]] = {}


def register(cls: type[Event]) -> type[Event]:
    """Make ``cls`` decodable from the log; later issues register their own events."""
    if cls.kind in EVENT_TYPES and EVENT_TYPES[cls.kind] is not cls:
        raise ValueError(f"duplicate event kind {cls.kind!r}")
    EVENT_TYPES[cls.kind] = cls
    fields = dataclasses.fields(cls)
    _TUPLE_FIELDS[cls.kind] = frozenset(
        f.name for f in fields if str(f.type).startswith("tuple")
    )
    _FIELD_NAMES[cls] = tuple(f.name for f in fields)
    if fields and not any(f.name.startswith("_") for f in fields):
        _DIRECT.add(cls)
    _BUILDERS[cls.kind] = _builder(cls, _TUPLE_FIELDS[cls.kind])
    FIELD_READERS[cls.kind] = _fields_reader(cls)
    return cls


def _builder(
    cls: type[Event], tuple_fields: frozenset[str]
) -> Callable[[dict[str, Any]], Event | None]:
    """Replay's fast path: fill the slots of a body that has exactly every field.

    A frozen dataclass's ``__init__`` routes each field through ``object.__setattr__``;
    setting the slots directly is about twice as fast and gives an equal event. A body
    with missing or extra keys returns None, and :func:`decode` takes the checked
    ``cls(**body)`` path, which applies defaults or raises.
    """
    if hasattr(cls, "__post_init__"):
        return lambda body: None  # keep its checks: always the slow path
    names = tuple(f.name for f in dataclasses.fields(cls))
    plan = tuple(
        (name, getattr(cls, name).__set__, name in tuple_fields) for name in names
    )
    count = len(names)
    new = object.__new__

    def build(body: dict[str, Any]) -> Event | None:
        if len(body) != count:
            return None
        event = new(cls)
        try:
            for name, set_slot, is_tuple in plan:
                value = body[name]
                set_slot(event, tuple(value) if is_tuple and value is not None else value)
        except KeyError:
            return None
        return event

    return build


def _fields_reader(cls: type[Event]) -> Callable[[bytes], tuple[Any, ...] | None]:
    """Replay's fastest path: a logged body straight to its field values, no event.

    Returns the values in field order, as JSON gives them (a tuple field is a list:
    a field applier takes either), when the body is of the current version with
    exactly every field; None otherwise, and the caller takes :func:`decode`, which
    upcasts, applies defaults or raises. For such bodies the values are exactly the
    fields of ``decode(kind, data)`` (tuple fields as lists).
    """
    names = tuple(f.name for f in dataclasses.fields(cls))
    count = len(names) + 1  # and "_v"
    version = cls.version
    loads = orjson.loads
    if hasattr(cls, "__post_init__") or not names:
        return lambda data: None  # keep its checks: always the slow path
    if len(names) == 1:
        name = names[0]

        def read_one(data: bytes) -> tuple[Any, ...] | None:
            body = loads(data)
            if type(body) is not dict or len(body) != count or body.get("_v") != version:
                return None
            return (body[name],) if name in body else None

        return read_one
    getter = itemgetter(*names)

    def read(data: bytes) -> tuple[Any, ...] | None:
        body = loads(data)
        if type(body) is not dict or len(body) != count or body.get("_v") != version:
            return None
        try:
            return getter(body)  # type: ignore[no-any-return]
        except KeyError:
            return None

    return read


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
):
    register(_cls)


def encode(event: Event) -> bytes:
    """Serialise an event body (its version travels with it as ``_v``).

    The body is ``{field: value, ..., "_v": version}`` in field order. orjson
    serialises the dataclass itself to exactly the fields' object, in C; the version
    is spliced in before the closing brace (a class whose field names orjson would
    not write as they are takes the plain dict).
    """
    cls = type(event)
    if cls in _DIRECT:  # the splice builds a new bytes of its own size (see below)
        return orjson.dumps(event)[:-1] + b',"_v":%d}' % event.version
    body = {name: getattr(event, name) for name in _FIELD_NAMES[cls]}
    body["_v"] = event.version
    # orjson's result keeps a buffer of about 4 KiB however short the JSON; a bulk
    # write holds 10 000 of them until the writer commits, so copy it to its size
    # (issue 4: that slack stayed in the server's RSS).
    return bytes(memoryview(orjson.dumps(body)))


def decode(kind: str, data: bytes) -> Event:
    """Rebuild an event from the log, upcasting old versions.

    :raises KeyError: for an unknown kind — a log written by a newer server.
    """
    cls = EVENT_TYPES[kind]
    body = orjson.loads(data)
    version = body.pop("_v", 1)
    if version == cls.version:
        event = _BUILDERS[kind](body)
        if event is not None:
            return event
    while version < cls.version:
        body = _UPCASTERS[(kind, version)](body)
        version += 1
    for name in _TUPLE_FIELDS[kind]:
        if body.get(name) is not None:
            body[name] = tuple(body[name])
    return cls(**body)


def nest(events: Sequence[Event]) -> tuple[dict[str, Any], ...]:
    """``events`` as a :class:`TransactionCommitted` holds them."""
    return tuple({"kind": e.kind, "body": orjson.loads(encode(e))} for e in events)


def unnest(nested: Sequence[dict[str, Any]]) -> list[Event]:
    """The events :func:`nest` made, decoded (and upcast) as the log's are."""
    return [decode(item["kind"], orjson.dumps(item["body"])) for item in nested]
