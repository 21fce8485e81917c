"""Differential testing: what users get from ``/ask`` equals the naive oracle's model.

Thousands of random stratified programs (``tests/engine/programs.py``: shapes every
fixpoint strategy accepts, near-misses of those shapes, random rules) are taught and
told through the service's projection (``TenantState`` and ``apply``, database-wide
and scoped rules, several scopes, confidences, explicit negation) and asked through
``queries.ask`` with free, half-bound, fully bound and repeated-variable goals, a
minimum confidence and a limit, before and after random retractions. Every answer
set must equal the oracle's (issue 13: a copy rule was answered as a transitive
closure, and the old generator never produced one).

One run checks ``PROGRAMS`` programs from a fixed seed and as many from a fresh one;
a failure names the seed and the program, and ``NOCTURNUS_DIFF_SEED`` replays it.
``NOCTURNUS_DIFF_PROGRAMS`` changes the count (before a landing, 10x). Each run also
asserts that every strategy was chosen by at least ``MIN_PROGRAMS_PER_STRATEGY``
programs: a strategy the generator never reaches is untested.
"""

from __future__ import annotations

import math
import os
import random
from collections import Counter
from dataclasses import dataclass, field

import pytest

from nocturnus.engine.rules import Literal
from nocturnus.engine.strategies import STRATEGIES
from nocturnus.engine.terms import Const, Var, sort_key
from nocturnus.service import queries
from nocturnus.service.database import DatabaseState, apply_database_event
from nocturnus.service.events import FactRetracted, FactTold, RuleTaught
from nocturnus.service.projection import TenantState, apply
from tests.engine import programs
from tests.engine.oracle import Answers, scoped_answers, scoped_models, tag

