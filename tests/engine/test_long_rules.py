"""The widest rules the API accepts evaluate, and agree with the naive oracle.

Issue 13: a rule of 20 or more body literals failed at ``/ask`` with ``SyntaxError:
too many statically nested blocks`` from the generated join code; the API accepts 32
body literals (``MAX_RULE_BODY``). The rules here are as long as that and as wide as
16-ary, in every form a join version takes: an exit rule, the delta versions of a
recursive rule, confidences carried through every loop, NAF and comparisons among
the literals, a bound goal (the magic-set rewrite adds a literal), and proofs.
"""

from __future__ import annotations

import pytest

from nocturnus.engine.evaluate import Program, Reasoner
from nocturnus.engine.index import FactIndex
from nocturnus.engine.joins import MAX_NESTED_LOOPS
from nocturnus.engine.rules import Literal, Rule
from nocturnus.engine.terms import Var
from tests.engine.dsl import lit, rule
from tests.engine.oracle import check_proof, naive_model, tag

WIDTH = 16
NODES = 40
PADDING = tuple(Var(f"w{j}") for j in range(WIDTH - 2))


def step(i: int) -> str:
    """``p(?v<i>, ?v<i+1>, ?w0, ...)``: one 16-ary link of the chain."""
    return f"p(?v{i}, ?v{i + 1}, {', '.join(v.text() for v in PADDING)})"


def chain_rule(literals: int, extra: tuple[str, ...] = ()) -> str:
    """A 16-ary head over a chain of ``literals`` 16-ary body literals."""
    head = ", ".join([*(f"?v{i}" for i in range(WIDTH - 1)), "?w0"])
    body = ", ".join([*(step(i) for i in range(literals)), *extra])
    return f"q({head}) :- {body}"


def chain_facts(confidence: float | None) -> list[tuple[str, bool, tuple, float | None]]:
    padding = tuple(f"c{j}" for j in range(WIDTH - 2))
    return [("p", False, (k, k + 1, *padding), confidence) for k in range(NODES)]


def index_of(facts: list[tuple[str, bool, tuple, float | None]]) -> FactIndex:
    index = FactIndex()
    for predicate, negated, args, confidence in facts:
        index.add(predicate, negated, args, confidence)
    return index


def expected(
    rules: list[Rule], facts: list[tuple[str, bool, tuple, float | None]], goal: Literal
) -> list[tuple[tuple, float | None]]:
    rows = naive_model(rules, facts).get((goal.predicate, goal.negated, len(goal.args)), {})
    found = []
    for row, confidence in rows.items():
        if all(isinstance(a, Var) or tag(a) == v for a, v in zip(goal.args, row, strict=True)):
            found.append((tuple(value for _, value in row), confidence))
    return sorted(found, key=lambda item: item[0])


def answers(
    reasoner: Reasoner, program: Program, goal: Literal
) -> list[tuple[tuple, float | None]]:
    return sorted(
        ((a.args, a.confidence) for a in reasoner.solve(program, goal)),
        key=lambda item: item[0],
    )


def same(found: list[tuple[tuple, float | None]], wanted: list[tuple[tuple, float | None]]):
    assert [args for args, _ in found] == [args for args, _ in wanted]
    for (_, a), (_, b) in zip(found, wanted, strict=True):
        assert (a is None) == (b is None) and (a is None or a == pytest.approx(b))


FREE = lit("q(" + ", ".join(f"?y{i}" for i in range(WIDTH)) + ")")
BOUND = lit("q(3, " + ", ".join(f"?y{i}" for i in range(WIDTH - 1)) + ")")


@pytest.mark.parametrize("literals", [MAX_NESTED_LOOPS - 1, 19, 20, 21, 32])
@pytest.mark.parametrize("confidence", [None, 0.9])
@pytest.mark.parametrize("goal", [FREE, BOUND], ids=["free", "bound"])
def test_a_chain_of_up_to_32_literals_of_16_ary_facts_matches_the_oracle(
    literals: int, confidence: float | None, goal: Literal
) -> None:
    facts = chain_facts(confidence)
    rules = [rule(chain_rule(literals))]
    found = answers(Reasoner(index_of(facts)), Program(rules), goal)
    wanted = expected(rules, facts, goal)
    assert wanted  # paths of 32 links exist among 40 nodes
    same(found, wanted)


def test_nafs_and_comparisons_among_32_literals_match_the_oracle() -> None:
    facts = [*chain_facts(None), ("stop", False, (7,), None), ("stop", False, (20,), None)]
    extra = ("NAF stop(?v1)", "neq(?v2, 9)", "lt(?v0, 30)")
    rules = [rule(chain_rule(29, extra))]
    assert len(rules[0].body) == 32
    found = answers(Reasoner(index_of(facts)), Program(rules), FREE)
    wanted = expected(rules, facts, FREE)
    assert wanted
    same(found, wanted)


def test_a_recursive_32_literal_rule_runs_its_delta_versions() -> None:
    """Every body literal reads the recursive relation: 32 delta versions, each
    nesting 32 loops, and a round after round 0."""
    width = ", ".join(f"?w{j}" for j in range(WIDTH - 1))
    body = ", ".join(f"r(?x{i}, ?x{i + 1}, {width})" for i in range(31))
    rules = [
        rule(f"r(?a, ?b, {width}) :- s(?a, ?b, {width})"),
        rule(f"r(?x0, ?x31, {width}) :- {body}, s(?x31, ?x31, {width})"),
    ]
    padding = tuple(f"c{j}" for j in range(WIDTH - 1))
    facts = [("s", False, (k, k + 1, *padding), None) for k in range(35)]
    facts.append(("s", False, (35, 35, *padding), None))
    goal = lit("r(" + ", ".join(f"?y{i}" for i in range(WIDTH + 1)) + ")")
    found = answers(Reasoner(index_of(facts)), Program(rules), goal)
    wanted = expected(rules, facts, goal)
    assert len(wanted) > len(facts)  # the recursive rule derived rows of its own
    same(found, wanted)


def test_a_32_literal_answer_has_a_valid_proof() -> None:
    facts = chain_facts(0.9)
    rules = [rule(chain_rule(32))]
    reasoner = Reasoner(index_of(facts))
    program = Program(rules)
    answer = reasoner.solve(program, BOUND)[0]
    proof = reasoner.explain(program, Literal("q", answer.args))
    assert proof is not None and len(proof.children) == 32
    model = naive_model(rules, facts)
    check_proof(proof, model, naive_model([], facts))
