"""Answer order by ranks equals the order of sorting constant tuples (issue 17)."""

from __future__ import annotations

import random

import pytest

from nocturnus.engine.index import sort_answers
from nocturnus.engine.order import sort_pairs, sort_rows
from nocturnus.engine.terms import Const, Interner

CONSTANTS: list[Const] = [
    "a", "b", "500", "2.5", 500, 500.0, 0, 0.0, -0.0, 2.5, -1, "-1", 1e300, "é", "",
]


def _reference(rows: list[tuple[int, ...]], interner: Interner) -> list[tuple[int, ...]]:
    # sort_answers sorts (args, confidence) pairs by args: carry the row instead
    found = [(interner.decode(row), row) for row in rows]
    sort_answers(found, interner.has_floats)  # type: ignore[arg-type]
    return [row for _, row in found]


@pytest.mark.parametrize("seed", range(60))
@pytest.mark.parametrize("arity", [1, 2, 3])
def test_sort_rows_is_the_constant_order(seed: int, arity: int) -> None:
    rng = random.Random(seed)
    interner = Interner()
    pool = rng.sample(CONSTANTS, rng.randrange(2, len(CONSTANTS)))
    rows = list(
        dict.fromkeys(
            interner.intern_all(tuple(rng.choice(pool) for _ in range(arity)))
            for _ in range(rng.randrange(0, 40))
        )
    )
    assert list(sort_rows(rows, arity, interner)) == _reference(rows, interner)


@pytest.mark.parametrize("seed", range(60))
def test_sort_pairs_is_the_order_of_the_grouped_rows(seed: int) -> None:
    rng = random.Random(seed)
    interner = Interner()
    ids = [interner.intern(c) for c in CONSTANTS]
    groups: dict[int, set[int]] = {}
    for _ in range(rng.randrange(0, 60)):
        groups.setdefault(rng.choice(ids), set()).add(rng.choice(ids))
    listed = [(a, b) for a, partners in groups.items() for b in partners]
    assert list(sort_pairs(groups, interner)) == _reference(listed, interner)
