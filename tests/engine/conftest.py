"""Small factories for engine tests."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import pytest

from nocturnus.engine.evaluate import Program, Reasoner
from nocturnus.engine.index import FactIndex
from nocturnus.engine.terms import Const
from tests.engine.dsl import lit, rule


@pytest.fixture
def make_facts() -> Callable[..., FactIndex]:
    """Build a FactIndex from ``"parent(a, b)"``-style strings or (text, confidence)."""

    def make(*facts: str | tuple[str, float | None]) -> FactIndex:
        index = FactIndex()
        for fact in facts:
            text, confidence = fact if isinstance(fact, tuple) else (fact, None)
            literal = lit(text)
            index.add(literal.predicate, literal.negated, literal.args, confidence)  # type: ignore[arg-type]
        return index

    return make


@pytest.fixture
def ask() -> Callable[..., list[tuple[Const, ...]]]:
    """Answer a goal and return just the argument tuples."""

    def run(
        facts: FactIndex, rules: Iterable[str], goal: str, **options: object
    ) -> list:
        program = Program([rule(r) for r in rules])
        return [a.args for a in Reasoner(facts).solve(program, lit(goal), **options)]

    return run
