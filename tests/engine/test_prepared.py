"""Prepared plans: bounded, and never a different answer (issue 17).

Random programs of the differential tests are asked with prepared plans kept across
questions and across retractions, and without; both must agree exactly (the
differential tests hold the unprepared answers to the naive oracle).
"""

from __future__ import annotations

import random

import pytest

from nocturnus.engine import FactIndex, Literal, Program, Reasoner, Rule, Var
from nocturnus.engine.prepared import PlanCache, placeholders
from nocturnus.service import queries
from nocturnus.service.events import FactRetracted
from nocturnus.service.projection import apply
from tests.engine import programs
from tests.engine.test_differential import build, goals_of


def test_the_cache_is_bounded_per_owner_and_in_total() -> None:
    cache = PlanCache(max_plans=5, max_per_owner=3)
    for n in range(4):
        cache.put("a", n, f"a{n}")
    assert cache.owned("a") == 3 and cache.get("a", 0) is None  # a's oldest went
    assert cache.get("a", 1) == "a1"  # now the most recently used of a's
    for n in range(3):
        cache.put("b", n, f"b{n}")
    assert len(cache) == 5 and cache.owned("b") == 3 and cache.owned("a") == 2
    assert cache.get("a", 2) is None and cache.get("a", 1) == "a1"  # LRU in total
    cache.put("c", 0, "c0")
    assert len(cache) == 5 and cache.owned("c") == 1
    cache.drop("b")
    assert cache.owned("b") == 0 and len(cache) == 2
    for owner in range(100):
        for n in range(10):
            cache.put(owner, n, n)
    assert len(cache) == 5 and all(cache.owned(o) <= 3 for o in range(100))
    with pytest.raises(ValueError):
        PlanCache(max_plans=0)


def test_placeholders_keep_what_the_rewrite_compares() -> None:
    constants = frozenset({7, 9})
    assert placeholders((3, 4), constants) == (-1, -2)
    assert placeholders((3, 3), constants) == (-1, -1)  # equal values stay equal
    assert placeholders((7, 3), constants) == (7, -2)  # a rule's constant stays


def test_one_rewrite_serves_every_constant_and_survives_writes() -> None:
    x, y, z = Var("x"), Var("y"), Var("z")
    program = Program(
        [
            Rule("a1", Literal("anc", (x, y)), (Literal("parent", (x, y)),)),
            Rule(
                "a2",
                Literal("anc", (x, y)),
                (Literal("parent", (x, z)), Literal("anc", (z, y))),
            ),
            Rule("s", Literal("anc", ("root", y)), (Literal("top", (y,)),)),
        ]
    )
    facts = FactIndex()
    for i in range(1, 50):
        facts.add("parent", False, (f"n{i // 2}", f"n{i}"))
    facts.add("top", False, ("n0",))
    cache = PlanCache()
    plans = cache.of("t")
    reasoner = Reasoner(facts)
    plain = Reasoner(facts)

    def ask(node: str) -> list[tuple[int, ...]]:
        goal = Literal("anc", (node, y))
        found = list(reasoner.matches(program, goal, plans=plans).rows)
        facts.cache.clear()
        assert found == list(plain.matches(program, goal).rows)
        return found

    assert len(ask("n1")) == 48  # n2 .. n49
    misses = cache.misses
    assert ask("n2") and ask("n3") and cache.misses == misses  # shared by constants
    facts.add("parent", False, ("n49", "n50"))  # a write: the fact cache empties
    assert ask("n1") and cache.misses == misses
    assert ask("root") == [(facts.interner.lookup("root"), facts.interner.lookup("n0"))]
    assert cache.misses > misses  # "root" is a rule's constant: a plan of its own


@pytest.mark.parametrize("seed", range(3))
def test_prepared_plans_answer_as_unprepared(seed: int) -> None:
    cache = PlanCache(max_plans=64, max_per_owner=16)
    for number in range(120):
        rng = random.Random(f"prepared/{seed}/{number}")
        program = programs.generate(rng)
        state, database = build(program)
        plans = cache.of(number % 7)  # owners share the cache and its bounds
        goals = goals_of(program, rng)
        retracted = [f for f in program.facts if rng.random() < 0.35]
        for phase in range(2):
            for goal in goals:
                for view in state.views.values():
                    view.index.cache.clear()  # as after a write: plans stay
                prepared = queries.answer_set(
                    state, database.rules, goal.literal, goal.scope,
                    min_confidence=goal.min_confidence, plans=plans,
                )
                for view in state.views.values():
                    view.index.cache.clear()
                unprepared = queries.answer_set(
                    state, database.rules, goal.literal, goal.scope,
                    min_confidence=goal.min_confidence,
                )
                assert prepared.answers() == unprepared.answers(), (
                    program.describe(), goal, phase
                )
            for seq, fact in enumerate(retracted, start=10_000):
                apply(
                    state, seq,
                    FactRetracted(fact.predicate, fact.args, fact.negated, fact.scope),
                )
            state.refresh(1)
    assert cache.hits > 0 and len(cache) <= 64