FIXED_SEED = 20261206
PROGRAMS = int(os.environ.get("NOCTURNUS_DIFF_PROGRAMS", "2500"))
MIN_PROGRAMS_PER_STRATEGY = max(1, PROGRAMS // 100)


@dataclass
class Tally:
    """How many programs had a component evaluated by each strategy."""

    programs: Counter[str] = field(default_factory=Counter)


def test_engine_matches_oracle_from_fixed_seed() -> None:
    run(FIXED_SEED)


def test_engine_matches_oracle_from_fresh_seed() -> None:
    run(
        int(
            os.environ.get("NOCTURNUS_DIFF_SEED")
            or random.SystemRandom().getrandbits(32)
        )
    )


def run(seed: int) -> None:
    tally = Tally()
    for number in range(PROGRAMS):
        rng = random.Random(f"{seed}/{number}")
        program = programs.generate(rng)
        try:
            chosen = check(program, rng)
        except AssertionError as e:
            pytest.fail(
                f"seed {seed}, program {number} (replay: NOCTURNUS_DIFF_SEED={seed}):\n"
                f"{program.describe()}\n{e}"
            )
        tally.programs.update(chosen)
    for name, _ in STRATEGIES:
        assert tally.programs[name] >= MIN_PROGRAMS_PER_STRATEGY, (
            f"seed {seed}: strategy {name!r} chosen by {tally.programs[name]} of "
            f"{PROGRAMS} programs, fewer than {MIN_PROGRAMS_PER_STRATEGY}: "
            f"{dict(tally.programs)}"
        )


def check(program: programs.Program, rng: random.Random) -> set[str]:
    """Ask every goal before and after retractions; return the strategies used."""
    state, database = build(program)
    chosen: set[str] = set()
    for view in state.views.values():
        view.reasoner.observe = chosen.add
    facts = list(program.facts)
    goals = goals_of(program, rng)
    compare(state, database, program, facts, goals)
    retracted = [f for f in facts if rng.random() < 0.35]
    for seq, fact in enumerate(retracted, start=10_000):
        apply(
            state,
            seq,
            FactRetracted(fact.predicate, fact.args, fact.negated, fact.scope),
        )
    state.refresh(1)
    for view in state.views.values():
        view.reasoner.observe = chosen.add
    facts = [f for f in facts if f not in retracted]
    compare(state, database, program, facts, goals)
    return chosen


def build(program: programs.Program) -> tuple[TenantState, DatabaseState]:
    """The tenant and database projections after teaching and telling ``program``."""
    state = TenantState("tenant")
    database = DatabaseState()
    seq = 0
    for taught in program.rules:
        seq += 1
        event = RuleTaught(
            id=taught.rule.id,
            head=_literal_dict(taught.rule.head),
            body=tuple(_literal_dict(b) for b in taught.rule.body),
            created_at=0,
            scope=taught.scope,
            confidence=taught.rule.confidence,
        )
        if taught.database:
            apply_database_event(database, seq, event)
        else:
            apply(state, seq, event)
    for fact in program.facts:
        seq += 1
        apply(
            state,
            seq,
            FactTold(
                fact.predicate,
                fact.args,
                fact.negated,
                fact.scope,
                created_at=0,
                valid_from=0,
                confidence=fact.confidence,
            ),
        )
    state.refresh(1)
    return state, database


def _literal_dict(literal: Literal) -> dict[str, object]:
    return {
        "predicate": literal.predicate,
        "args": [a.text() if isinstance(a, Var) else a for a in literal.args],
        "negated": literal.negated,
        "naf": literal.naf,
    }


@dataclass(frozen=True)
class Goal:
    literal: Literal
    scope: str | None = None
    min_confidence: float | None = None
    limit: int | None = None


def goals_of(program: programs.Program, rng: random.Random) -> list[Goal]:
    """Free, half-bound, bound and repeated-variable goals on the program's relations."""
    heads = {(t.rule.head.predicate, t.rule.head.negated) for t in program.rules}
    relations = sorted(heads) or [("e", False)]
    relations.append((rng.choice(sorted(programs.BASE)), False))
    scopes = sorted({f.scope for f in program.facts})
    constants = [*program.domain, programs.OUTSIDER]
    a, b, c = Var("a"), Var("b"), Var("c")
    goals: list[Goal] = []
    for predicate, negated in relations:
        arity = programs.ARITY[predicate]
        free = (a, b, c)[:arity]
        goals.append(Goal(Literal(predicate, free, negated)))
        for _ in range(2):
            at = rng.randrange(arity)
            bound = tuple(
                rng.choice(constants) if p == at else v for p, v in enumerate(free)
            )
            goals.append(Goal(Literal(predicate, bound, negated)))
        goals.append(
            Goal(
                Literal(predicate, tuple(rng.choice(constants) for _ in free), negated)
            )
        )
        if arity >= 2:
            repeated = (a, a, *free[2:]) if rng.random() < 0.5 else (a, *free[1:-1], a)
            goals.append(Goal(Literal(predicate, repeated, negated)))
        if arity == 3:
            goals.append(
                Goal(Literal(predicate, (a, rng.choice(constants), a), negated))
            )
        goals.append(
            Goal(
                Literal(predicate, free, negated),
                scope=rng.choice(scopes),
                min_confidence=rng.choice((None, 0.5, 0.85)),
                limit=rng.choice((None, 1, 3)),
            )
        )
    return goals


def compare(
    state: TenantState,
    database: DatabaseState,
    program: programs.Program,
    facts: list[programs.Told],
    goals: list[Goal],
) -> None:
    models = scoped_models(
        [(t.rule, t.scope) for t in program.rules],
        [(f.scope, f.predicate, f.negated, f.args, f.confidence) for f in facts],
    )
    for goal in goals:
        expected = scoped_answers(models, goal.literal, goal.scope, goal.min_confidence)
        answers = queries.ask(
            state,
            database.rules,
            goal.literal,
            goal.scope,
            min_confidence=goal.min_confidence,
            limit=goal.limit,
        )
        got: Answers = {
            (a.key.scope, tuple(tag(v) for v in a.key.args)): a.confidence
            for a in answers
        }
        where = f"goal {goal.literal.text()} {goal}"
        if goal.limit is not None:
            order = sorted(expected, key=_answer_order)[: goal.limit]
            assert [
                (a.key.scope, tuple(tag(v) for v in a.key.args)) for a in answers
            ] == order, where
            expected = {key: expected[key] for key in order}
        assert set(got) == set(expected), (
            f"{where}\n  missing {sorted(set(expected) - set(got), key=_answer_order)}"
            f"\n  wrong {sorted(set(got) - set(expected), key=_answer_order)}"
        )
        for key, confidence in got.items():
            assert _same(confidence, expected[key]), (
                where,
                key,
                confidence,
                expected[key],
            )


def _answer_order(key: tuple[str, tuple[tuple[str, Const], ...]]) -> tuple[object, ...]:
    scope, row = key
    return (tuple(sort_key(v) for _, v in row), scope)


def _same(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(a, b, rel_tol=1e-9)
