"""Literal and rule text forms, and the comparison built-ins."""

from __future__ import annotations

import pytest

from nocturnus.engine.rules import BUILTIN_NAMES, Literal, Rule, compare
from nocturnus.engine.terms import Var, parse_term


def test_literal_text_forms():
    x, y = Var("x"), Var("y")
    assert Literal("parent", ("alice", y)).text() == "parent(alice, ?y)"
    assert Literal("parent", ("a", "b"), negated=True).text() == "NOT parent(a, b)"
    assert Literal("parent", ("a", "b"), naf=True).text() == "NAF parent(a, b)"
    assert Literal("p", (500, 2.5, 500.0, "500")).text() == "p(500, 2.5, 500.0, 500)"
    assert Literal("p", (parse_term("?"),)).text() == "p(?_)"
    rule = Rule(
        "r1",
        Literal("grandparent", (x, Var("z"))),
        (Literal("parent", (x, y)), Literal("parent", (y, Var("z")))),
    )
    assert rule.text() == "grandparent(?x, ?z) :- parent(?x, ?y), parent(?y, ?z)"


def test_builtin_spellings():
    assert set(BUILTIN_NAMES.values()) == {"lt", "gt", "le", "ge", "eq", "neq"}
    assert BUILTIN_NAMES["<="] == "le" and BUILTIN_NAMES["!="] == "neq"


@pytest.mark.parametrize(
    ("op", "left", "right", "expected"),
    [
        ("lt", 5, 10, True),
        ("<", "5", 10, True),  # numeric strings compare as numbers
        ("lt", "9", "10", True),  # ... even when both are strings
        ("gt", 2.5, "2", True),
        ("eq", "500", 500, True),
        ("=", 500.0, 500, True),
        ("neq", "500", 500, False),
        ("eq", "abc", "abc", True),
        ("eq", "abc", "ABC", False),
        ("lt", "apple", "banana", True),  # both non-numeric: code-point order
        ("ge", "b", "a", True),
        ("lt", "abc", 5, False),  # mixed kinds: orderings are false
        ("gt", "abc", 5, False),
        ("eq", "abc", 5, False),
        ("neq", "abc", 5, True),
        ("<=", 3, 3, True),
        (">=", 3, 4, False),
    ],
)
def test_compare(op, left, right, expected):
    assert compare(op, left, right) is expected
