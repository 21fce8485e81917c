"""Answer order over interned rows: ranks of constants instead of their values.

Answers are sorted by :func:`~nocturnus.engine.terms.sort_key` of their arguments,
position by position. Comparing those keys row by row is what made large answers
slow (a tuple of keys per row, Python comparisons per pair); here the *distinct*
ids get a dense rank once and rows are ordered by their ranks. Python's sort is
stable, so rows whose keys tie keep the order they came in: exactly the order
:func:`~nocturnus.engine.index.sort_answers` gives. Keys tie only for distinct
constants that compare equal (``0.0`` and ``-0.0``); then the rows are sorted
whole, in their original order, so no shortcut can reorder tied rows.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from operator import itemgetter
from typing import overload

from nocturnus.engine.table import Row
from nocturnus.engine.terms import Interner, sort_key


def ranks(ids: Iterable[int], interner: Interner) -> tuple[dict[int, int], bool]:
    """Dense ranks of the distinct ``ids`` in constant order, and whether any tie.

    Ids whose constants' sort keys are equal share one rank.
    """
    values = interner.values
    keyed = sorted([(sort_key(values[i]), i) for i in set(ids)])
    found: dict[int, int] = {}
    rank = -1
    previous: object = None
    tied = False
    for key, i in keyed:
        if rank >= 0 and key == previous:
            tied = True
        else:
            rank += 1
            previous = key
        found[i] = rank
    return found, tied


class PairRuns(Sequence[Row]):
    """Binary rows in answer order, kept as runs that share their first id.

    ``runs`` lists ``(first, partners)``: the rows ``(first, p)`` for each ``p``
    in order. A large answer renders run by run (one join per run, no tuple per
    row); the rows as tuples are only built if something indexes them.
    """

    __slots__ = ("_rows", "runs", "size")

    def __init__(self, runs: list[tuple[int, list[int]]]) -> None:
        self.runs = runs
        self.size = sum(len(partners) for _, partners in runs)
        self._rows: list[Row] | None = None

    def __len__(self) -> int:
        return self.size

    def __iter__(self) -> Iterator[Row]:
        if self._rows is not None:
            yield from self._rows
            return
        for first, partners in self.runs:
            for partner in partners:
                yield (first, partner)

    @overload
    def __getitem__(self, index: int) -> Row: ...

    @overload
    def __getitem__(self, index: slice) -> list[Row]: ...

    def __getitem__(self, index: int | slice) -> Row | list[Row]:
        rows = self._rows
        if rows is None:
            rows = self._rows = list(self)
        return rows[index]


def sort_rows(rows: Collection[Row], arity: int, interner: Interner) -> Sequence[Row]:
    """``rows`` in answer order: by each position's constant order, stable."""
    if len(rows) < 2 or arity == 0:
        return list(rows)
    columns = [set(map(itemgetter(p), rows)) for p in range(arity)]
    rank, tied = ranks(set().union(*columns), interner)
    if arity == 1:
        key = rank.__getitem__
        return sorted(rows, key=lambda row: key(row[0]))
    if arity == 2 and not tied:
        groups: dict[int, list[int]] = {}
        for a, b in rows:
            partners = groups.get(a)
            if partners is None:
                groups[a] = [b]
            else:
                partners.append(b)
        return _sorted_groups(groups, rank)
    return sorted(rows, key=lambda row: tuple([rank[i] for i in row]))


def sort_pairs(
    groups: Mapping[int, Collection[int]], interner: Interner
) -> Sequence[Row]:
    """Binary rows given grouped by their first id, in answer order.

    The rows' original order is group by group, each group's partners in their
    iteration order (how a grouped table lists its rows).
    """
    if not groups:
        return []
    rank, tied = ranks(set(groups).union(*groups.values()), interner)
    if tied:
        rows = [(a, b) for a, partners in groups.items() for b in partners]
        return sorted(rows, key=lambda row: (rank[row[0]], rank[row[1]]))
    return _sorted_groups(groups, rank)


def _sorted_groups(
    groups: Mapping[int, Collection[int]], rank: dict[int, int]
) -> PairRuns:
    """Rows of ``groups`` in rank order; ``rank`` has no ties."""
    key = rank.__getitem__
    return PairRuns(
        [(a, sorted(groups[a], key=key)) for a in sorted(groups, key=key) if groups[a]]
    )
