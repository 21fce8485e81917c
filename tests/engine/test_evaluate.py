"""Evaluation semantics: recursion, negation, built-ins, confidence, echo, caching."""

from __future__ import annotations

import pytest

from nocturnus.engine.analysis import ProgramError
from nocturnus.engine.evaluate import Answer, Program, Reasoner
from nocturnus.engine.index import FactIndex
from tests.engine.dsl import lit, rule

CHAIN = ["edge(a, b)", "edge(b, c)", "edge(c, d)", "edge(d, e)"]
CLOSURE_FORMS = {
    "right": [
        "path(?x, ?y) :- edge(?x, ?y)",
        "path(?x, ?y) :- edge(?x, ?z), path(?z, ?y)",
    ],
    "left": [
        "path(?x, ?y) :- edge(?x, ?y)",
        "path(?x, ?y) :- path(?x, ?z), edge(?z, ?y)",
    ],
    "nonlinear": [
        "path(?x, ?y) :- edge(?x, ?y)",
        "path(?x, ?y) :- path(?x, ?z), path(?z, ?y)",
    ],
    "badly-ordered": [
        "path(?x, ?y) :- edge(?x, ?y)",
        "path(?x, ?y) :- path(?z, ?y), edge(?x, ?z)",
    ],
    "mutual": [
        "path(?x, ?y) :- edge(?x, ?y)",
        "path(?x, ?y) :- edge(?x, ?z), hop(?z, ?y)",
        "hop(?x, ?y) :- path(?x, ?y)",
    ],
}


@pytest.mark.parametrize("form", sorted(CLOSURE_FORMS))
def test_transitive_closure_forms_agree(form, make_facts, ask):
    facts = make_facts(*CHAIN)
    rules = CLOSURE_FORMS[form]
    assert ask(facts, rules, "path(a, ?y)") == [
        ("a", "b"),
        ("a", "c"),
        ("a", "d"),
        ("a", "e"),
    ]
    assert ask(facts, rules, "path(?x, e)") == [
        ("a", "e"),
        ("b", "e"),
        ("c", "e"),
        ("d", "e"),
    ]
    assert len(ask(facts, rules, "path(?x, ?y)")) == 10
    assert ask(facts, rules, "path(b, d)") == [("b", "d")]
    assert ask(facts, rules, "path(d, b)") == []


@pytest.mark.parametrize("form", sorted(CLOSURE_FORMS))
def test_cycles_terminate(form, make_facts, ask):
    facts = make_facts("edge(a, b)", "edge(b, c)", "edge(c, a)", "edge(c, c)")
    rules = CLOSURE_FORMS[form]
    assert len(ask(facts, rules, "path(?x, ?y)")) == 9
    assert ask(facts, rules, "path(?x, ?x)") == [("a", "a"), ("b", "b"), ("c", "c")]
    assert ask(facts, rules, "path(b, ?y)") == [("b", "a"), ("b", "b"), ("b", "c")]


def test_long_chain_has_no_depth_limit(ask):
    facts = FactIndex()
    for i in range(3000):
        facts.add("edge", False, (i, i + 1))
    rules = CLOSURE_FORMS["right"]
    assert len(ask(facts, rules, "path(0, ?y)")) == 3000
    assert ask(facts, rules, "path(0, 3000)") == [(0, 3000)]


def test_same_generation(make_facts, ask):
    facts = make_facts(
        "par(b1, a)",
        "par(b2, a)",
        "par(c1, b1)",
        "par(c2, b2)",
        "par(c3, b2)",
        "person(a)",
        "person(b1)",
        "person(b2)",
        "person(c1)",
        "person(c2)",
        "person(c3)",
    )
    rules = [
        "sg(?x, ?x) :- person(?x)",
        "sg(?x, ?y) :- par(?x, ?px), sg(?px, ?py), par(?y, ?py)",
    ]
    assert ask(facts, rules, "sg(c1, ?y)") == [("c1", "c1"), ("c1", "c2"), ("c1", "c3")]
    assert ask(facts, rules, "sg(b1, ?y)") == [("b1", "b1"), ("b1", "b2")]
    assert len(ask(facts, rules, "sg(?x, ?y)")) == 1 + 4 + 9


