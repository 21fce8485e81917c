"""The visible ground facts of one partition, with n-ary hexastore-style indexes.

A hexastore keeps one index per order of a triple's positions so every pattern is a
lookup. For n-ary facts we generalise: one hash index per *combination of bound
positions*, built the first time a query or rule binds exactly those positions and
kept current on every add and remove afterwards. Facts are stored as tuples of
interned ints (see :class:`~nocturnus.engine.terms.Interner`), so ``500`` and
``"500"`` never collide and tuple hashing stays cheap.

Forks (``copy``) are copy-on-write per relation: a fork shares every relation object
with its source until one side writes to that relation, which then clones only it.
"""

from __future__ import annotations

from collections.abc import Iterator
from operator import itemgetter
from typing import Any

from nocturnus.engine.table import Row
from nocturnus.engine.terms import Const, Interner, Var, sort_key

RelationKey = tuple[str, bool, int]
"""A relation is identified by predicate, negation and arity."""


def sort_facts(found: list[tuple[Const, ...]], has_floats: bool = True) -> None:
    """Sort argument tuples in place by :func:`sort_key` of each argument.

    Without floats, Python's own tuple order agrees with :func:`sort_key` wherever it
    is defined, and runs in C: the first differing position decides both, and there
    two strings or two ints compare alike. Mixing a string with a number there raises
    TypeError, and then the exact key is used. Floats always take the exact key:
    ``1 == 1.0`` would let a later position decide what ``sort_key`` decides by type.
    """
    if not has_floats:
        try:
            found.sort()
            return
        except TypeError:
            pass
    found.sort(key=lambda args: tuple([sort_key(a) for a in args]))


def sort_answers(
    found: list[tuple[tuple[Const, ...], float | None]], has_floats: bool = True
) -> None:
    """Sort (args, confidence) pairs in place by args, as :func:`sort_facts` does."""
    if not has_floats:
        try:
            found.sort(key=itemgetter(0))
            return
        except TypeError:
            pass
    found.sort(key=lambda item: tuple([sort_key(a) for a in item[0]]))


def _repeats(pattern: tuple[Var | Const, ...]) -> list[tuple[int, int]]:
    """Pairs of positions holding the same variable (first occurrence, later one)."""
    first: dict[Var, int] = {}
    pairs: list[tuple[int, int]] = []
    for position, term in enumerate(pattern):
        if type(term) is Var:
            if term in first:
                pairs.append((first[term], position))
            else:
                first[term] = position  # type: ignore[index]
    return pairs


