"""Stored facts: the one owner of how they are kept and of their visibility in time.

A fact is identified by ``FactKey`` (scope, predicate, negated, args); everything else is
an attribute (:data:`ATTRIBUTES`) that a repeated ``tell`` may replace. The attributes
are ``FactTold``'s fields after the key's, in the same order (checked at import), so a
new attribute (with a default) is a field of the event and of :class:`FactRecord`, plus
one more :data:`DUMP_VERSION` here, and nothing else: the appliers take the event's
fields by name, the codec reads a body that lacks the field at its default, and
snapshots, forks, merges and transactions pass attributes along without naming them.
Which attributes a surface shows or accepts (the API's fact shape, exports, the tell
command) is that surface's choice, made where it names them.

:class:`ScopeFacts` holds the stored facts of one scope and is the only code that knows
how: records are grouped per relation, so that forking a scope costs O(#relations), not
O(#facts). Memory (issue 4): most facts are *plain* — told without a validity window,
TTL, confidence or metadata — and all such a record says besides its key is
``createdAt``; a group keeps a plain fact as that one int under its args (the scope,
predicate and negation are the group's) and builds the :class:`FactRecord` when it is
read, so a million plain facts cost a dict entry and an args tuple each instead of a
record, a key tuple and an empty metadata dict. Visibility at an instant is stated once,
by :func:`visibility`.

Args are constants, and Python finds ``1 == 1.0`` and ``0.0 == -0.0`` where Nocturnus
has distinct constants (the engine keys them apart, ``engine.terms.const_key``): a
group stores a fact whose args hold a float under a type-exact key (:func:`args_key`),
and always as a full record, whose key gives back its exact args.
"""

from __future__ import annotations

import dataclasses
from collections.abc import (
    ItemsView,
    Iterable,
    Iterator,
    KeysView,
    Mapping,
    Sequence,
    ValuesView,
)
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, NamedTuple, final

from nocturnus.engine.terms import const_key
from nocturnus.frozen import slot_builder
from nocturnus.service.events import FactTold, Scalar


class FactKey(NamedTuple):
    """What identifies a stored fact; all else is an attribute."""

    scope: str
    predicate: str
    negated: bool
    args: tuple[Scalar, ...]

    def opposite(self) -> FactKey:
        """The key of the fact with the other sign."""
        scope, predicate, negated, args = self
        return _new_key((scope, predicate, not negated, args))


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
        """The record a ``fact_told`` event stores."""
        key = _new_key((event.scope, event.predicate, event.negated, event.args))
        return new_record(key, *_told_attributes(event))

    def to_event(self) -> FactTold:
        """The event that stores exactly this record."""
        key = self.key
        return FactTold(key.predicate, key.args, key.negated, key.scope, *self.attributes())

    def attributes(self) -> tuple[Any, ...]:
        """The attributes (:data:`ATTRIBUTES`), in order."""
        return _record_attributes(self)

    @property
    def expires_at(self) -> int | None:
        """The first instant the fact stops being visible, if it ever does."""
        until, ttl = self.valid_until, self.ttl
        if ttl is None:
            return until
        end = self.created_at + ttl
        return end if until is None or end < until else until

    def is_visible(self, now_ms: int) -> bool:
        """``validFrom ≤ now < validUntil`` and ``now < createdAt + ttl``."""
        return visibility(self, now_ms)[0]

    def next_change(self, now_ms: int) -> int | None:
        """When visibility next flips after ``now_ms`` (None: never)."""
        return visibility(self, now_ms)[1]

    def in_scope(self, scope: str) -> FactRecord:
        """This record as a fact of ``scope`` (itself when it already is)."""
        if self.key.scope == scope:
            return self
        return dataclasses.replace(self, key=self.key._replace(scope=scope))


def visibility(record: FactRecord, now_ms: int) -> tuple[bool, int | None]:
    """Whether ``record`` is visible at ``now_ms``, and when that next changes (None:
    never): ``validFrom ≤ now < validUntil`` and ``now < createdAt + ttl``."""
    if record.ttl is None and record.valid_until is None:
        if now_ms >= record.valid_from:
            return True, None
        return False, record.valid_from
    if now_ms < record.valid_from:
        return False, record.valid_from
    expires = record.expires_at
    if expires is None or now_ms < expires:
        return True, expires
    return False, None


ATTRIBUTES = tuple(f.name for f in dataclasses.fields(FactRecord))[1:]
"""A record's fields besides its key: ``FactTold``'s fields after the key's."""

