"""Answers rendered in bulk equal the old per-answer rendering, byte for byte (issue 17).

Random knowledge (strings, numeric strings, ints, floats including ``0.0`` and
``-0.0``, facts with confidence, validity, TTL and metadata, several scopes, a fork,
rules with and without confidence) is asked and matched both ways: the reference in
``reference_render.py`` (the code before bulk rendering) and the bulk path
(``queries.answer_set`` / ``match_set`` rendered by ``render.BulkAnswers``).
"""

from __future__ import annotations

import random

import orjson
import pytest

from nocturnus.api import render
from nocturnus.api.knowledge import shaped
from nocturnus.engine.rules import Literal
from nocturnus.engine.terms import Const, Var
from nocturnus.service import answers, queries
from nocturnus.service.events import FactTold, RuleTaught, ScopeForked
from nocturnus.service.projection import TenantState, apply
from nocturnus.service.rulebook import Rulebook
from tests.api import reference_render as old

NOW = 1_000_000
# Numbers and numeric strings, but no int and float that are equal (500 and 500.0):
# stored facts are keyed by value, which does not keep those apart; the engine's
# order of such ties is tested in tests/engine/test_order.py.
CONSTANTS: list[Const] = [
    "a", "b", "c", "500", "500.0", "2.5", "-1", "0", 500, 2, -1, 0, 2.5, 0.1, 1e300,
    -7.25, "é", 'q"uote', "\\back", "😀", "",
]
SCOPES = ["main", "s1", "s2"]


def _literal(predicate: str, args: list[object], **flags: bool) -> dict[str, object]:
    return {"predicate": predicate, "args": args, "negated": False, "naf": False, **flags}