class Relation:
    """The rows of one relation and its hash indexes on bound-position combinations.

    ``rows`` maps each row (a tuple of interned ids) to its confidence. An index for
    positions ``(i, j)`` maps the values at those positions to the set of rows having
    them; with a single position the key is the bare value rather than a 1-tuple, to
    keep lookups in evaluation loops cheap.
    """

    __slots__ = ("annotated", "columns", "indexes", "owner", "rows")

    def __init__(self, owner: object = None) -> None:
        self.rows: dict[Row, float | None] = {}
        self.indexes: dict[tuple[int, ...], dict[Any, set[Row]]] = {}
        # Binary relations grouped by one column (value -> partner values), for the
        # set-at-a-time kernels; dropped on any write rather than maintained.
        self.columns: dict[int, dict[int, set[int]]] = {}
        self.annotated = 0  # rows with a confidence: decides if evaluation weighs
        self.owner = owner  # the write token of the one FactIndex that may mutate it

    def __len__(self) -> int:
        return len(self.rows)

    def clone(self, owner: object) -> Relation:
        """Copy the rows for a copy-on-write fork; indexes are rebuilt on demand."""
        twin = Relation(owner)
        twin.rows = dict(self.rows)
        twin.annotated = self.annotated
        return twin

    def index(self, positions: tuple[int, ...]) -> dict[Any, set[Row]]:
        """Return the index on ``positions``, building it on first use."""
        found = self.indexes.get(positions)
        if found is not None:
            return found
        index: dict[Any, set[Row]] = {}
        key_of = itemgetter(*positions)
        for row in self.rows:
            key = key_of(row)
            bucket = index.get(key)
            if bucket is None:
                index[key] = {row}
            else:
                bucket.add(row)
        self.indexes[positions] = index
        return index

    def column(self, position: int) -> dict[int, set[int]]:
        """Return this binary relation grouped by ``position`` (cached until a write).

        Callers must not modify the result.
        """
        found = self.columns.get(position)
        if found is None:
            found = {}
            other = 1 - position
            for row in self.rows:
                partners = found.get(row[position])
                if partners is None:
                    found[row[position]] = {row[other]}
                else:
                    partners.add(row[other])
            self.columns[position] = found
        return found

    def insert(self, row: Row, confidence: float | None) -> None:
        """Add a row that is not present yet, keeping every index current."""
        self.rows[row] = confidence
        if confidence is not None:
            self.annotated += 1
        self.index_row(row)

    def index_row(self, row: Row) -> None:
        """Add a new row to every index."""
        if self.columns:
            self.columns = {}
        for positions, index in self.indexes.items():
            key = (
                row[positions[0]]
                if len(positions) == 1
                else tuple([row[p] for p in positions])
            )
            bucket = index.get(key)
            if bucket is None:
                index[key] = {row}
            else:
                bucket.add(row)

    def delete(self, row: Row) -> None:
        """Remove a present row, keeping every index current."""
        if self.columns:
            self.columns = {}
        if self.rows.pop(row) is not None:
            self.annotated -= 1
        for positions, index in self.indexes.items():
            key = (
                row[positions[0]]
                if len(positions) == 1
                else tuple([row[p] for p in positions])
            )
            bucket = index[key]
            bucket.discard(row)
            if not bucket:
                del index[key]

    def set_confidence(self, row: Row, confidence: float | None) -> None:
        """Change the confidence of a present row."""
        old = self.rows[row]
        self.annotated += (confidence is not None) - (old is not None)
        self.rows[row] = confidence


