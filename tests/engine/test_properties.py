"""Hypothesis: the engine agrees with the naive oracle on random small programs.

Programs mix recursion, explicit negation, NAF, comparisons, typed constants
(1, 1.0 and "1" are different) and confidences. Every relation is asked unbound
(full evaluation) and with its first argument bound (magic sets), and proofs are
checked to exist exactly for the derivable facts.
"""

from __future__ import annotations

import math

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nocturnus.engine.analysis import ProgramError
from nocturnus.engine.evaluate import Program, Reasoner
from nocturnus.engine.index import FactIndex
from nocturnus.engine.rules import Literal, Rule
from nocturnus.engine.terms import Var
from tests.engine.oracle import check_proof, naive_model, tag

CONSTANTS = ["a", "b", "c", 1, "1", 1.0, 2]
RELATIONS = [("e", 2), ("f", 1), ("p", 2), ("q", 1), ("r", 2)]
DERIVED = [("p", 2), ("q", 1), ("r", 2)]
VARS = [Var("x"), Var("y"), Var("z")]
CONFIDENCES = [None, None, 0.5, 0.9, 1.0]


@st.composite
def facts(draw):
    found = []
    for _ in range(draw(st.integers(0, 14))):
        predicate, arity = draw(st.sampled_from(RELATIONS))
        args = tuple(draw(st.sampled_from(CONSTANTS)) for _ in range(arity))
        found.append(
            (
                predicate,
                draw(st.booleans()) and draw(st.booleans()),
                args,
                draw(st.sampled_from(CONFIDENCES)),
            )
        )
    return found


@st.composite
def rules(draw):
    made = []
    for n in range(draw(st.integers(1, 5))):
        body = []
        bound: list[Var] = []
        for _ in range(draw(st.integers(1, 3))):
            predicate, arity = draw(st.sampled_from(RELATIONS))
            args = tuple(
                draw(st.sampled_from(VARS + CONSTANTS[:3])) for _ in range(arity)
            )
            body.append(
                Literal(predicate, args, draw(st.booleans()) and draw(st.booleans()))
            )
            bound += [a for a in args if isinstance(a, Var)]
        assume(bound)
        if draw(st.booleans()):
            predicate, arity = draw(st.sampled_from(RELATIONS))
            args = tuple(
                draw(st.sampled_from(bound + [Var("_?n")] + CONSTANTS[:2]))
                for _ in range(arity)
            )
            body.append(Literal(predicate, args, draw(st.booleans()), naf=True))
        if draw(st.booleans()):
            op = draw(st.sampled_from(["lt", "gt", "eq", "neq", "<=", ">="]))
            left = draw(st.sampled_from(bound))
            right = draw(st.sampled_from(bound + CONSTANTS))
            body.append(Literal(op, (left, right)))
        predicate, arity = draw(st.sampled_from(DERIVED))
        head = Literal(
            predicate,
            tuple(draw(st.sampled_from(bound + CONSTANTS[:2])) for _ in range(arity)),
            draw(st.booleans()) and draw(st.booleans()),
        )
        made.append(
            Rule(f"r{n}", head, tuple(body), draw(st.sampled_from(CONFIDENCES)))
        )
    return made


def _same_confidence(a, b) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=1e-9)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules(), facts())
def test_solve_matches_naive_oracle(program_rules, stored):
    try:
        program = Program(program_rules)
    except ProgramError:
        assume(False)
    index = FactIndex()
    for predicate, negated, args, confidence in stored:
        index.add(predicate, negated, args, confidence)
    visible = [(p, n, a, index.confidence(p, n, a)) for p, n, a, _ in stored]
    model = naive_model(
        program_rules,
        list(
            {
                (p, n, tuple(tag(x) for x in a)): (p, n, a, c) for p, n, a, c in visible
            }.values()
        ),
    )
    stored_model = naive_model([], [(p, n, a, c) for p, n, a, c in visible])
    reasoner = Reasoner(index)
    for predicate, arity in RELATIONS:
        for negated in (False, True):
            expected = model.get((predicate, negated, arity), {})
            goal = Literal(
                predicate, tuple(Var(f"v{i}") for i in range(arity)), negated
            )
            got = {
                tuple(tag(x) for x in answer.args): answer.confidence
                for answer in reasoner.solve(program, goal)
            }
            assert got.keys() == expected.keys(), (predicate, negated)
            for row, confidence in got.items():
                assert _same_confidence(confidence, expected[row]), (predicate, row)
            for constant in CONSTANTS:
                bound_goal = Literal(predicate, (constant, *goal.args[1:]), negated)
                answers = reasoner.solve(program, bound_goal)
                want = {row for row in expected if row[0] == tag(constant)}
                assert {tuple(tag(x) for x in a.args) for a in answers} == want
                for answer in answers:
                    row = tuple(tag(x) for x in answer.args)
                    assert _same_confidence(answer.confidence, expected[row])
            for row, confidence in list(expected.items())[:3]:
                proof = reasoner.explain(
                    program, Literal(predicate, tuple(v for _, v in row), negated)
                )
                assert proof is not None
                assert _same_confidence(proof.confidence, confidence)
                check_proof(proof, model, stored_model)
            # All answers at once (withProof), plus facts that do not hold.
            wanted = [
                Literal(predicate, tuple(v for _, v in row), negated) for row in expected
            ]
            wanted += [Literal(predicate, ("zz",) * arity, negated)]
            proofs = reasoner.explain_all(program, wanted)
            assert proofs[-1] is None
            for literal, proof in zip(wanted[:-1], proofs, strict=False):
                assert proof is not None, literal.text()
                assert proof.goal == literal
                check_proof(proof, model, stored_model)


