"""Stored facts and their visibility in time.

A fact is identified by ``FactKey`` (scope, predicate, negated, args); everything else is an
attribute that a repeated ``tell`` may replace. :class:`ScopeFacts` holds the stored facts
of one scope so that forking a scope costs O(#relations), not O(#facts).

Memory (issue 4): most facts are *plain* — told without a validity window, TTL,
confidence or metadata — and all such a record says besides its key is ``createdAt``.
:class:`ScopeFacts` stores a plain fact as that one int under its args (the scope,
predicate and negation are the group's) and builds the :class:`FactRecord` when it is
read, so a million plain facts cost a dict entry and an args tuple each instead of a
record, a key tuple and an empty metadata dict.
"""

from __future__ import annotations

import dataclasses
from collections.abc import ItemsView, Iterator, Mapping, ValuesView
from dataclasses import dataclass, field
from typing import Any, NamedTuple, final

from nocturnus.service.events import FactTold, Scalar


class FactKey(NamedTuple):
    scope: str
    predicate: str
    negated: bool
    args: tuple[Scalar, ...]

    def opposite(self) -> FactKey:
        scope, predicate, negated, args = self
        return _tuple_new(FactKey, (scope, predicate, not negated, args))


@final
@dataclass(frozen=True, slots=True)
class FactRecord:
    """One stored fact with its attributes, as told."""

    key: FactKey
    created_at: int
    valid_from: int
    valid_until: int | None = None
    ttl: int | None = None
    confidence: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_event(cls, event: FactTold) -> FactRecord:
        return new_record(
            _new_key((event.scope, event.predicate, event.negated, event.args)),
            event.created_at,
            event.valid_from,
            event.valid_until,
            event.ttl,
            event.confidence,
            event.metadata,
        )

    def to_event(self) -> FactTold:
        """The event that stores exactly this record."""
        key = self.key
        return FactTold(
            predicate=key.predicate,
            args=key.args,
            negated=key.negated,
            scope=key.scope,
            created_at=self.created_at,
            valid_from=self.valid_from,
            valid_until=self.valid_until,
            ttl=self.ttl,
            confidence=self.confidence,
            metadata=self.metadata,
        )

    @property
    def expires_at(self) -> int | None:
        """The first instant the fact stops being visible, if it ever does."""
        until, ttl = self.valid_until, self.ttl
        if ttl is None:
            return until
        end = self.created_at + ttl
        return end if until is None or end < until else until

    @property
    def _ttl_end(self) -> int | None:
        return None if self.ttl is None else self.created_at + self.ttl

    def is_visible(self, now_ms: int) -> bool:
        """``validFrom ≤ now < validUntil`` and ``now < createdAt + ttl``."""
        if now_ms < self.valid_from:
            return False
        expires = self.expires_at
        return expires is None or now_ms < expires

    def next_change(self, now_ms: int) -> int | None:
        """When visibility next flips after ``now_ms`` (None: never)."""
        if now_ms < self.valid_from:
            return self.valid_from
        expires = self.expires_at
        return expires if expires is not None and now_ms < expires else None

    def in_scope(self, scope: str) -> FactRecord:
        """This record as a fact of ``scope`` (itself when it already is)."""
        if self.key.scope == scope:
            return self
        return dataclasses.replace(self, key=self.key._replace(scope=scope))


RelationKey = tuple[str, bool, int]
"""Predicate, negated, arity: the same grouping as the engine's ``FactIndex``."""

Stored = FactRecord | int
"""What a group keeps per fact: the record, or for a plain fact its ``createdAt``."""

Group = dict[tuple[Scalar, ...], Stored]


def is_plain(record: FactRecord) -> bool:
    """Whether the record is fully described by its key and ``createdAt``."""
    return (
        record.valid_from == record.created_at
        and record.valid_until is None
        and record.ttl is None
        and record.confidence is None
        and not record.metadata
        and type(record.created_at) is int
    )


def stored_visible(stored: Stored, now_ms: int) -> bool:
    """:meth:`FactRecord.is_visible` of a stored value, without building the record."""
    if type(stored) is int:
        return now_ms >= stored
    return stored.is_visible(now_ms)  # type: ignore[union-attr]