class FactIndex:
    """The visible ground facts of one partition (one tenant scope).

    Relations are keyed by (predicate, negated, arity). ``version`` increases on
    every effective change; evaluation caches results in :attr:`cache`, which is
    emptied on the same changes, so cached answers are never stale.

    Copy-on-write: each relation records the write token of the index allowed to
    mutate it in place; :meth:`copy` gives both sides new tokens, so the first write
    to a shared relation on either side clones it.

    Not thread-safe: the owner serialises writes, and reads must not overlap them.
    """

    __slots__ = ("_relations", "_size", "_token", "cache", "interner", "version")

    def __init__(self, interner: Interner | None = None) -> None:
        self.interner = interner if interner is not None else Interner()
        self.version = 0
        self.cache: dict[Any, Any] = {}
        self._relations: dict[RelationKey, Relation] = {}
        self._token = object()
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def _changed(self) -> None:
        self.version += 1
        if self.cache:
            self.cache = {}

    def _writable(self, key: RelationKey) -> Relation:
        relation = self._relations.get(key)
        if relation is None:
            relation = Relation(self._token)
            self._relations[key] = relation
        elif relation.owner is not self._token:
            relation = relation.clone(self._token)
            self._relations[key] = relation
        return relation

    def add(
        self,
        predicate: str,
        negated: bool,
        args: tuple[Const, ...],
        confidence: float | None = None,
    ) -> bool:
        """Add a fact; return True if it is new.

        A fact already present keeps its place and takes the new confidence; the
        version moves only if that confidence actually changed.

        :raises TypeError: if an argument is not a constant.
        :raises ValueError: if the confidence is outside 0..1.
        """
        if confidence is not None and (
            isinstance(confidence, bool) or not 0.0 <= confidence <= 1.0
        ):
            raise ValueError(f"confidence must be within 0..1, got {confidence!r}")
        row = self.interner.intern_all(args)
        key = (predicate, negated is True, len(row))
        relation = self._relations.get(key)
        if relation is None or relation.owner is not self._token:
            if relation is not None and row in relation.rows:
                return self._update(key, row, confidence)  # type: ignore[arg-type]
            relation = self._writable(key)
        rows = relation.rows
        size = len(rows)
        rows.setdefault(row, confidence)  # type: ignore[arg-type]
        if len(rows) == size:
            return self._update(key, row, confidence)  # type: ignore[arg-type]
        if relation.indexes or relation.columns:
            relation.index_row(row)  # type: ignore[arg-type]
        if confidence is not None:
            relation.annotated += 1
        self._size += 1
        self.version += 1
        if self.cache:
            self.cache = {}
        return True

    def add_many(
        self,
        predicate: str,
        negated: bool,
        facts: list[tuple[tuple[Const, ...], float | None]],
    ) -> int:
        """Add facts of one relation (same arity); the same as :meth:`add` for each.

        ``facts`` holds distinct (args, confidence) pairs. One relation lookup and one
        version bump for the batch, instead of one per fact: a replay's refresh adds
        its facts this way. Returns how many were new.

        :raises TypeError: if an argument is not a constant (the facts before it
            stay added).
        :raises ValueError: if a confidence is outside 0..1 (nothing is added then).
        """
        if not facts:
            return 0
        for _, confidence in facts:
            if confidence is not None and (
                isinstance(confidence, bool) or not 0.0 <= confidence <= 1.0
            ):
                raise ValueError(f"confidence must be within 0..1, got {confidence!r}")
        interner = self.interner
        get = interner.exact.get
        intern_all = interner.intern_all
        key = (predicate, negated is True, len(facts[0][0]))
        relation = self._writable(key)
        rows = relation.rows
        indexed = relation.indexes or relation.columns
        before = len(rows)
        changed = annotated = 0
        try:
            for args, confidence in facts:
                # Interner.intern_all's fast path, inline: ids from the table of
                # strings and ints, trusted only for a row of exact strs and ints.
                row = tuple(map(get, args))  # type: ignore[arg-type]
                if None in row:
                    row = intern_all(args)
                else:
                    for value in args:
                        kind = type(value)
                        if kind is not str and kind is not int:
                            row = intern_all(args)
                            break
                size = len(rows)
                old = rows.setdefault(row, confidence)  # type: ignore[arg-type]
                if len(rows) != size:
                    if confidence is not None:
                        annotated += 1
                    if indexed:
                        relation.index_row(row)  # type: ignore[arg-type]
                elif old != confidence or (old is None) != (confidence is None):
                    relation.set_confidence(row, confidence)  # type: ignore[arg-type]
                    changed += 1
        finally:  # a non-constant argument raises TypeError: count what was added
            relation.annotated += annotated
            added = len(rows) - before
            if not rows:
                del self._relations[key]
            if added or changed:
                self._size += added
                self.version += added + changed
                if self.cache:
                    self.cache = {}
        return added

    def _update(self, key: RelationKey, row: Row, confidence: float | None) -> bool:
        old = self._relations[key].rows[row]
        if old == confidence and (old is None) == (confidence is None):
            return False
        self._writable(key).set_confidence(row, confidence)
        self._changed()
        return False

    def remove(self, predicate: str, negated: bool, args: tuple[Const, ...]) -> bool:
        """Remove a fact; return True if it was present."""
        row = self._known_row(args)
        key = (predicate, bool(negated), len(args))
        relation = self._relations.get(key)
        if row is None or relation is None or row not in relation.rows:
            return False
        writable = self._writable(key)
        writable.delete(row)
        if not writable.rows:
            del self._relations[key]
        self._size -= 1
        self._changed()
        return True

    def contains(self, predicate: str, negated: bool, args: tuple[Const, ...]) -> bool:
        """Tell whether exactly this fact is present.

        The relation is looked up first: every tell asks whether its opposite is
        present, and most relations have no negated side at all.
        """
        relation = self._relations.get((predicate, bool(negated), len(args)))
        if relation is None:
            return False
        row = self._known_row(args)
        return row is not None and row in relation.rows

    def confidence(
        self, predicate: str, negated: bool, args: tuple[Const, ...]
    ) -> float | None:
        """Return the fact's confidence (None if absent or told without one)."""
        row = self._known_row(args)
        relation = self._relations.get((predicate, bool(negated), len(args)))
        if row is None or relation is None:
            return None
        return relation.rows.get(row)

    def match(
        self, predicate: str, negated: bool, pattern: tuple[Var | Const, ...]
    ) -> list[tuple[Const, ...]]:
        """Return the facts matching ``pattern``, sorted by :func:`sort_key`.

        Bound positions resolve through the index on exactly those positions, so a
        lookup never scans the relation; a repeated variable (``p(?x, ?x)``) requires
        equal values. Only facts of the pattern's arity match.
        """
        relation = self._relations.get((predicate, negated is True, len(pattern)))
        if relation is None:
            return []
        rows = self.match_rows(relation, pattern)
        if not rows:
            return []
        values = self.interner.values
        found: list[tuple[Const, ...]]
        if len(pattern) == 2:  # the common binary case, unpacked without map()
            found = [(values[a], values[b]) for a, b in rows]
        else:
            get = values.__getitem__
            found = [tuple(map(get, row)) for row in rows]
        if len(found) > 1:
            sort_facts(found, self.interner.has_floats)
        return found

    def match_rows(
        self, relation: Relation, pattern: tuple[Var | Const, ...]
    ) -> list[Row] | None:
        """Return the interned rows of ``relation`` matching ``pattern``, unordered."""
        positions: list[int] = []
        values: list[int] = []
        named = 0
        exact = self.interner.exact
        position = -1
        for term in pattern:
            position += 1
            kind = type(term)
            if kind is Var:
                named += 1
                continue
            if kind is str or kind is int:  # exact's keys; never a float or a bool
                value = exact.get(term)  # type: ignore[arg-type]
            else:
                value = self.interner.lookup(term)  # type: ignore[arg-type]
            if value is None:
                return None
            positions.append(position)
            values.append(value)
        if not positions:
            candidates: Any = relation.rows
        elif not named:
            row = tuple(values)
            return [row] if row in relation.rows else None
        else:
            where = tuple(positions)
            index = relation.indexes.get(where)
            if index is None:
                index = relation.index(where)
            candidates = index.get(values[0] if len(values) == 1 else tuple(values))
            if candidates is None:
                return None
        if named > 1:
            repeats = _repeats(pattern)
            if repeats:
                return [
                    row
                    for row in candidates
                    if all(row[a] == row[b] for a, b in repeats)
                ]
        return list(candidates)

    def relation(self, key: RelationKey) -> Relation | None:
        """Return the relation object for evaluation (read-only use), if any."""
        return self._relations.get(key)

    def relations(self) -> list[tuple[str, bool, int, int]]:
        """List (predicate, negated, arity, count) of every non-empty relation, sorted."""
        return sorted(
            (predicate, negated, arity, len(relation))
            for (predicate, negated, arity), relation in self._relations.items()
        )

    def facts(self) -> Iterator[tuple[str, bool, tuple[Const, ...], float | None]]:
        """Yield every fact as (predicate, negated, args, confidence), unordered."""
        decode = self.interner.decode
        for (predicate, negated, _), relation in self._relations.items():
            for row, confidence in relation.rows.items():
                yield predicate, negated, decode(row), confidence

    def copy(self) -> FactIndex:
        """Fork the facts in O(#relations): both sides share relations until written.

        The interner is shared too: it only ever grows, so ids stay valid on both
        sides. Neither side ever sees the other's later writes.
        """
        twin = FactIndex(self.interner)
        twin._relations = dict(self._relations)
        twin._size = self._size
        twin.version = self.version
        self._token = object()  # relations are shared now: both sides clone on write
        return twin

    def _known_row(self, args: tuple[Const, ...]) -> Row | None:
        return self.interner.lookup_all(args)
