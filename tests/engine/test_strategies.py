"""Each fixpoint strategy accepts exactly the components its docstring states.

For every strategy: programs it must accept, and near-misses it must decline (issue
13: a copy rule was taken for a transitive closure). A declined component falls
through to the next strategy, and finally to the general semi-naive rounds, so each
table names the plan ``choose`` must return.
"""

from __future__ import annotations

import pytest

from nocturnus.engine.analysis import strongly_connected_components
from nocturnus.engine.ir import COMPARE, lower_rule
from nocturnus.engine.plan import Component
from nocturnus.engine.strategies import STRATEGIES, choose, seminaive
from nocturnus.engine.terms import Interner
from tests.engine.dsl import rule


def component_of(
    texts: list[str],
    *,
    stored: dict[str, list[tuple[str, ...]]] | None = None,
    weighted: bool = False,
    ranked: bool = False,
) -> Component:
    """The component of the first rule's head, lowered as the evaluation lowers it."""
    interner = Interner()
    rules = [lower_rule(rule(text), interner) for text in texts]
    graph: dict[object, list[object]] = {}
    for r in rules:
        graph.setdefault(r.head, []).extend(s.rel for s in r.body if s.kind != COMPARE)
    (members,) = [c for c in strongly_connected_components(graph) if rules[0].head in c]
    initial = {}
    for predicate, rows in (stored or {}).items():
        key = (predicate, False, len(rows[0]))
        initial[key] = {tuple(interner.intern(v) for v in row): None for row in rows}
    return Component(
        frozenset(members),
        tuple(r for r in rules if r.head in members),
        initial,
        weighted,
        ranked,
    )


CLOSURE_RIGHT = ["t(?x, ?y) :- e(?x, ?y)", "t(?x, ?y) :- e(?x, ?z), t(?z, ?y)"]

