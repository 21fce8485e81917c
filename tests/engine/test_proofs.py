"""Proof trees: rule steps down to stored facts, NAF and built-in steps, any depth."""

from __future__ import annotations

import pytest

from nocturnus.engine.analysis import ProgramError
from nocturnus.engine.evaluate import Program, Reasoner
from nocturnus.engine.index import FactIndex
from nocturnus.engine.proofs import Proof
from tests.engine.dsl import lit, rule

ANCESTOR = [
    "anc(?x, ?y) :- parent(?x, ?y)",
    "anc(?x, ?y) :- parent(?x, ?z), anc(?z, ?y)",
]


def _leaves(proof: Proof) -> list[Proof]:
    if not proof.children:
        return [proof]
    return [leaf for child in proof.children for leaf in _leaves(child)]


def test_proof_of_a_stored_fact(make_facts):
    facts = make_facts(("parent(a, b)", 0.7))
    proof = Reasoner(facts).explain(Program([]), lit("parent(a, b)"))
    assert proof == Proof(lit("parent(a, b)"), "fact", None, (), 0.7)
    assert Reasoner(facts).explain(Program([]), lit("parent(b, a)")) is None


def test_recursive_proof_goes_down_to_facts(make_facts):
    facts = make_facts("parent(a, b)", "parent(b, c)", "parent(c, d)")
    program = Program([rule(r) for r in ANCESTOR])
    proof = Reasoner(facts).explain(program, lit("anc(a, d)"))
    assert proof is not None
    assert proof.type == "rule" and proof.rule is not None
    assert proof.rule.text() == "anc(?x, ?y) :- parent(?x, ?z), anc(?z, ?y)"
    assert proof.depth() == 4
    assert [leaf.goal.text() for leaf in _leaves(proof)] == [
        "parent(a, b)",
        "parent(b, c)",
        "parent(c, d)",
    ]
    assert all(leaf.type == "fact" for leaf in _leaves(proof))
    assert Reasoner(facts).explain(program, lit("anc(d, a)")) is None


def test_proofs_terminate_on_cycles_and_are_deep(make_facts):
    facts = FactIndex()
    for i in range(2000):
        facts.add("parent", False, (i, (i + 1) % 2000))
    program = Program([rule(r) for r in ANCESTOR])
    proof = Reasoner(facts).explain(program, lit("anc(0, 1999)"))
    assert proof is not None
    assert proof.depth() == 2000
    assert Reasoner(facts).explain(program, lit("anc(0, 0)")).depth() == 2001


def test_naf_and_builtin_steps(make_facts):
    facts = make_facts("person(ann)", "age(ann, 30)", "person(bob)", "banned(bob)")
    program = Program(
        [rule("adult(?p) :- person(?p), age(?p, ?a), ge(?a, 18), NAF banned(?p)")]
    )
    proof = Reasoner(facts).explain(program, lit("adult(ann)"))
    assert proof is not None
    kinds = [(c.type, c.goal.text()) for c in proof.children]
    assert kinds == [
        ("fact", "person(ann)"),
        ("fact", "age(ann, 30)"),
        ("builtin", "ge(30, 18)"),
        ("naf", "NAF banned(ann)"),
    ]
    assert Reasoner(facts).explain(program, lit("adult(bob)")) is None


def test_proof_follows_the_best_confidence(make_facts):
    facts = make_facts(
        ("e(a, b)", 0.9), ("e(b, c)", 0.9), ("e(a, c)", 0.5), ("e(c, d)", 1.0)
    )
    program = Program(
        [rule("p(?x, ?y) :- e(?x, ?y)"), rule("p(?x, ?y) :- e(?x, ?z), p(?z, ?y)")]
    )
    proof = Reasoner(facts).explain(program, lit("p(a, d)"))
    assert proof is not None
    assert proof.confidence == pytest.approx(0.81)
    assert [leaf.goal.text() for leaf in _leaves(proof)] == [
        "e(a, b)",
        "e(b, c)",
        "e(c, d)",
    ]


def test_explain_needs_a_ground_fact(make_facts):
    with pytest.raises(ProgramError):
        Reasoner(make_facts()).explain(Program([]), lit("p(?x)"))


