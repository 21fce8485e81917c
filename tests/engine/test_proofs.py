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
