"""Derived relations during and after one evaluation.

A :class:`Table` offers the same two things a stored
:class:`~nocturnus.engine.index.Relation` offers to compiled joins (``rows`` and
``index(positions)``) but is append-only: evaluation never removes a derived row, so
index buckets are lists, which are cheaper to extend and iterate than sets.
"""

from __future__ import annotations

from operator import itemgetter
from typing import Any

Row = tuple[int, ...]
"""A fact or answer as the ids of its constants (``Interner``), one per position."""


class Table:
    """The rows of one derived relation, mapped to their best confidence so far."""

    __slots__ = ("indexes", "rows")

    def __init__(self, rows: dict[Row, float | None] | None = None) -> None:
        self.rows: dict[Row, float | None] = rows if rows is not None else {}
        self.indexes: dict[tuple[int, ...], dict[Any, list[Row]]] = {}

    def __len__(self) -> int:
        return len(self.rows)

    def index(self, positions: tuple[int, ...]) -> dict[Any, list[Row]]:
        """Return the index on ``positions``, building it on first use."""
        found = self.indexes.get(positions)
        if found is not None:
            return found
        index: dict[Any, list[Row]] = {}
        _fill(index, positions, self.rows)
        self.indexes[positions] = index
        return index

    def merge(self, delta: dict[Row, float | None]) -> None:
        """Fold one round's new or improved rows in, keeping indexes current.

        Rows already present only change confidence, so indexes see new rows only.
        """
        rows = self.rows
        if self.indexes:
            fresh = [row for row in delta if row not in rows]
            for positions, index in self.indexes.items():
                _fill(index, positions, fresh)
        rows.update(delta)


def _fill(index: dict[Any, list[Row]], positions: tuple[int, ...], rows: Any) -> None:
    get = index.get
    if len(positions) == 1:
        (position,) = positions
        for row in rows:
            key = row[position]
            bucket = get(key)
            if bucket is None:
                index[key] = [row]
            else:
                bucket.append(row)
        return
    key_of = itemgetter(*positions)
    for row in rows:
        key = key_of(row)
        bucket = get(key)
        if bucket is None:
            index[key] = [row]
        else:
            bucket.append(row)