CHAIN_PROGRAMS = [
    ["t(?x, ?y) :- e(?x, ?y)", "t(?x, ?y) :- e(?x, ?z), t(?z, ?y)"],
    ["t(?x, ?y) :- e(?x, ?y)", "t(?x, ?y) :- t(?x, ?z), e(?z, ?y)"],
    ["t(?x, ?y) :- e(?x, ?y)", "t(?x, ?y) :- t(?x, ?z), t(?z, ?y)"],
    ["t(?x, ?y) :- e(?y, ?x)", "t(?x, ?y) :- e(?z, ?x), t(?z, ?y)"],
    ["t(?x, ?y) :- e(?x, ?y)", "t(?y, ?x) :- t(?z, ?x), e(?y, ?z)"],
    [
        "t(?x, ?y) :- e(?x, ?y)",
        "t(?x, ?y) :- e(?x, ?z), u(?z, ?y)",
        "u(?x, ?y) :- t(?y, ?x)",
        "u(?x, ?y) :- u(?x, ?z), e(?y, ?z)",
    ],
    [
        "t(?x, ?y) :- f(?x, ?y)",
        "t(?x, ?y) :- t(?x, ?z), t(?z, ?y)",
        "f(?x, ?y) :- e(?y, ?x)",
    ],
]


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(range(len(CHAIN_PROGRAMS))),
    st.sets(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=20),
    st.sets(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=3),
)
def test_grouped_closure_matches_oracle(which, edges, stored):
    """Binary chain recursion (evaluated set-at-a-time) agrees with the oracle."""
    from tests.engine.dsl import rule

    program_rules = [rule(text) for text in CHAIN_PROGRAMS[which]]
    program = Program(program_rules)
    index = FactIndex()
    facts = [("e", False, edge, None) for edge in edges]
    facts += [("t", False, row, None) for row in stored]
    for predicate, negated, args, confidence in facts:
        index.add(predicate, negated, args, confidence)
    model = naive_model(program_rules, facts)
    reasoner = Reasoner(index)
    for predicate in ("t", "u"):
        expected = set(model.get((predicate, False, 2), {}))
        got = reasoner.solve(program, Literal(predicate, (Var("a"), Var("b"))))
        assert {tuple(tag(x) for x in a.args) for a in got} == expected
        assert reasoner.count(program, Literal(predicate, (Var("a"), Var("b")))) == len(
            expected
        )
        for node in range(3):
            bound = reasoner.solve(program, Literal(predicate, (node, Var("b"))))
            assert {tuple(tag(x) for x in a.args) for a in bound} == {
                row for row in expected if row[0] == tag(node)
            }


REACH_PROGRAMS = [
    ["r(?y) :- s(?y)", "r(?y) :- r(?x), e(?x, ?y)"],
    ["r(?y) :- s(?y)", "r(?y) :- e(?y, ?x), r(?x)"],
    [
        "r(?y) :- s(?y)",
        "q(?y) :- r(?x), e(?x, ?y)",
        "r(?y) :- q(?x), e(?y, ?x)",
        "r(?y) :- r(?x), e(?x, ?y)",
    ],
]