def test_stored_fact_of_a_derived_relation_is_shown_as_a_fact(make_facts):
    facts = make_facts("parent(a, b)", ("anc(x, a)", 0.5))
    program = Program([rule(r) for r in ANCESTOR])
    proof = Reasoner(facts).explain(program, lit("anc(x, a)"))
    assert proof == Proof(lit("anc(x, a)"), "fact", None, (), 0.5)
    derived = Reasoner(facts).explain(program, lit("anc(a, b)"))
    assert derived is not None and derived.type == "rule"


def test_proof_of_negated_head_and_body(make_facts):
    facts = make_facts("penguin(pingu)", "bird(tweety)")
    program = Program(
        [
            rule("NOT flies(?x) :- penguin(?x)"),
            rule("grounded(?x) :- NOT flies(?x)"),
            rule("flies(?x) :- bird(?x), NAF NOT flies(?x)"),
        ]
    )
    proof = Reasoner(facts).explain(program, lit("grounded(pingu)"))
    assert proof is not None
    assert proof.children[0].goal.text() == "NOT flies(pingu)"
    assert proof.children[0].children[0].goal.text() == "penguin(pingu)"
    flies = Reasoner(facts).explain(program, lit("flies(tweety)"))
    assert [c.type for c in flies.children] == ["fact", "naf"]
    assert flies.children[1].goal.text() == "NAF NOT flies(tweety)"
    assert Reasoner(facts).explain(program, lit("flies(pingu)")) is None


def test_proofs_for_left_and_nonlinear_recursion(make_facts):
    facts = make_facts("e(a, b)", "e(b, c)", "e(c, d)")
    for recursive in (
        "p(?x, ?y) :- p(?x, ?z), e(?z, ?y)",
        "p(?x, ?y) :- p(?x, ?z), p(?z, ?y)",
    ):
        program = Program([rule("p(?x, ?y) :- e(?x, ?y)"), rule(recursive)])
        proof = Reasoner(facts).explain(program, lit("p(a, d)"))
        assert proof is not None
        assert [leaf.goal.text() for leaf in _leaves(proof)] == [
            "e(a, b)",
            "e(b, c)",
            "e(c, d)",
        ]


def _flat(proof: Proof | None) -> list[tuple[object, ...]]:
    """The tree in preorder, without recursion (``==`` on deep proofs recurses)."""
    found: list[tuple[object, ...]] = []
    stack = [proof]
    while stack:
        node = stack.pop()
        assert node is not None
        found.append((node.type, node.goal, node.rule, node.confidence))
        stack.extend(reversed(node.children))
    return found


def test_explain_all_proves_many_answers_from_one_evaluation(make_facts):
    """withProof's path: every answer proved, shared sub-proofs built once."""
    facts = FactIndex()
    for i in range(300):
        facts.add("parent", False, (i, i + 1))
    program = Program([rule(r) for r in ANCESTOR])
    reasoner = Reasoner(facts)
    wanted = [lit(f"anc({i}, 300)") for i in range(0, 300, 7)] + [lit("anc(300, 0)")]
    proofs = reasoner.explain_all(program, wanted)
    assert proofs[-1] is None
    for literal, proof in zip(wanted, proofs[:-1], strict=False):
        assert proof is not None and proof.goal == literal
        assert proof.depth() == 300 - literal.args[0] + 1
        assert _flat(proof) == _flat(reasoner.explain(program, literal))
    # The first fact is proved alone, the next two together: below anc(14, 300)
    # their proofs are the very same objects.
    def below(proof: Proof, goal: str) -> Proof:
        while proof.goal != lit(goal):
            proof = proof.children[-1]
        return proof

    assert below(proofs[1], "anc(20, 300)") is below(proofs[2], "anc(20, 300)")
    assert below(proofs[0], "anc(20, 300)") is not below(proofs[1], "anc(20, 300)")


def test_explain_all_checks_its_facts(make_facts):
    reasoner = Reasoner(make_facts("parent(a, b)"))
    program = Program([rule(r) for r in ANCESTOR])
    assert reasoner.explain_all(program, []) == []
    with pytest.raises(ProgramError):
        reasoner.explain_all(program, [lit("anc(a, b)"), lit("parent(a, b)")])
    with pytest.raises(ProgramError):
        reasoner.explain_all(program, [lit("anc(a, ?x)")])