# (rules, options, the strategy choose() must pick)
CASES: list[tuple[str, list[str], dict[str, object], str]] = [
    # -- closure: accepted shapes
    ("closure right", CLOSURE_RIGHT, {}, "closure"),
    (
        "closure left",
        ["t(?x, ?y) :- e(?x, ?y)", "t(?x, ?y) :- t(?x, ?z), e(?z, ?y)"],
        {},
        "closure",
    ),
    (
        "closure non-linear",
        ["t(?x, ?y) :- e(?x, ?y)", "t(?x, ?y) :- t(?x, ?z), t(?z, ?y)"],
        {},
        "closure",
    ),
    (
        "closure reversed",
        ["t(?x, ?y) :- e(?y, ?x)", "t(?x, ?y) :- e(?z, ?x), t(?z, ?y)"],
        {},
        "closure",
    ),
    (
        "closure literals swapped",
        ["t(?x, ?y) :- e(?x, ?y)", "t(?x, ?y) :- t(?z, ?y), e(?x, ?z)"],
        {},
        "closure",
    ),
    # -- closure: near-misses
    ("copy rule (issue 13)", ["r(?x, ?y) :- e(?x, ?y)"], {}, "seminaive"),
    ("reversed copy", ["r(?x, ?y) :- e(?y, ?x)"], {}, "seminaive"),
    (
        "constant in exit head",
        ["t(?x, a) :- e(?x, ?y)", "t(?x, ?y) :- e(?x, ?z), t(?z, ?y)"],
        {},
        "chains",
    ),
    (
        "repeated variable in exit",
        ["t(?x, ?x) :- e(?x, ?x)", "t(?x, ?y) :- e(?x, ?z), t(?z, ?y)"],
        {},
        "chains",
    ),
    (
        "extra body literal in exit",
        ["t(?x, ?y) :- e(?x, ?y), f(?x)", "t(?x, ?y) :- e(?x, ?z), t(?z, ?y)"],
        {},
        "chains",
    ),
    (
        "two exit rules",
        [
            "t(?x, ?y) :- e(?x, ?y)",
            "t(?x, ?y) :- d(?x, ?y)",
            "t(?x, ?y) :- e(?x, ?z), t(?z, ?y)",
        ],
        {},
        "chains",
    ),
    (
        "recursion over another edge",
        ["t(?x, ?y) :- e(?x, ?y)", "t(?x, ?y) :- d(?x, ?z), t(?z, ?y)"],
        {},
        "chains",
    ),
    (
        "recursive step reversed",
        ["t(?x, ?y) :- e(?x, ?y)", "t(?x, ?y) :- e(?z, ?x), t(?z, ?y)"],
        {},
        "chains",
    ),
    (
        "stored closure rows",
        CLOSURE_RIGHT,
        {"stored": {"t": [("a", "b")]}},
        "chains",
    ),
    ("confidence tracked", CLOSURE_RIGHT, {"weighted": True}, "seminaive"),
    ("proof ranks tracked", CLOSURE_RIGHT, {"ranked": True}, "seminaive"),
    # -- reach: accepted shapes
    (
        "reach forward",
        ["r(?y) :- s(?y)", "r(?y) :- r(?x), e(?x, ?y)"],
        {},
        "reach",
    ),
    (
        "reach backward",
        ["r(?y) :- s(?y)", "r(?y) :- e(?y, ?x), r(?x)"],
        {},
        "reach",
    ),
    (
        "reach mutual",
        [
            "r(?y) :- s(?y)",
            "q(?y) :- r(?x), e(?x, ?y)",
            "r(?y) :- q(?x), e(?y, ?x)",
        ],
        {},
        "reach",
    ),
    (
        "reach around a constant",
        ["a(n0, ?y) :- p(n0, ?y)", "a(n0, ?y) :- a(n0, ?z), p(?z, ?y)"],
        {},
        "reach",
    ),
    (
        "reach with a stored row",
        ["r(?y) :- s(?y)", "r(?y) :- r(?x), e(?x, ?y)"],
        {"stored": {"r": [("a",)]}},
        "reach",
    ),
    # -- reach: near-misses
    ("unary copy", ["r(?y) :- s(?y)"], {}, "seminaive"),
    (
        "exit head off the layout",
        ["a(?x, ?y) :- p(?x, ?y)", "a(n0, ?y) :- a(n0, ?z), p(?z, ?y)"],
        {},
        "seminaive",
    ),
    (
        "stored row off the layout",
        ["a(n0, ?y) :- p(n0, ?y)", "a(n0, ?y) :- a(n0, ?z), p(?z, ?y)"],
        {"stored": {"a": [("n1", "n2")]}},
        "seminaive",
    ),
    (
        "constant in the edge",
        ["r(?y) :- s(?y)", "r(?y) :- r(?x), e(?x, ?y, c)"],
        {},
        "seminaive",
    ),
    (
        "repeated variable in the edge",
        ["r(?y) :- s(?y)", "r(?y) :- r(?y), e(?y, ?y)"],
        {},
        "seminaive",
    ),
    (
        "extra body literal in the step",
        ["r(?y) :- s(?y)", "r(?y) :- r(?x), e(?x, ?y), f(?y)"],
        {},
        "seminaive",
    ),
    (
        "reach with confidence",
        ["r(?y) :- s(?y)", "r(?y) :- r(?x), e(?x, ?y)"],
        {"weighted": True},
        "seminaive",
    ),
    # -- twins: accepted shapes
    (
        "same generation",
        ["g(?x, ?x) :- n(?x)", "g(?x, ?y) :- e(?px, ?x), g(?px, ?py), e(?py, ?y)"],
        {},
        "twins",
    ),
    (
        "same generation, other edges and guards",
        [
            "g(?x, ?y) :- d(?x, ?y)",
            "g(?x, ?y) :- n(?x), e(?x, ?px), g(?px, ?py), d(?y, ?py), m(?y, 1)",
        ],
        {},
        "twins",
    ),
    (
        "same generation, two recursive rules",
        [
            "g(?x, ?x) :- n(?x)",
            "g(?x, ?y) :- e(?px, ?x), g(?px, ?py), e(?py, ?y)",
            "g(?x, ?y) :- d(?px, ?x), g(?px, ?py), d(?py, ?y), n(?y)",
        ],
        {},
        "twins",
    ),
    # -- twins: near-misses
    (
        "same generation with NAF",
        [
            "g(?x, ?x) :- n(?x)",
            "g(?x, ?y) :- e(?px, ?x), g(?px, ?py), e(?py, ?y), NAF m(?y, 1)",
        ],
        {},
        "seminaive",
    ),
    (
        "same generation with a comparison",
        [
            "g(?x, ?x) :- n(?x)",
            "g(?x, ?y) :- e(?px, ?x), g(?px, ?py), e(?py, ?y), neq(?x, ?y)",
        ],
        {},
        "seminaive",
    ),
    (
        "a side shared by both ends",
        [
            "g(?x, ?x) :- n(?x)",
            "g(?x, ?y) :- e(?px, ?x), g(?px, ?py), e(?py, ?x), n(?y)",
        ],
        {},
        "seminaive",
    ),
    (
        "head variable repeated",
        ["g(?x, ?x) :- n(?x)", "g(?x, ?x) :- e(?px, ?x), g(?px, ?py), e(?py, ?x)"],
        {},
        "seminaive",
    ),
    (
        "same generation with confidence",
        ["g(?x, ?x) :- n(?x)", "g(?x, ?y) :- e(?px, ?x), g(?px, ?py), e(?py, ?y)"],
        {"weighted": True},
        "seminaive",
    ),
    # -- chains: accepted shapes
    (
        "mutual binary chains",
        [
            "t(?x, ?y) :- e(?x, ?y)",
            "t(?x, ?y) :- e(?x, ?z), u(?z, ?y)",
            "u(?x, ?y) :- t(?x, ?z), e(?z, ?y)",
        ],
        {},
        "chains",
    ),
    (
        "mutual recursion through a copy",
        [
            "t(?x, ?y) :- e(?x, ?y)",
            "t(?x, ?y) :- e(?x, ?z), u(?z, ?y)",
            "u(?x, ?y) :- t(?y, ?x)",
        ],
        {},
        "seminaive",
    ),
    (
        "chain with a NAF exit",
        [
            "t(?x, ?y) :- e(?x, ?y), NAF d(?x, ?y)",
            "t(?x, ?y) :- t(?x, ?z), e(?z, ?y)",
        ],
        {},
        "chains",
    ),
    # -- chains: near-misses
    (
        "constant in the recursive rule",
        ["t(?x, ?y) :- e(?x, ?y)", "t(?x, ?y) :- t(?x, ?z), e(?z, c)"],
        {},
        "seminaive",
    ),
    (
        "repeated variable in the recursive rule",
        ["t(?x, ?y) :- e(?x, ?y)", "t(?x, ?x) :- t(?x, ?z), e(?z, ?x)"],
        {},
        "seminaive",
    ),
    (
        "three literals in the recursive rule",
        ["t(?x, ?y) :- e(?x, ?y)", "t(?x, ?y) :- t(?x, ?z), e(?z, ?y), f(?y)"],
        {},
        "seminaive",
    ),
    (
        "comparison in the recursive rule",
        ["t(?x, ?y) :- e(?x, ?y)", "t(?x, ?y) :- t(?x, ?z), e(?z, ?y), lt(?x, ?y)"],
        {},
        "seminaive",
    ),
    (
        "a ternary relation in the component",
        [
            "t(?x, ?y) :- e(?x, ?y)",
            "t(?x, ?y) :- w(?x, ?z, ?q), e(?z, ?y)",
            "w(?x, ?y, ?x) :- t(?x, ?y)",
        ],
        {},
        "seminaive",
    ),
    (
        "head reverses the chain",
        ["t(?x, ?y) :- e(?x, ?y)", "t(?y, ?x) :- t(?x, ?z), e(?y, ?z)"],
        {},
        "chains",
    ),
    (
        "join of two relations, no recursion",
        ["j(?x, ?y) :- e(?x, ?z), d(?z, ?y)"],
        {},
        "seminaive",
    ),
]


@pytest.mark.parametrize(
    ("texts", "options", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_choose_picks_the_first_strategy_whose_preconditions_hold(
    texts: list[str], options: dict[str, object], expected: str
) -> None:
    component = component_of(texts, **options)  # type: ignore[arg-type]
    assert choose(component).strategy == expected


@pytest.mark.parametrize(("texts", "options"), [(c[1], c[2]) for c in CASES])
def test_every_strategy_declines_what_it_was_not_chosen_for_before_it(
    texts: list[str], options: dict[str, object]
) -> None:
    """Only strategies before the chosen one were asked; each of them declined."""
    component = component_of(texts, **options)  # type: ignore[arg-type]
    chosen = choose(component).strategy
    for name, strategy in STRATEGIES:
        if name == chosen:
            break
        assert strategy(component) is None, name


def test_every_strategy_has_a_case_it_accepts_and_one_it_declines() -> None:
    chosen = {case[3] for case in CASES}
    assert chosen == {name for name, _ in STRATEGIES} | {seminaive.NAME}