def plain_record(key: FactKey, created_at: int) -> FactRecord:
    """The record of a plain fact, built without the frozen dataclass's ``__init__``.

    Reads build one per plain fact, so this fills the slots directly as
    :func:`new_record` does; the result is an ordinary, equal :class:`FactRecord`.
    """
    record = _new(FactRecord)
    _set_key(record, key)
    _set_created(record, created_at)
    _set_from(record, created_at)
    _set_until(record, None)
    _set_ttl(record, None)
    _set_confidence(record, None)
    _set_metadata(record, {})
    return record


class ScopeFacts(Mapping[FactKey, FactRecord]):
    """The stored facts of one scope, forkable in O(#relations).

    Records are grouped per relation and keyed by their args; a plain fact is stored as
    its ``createdAt`` alone (see the module docstring). :meth:`fork` shares every
    group with the new scope; the first write to a shared group, on either side, clones
    only that group (copy-on-write, as ``FactIndex.copy`` does for the visible facts).
    A record inherited through a fork still names the scope it was told in; every read
    rebinds it to this scope, so callers only ever see keys of this scope.
    """

    __slots__ = ("_groups", "_mine", "_size", "_stamp", "scope")

    def __init__(self, scope: str) -> None:
        self.scope = scope
        self._groups: dict[RelationKey, Group] = {}
        # the groups of ``_groups`` this scope may write in place (not shared by a fork)
        self._mine: dict[RelationKey, Group] = {}
        self._size = 0
        self._stamp = 0  # the last createdAt stored: equal ones share this int object

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, key: FactKey) -> FactRecord:
        stored = self.stored(key)
        if stored is None:
            raise KeyError(key)
        relation = (key.predicate, key.negated, len(key.args))
        return self.record_of(relation, key.args, stored)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, FactKey) and self.get(key) is not None

    def __iter__(self) -> Iterator[FactKey]:
        for (predicate, negated, _), group in self._groups.items():
            for args in group:
                yield FactKey(self.scope, predicate, negated, args)

    def stored(self, key: FactKey) -> Stored | None:
        """The raw stored value for ``key`` (see :data:`Stored`), or None."""
        if key.scope != self.scope:
            return None
        group = self._groups.get((key.predicate, key.negated, len(key.args)))
        return None if group is None else group.get(key.args)

    def get(self, key: FactKey, default: Any = None) -> Any:
        stored = self.stored(key)
        if stored is None:
            return default
        if type(stored) is int:
            return plain_record(key, stored)
        return stored.in_scope(self.scope)  # type: ignore[union-attr]

    def records(self) -> Iterator[FactRecord]:
        """Every stored record of this scope, unordered."""
        scope = self.scope
        for (predicate, negated, _), group in self._groups.items():
            for args, stored in group.items():
                if type(stored) is int:
                    key = FactKey(scope, predicate, negated, args)
                    yield plain_record(key, stored)
                else:
                    yield stored.in_scope(scope)  # type: ignore[union-attr]

    def record_of(
        self, relation: RelationKey, args: tuple[Scalar, ...], stored: Stored
    ) -> FactRecord:
        """The record of this scope that a raw group value stands for."""
        if type(stored) is int:
            key = FactKey(self.scope, relation[0], relation[1], args)
            return plain_record(key, stored)
        return stored.in_scope(self.scope)  # type: ignore[union-attr]

    def items(self) -> ItemsView[FactKey, FactRecord]:
        return _Items(self)

    def values(self) -> ValuesView[FactRecord]:
        return _Values(self)

    def groups(self) -> Mapping[RelationKey, Group]:
        """The raw groups (read-only): equal objects in two scopes hold the same facts.

        Values are :data:`Stored`: read them with :func:`stored_visible` and
        :meth:`record_of`.
        """
        return self._groups

    def put(self, record: FactRecord, args: tuple[Scalar, ...] | None = None) -> None:
        """Store ``record`` (its key's scope must be this scope), replacing an equal key.

        ``args``, when given, are equal to the key's and are kept instead (the caller
        passes a tuple of canonical, shared constant objects).
        """
        _, predicate, negated, key_args = record.key
        if args is None:
            args = key_args
        if is_plain(record):
            self.put_plain(predicate, negated, args, record.created_at)
            return
        relation = (predicate, negated, len(args))
        group = self._mine.get(relation)
        if group is None:
            group = self._writable(relation)
        size = len(group)
        group[args] = record
        self._size += len(group) - size

    def put_plain(
        self, predicate: str, negated: bool, args: tuple[Scalar, ...], created_at: int
    ) -> None:
        """Store the plain fact ``args`` told at ``created_at`` (see :func:`is_plain`).

        The same as :meth:`put` of its record, without building the record: replay's
        and a bulk tell's hot path (issue 3).
        """
        relation = (predicate, negated, len(args))
        group = self._mine.get(relation)
        if group is None:
            group = self._writable(relation)
        if created_at == self._stamp:
            created_at = self._stamp  # equal stamps share one int object (memory)
        else:
            self._stamp = created_at
        size = len(group)
        group[args] = created_at
        self._size += len(group) - size

    def put_many(
        self,
        predicate: str,
        negated: bool,
        args_list: list[tuple[Scalar, ...]],
        stored_list: list[Stored],
    ) -> None:
        """Store ``(args_list[i], stored_list[i])`` in order, in bulk.

        Each stored value is what a group keeps (:data:`Stored`): a plain fact's
        ``createdAt`` (the caller checked :func:`is_plain`) or a record of this scope
        with those args. Every ``args`` must have the same arity (a snapshot stores
        one relation's facts together); the group takes them in one ``dict.update``.

        :raises ValueError: mixed arities or lengths (nothing is stored then).
        """
        if not args_list:
            return
        arity = len(args_list[0])
        if len(args_list) != len(stored_list) or set(map(len, args_list)) != {arity}:
            raise ValueError("put_many: one arity, one stored value per fact")
        group = self._writable((predicate, negated, arity))
        size = len(group)
        group.update(zip(args_list, stored_list))
        self._size += len(group) - size

    def pop(self, key: FactKey) -> FactRecord | None:
        """Remove and return the record for ``key``, or None when absent."""
        relation = (key.predicate, key.negated, len(key.args))
        group = self._groups.get(relation)
        if key.scope != self.scope or group is None or key.args not in group:
            return None
        group = self._writable(relation)
        stored = group.pop(key.args)
        if not group:
            del self._groups[relation]
            del self._mine[relation]
        self._size -= 1
        if type(stored) is int:
            return plain_record(key, stored)
        return stored.in_scope(self.scope)  # type: ignore[union-attr]

    def fork(self, scope: str) -> ScopeFacts:
        """A copy of these facts as scope ``scope``; neither side sees the other's writes."""
        twin = ScopeFacts(scope)
        twin._groups = dict(self._groups)
        twin._size = self._size
        self._mine = {}
        return twin

    def _writable(self, relation: RelationKey) -> Group:
        group = self._mine.get(relation)
        if group is not None:
            return group
        group = self._groups.get(relation)
        group = self._groups[relation] = {} if group is None else dict(group)
        self._mine[relation] = group
        return group