def test_naf_on_stored_and_derived_relations(make_facts, ask):
    facts = make_facts(
        "edge(a, b)",
        "edge(b, c)",
        "node(a)",
        "node(b)",
        "node(c)",
        "node(d)",
        "banned(b)",
    )
    rules = [
        "reach(?y) :- edge(a, ?y)",
        "reach(?y) :- reach(?x), edge(?x, ?y)",
        "unreached(?x) :- node(?x), NAF reach(?x), NAF banned(?x)",
        "lonely(?x) :- node(?x), NAF edge(?x, ?_), NAF edge(?_, ?x)",
    ]
    assert ask(facts, rules, "unreached(?x)") == [("a",), ("d",)]
    assert ask(facts, rules, "unreached(d)") == [("d",)]
    assert ask(facts, rules, "unreached(c)") == []
    assert ask(facts, rules, "lonely(?x)") == [("d",)]


def test_naf_over_several_strata(make_facts, ask):
    facts = make_facts("n(1)", "n(2)", "n(3)", "p(1)")
    rules = [
        "q(?x) :- n(?x), NAF p(?x)",
        "r(?x) :- n(?x), NAF q(?x)",
        "s(?x) :- n(?x), NAF r(?x)",
    ]
    assert ask(facts, rules, "q(?x)") == [(2,), (3,)]
    assert ask(facts, rules, "r(?x)") == [(1,)]
    assert ask(facts, rules, "s(?x)") == [(2,), (3,)]
    assert ask(facts, rules, "s(2)") == [(2,)]


def test_explicit_negation_facts_and_heads(make_facts, ask):
    facts = make_facts(
        "bird(tweety)", "bird(polly)", "NOT flies(polly)", "penguin(pingu)"
    )
    rules = [
        "flies(?x) :- bird(?x), NAF NOT flies(?x)",
        "NOT flies(?x) :- penguin(?x)",
        "grounded(?x) :- NOT flies(?x)",
    ]
    assert ask(facts, rules, "flies(?x)") == [("tweety",)]
    assert ask(facts, rules, "NOT flies(?x)") == [("pingu",), ("polly",)]
    assert ask(facts, rules, "grounded(?x)") == [("pingu",), ("polly",)]
    assert ask(facts, rules, "NOT flies(pingu)") == [("pingu",)]


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("gt(?v, 100)", [("big", 500), ("text", "500"), ("float", 250.5)]),
        ("lt(?v, 100)", [("small", 7)]),
        (">=(?v, 500)", [("big", 500), ("text", "500")]),
        ("=(?v, 500)", [("big", 500), ("text", "500")]),
        ('eq(?v, "500")', [("big", 500), ("text", "500")]),
        ("neq(?v, 500)", [("float", 250.5), ("name", "zed"), ("small", 7)]),
        ("gt(?v, abc)", [("name", "zed")]),
        (
            "!=(?v, zed)",
            [("big", 500), ("float", 250.5), ("small", 7), ("text", "500")],
        ),
    ],
)
def test_builtins_compare_numeric_strings_as_numbers(
    condition, expected, make_facts, ask
):
    facts = make_facts(
        "val(big, 500)",
        'val(text, "500")',
        "val(float, 250.5)",
        "val(small, 7)",
        "val(name, zed)",
    )
    rules = [f"hit(?k, ?v) :- val(?k, ?v), {condition}"]
    assert ask(facts, rules, "hit(?k, ?v)") == sorted(expected, key=lambda kv: kv[0])


def test_constants_echo_exactly(make_facts, ask):
    facts = make_facts("v(500)", 'v("500")', "v(500.0)", "v(2.5)")
    rules = ["w(?x) :- v(?x)"]
    answers = ask(facts, rules, "w(?x)")
    assert answers == [(500,), (500.0,), (2.5,), ("500",)] or answers == [
        (2.5,),
        (500,),
        (500.0,),
        ("500",),
    ]
    assert [type(a[0]) for a in answers] == [float, int, float, str]
    assert ask(facts, rules, "w(500)") == [(500,)]
    assert type(ask(facts, rules, "w(500.0)")[0][0]) is float
    assert ask(facts, rules, 'w("500")') == [("500",)]
    assert ask(facts, rules, "w(501)") == []


def test_rule_constants_stay_typed(make_facts, ask):
    facts = make_facts("n(1)")
    rules = ['tagged(?x, "500") :- n(?x)', "tagged(?x, 500) :- n(?x)"]
    assert ask(facts, rules, "tagged(1, ?t)") == [(1, 500), (1, "500")]


