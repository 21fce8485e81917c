"""Prepared plans: bounded, reused, and never a different answer (issue 17).

A plan (the rewrite of a goal relation and adornment, its schedule and its compiled
joins) is made once and serves every constant and every write: the compilations
counted by the cache show it. Random programs of the differential tests are asked
with prepared plans kept across questions and across retractions, and without; both
must agree exactly, and with random constants they must agree with the naive oracle.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nocturnus.engine import FactIndex, Literal, Program, Reasoner, Rule, Var
from nocturnus.engine.fixpoint import Evaluation, RowLimitExceeded
from nocturnus.engine.ir import lower_rule
from nocturnus.engine.prepared import PlanCache, placeholders
from nocturnus.engine.schedule import schedule
from nocturnus.service import queries
from nocturnus.service.events import FactRetracted
from nocturnus.service.projection import apply
from tests.engine import programs
from tests.engine.oracle import scoped_answers, scoped_models, tag
from tests.engine.test_differential import build, goals_of

X, Y, Z = Var("x"), Var("y"), Var("z")
ANCESTORS = [
    Rule("a1", Literal("anc", (X, Y)), (Literal("parent", (X, Y)),)),
    Rule(
        "a2",
        Literal("anc", (X, Y)),
        (Literal("parent", (X, Z)), Literal("anc", (Z, Y))),
    ),
]


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


def test_one_plan_serves_every_constant_and_survives_writes() -> None:
    y = Y
    program = Program(
        [*ANCESTORS, Rule("s", Literal("anc", ("root", y)), (Literal("top", (y,)),))]
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
    misses, compilations = cache.misses, cache.compilations
    assert compilations > 0  # the first question compiled its joins
    assert ask("n2") and ask("n3") and cache.misses == misses  # shared by constants
    assert cache.compilations == compilations  # ... with their compiled joins
    facts.add("parent", False, ("n49", "n50"))  # a write: the fact cache empties
    assert ask("n1") and cache.misses == misses
    assert cache.compilations == compilations
    assert ask("root") == [(facts.interner.lookup("root"), facts.interner.lookup("n0"))]
    assert cache.misses > misses  # "root" is a rule's constant: a plan of its own


def test_another_rule_set_is_another_plan() -> None:
    facts = FactIndex()
    for i in range(1, 20):
        facts.add("parent", False, (f"n{i // 2}", f"n{i}"))
    cache = PlanCache()
    plans = cache.of("t")
    goal = Literal("anc", ("n1", Y))
    Reasoner(facts).matches(Program(ANCESTORS), goal, plans=plans)
    compilations = cache.compilations
    # Same rules, rebuilt: the same plan, nothing compiled.
    Reasoner(facts).matches(Program(list(ANCESTORS)), goal, plans=plans)
    assert cache.compilations == compilations
    # A rule taught (its body order changed): its own plan, compiled anew.
    flipped = Rule(
        "a2",
        Literal("anc", (X, Y)),
        (Literal("anc", (Z, Y)), Literal("parent", (X, Z))),
    )
    taught = Program([ANCESTORS[0], flipped])
    facts.cache.clear()
    rows = Reasoner(facts).matches(taught, goal, plans=plans).rows
    assert cache.compilations > compilations
    facts.cache.clear()
    assert list(rows) == list(Reasoner(facts).matches(taught, goal).rows)
    # Forgotten again: the first rule set's plan answers, compiling nothing more.
    compilations = cache.compilations
    facts.cache.clear()
    Reasoner(facts).matches(Program(ANCESTORS), goal, plans=plans)
    assert cache.compilations == compilations


def test_budgets_apply_to_a_reused_schedule() -> None:
    facts = FactIndex()
    for i in range(1, 200):
        facts.add("parent", False, (f"n{i // 2}", f"n{i}"))
    interner = facts.interner
    rules = [lower_rule(rule, interner) for rule in ANCESTORS]
    parent = ("parent", False, 2)
    initial: dict = {("anc", False, 2): {}}
    stages = schedule(rules, initial, weighted=False, ranked=False)

    def evaluation(max_rows: int | None) -> Evaluation:
        return Evaluation(
            lambda rel: facts.relation(rel) if rel == parent else None,  # type: ignore[arg-type, return-value]
            interner,
            False,
            max_rows=max_rows,
        )

    first = evaluation(None)
    first.run_planned(stages, initial)
    assert first.derived > 100
    again = evaluation(100)
    with pytest.raises(RowLimitExceeded):
        again.run_planned(stages, initial)
    assert again.compiled == 0  # the schedule's code ran, under the new budget


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
                    state,
                    database.rules,
                    goal.literal,
                    goal.scope,
                    min_confidence=goal.min_confidence,
                    plans=plans,
                )
                for view in state.views.values():
                    view.index.cache.clear()
                unprepared = queries.answer_set(
                    state,
                    database.rules,
                    goal.literal,
                    goal.scope,
                    min_confidence=goal.min_confidence,
                )
                assert prepared.answers() == unprepared.answers(), (
                    program.describe(),
                    goal,
                    phase,
                )
            for seq, fact in enumerate(retracted, start=10_000):
                apply(
                    state,
                    seq,
                    FactRetracted(fact.predicate, fact.args, fact.negated, fact.scope),
                )
            state.refresh(1)
    assert cache.hits > 0 and len(cache) <= 64


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(seed=st.integers(0, 10**9), data=st.data())
def test_prepared_plans_answer_as_the_oracle_for_random_constants(
    seed: int, data: st.DataObject
) -> None:
    """Each adornment asked with several random constants, one plan kept for all."""
    rng = random.Random(f"plans/{seed}")
    program = programs.generate(rng)
    state, database = build(program)
    models = scoped_models(
        [(t.rule, t.scope) for t in program.rules],
        [
            (f.scope, f.predicate, f.negated, f.args, f.confidence)
            for f in program.facts
        ],
    )
    heads = sorted(
        {(t.rule.head.predicate, t.rule.head.negated) for t in program.rules}
    )
    constants = [*programs.CONSTANTS, programs.OUTSIDER]
    cache = PlanCache()
    plans = cache.of("t")
    for predicate, negated in heads or [("e", False)]:
        arity = programs.ARITY[predicate]
        bound = data.draw(st.sets(st.integers(0, arity - 1), min_size=1))
        for _ in range(3):
            args = tuple(
                data.draw(st.sampled_from(constants)) if p in bound else Var(f"v{p}")
                for p in range(arity)
            )
            goal = Literal(predicate, args, negated)
            for view in state.views.values():
                view.index.cache.clear()  # as after a write: the plans stay
            found = queries.answer_set(state, database.rules, goal, None, plans=plans)
            got = {
                (a.key.scope, tuple(tag(v) for v in a.key.args)): a.confidence
                for a in found.answers()
            }
            expected = scoped_answers(models, goal, None)
            assert set(got) == set(expected), (program.describe(), goal.text())
            for key, confidence in got.items():
                want = expected[key]
                assert (confidence is None) == (want is None), (program.describe(), key)
                assert (
                    confidence is None or want is None or abs(confidence - want) < 1e-9
                )