_KEY_FIELDS = ("predicate", "args", "negated", "scope")
if tuple(f.name for f in dataclasses.fields(FactTold)) != _KEY_FIELDS + ATTRIBUTES:
    raise TypeError("FactTold's fields must be the key's, then FactRecord's attributes")

DUMP_VERSION = 3
"""The version of :meth:`ScopeFacts.dump`'s record rows (snapshots store it as their
facts section's): one more whenever :data:`ATTRIBUTES` grows."""

_DUMP_ATTRIBUTES = {3: 6}
"""How many attributes a record row of each dump version holds: an older row lacks
the attributes added since, which load at their defaults."""

if _DUMP_ATTRIBUTES.get(DUMP_VERSION) != len(ATTRIBUTES):
    raise TypeError("ATTRIBUTES changed: add a DUMP_VERSION with its attribute count")

_PLAIN_REST = tuple(
    f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    for f in dataclasses.fields(FactRecord)[3:]
)
"""The attributes after ``valid_from`` of a plain fact: every one at its default
(compared with, never stored: a record gets fresh defaults of its own)."""

_REST = len(_PLAIN_REST)


def is_plain(record: FactRecord) -> bool:
    """Whether the record is fully described by its key and ``createdAt``."""
    created, since, *rest = record.attributes()
    return _is_plain(created, since, tuple(rest))


def _is_plain(created_at: int, valid_from: int, rest: tuple[Any, ...]) -> bool:
    return valid_from == created_at and rest == _PLAIN_REST and type(created_at) is int


def args_key(args: tuple[Scalar, ...]) -> tuple[Any, ...]:
    """The key a group stores ``args`` under: the args themselves, unless one is a
    float (see the module docstring); then each float is keyed by its exact form."""
    for value in args:
        if type(value) is not str and type(value) is not int:
            return tuple(map(const_key, args))
    return args


def record_from(key: FactKey, stored: Stored) -> FactRecord:
    """The record of ``key`` that a stored value (:meth:`ScopeFacts.peek`) stands for."""
    if type(stored) is FactRecord:
        return stored.in_scope(key.scope)
    return new_record(key, stored, stored)


new_record = slot_builder(FactRecord)
"""``FactRecord(...)`` (positional or by name) without ``object.__setattr__`` per
field: what tells and reads build records with."""

def plain_created(stored: Stored) -> int | None:
    """The ``createdAt`` of a plain fact's stored value (all its record says besides
    its key), or None for any other fact: renders a plain fact without its record."""
    return None if type(stored) is FactRecord else stored


RelationKey = tuple[str, bool, int]
"""Predicate, negated, arity: the same grouping as the engine's ``FactIndex``."""

Stored = FactRecord | int
"""What a group keeps per fact: the record, or for a plain fact its ``createdAt``.
Opaque outside this module: read one with :func:`record_from`."""

_Group = dict[tuple[Any, ...], Stored]

VisibleRow = tuple[Any, float | None]
"""A visible fact as its scope's index takes it: (args, confidence)."""