def test_confidence_product_best_and_null(make_facts):
    facts = make_facts(
        ("edge(a, b)", 0.9),
        ("edge(b, c)", 0.5),
        ("edge(a, c)", 0.4),
        "edge(c, d)",
        "plain(x)",
    )
    program = Program(
        [
            rule("path(?x, ?y) :- edge(?x, ?y)"),
            rule("path(?x, ?y) :- edge(?x, ?z), path(?z, ?y)"),
            rule("derived(?x) :- plain(?x)"),
            rule("hedged(?x) :- plain(?x)", confidence=0.8),
        ]
    )
    reasoner = Reasoner(facts)
    got = {a.args: a.confidence for a in reasoner.solve(program, lit("path(a, ?y)"))}
    assert got[("a", "b")] == pytest.approx(0.9)
    assert got[("a", "c")] == pytest.approx(0.45)  # best of 0.9*0.5 and 0.4
    assert got[("a", "d")] == pytest.approx(0.45)  # None counts as 1.0
    assert reasoner.solve(program, lit("path(c, d)")) == [Answer(("c", "d"), None)]
    assert reasoner.solve(program, lit("derived(?x)")) == [Answer(("x",), None)]
    assert reasoner.solve(program, lit("hedged(?x)"))[0].confidence == pytest.approx(
        0.8
    )
    kept = reasoner.solve(program, lit("path(a, ?y)"), min_confidence=0.45)
    assert [a.args for a in kept] == [("a", "b"), ("a", "c"), ("a", "d")]
    kept = reasoner.solve(program, lit("path(a, ?y)"), min_confidence=0.5)
    assert [a.args for a in kept] == [("a", "b")]
    assert len(reasoner.solve(program, lit("path(c, ?y)"), min_confidence=1.0)) == 1


def test_confidence_around_cycles_terminates(make_facts):
    facts = make_facts(("e(a, b)", 0.5), ("e(b, a)", 1.0), ("e(b, c)", 0.9))
    program = Program(
        [rule("p(?x, ?y) :- e(?x, ?y)"), rule("p(?x, ?y) :- p(?x, ?z), p(?z, ?y)", 0.9)]
    )
    got = {
        a.args: a.confidence for a in Reasoner(facts).solve(program, lit("p(?x, ?y)"))
    }
    assert got[("a", "b")] == pytest.approx(0.5)
    assert got[("a", "a")] == pytest.approx(0.45)
    assert got[("b", "c")] == pytest.approx(0.9)


def test_limit_and_duplicates(make_facts, ask):
    facts = make_facts("e(a, b)", "e(a, c)", "f(a, b)")
    rules = ["u(?x, ?y) :- e(?x, ?y)", "u(?x, ?y) :- f(?x, ?y)"]
    assert ask(facts, rules, "u(a, ?y)") == [("a", "b"), ("a", "c")]
    assert ask(facts, rules, "u(?x, ?y)", limit=1) == [("a", "b")]
    assert ask(facts, rules, "u(?x, ?y)", limit=0) == []


def test_goal_on_stored_relation_and_unknown(make_facts, ask):
    facts = make_facts("e(a, b)", "e(b, b)")
    assert ask(facts, [], "e(?x, ?x)") == [("b", "b")]
    assert ask(facts, [], "e(a, ?y)") == [("a", "b")]
    assert ask(facts, [], "missing(?x)") == []
    assert ask(facts, [], "e(?x)") == []
    assert ask(facts, [], "e(zzz, ?y)") == []


@pytest.mark.parametrize("goal", ["lt(?x, 3)", "NAF p(?x)"])
def test_bad_goals_are_program_errors(goal, make_facts):
    with pytest.raises(ProgramError):
        Reasoner(make_facts()).solve(Program([]), lit(goal))


def test_stored_facts_of_derived_relations_take_part(make_facts, ask):
    facts = make_facts("edge(a, b)", "path(x, a)")
    rules = CLOSURE_FORMS["left"]
    assert ask(facts, rules, "path(x, ?y)") == [("x", "a"), ("x", "b")]
    assert ask(facts, rules, "path(?x, ?y)") == [("a", "b"), ("x", "a"), ("x", "b")]


def test_cache_is_invalidated_by_add_and_remove(make_facts):
    facts = make_facts(*CHAIN)
    program = Program([rule(r) for r in CLOSURE_FORMS["right"]])
    reasoner = Reasoner(facts)
    goal = lit("path(a, ?y)")
    assert len(reasoner.solve(program, goal)) == 4
    assert len(reasoner.solve(program, lit("path(?x, ?y)"))) == 10
    facts.add("edge", False, ("e", "f"))
    assert len(reasoner.solve(program, goal)) == 5
    assert len(reasoner.solve(program, lit("path(?x, ?y)"))) == 15
    facts.remove("edge", False, ("b", "c"))
    assert [a.args for a in reasoner.solve(program, goal)] == [("a", "b")]
    facts.add("edge", False, ("a", "b"), 0.5)  # a confidence change invalidates too
    assert reasoner.solve(program, goal)[0].confidence == 0.5
    other = Program([rule("path(?x, ?y) :- edge(?y, ?x)")])
    assert [a.args for a in reasoner.solve(other, goal)] == []


