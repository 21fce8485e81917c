"""FactIndex: add/remove/match over any bound positions, versions, copy-on-write."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nocturnus.engine.index import FactIndex
from nocturnus.engine.terms import Var


def test_add_remove_contains_and_confidence():
    facts = FactIndex()
    assert facts.add("p", False, ("a", 1))
    assert not facts.add("p", False, ("a", 1))
    assert facts.add("p", True, ("a", 1))  # the negated relation is separate
    assert facts.add("p", False, ("a",))  # so is every arity
    assert len(facts) == 3
    assert facts.contains("p", False, ("a", 1))
    assert not facts.contains("p", False, ("a", 1.0))  # 1.0 is not 1
    assert not facts.contains("p", False, ("a", "1"))
    assert facts.confidence("p", False, ("a", 1)) is None
    version = facts.version
    assert not facts.add("p", False, ("a", 1), 0.5)
    assert facts.confidence("p", False, ("a", 1)) == 0.5
    assert facts.version > version
    version = facts.version
    facts.add("p", False, ("a", 1), 0.5)
    assert facts.version == version  # no effective change, no new version
    assert facts.remove("p", False, ("a", 1))
    assert not facts.remove("p", False, ("a", 1))
    assert not facts.remove("p", False, ("zzz", 1))
    assert facts.version > version
    assert len(facts) == 2
    assert facts.relations() == [("p", False, 1, 1), ("p", True, 2, 1)]


@pytest.mark.parametrize("bad", [-0.1, 1.5, True])
def test_confidence_must_be_within_zero_and_one(bad):
    with pytest.raises(ValueError):
        FactIndex().add("p", False, ("a",), bad)


def _brute_force(rows, pattern):
    found = []
    for row in rows:
        env = {}
        ok = True
        for term, value in zip(pattern, row):
            if isinstance(term, Var):
                if env.setdefault(term, (type(value), value)) != (type(value), value):
                    ok = False
            elif (type(term), term) != (type(value), value):
                ok = False
        if ok:
            found.append(row)
    return sorted(found, key=lambda r: [(type(v) is str, v) for v in r])


def test_match_every_bound_position_combination():
    rng = random.Random(3)
    values = ["a", "b", "c", 1, "1", 1.0]
    rows = {tuple(rng.choice(values) for _ in range(3)) for _ in range(120)}
    facts = FactIndex()
    for row in rows:
        facts.add("t", False, row)
    x, y = Var("x"), Var("y")
    for bound in itertools.product([False, True], repeat=3):
        for constants in itertools.product(values, repeat=sum(bound)):
            it = iter(constants)
            pattern = tuple(
                next(it) if b else v for b, v in zip(bound, (x, y, Var("z")))
            )
            got = facts.match("t", False, pattern)
            assert sorted(map(repr, got)) == sorted(
                map(repr, _brute_force(rows, pattern))
            )
    # Repeated variables must agree, with types kept apart (1 vs 1.0 vs "1").
    got = facts.match("t", False, (x, x, y))
    assert all(type(r[0]) is type(r[1]) and r[0] == r[1] for r in got)
    assert len(got) == len(_brute_force(rows, (x, x, y)))
    assert facts.match("t", False, (x, y)) == []  # arity must match
    assert facts.match("t", False, ("nope", x, y)) == []


def test_indexes_stay_current_after_add_and_remove():
    facts = FactIndex()
    facts.add("e", False, ("a", "b"))
    assert facts.match("e", False, ("a", Var("y"))) == [("a", "b")]  # builds index
    facts.add("e", False, ("a", "c"))
    facts.remove("e", False, ("a", "b"))
    assert facts.match("e", False, ("a", Var("y"))) == [("a", "c")]
    assert facts.match("e", False, (Var("x"), "c")) == [("a", "c")]
    facts.remove("e", False, ("a", "c"))
    assert facts.match("e", False, ("a", Var("y"))) == []
    assert facts.relations() == []


def test_match_results_are_sorted_by_sort_key():
    facts = FactIndex()
    for value in ["b", 10, "a", 2.5, 10.0, "10", -3]:
        facts.add("v", False, (value,))
    assert facts.match("v", False, (Var("x"),)) == [
        (-3,),
        (2.5,),
        (10,),
        (10.0,),
        ("10",),
        ("a",),
        ("b",),
    ]


def test_copy_is_isolated_both_ways():
    facts = FactIndex()
    for i in range(10):
        facts.add("e", False, (i, i + 1))
    facts.match("e", False, (1, Var("y")))  # an index exists before the fork
    fork = facts.copy()
    fork.add("e", False, (100, 101))
    fork.remove("e", False, (1, 2))
    facts.add("e", False, (200, 201))
    facts.remove("e", False, (2, 3))
    assert fork.contains("e", False, (2, 3)) and not fork.contains(
        "e", False, (200, 201)
    )
    assert facts.contains("e", False, (1, 2)) and not facts.contains(
        "e", False, (100, 101)
    )
    assert fork.match("e", False, (1, Var("y"))) == []
    assert facts.match("e", False, (1, Var("y"))) == [(1, 2)]
    assert len(facts) == len(fork) == 10
    twice = fork.copy()
    twice.add("f", False, ("x",))
    assert not fork.contains("f", False, ("x",))


def test_copy_shares_relations_until_written():
    facts = FactIndex()
    for i in range(1000):
        facts.add("e", False, (i, i + 1))
        facts.add("g", False, (i,))
    fork = facts.copy()
    assert fork.relation(("e", False, 2)) is facts.relation(("e", False, 2))
    fork.add("g", False, (-1,))
    assert fork.relation(("e", False, 2)) is facts.relation(("e", False, 2))
    assert fork.relation(("g", False, 1)) is not facts.relation(("g", False, 1))


operations = st.lists(
    st.tuples(
        st.sampled_from(["add", "remove", "fork"]),
        st.sampled_from(["p", "q"]),
        st.tuples(st.sampled_from(["a", 1, "1", 1.0]), st.sampled_from(["b", 2])),
    ),
    max_size=40,
)


@given(operations)
def test_fork_behaves_like_an_independent_set(ops):
    facts, model = FactIndex(), set()
    forks = []
    for op, predicate, args in ops:
        key = (predicate, tuple((type(a), a) for a in args))
        if op == "add":
            assert facts.add(predicate, False, args) == (key not in model)
            model.add(key)
        elif op == "remove":
            assert facts.remove(predicate, False, args) == (key in model)
            model.discard(key)
        else:
            forks.append((facts.copy(), set(model)))
        assert len(facts) == len(model)
    for fork, snapshot in forks:
        assert len(fork) == len(snapshot)
        for predicate, typed in snapshot:
            assert fork.contains(predicate, False, tuple(v for _, v in typed))
