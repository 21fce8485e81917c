"""Binary derived relations kept grouped by one column: value -> set of partners.

The set-at-a-time strategies (:mod:`nocturnus.engine.strategies`) compute whole
groups with C-level set operations instead of a join per row; this module holds the
representation they share, which also answers the ``rows``/``index`` protocol of
other relations, so later strata and answers read it unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from itertools import repeat
from typing import Any

from nocturnus.engine.table import Row

NOTHING: frozenset[int] = frozenset()
"""The partners of a value that has none (a default for lookups)."""


class GroupedTable:
    """A binary derived relation kept as ``by[position][value] -> set of partners``.

    It also answers the ``rows``/``index`` protocol of other relations, building the
    tuple form lazily once, so later strata and answers can read it unchanged.
    """

    __slots__ = ("_indexes", "_rows", "by")

    def __init__(self, positions: set[int]) -> None:
        self.by: dict[int, dict[int, set[int]]] = {p: {} for p in positions}
        self._rows: dict[Row, None] | None = None
        self._indexes: dict[tuple[int, ...], Any] = {}

    def __len__(self) -> int:
        position = next(iter(self.by))
        return sum(len(partners) for partners in self.by[position].values())

    def add_rows(self, rows: Iterator[Row] | Mapping[Row, Any]) -> None:
        """Add tuple rows (used for stored rows and exit-rule results)."""
        for position, groups in self.by.items():
            other = 1 - position
            for row in rows:
                key = row[position]
                partners = groups.get(key)
                if partners is None:
                    groups[key] = {row[other]}
                else:
                    partners.add(row[other])

    def ensure(self, position: int) -> dict[int, set[int]]:
        """Return the grouping by ``position``, deriving it from another if needed."""
        found = self.by.get(position)
        if found is not None:
            return found
        source = next(iter(self.by.values()))
        groups: dict[int, set[int]] = {}
        for key, partners in source.items():
            for partner in partners:
                existing = groups.get(partner)
                if existing is None:
                    groups[partner] = {key}
                else:
                    existing.add(key)
        self.by[position] = groups
        return groups

    def merge(self, position: int, new: dict[int, set[int]]) -> int:
        """Fold rows grouped by ``position`` into every grouping kept.

        Returns how many of them were not held yet.
        """
        added = -1
        for kept, groups in self.by.items():
            count = 0
            if kept == position:
                for key, partners in new.items():
                    existing = groups.get(key)
                    if existing is None:
                        groups[key] = set(partners)
                        count += len(partners)
                    else:
                        before = len(existing)
                        existing |= partners
                        count += len(existing) - before
            else:
                count = _regroup_into(groups, new)
            if added < 0:
                added = count
        return added

    @property
    def rows(self) -> dict[Row, None]:
        """The rows as tuples (built on first use, after evaluation is done)."""
        if self._rows is None:
            position, groups = next(iter(self.by.items()))
            rows: dict[Row, None]
            if position == 0:
                rows = {(k, p): None for k, ps in groups.items() for p in ps}
            else:
                rows = {(p, k): None for k, ps in groups.items() for p in ps}
            self._rows = rows
            return rows
        return self._rows

    def index(self, positions: tuple[int, ...]) -> Any:
        """Return a ``key -> rows`` index on ``positions`` (a view on a grouping)."""
        found = self._indexes.get(positions)
        if found is None:
            if len(positions) == 1:
                found = _Bucket(self.ensure(positions[0]), positions[0])
            else:
                found = {row: [row] for row in self.rows}
            self._indexes[positions] = found
        return found


class _Bucket:
    """An index view: rows whose ``position`` holds a key, made from a grouping."""

    __slots__ = ("groups", "position")

    def __init__(self, groups: dict[int, set[int]], position: int) -> None:
        self.groups = groups
        self.position = position

    def __contains__(self, key: object) -> bool:
        return key in self.groups

    def get(self, key: int, default: Any = None) -> Any:
        partners = self.groups.get(key)
        if partners is None:
            return default
        if self.position == 0:
            return [(key, p) for p in partners]
        return [(p, key) for p in partners]


def _regroup_into(groups: dict[int, set[int]], new: dict[int, set[int]]) -> int:
    """Add rows grouped one way to a grouping the other way round; count new ones."""
    count = 0
    for key, partners in new.items():
        for partner in partners:
            existing = groups.get(partner)
            if existing is None:
                groups[partner] = {key}
                count += 1
            elif key not in existing:
                existing.add(key)
                count += 1
    return count


def regroup(new: dict[int, set[int]]) -> dict[int, set[int]]:
    """Return rows grouped by the other position."""
    groups: dict[int, set[int]] = {}
    _regroup_into(groups, new)
    return groups


def column(rows: Mapping[Row, Any], position: int) -> dict[int, set[int]]:
    """Group a binary relation's tuple rows by ``position``."""
    groups: dict[int, set[int]] = {}
    other = 1 - position
    for row in rows:
        key = row[position]
        partners = groups.get(key)
        if partners is None:
            groups[key] = {row[other]}
        else:
            partners.add(row[other])
    return groups


def image(values: set[int], partners_of: dict[int, set[int]]) -> set[int]:
    """Return every partner of every value (the relation's image of the set)."""
    return set[int]().union(*map(partners_of.get, values, repeat(NOTHING)))