class ScopeFacts(Mapping[FactKey, FactRecord]):
    """The stored facts of one scope, forkable in O(#relations).

    :meth:`fork` shares every group with the new scope; the first write to a shared
    group, on either side, clones only that group (copy-on-write, as ``FactIndex.copy``
    does for the visible facts). A record inherited through a fork still names the
    scope it was told in; every read rebinds it to this scope, so callers only ever
    see keys of this scope.
    """

    __slots__ = ("_floats", "_groups", "_mine", "_size", "_stamp", "scope")

    def __init__(self, scope: str) -> None:
        self.scope = scope
        self._groups: dict[RelationKey, _Group] = {}
        # the groups of ``_groups`` this scope may write in place (not shared by a fork)
        self._mine: dict[RelationKey, _Group] = {}
        self._size = 0
        self._stamp = 0  # the last createdAt stored: equal ones share this int object
        self._floats = False  # some fact's args hold a float (type-exact keys in use)

    # -- reads ------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, key: FactKey) -> FactRecord:
        stored = self.peek((key.predicate, key.negated, len(key.args)), key.args)
        if stored is None or key.scope != self.scope:
            raise KeyError(key)
        return record_from(key, stored)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, FactKey) and self.get(key) is not None

    def __iter__(self) -> Iterator[FactKey]:
        scope = self.scope
        for (predicate, negated, _), group in self._groups.items():
            for args, stored in group.items():
                if type(stored) is FactRecord:
                    args = stored.key.args  # the exact args of a type-exact key
                yield _new_key((scope, predicate, negated, args))

    def get(self, key: FactKey, default: Any = None) -> Any:
        """The record of ``key`` (of this scope), or ``default``."""
        stored = self.peek((key.predicate, key.negated, len(key.args)), key.args)
        if stored is None or key.scope != self.scope:
            return default
        return record_from(key, stored)

    def peek(self, relation: RelationKey, args: tuple[Scalar, ...]) -> Stored | None:
        """The stored value of the fact ``args`` of ``relation`` (None: not stored),
        for callers that mostly never build its record (:func:`record_from`,
        :func:`plain_created`)."""
        group = self._groups.get(relation)
        stored = None if group is None else group.get(args_key(args))
        if type(stored) is FactRecord:
            return stored.in_scope(self.scope)
        return stored

    def record_at(self, relation: RelationKey, args: tuple[Scalar, ...]) -> FactRecord:
        """The record of the stored fact ``args`` of ``relation``.

        :raises KeyError: no such fact.
        """
        predicate, negated, _ = relation
        return self[_new_key((self.scope, predicate, negated, args))]

    def records(self) -> Iterator[FactRecord]:
        """Every stored record of this scope, unordered."""
        scope = self.scope
        for (predicate, negated, _), group in self._groups.items():
            for args, stored in group.items():
                if type(stored) is FactRecord:
                    yield stored.in_scope(scope)
                else:
                    key = _new_key((scope, predicate, negated, args))
                    yield new_record(key, stored, stored)

    def items(self) -> ItemsView[FactKey, FactRecord]:
        """(key, record) of every stored fact, in one pass over the groups."""
        return _Items(self)

    def values(self) -> ValuesView[FactRecord]:
        """Every stored record (:meth:`records`)."""
        return _Values(self)

    def relations(self) -> KeysView[RelationKey]:
        """The relations holding at least one stored fact."""
        return self._groups.keys()

    def shares(self, relation: RelationKey, other: ScopeFacts) -> bool:
        """Whether both scopes still hold ``relation``'s facts in one group since a
        fork (then they hold the same facts, with the same attributes)."""
        group = self._groups.get(relation)
        return group is not None and group is other._groups.get(relation)

    def visible_args(self, relation: RelationKey, now_ms: int) -> Iterator[tuple[Any, ...]]:
        """The args of the facts of ``relation`` visible at ``now_ms``, unordered."""
        for args, stored in self._groups.get(relation, {}).items():
            if type(stored) is FactRecord:
                if visibility(stored, now_ms)[0]:
                    yield stored.key.args
            elif now_ms >= stored:
                yield args

    def holds_visible(
        self, relation: RelationKey, args: tuple[Scalar, ...], now_ms: int
    ) -> bool:
        """Whether the fact ``args`` of ``relation`` is stored and visible at ``now_ms``."""
        stored = self.peek(relation, args)
        if stored is None:
            return False
        if type(stored) is FactRecord:
            return visibility(stored, now_ms)[0]
        return now_ms >= stored

    # -- writes -----------------------------------------------------------------------

    def tell(
        self,
        predicate: str,
        negated: bool,
        args: tuple[Scalar, ...],
        created_at: int,
        valid_from: int | None = None,
        rest: tuple[Any, ...] = (),
        exact: bool = False,
    ) -> None:
        """Store the fact ``args`` with these attributes (:data:`ATTRIBUTES`:
        ``created_at``, ``valid_from`` (None: ``created_at``), then the ``rest`` in
        order, missing ones at their defaults), replacing the fact of that key. The
        hot path of every told fact: a plain fact is stored without building its
        record.

        ``exact`` says the caller knows no arg is a float (it skips the check).
        """
        if valid_from is None:
            valid_from = created_at
        relation = (predicate, negated, len(args))
        group = self._mine.get(relation)
        if group is None:
            group = self._writable(relation)
        size = len(group)
        stored_as = args if exact else args_key(args)
        if (  # _is_plain, inline: every told fact passes here
            valid_from == created_at
            and stored_as is args
            and (
                rest == _PLAIN_REST  # a tuple of every attribute: mostly
                or (len(rest) != _REST and _padded(rest) == _PLAIN_REST)
            )
            and type(created_at) is int
        ):
            if created_at == self._stamp:
                created_at = self._stamp  # equal stamps share one int object (memory)
            else:
                self._stamp = created_at
            group[args] = created_at
        else:
            key = _new_key((self.scope, predicate, negated, args))
            group[stored_as] = new_record(key, created_at, valid_from, *rest)
            if stored_as is not args:
                self._floats = True
        self._size += len(group) - size

    def put(self, record: FactRecord) -> None:
        """Store ``record`` (its key's scope must be this scope), replacing the fact of
        its key: :meth:`tell` of its attributes."""
        _, predicate, negated, args = record.key
        created_at, valid_from, *rest = record.attributes()
        self.tell(predicate, negated, args, created_at, valid_from, tuple(rest))

    def tell_many(
        self,
        predicate: str,
        negated: bool,
        plain_args: list[tuple[Scalar, ...]],
        plain_created: list[int],
        records: Sequence[Sequence[Any]] = (),
        version: int = DUMP_VERSION,
        exact: bool = False,
    ) -> None:
        """:meth:`tell` of many facts of one relation and arity, in bulk: a snapshot's
        run (:meth:`dump` of dump ``version``). The same as telling the plain facts
        ``(plain_args[i], plain_created[i])`` in order, then each row of ``records``
        (``[args, *attributes]``, every attribute of that version); equal plain
        ``createdAt`` values share one int object.

        ``exact`` says the caller knows no arg is a float (it skips the check per fact).

        :raises TypeError: a plain createdAt that is not an int.
        :raises ValueError: mixed arities, lengths that differ, or a short record.
        """
        if not plain_args and not records:
            return
        if plain_created and set(map(type, plain_created)) != {int}:
            raise TypeError("tell_many: every plain createdAt must be an int")
        if len(plain_args) != len(plain_created):
            raise ValueError("tell_many: one createdAt per plain fact")
        arities = set(map(len, plain_args)) | {len(row[0]) for row in records}
        if len(arities) != 1:
            raise ValueError("tell_many: one arity per call")
        group = self._writable((predicate, negated, arities.pop()))
        size = len(group)
        stamps: dict[int, int] = {}
        if not exact and any(args_key(args) is not args for args in plain_args):
            for args, created in zip(plain_args, plain_created, strict=True):
                self.tell(predicate, negated, args, created)  # kept as a record
            size, plain_args, plain_created = len(group), [], []
        group.update(zip(plain_args, map(stamps.setdefault, plain_created, plain_created)))
        scope = self.scope
        length = _DUMP_ATTRIBUTES[version] + 1
        for row in records:
            if len(row) != length:
                raise ValueError("tell_many: a record is [args, *attributes]")
            args, created, since, *rest = row
            key = args if exact else args_key(args)
            if key is args and _is_plain(created, since, _padded(rest)):
                group[args] = stamps.setdefault(created, created)
                continue
            if key is not args:
                self._floats = True
            fact = _new_key((scope, predicate, negated, args))
            group[key] = new_record(fact, created, since, *rest)
        self._size += len(group) - size

    def retract(self, key: FactKey) -> FactRecord | None:
        """Remove the fact of ``key`` and return its record, or None when absent."""
        relation = (key.predicate, key.negated, len(key.args))
        if key.scope != self.scope or self.peek(relation, key.args) is None:
            return None
        group = self._writable(relation)
        stored = group.pop(args_key(key.args))
        if not group:
            del self._groups[relation]
            del self._mine[relation]
        self._size -= 1
        return record_from(key, stored)

    def fork(self, scope: str) -> ScopeFacts:
        """A copy of these facts as scope ``scope``; neither side sees the other's writes."""
        twin = ScopeFacts(scope)
        twin._groups = dict(self._groups)
        twin._size = self._size
        twin._floats = self._floats
        self._mine = {}
        return twin

    def _writable(self, relation: RelationKey) -> _Group:
        group = self._mine.get(relation)
        if group is not None:
            return group
        group = self._groups.get(relation)
        group = self._groups[relation] = {} if group is None else dict(group)
        self._mine[relation] = group
        return group

    # -- visibility -------------------------------------------------------------------

    def settle(
        self,
        pending: Mapping[tuple[str, bool], Iterable[tuple[Any, ...]]],
        now_ms: int,
        visible: list[tuple[str, bool, list[VisibleRow]]],
        hidden: list[tuple[str, bool, tuple[Any, ...]]],
        timed: list[tuple[int, FactKey]],
    ) -> int:
        """Add how the index rows of the ``pending`` facts (args per (predicate,
        negated)) must be at ``now_ms``: rows to show (``visible``, in runs per
        relation), rows to drop (``hidden``), and when the visibility of the others
        changes next (``timed``); return how many pending facts are stored. Each row
        follows its stored fact, independently of every other, so order and repeats
        do not matter.

        Rows come in runs per relation, for the index to take them in bulk: a replay's
        single settling of a million facts costs a dict lookup and an append per fact.
        """
        groups = self._groups
        floats = self._floats
        scope = self.scope
        found = 0
        for (predicate, negated), args_list in pending.items():
            arity = -1
            group: _Group | None = None
            rows: list[VisibleRow] = []
            for args in args_list:
                if len(args) != arity:  # a (predicate, negated) mostly has one arity
                    if rows:
                        visible.append((predicate, negated, rows))
                        rows = []
                    arity = len(args)
                    group = groups.get((predicate, negated, arity))
                stored = None
                if group is not None:
                    stored = group.get(args_key(args) if floats else args)
                if stored is None:
                    hidden.append((predicate, negated, args))
                    continue
                found += 1
                if type(stored) is FactRecord:
                    shown, change = visibility(stored, now_ms)
                    if shown:
                        rows.append((args, stored.confidence))
                    else:
                        hidden.append((predicate, negated, args))
                    if change is not None:
                        timed.append((change, _new_key((scope, predicate, negated, args))))
                elif now_ms >= stored:  # a plain fact: visible from its createdAt on
                    rows.append((args, None))
                else:
                    hidden.append((predicate, negated, args))
                    timed.append((stored, _new_key((scope, predicate, negated, args))))
            if rows:
                visible.append((predicate, negated, rows))
        return found

    def settle_all(
        self,
        now_ms: int,
        visible: list[tuple[str, bool, list[VisibleRow]]],
        timed: list[tuple[int, FactKey]],
    ) -> None:
        """:meth:`settle` of every stored fact, for an empty index: only the visible
        rows and the timed changes (nothing to hide), group by group in one pass."""
        scope = self.scope
        for (predicate, negated, _), group in self._groups.items():
            rows: list[VisibleRow] = []
            for args, stored in group.items():
                if type(stored) is FactRecord:
                    shown, change = visibility(stored, now_ms)
                    exact = stored.key.args
                    if shown:
                        rows.append((exact, stored.confidence))
                    if change is not None:
                        timed.append((change, _new_key((scope, predicate, negated, exact))))
                elif now_ms >= stored:  # a plain fact: visible from its createdAt on
                    rows.append((args, None))
                else:
                    timed.append((stored, _new_key((scope, predicate, negated, args))))
            if rows:
                visible.append((predicate, negated, rows))

    # -- snapshots --------------------------------------------------------------------

    def dump(self, limit: int) -> Iterator[tuple[str, bool, list[Any], list[int], list[Any]]]:
        """The facts as ``(predicate, negated, plain_args, plain_created, records)``
        runs of at most ``limit`` facts of one relation each (what :meth:`tell_many`
        takes back): the plain facts as two columns, every other fact as a row
        ``[args, *attributes]``."""
        for (predicate, negated, _), group in self._groups.items():
            plain_args: list[Any] = []
            plain_created: list[int] = []
            records: list[Any] = []
            for args, stored in group.items():
                if type(stored) is FactRecord:
                    records.append([stored.key.args, *_record_attributes(stored)])
                else:
                    plain_args.append(args)
                    plain_created.append(stored)
                if len(plain_args) + len(records) == limit:
                    yield predicate, negated, plain_args, plain_created, records
                    plain_args, plain_created, records = [], [], []
            if plain_args or records:
                yield predicate, negated, plain_args, plain_created, records


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


def _padded(rest: Sequence[Any]) -> tuple[Any, ...]:
    """The attributes after ``valid_from``, missing trailing ones at their defaults
    (a record told or stored before an attribute existed): to compare with
    :data:`_PLAIN_REST`, never to store."""
    if len(rest) == len(_PLAIN_REST) and type(rest) is tuple:
        return rest
    return (*rest, *_PLAIN_REST[len(rest) :])


_new_key = FactKey._make
_record_attributes = attrgetter(*ATTRIBUTES)
_told_attributes = attrgetter(*ATTRIBUTES)  # the same names on FactTold (checked above)