class _Items(ItemsView[FactKey, FactRecord]):
    """``ScopeFacts.items()`` in one pass over the groups (no lookup per key)."""

    _mapping: ScopeFacts

    def __iter__(self) -> Iterator[tuple[FactKey, FactRecord]]:
        for record in self._mapping.records():
            yield record.key, record


class _Values(ValuesView[FactRecord]):
    _mapping: ScopeFacts

    def __iter__(self) -> Iterator[FactRecord]:
        return self._mapping.records()


def new_record(
    key: FactKey,
    created_at: int,
    valid_from: int,
    valid_until: int | None,
    ttl: int | None,
    confidence: float | None,
    metadata: dict[str, Any],
) -> FactRecord:
    """Build a FactRecord about twice as fast as ``FactRecord(...)``: replay's hot path.

    Fills the slots directly, skipping the frozen dataclass's per-field
    ``object.__setattr__`` (as ``store.record.build_record`` does); the result is an
    ordinary, equal FactRecord. (A named tuple would be built faster still, but its
    fields read several times slower than slots, and reads outnumber builds.)
    """
    record = _new(FactRecord)
    _set_key(record, key)
    _set_created(record, created_at)
    _set_from(record, valid_from)
    _set_until(record, valid_until)
    _set_ttl(record, ttl)
    _set_confidence(record, confidence)
    _set_metadata(record, metadata)
    return record


_new = object.__new__
_tuple_new = tuple.__new__
_new_key = FactKey._make
(
    _set_key,
    _set_created,
    _set_from,
    _set_until,
    _set_ttl,
    _set_confidence,
    _set_metadata,
) = (
    getattr(FactRecord, name).__set__
    for name in (
        "key", "created_at", "valid_from", "valid_until", "ttl", "confidence", "metadata"
    )
)