def random_state(rng: random.Random) -> tuple[TenantState, Rulebook, Rulebook]:
    state = TenantState("t")
    seq = 0

    def emit(event: object) -> None:
        nonlocal seq
        seq += 1
        apply(state, seq, event)  # type: ignore[arg-type]

    for _ in range(rng.randrange(5, 60)):
        arity = rng.choice([1, 2, 2, 3])
        predicate = rng.choice(["e", "p"]) if arity == 2 else f"u{arity}"
        args = tuple(rng.choice(CONSTANTS) for _ in range(arity))
        created = rng.randrange(1, NOW)
        kind = rng.random()
        fields: dict[str, object] = {}
        if kind < 0.2:
            fields["confidence"] = rng.choice([0.5, 0.9, 1.0, 0.25, 0.0, 1])
        elif kind < 0.3:
            fields["metadata"] = {"source": rng.choice(["x", "y"]), "n": rng.randrange(9)}
        elif kind < 0.4:
            fields["ttl"] = rng.choice([10, 10 * NOW])
        elif kind < 0.5:
            fields["valid_until"] = rng.choice([NOW // 2, NOW * 2])
        valid_from = created if rng.random() < 0.8 else created + rng.choice([5, NOW])
        emit(
            FactTold(
                predicate,
                args,
                rng.random() < 0.1,
                rng.choice(SCOPES),
                created_at=created,
                valid_from=valid_from,
                **fields,  # type: ignore[arg-type]
            )
        )
    rules = [
        (_literal("r", ["?x", "?y"]), (_literal("e", ["?x", "?y"]),), None),
        (
            _literal("r", ["?x", "?y"]),
            (_literal("e", ["?x", "?z"]), _literal("r", ["?z", "?y"])),
            rng.choice([None, 0.8]),
        ),
        (_literal("p", ["?x", "?y"]), (_literal("e", ["?y", "?x"]),), rng.choice([None, 0.5])),
        (_literal("s", ["?x"]), (_literal("u1", ["?x"]), _literal("r", ["?x", "?_"])), None),
    ]
    for i, (head, body, confidence) in enumerate(rules):
        if rng.random() < 0.85:
            emit(RuleTaught(f"r{i}", head, body, created_at=1, confidence=confidence))
    if rng.random() < 0.5:
        emit(ScopeForked("main", "fork", created_at=NOW - 1))
    state.refresh(NOW)
    return state, Rulebook(), Rulebook()


GOALS = [
    ("r", ["?x", "?y"]),
    ("r", ["a", "?y"]),
    ("r", ["?x", "?x"]),
    ("p", ["?x", "?y"]),
    ("p", [500, "?who"]),
    ("e", ["?x", "?_"]),
    ("e", ["?_", "?_"]),
    ("s", ["?x"]),
    ("u1", ["?x"]),
    ("u3", ["?a", "?b", "?c"]),
    ("u3", ["?a", "?_skip", "?a"]),
    ("e", [2.5, "?y"]),
]


def atoms(found: answers.AnswerSet) -> bytes:
    out: list[bytes] = []
    render.BulkAnswers(found).atoms(out)
    return b"".join(out)


def goal_of(predicate: str, args: list[Const], negated: bool) -> Literal:
    from nocturnus.engine.terms import parse_term

    return Literal(predicate, tuple(parse_term(a) for a in args), negated)


@pytest.mark.parametrize("seed", range(40))
def test_bulk_rendering_equals_the_reference(seed: int) -> None:
    rng = random.Random(seed)
    state, database_rules, _ = random_state(rng)
    for predicate, args in GOALS:
        for negated in (False, True):
            for scope in (None, "main", "fork", "s1"):
                goal = goal_of(predicate, args, negated)
                minimum = rng.choice([None, None, 0.5])
                reference = old.old_ask(
                    state, database_rules, goal, scope, min_confidence=minimum
                )
                found = queries.answer_set(
                    state, database_rules, goal, scope, min_confidence=minimum
                )
                page = answers.Page(found, None)
                assert shaped(page, goal, "full", bindings=True).joined() == old.ask_body(
                    goal, reference
                ), (goal, scope)
                assert atoms(found) == old.infer_body(reference)
                limit = rng.randrange(1, 5)
                short = answers.page(found, "q", limit, None).answers
                assert atoms(short) == old.infer_body(
                    old.old_ask(
                        state, database_rules, goal, scope, min_confidence=minimum,
                        limit=limit,
                    )
                )
                pattern = tuple(a for a in goal.args)
                matched = queries.match_set(state, predicate, negated, pattern, scope)
                assert shaped(
                    answers.Page(matched, None), goal, "full", bindings=False
                ).joined() == old.query_body(old.old_match(state, predicate, negated, pattern, scope))


@pytest.mark.parametrize("seed", range(10))
def test_compact_shapes_hold_the_full_answers(seed: int) -> None:
    """``args`` and ``bindings`` carry what the full shape carries, nothing else."""
    rng = random.Random(seed)
    state, database_rules, _ = random_state(rng)
    for predicate, args in GOALS:
        goal = goal_of(predicate, args, False)
        found = queries.answer_set(state, database_rules, goal, None)
        page = answers.Page(found, None)
        full = orjson.loads(shaped(page, goal, "full", bindings=True).joined())
        compact = orjson.loads(shaped(page, goal, "args", bindings=True).joined())
        bound = orjson.loads(shaped(page, goal, "bindings", bindings=True).joined())
        assert compact["results"] == [atom["args"] for atom in full["results"]]
        assert compact["scopes"] == [atom["scope"] for atom in full["results"]]
        assert bound["bindings"] == full["bindings"]
        assert compact["count"] == bound["count"] == full["count"]


def test_answer_objects_match_the_bulk_rows() -> None:
    """``AnswerSet.answers`` (proofs, aggregates) holds what the bulk text holds."""
    state, database_rules, _ = random_state(random.Random(7))
    goal = Literal("r", (Var("x"), Var("y")))
    found = queries.answer_set(state, database_rules, goal, None)
    objects = [render.answer_atom(a) for a in found.answers()]
    assert orjson.loads(atoms(found)) == objects