@settings(max_examples=100, deadline=None)
@given(
    st.sampled_from(range(len(REACH_PROGRAMS))),
    st.sets(st.tuples(st.integers(0, 7), st.integers(0, 7)), max_size=20),
    st.sets(st.integers(0, 7), max_size=3),
    st.sets(st.integers(0, 7), max_size=2),
)
def test_set_at_a_time_reachability_matches_oracle(which, edges, sources, stored):
    """Unary chain recursion (evaluated a delta set at a time) agrees with the oracle."""
    from tests.engine.dsl import rule

    program_rules = [rule(text) for text in REACH_PROGRAMS[which]]
    program = Program(program_rules)
    facts = [("e", False, edge, None) for edge in edges]
    facts += [("s", False, (n,), None) for n in sources]
    facts += [("r", False, (n,), None) for n in stored]
    index = FactIndex()
    for predicate, negated, args, confidence in facts:
        index.add(predicate, negated, args, confidence)
    model = naive_model(program_rules, facts)
    reasoner = Reasoner(index)
    for predicate in ("r", "q"):
        expected = set(model.get((predicate, False, 1), {}))
        got = reasoner.solve(program, Literal(predicate, (Var("a"),)))
        assert {tuple(tag(x) for x in a.args) for a in got} == expected
        for node in range(3):
            answers = reasoner.solve(program, Literal(predicate, (node,)))
            assert bool(answers) == ((tag(node),) in expected)


SAME_GENERATION_PROGRAMS = [
    ["g(?x, ?x) :- n(?x)", "g(?x, ?y) :- e(?px, ?x), g(?px, ?py), e(?py, ?y)"],
    # other orientations, two edge relations, guards on either side
    ["g(?x, ?x) :- n(?x)", "g(?x, ?y) :- e(?x, ?px), g(?px, ?py), d(?y, ?py)"],
    [
        "g(?x, ?y) :- d(?x, ?y)",
        "g(?x, ?y) :- n(?x), e(?px, ?x), g(?px, ?py), d(?py, ?y), m(?y, 1)",
    ],
    # two recursive rules, and a rule the kernel must leave alone (a shared side)
    [
        "g(?x, ?x) :- n(?x)",
        "g(?x, ?y) :- e(?px, ?x), g(?px, ?py), e(?py, ?y)",
        "g(?x, ?y) :- d(?px, ?x), g(?px, ?py), d(?py, ?y), n(?y)",
    ],
    ["g(?x, ?x) :- n(?x)", "g(?x, ?y) :- e(?px, ?x), g(?px, ?py), e(?py, ?x), n(?y)"],
    # a later stratum reading the result
    [
        "g(?x, ?x) :- n(?x)",
        "g(?x, ?y) :- e(?px, ?x), g(?px, ?py), e(?py, ?y)",
        "h(?x, ?y) :- g(?x, ?y), d(?y, ?x)",
    ],
]


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(range(len(SAME_GENERATION_PROGRAMS))),
    st.sets(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=14),
    st.sets(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=6),
    st.sets(st.integers(0, 6), max_size=5),
    st.sets(st.tuples(st.integers(0, 6), st.integers(0, 6)), max_size=2),
    st.sets(st.tuples(st.integers(0, 6), st.sampled_from([1, 2])), max_size=6),
)
def test_same_generation_matches_oracle(which, edges, others, nodes, stored, marks):
    """Same-generation recursion (evaluated set-at-a-time) agrees with the oracle."""
    from tests.engine.dsl import rule

    program_rules = [rule(text) for text in SAME_GENERATION_PROGRAMS[which]]
    program = Program(program_rules)
    facts = [("e", False, edge, None) for edge in edges]
    facts += [("d", False, edge, None) for edge in others]
    facts += [("n", False, (node,), None) for node in nodes]
    facts += [("g", False, row, None) for row in stored]
    facts += [("m", False, row, None) for row in marks]
    index = FactIndex()
    for predicate, negated, args, confidence in facts:
        index.add(predicate, negated, args, confidence)
    model = naive_model(program_rules, facts)
    reasoner = Reasoner(index)
    for predicate in ("g", "h"):
        expected = set(model.get((predicate, False, 2), {}))
        got = reasoner.solve(program, Literal(predicate, (Var("a"), Var("b"))))
        assert {tuple(tag(x) for x in a.args) for a in got} == expected
        for node in range(4):
            index.cache.clear()  # bound goals evaluate from scratch (magic sets)
            for goal, position in (
                (Literal(predicate, (node, Var("b"))), 0),
                (Literal(predicate, (Var("a"), node)), 1),
            ):
                answers = reasoner.solve(program, goal)
                assert {tuple(tag(x) for x in a.args) for a in answers} == {
                    row for row in expected if row[position] == tag(node)
                }