def test_copy_is_isolated_for_reasoning(make_facts):
    facts = make_facts(*CHAIN)
    program = Program([rule(r) for r in CLOSURE_FORMS["right"]])
    fork = facts.copy()
    fork.remove("edge", False, ("a", "b"))
    facts.add("edge", False, ("z", "a"))
    assert len(Reasoner(facts).solve(program, lit("path(?x, ?y)"))) == 15
    assert len(Reasoner(fork).solve(program, lit("path(?x, ?y)"))) == 6


def test_count_matches_solve(make_facts):
    facts = make_facts(*CHAIN)
    program = Program([rule(r) for r in CLOSURE_FORMS["left"]])
    reasoner = Reasoner(facts)
    assert reasoner.count(program, lit("path(?x, ?y)")) == 10
    assert reasoner.count(program, lit("path(b, ?y)")) == 3


@pytest.mark.parametrize(
    ("rules", "goal", "expected"),
    [
        # Factoring keeps the non-recursive guard literals of the recursive rule.
        (
            [
                "r(?x, ?y) :- e(?x, ?y)",
                "r(?x, ?y) :- e(?x, ?z), ok(?x, ?_), r(?z, ?y)",
            ],
            "r(a, ?y)",
            [("a", "b"), ("a", "c"), ("a", "d")],
        ),
        (
            [
                "r(?x, ?y) :- e(?x, ?y)",
                "r(?x, ?y) :- e(?x, ?z), r(?z, ?y), NAF stop(?z)",
            ],
            "r(a, ?y)",
            [("a", "b"), ("a", "c")],
        ),
        # Not right-linear (the passed variable is tested): must not be factored.
        (
            [
                "r(?x, ?y) :- e(?x, ?y)",
                "r(?x, ?y) :- e(?x, ?z), r(?z, ?y), neq(?y, d)",
            ],
            "r(a, ?y)",
            [("a", "b"), ("a", "c"), ("a", "f")],
        ),
    ],
)
def test_right_linear_goals_keep_every_condition(
    rules, goal, expected, make_facts, ask
):
    facts = make_facts(
        "e(a, b)",
        "e(b, c)",
        "e(c, d)",
        "e(d, f)",
        "ok(a, yes)",
        "ok(b, yes)",
        "stop(c)",
    )
    assert ask(facts, rules, goal) == expected
    full = ask(facts, rules, "r(?x, ?y)")
    assert [row for row in full if row[0] == "a"] == expected


# Issue 13: a lone non-recursive copy rule was evaluated as a transitive closure.
@pytest.mark.parametrize(
    ("texts", "expected"),
    [
        (["r(?x, ?y) :- e(?x, ?y)"], [("n1", "n2"), ("n2", "n3")]),
        (["r(?x, ?y) :- e(?y, ?x)"], [("n2", "n1"), ("n3", "n2")]),
        (["r(?x) :- e(?x, ?y)"], [("n1",), ("n2",)]),
    ],
)
def test_a_copy_rule_copies_and_nothing_more(make_facts, ask, texts, expected):
    facts = make_facts("e(n1, n2)", "e(n2, n3)")
    goal = "r(?x, ?y)" if len(expected[0]) == 2 else "r(?x)"
    assert ask(facts, texts, goal) == expected
    first = expected[0][0]
    bound = goal.replace("?x", first, 1)
    assert ask(facts, texts, bound) == [row for row in expected if row[0] == first]


# Issue 13 (found by the differential tests): two chain rules grouping their head
# differently each saw only their own grouping's new rows in the next round.
def test_chains_grouped_two_ways_see_each_others_rows(make_facts, ask):
    rules = [
        "t(?x, ?y) :- d(?y, ?x)",
        "t(?x, ?y) :- d(?x, ?z), t(?z, ?y)",
        "t(?x, ?y) :- t(?x, ?z), d(?z, ?y)",
    ]
    facts = make_facts("d(a, d)")
    assert ask(facts, rules, "t(?x, ?y)") == [
        ("a", "a"),
        ("a", "d"),
        ("d", "a"),
        ("d", "d"),
    ]
