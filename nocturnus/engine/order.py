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

from collections.abc import Collection, Iterable, Mapping
from operator import itemgetter

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


def sort_rows(rows: Collection[Row], arity: int, interner: Interner) -> list[Row]:
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


def sort_pairs(groups: Mapping[int, Collection[int]], interner: Interner) -> list[Row]:
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
) -> list[Row]:
    """Rows of ``groups`` in rank order; ``rank`` has no ties."""
    key = rank.__getitem__
    found: list[Row] = []
    extend = found.extend
    for a in sorted(groups, key=key):
        partners = sorted(groups[a], key=key)
        extend(zip([a] * len(partners), partners))
    return found
