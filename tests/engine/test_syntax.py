"""The text syntax (issue 18): what each statement parses to, errors with their line and
column, and knowledge written back as text reading as the same knowledge."""

from __future__ import annotations

import dataclasses
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nocturnus.engine.rules import BUILTIN_NAMES
from nocturnus.engine.syntax import (
    Ask,
    Atom,
    ParseError,
    Restrict,
    Retract,
    Teach,
    Tell,
    Test,
    parse,
    parse_goal,
    text,
)


def one(source: str) -> object:
    (statement,) = parse(source)
    return dataclasses.replace(statement, line=1, column=1)  # type: ignore[type-var]


def a(predicate: str, *args: object, negated: bool = False, naf: bool = False) -> Atom:
    return Atom(predicate, tuple(args), negated, naf)  # type: ignore[arg-type]


PARSED = [
    # facts: bare words, quoted strings, numbers; "500" stays a string, 500 a number
    ('pred(a, "b c", 3).', Tell(1, 1, a("pred", "a", "b c", 3))),
    (
        'p("500", 500, 500.0, -2, 1e3).',
        Tell(1, 1, a("p", "500", 500, 500.0, -2, 1000.0)),
    ),
    ("p('say \"hi\"').", Tell(1, 1, a("p", 'say "hi"'))),
    ('p("tab\\tand \\u00e9").', Tell(1, 1, a("p", "tab\tand é"))),
    (
        "order(o-7, 2026-01-05, user@example.com, v1.2).",
        Tell(1, 1, a("order", "o-7", "2026-01-05", "user@example.com", "v1.2")),
    ),
    ("raining.", Tell(1, 1, a("raining"))),
    ("raining()", Tell(1, 1, a("raining"))),
    ("NOT paid(o7).", Tell(1, 1, a("paid", "o7", negated=True))),
    ("-paid(o7).", Tell(1, 1, a("paid", "o7", negated=True))),
    ("p(a) @what-if.", Tell(1, 1, a("p", "a"), scope="what-if")),
    ('p(a) @"odd scope".', Tell(1, 1, a("p", "a"), scope="odd scope")),
    (
        'p(a) {confidence: 0.9, "ttl": 60000, metadata: {src: [1, true, null]}}.',
        Tell(
            1,
            1,
            a("p", "a"),
            attributes={
                "confidence": 0.9,
                "ttl": 60000,
                "metadata": {"src": [1, True, None]},
            },
        ),
    ),
    ('"has role"(a, b).', Tell(1, 1, a("has role", "a", "b"))),
    ("ASSERT parent(alice, bob);", Tell(1, 1, a("parent", "alice", "bob"))),
    ("ASSERT NOT p(a);", Tell(1, 1, a("p", "a", negated=True))),
    # rules: Prolog form, negation spelled as the server prints it, comparisons
    (
        "gp(?x, ?z) :- par(?x, ?y), par(?y, ?z).",
        Teach(1, 1, a("gp", "?x", "?z"), (a("par", "?x", "?y"), a("par", "?y", "?z"))),
    ),
    (
        "head(?x) :- body(?x, ?y), not other(?y), ?y > 3.",
        Teach(
            1,
            1,
            a("head", "?x"),
            (a("body", "?x", "?y"), a("other", "?y", naf=True), a(">", "?y", 3)),
        ),
    ),
    (
        "h(?x) :- b(?x), \\+ c(?x), NAF d(?x), NOT e(?x), -f(?x).",
        Teach(
            1,
            1,
            a("h", "?x"),
            (
                a("b", "?x"),
                a("c", "?x", naf=True),
                a("d", "?x", naf=True),
                a("e", "?x", negated=True),
                a("f", "?x", negated=True),
            ),
        ),
    ),
    (
        "h(?x) :- b(?x, ?y), ?y <= 10, ?y >= -1, ?x != ?y, ?y = 5, ?y < 2.5.",
        Teach(
            1,
            1,
            a("h", "?x"),
            (
                a("b", "?x", "?y"),
                a("<=", "?y", 10),
                a(">=", "?y", -1),
                a("!=", "?x", "?y"),
                a("=", "?y", 5),
                a("<", "?y", 2.5),
            ),
        ),
    ),
    (
        "h(?x) :- b(?x), >(?x, 3), lt(?x, 9).",
        Teach(1, 1, a("h", "?x"), (a("b", "?x"), a(">", "?x", 3), a("lt", "?x", 9))),
    ),
    (
        "NOT h(?x) :- b(?x) AND c(?x) @s {confidence: 0.5}.",
        Teach(
            1,
            1,
            a("h", "?x", negated=True),
            (a("b", "?x"), a("c", "?x")),
            "s",
            {"confidence": 0.5},
        ),
    ),
    # the original's forms: inside FORALL and RESTRICT braces NOT means NAF
    (
        "ASSERT FORALL ?x { flies(?x) <- bird(?x) AND NOT penguin(?x) };",
        Teach(1, 1, a("flies", "?x"), (a("bird", "?x"), a("penguin", "?x", naf=True))),
    ),
    (
        "ASSERT FORALL ?x { flies(?x) <- bird(?x) AND -grounded(?x) } @s;",
        Teach(
            1,
            1,
            a("flies", "?x"),
            (a("bird", "?x"), a("grounded", "?x", negated=True)),
            "s",
        ),
    ),
    ("ASSERT h(?x) :- b(?x);", Teach(1, 1, a("h", "?x"), (a("b", "?x"),))),
    # questions
    ("?- grandparent(?x, charlie).", Ask(1, 1, a("grandparent", "?x", "charlie"))),
    ("?- NOT p(?x) @s.", Ask(1, 1, a("p", "?x", negated=True), scope="s")),
    ("INFER g(?x);", Ask(1, 1, a("g", "?x"))),
    ("INFER g(?x) @s WITH PROOF;", Ask(1, 1, a("g", "?x"), scope="s", with_proof=True)),
    ("EXPLAIN p(a);", Ask(1, 1, a("p", "a"), explain=True)),
    ("?- p(?, ?_).", Ask(1, 1, a("p", "?", "?_"))),
    # retractions and constraints
    ("RETRACT p(a) @s;", Retract(1, 1, a("p", "a"), scope="s")),
    ("RETRACT NOT p(a);", Retract(1, 1, a("p", "a", negated=True))),
    (
        "RESTRICT ?x { a(?x) AND b(?x) } -> CONTRADICTION;",
        Restrict(1, 1, (a("a", "?x"), a("b", "?x"))),
    ),
    (
        "RESTRICT { emp(?x), NOT badge(?x), -cleared(?x) }.",
        Restrict(
            1,
            1,
            (
                a("emp", "?x"),
                a("badge", "?x", naf=True),
                a("cleared", "?x", negated=True),
            ),
        ),
    ),
    (
        ":- emp(?x), NOT cleared(?x), not badge(?x).",
        Restrict(
            1,
            1,
            (
                a("emp", "?x"),
                a("cleared", "?x", negated=True),
                a("badge", "?x", naf=True),
            ),
        ),
    ),
    # a predicate may be named like a command when it has arguments
    ("TEST(a).", Tell(1, 1, a("TEST", "a"))),
]


@pytest.mark.parametrize(("source", "expected"), PARSED)
def test_statement_parses_to(source: str, expected: object) -> None:
    assert one(source) == expected


def test_a_script_mixes_both_families_with_comments_and_positions() -> None:
    script = """% a family
parent(alice, bob).   # Prolog style
  ASSERT parent(bob, charlie);   // the original's style
gp(?x, ?z) :-
    parent(?x, ?y),
    parent(?y, ?z).
?- gp(alice, ?who)"""
    statements = parse(script)
    assert [(type(s).__name__, s.line, s.column) for s in statements] == [
        ("Tell", 2, 1),
        ("Tell", 3, 3),
        ("Teach", 4, 1),
        ("Ask", 7, 1),
    ]


def test_a_test_block() -> None:
    (test,) = parse(
        'TEST "grandparents" {\n'
        "  GIVEN { parent(a, b). parent(b, c);\n"
        "          gp(?x, ?z) :- parent(?x, ?y), parent(?y, ?z). }\n"
        "  EXPECT { PROVABLE gp(a, c); NOT_PROVABLE gp(c, a); COUNT gp(?x, ?y) 1 }\n"
        "}\n"
    )
    assert isinstance(test, Test) and test.name == "grandparents"
    assert [type(g).__name__ for g in test.given] == ["Tell", "Tell", "Teach"]
    assert [(e.kind, e.goal.predicate, e.count) for e in test.expectations] == [
        ("provable", "gp", None),
        ("not_provable", "gp", None),
        ("count", "gp", 1),
    ]
    expect = "  EXPECT { PROVABLE gp(a, c); NOT_PROVABLE gp(c, a); COUNT gp(?x, ?y) 1 }"
    count = test.expectations[2]
    assert (count.line, count.column) == (4, expect.index("COUNT") + 1)


def test_parse_goal_takes_a_bare_or_a_full_question() -> None:
    expected = Ask(1, 1, a("grandparent", "?x", "charlie"))
    assert parse_goal("grandparent(?x, charlie)") == expected
    assert parse_goal("?- grandparent(?x, charlie).") == expected
    with pytest.raises(ParseError):
        parse_goal("p(a). q(b).")


def test_statement_limit() -> None:
    assert len(parse("p(a). " * 3, max_statements=3)) == 3
    with pytest.raises(ParseError, match="at most 3 statements") as raised:
        parse("p(a). p(b). p(c). p(d).", max_statements=3)
    assert (raised.value.line, raised.value.column) == (1, 19)


ERRORS = [
    (
        "p(a",
        1,
        4,
        "expected ',' or ')' in the arguments of p, found the end of the script",
    ),
    ("p(a) q(b).", 1, 6, "expected '.' or ';' ending the statement, found 'q'"),
    ("p(?x).", 1, 3, "a fact cannot hold the variable ?x"),
    ('p("abc', 1, 3, "this string is not closed on its line"),
    ("p('it''s').", 1, 7, "expected ',' or ')' in the arguments of p"),
    ("\n\n  p(a) :- .", 3, 11, "expected a predicate name, found '.'"),
    ("?- not p(x).", 1, 4, "a question cannot be negation as failure"),
    ("?- x > 3.", 1, 4, "a comparison cannot be asked on its own"),
    ("x > 3.", 1, 1, "a fact cannot be a comparison"),
    ("not p(a).", 1, 1, "a fact or a rule head cannot be negation as failure"),
    ("h(?x) :- b(?x), not ?x > 3.", 1, 17, "a comparison cannot be negated"),
    ("?x > 1 :- b(?x).", 1, 1, "a rule head cannot be a comparison"),
    ("p(99999999999999999999).", 1, 3, "does not fit in 64 bits; quote it"),
    ("p(1e999).", 1, 3, "the number 1e999 is too large"),
    ("p(-3x).", 1, 3, "'-3x' is not a number; quote it"),
    ('p("?x").', 1, 3, "a constant cannot start with '?'"),
    ('p(a) {scope: "s"}.', 1, 6, "'scope' is written in the statement itself"),
    ("p(a) {confidence:0.9}.", 1, 7, "write a space after ':'"),
    ("p(a) {confidence: }.", 1, 19, "expected a value"),
    ("p(a) $", 1, 6, "unexpected character '$'"),
    ("p(a) @ .", 1, 8, "expected a scope name after '@'"),
    ("INFER g(?x) WITH;", 1, 17, "expected PROOF after WITH"),
    ("RESTRICT { a(?x) ;", 1, 18, "expected '}' closing the constraint"),
    ("RESTRICT { a(?x) } -> OOPS;", 1, 23, "expected CONTRADICTION after '->'"),
    ("ASSERT FORALL ?x { h(?x) :- b(?x) };", 1, 26, "expected '<-'"),
    (
        'TEST "t" { GIVEN { ?- p(a). } EXPECT { PROVABLE p(a); } }',
        1,
        20,
        "GIVEN holds facts, rules and constraints only",
    ),
    (
        'TEST "t" { EXPECT { COUNT p(?x) many; } }',
        1,
        33,
        "expected the number of answers",
    ),
    (
        'TEST "t" { EXPECT { MAYBE p(a); } }',
        1,
        21,
        "expected PROVABLE, NOT_PROVABLE, COUNT",
    ),
    ("TEST t { }", 1, 6, "expected the test's name as a quoted string"),
    ('EXTRACT "Alice is Bob\'s parent";', 1, 1, "EXTRACT needs a language model"),
]


@pytest.mark.parametrize(("source", "line", "column", "message"), ERRORS)
def test_errors_name_line_and_column(
    source: str, line: int, column: int, message: str
) -> None:
    with pytest.raises(ParseError) as raised:
        parse(source)
    error = raised.value
    assert (error.line, error.column) == (line, column), str(error)
    assert message in error.reason
    assert str(error).startswith(f"line {line}, column {column}: ")


# -- written back as text -------------------------------------------------------------

WORDS = st.text(string.ascii_letters + string.digits + "_", min_size=1, max_size=6)
ODD = st.text(min_size=1, max_size=6).filter(lambda s: not s.startswith("?"))
CONSTANTS = st.one_of(
    WORDS,
    ODD,
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        ["500", "-3", "1e3", "NOT", "not", "AND", "a.b", "what-if", "2026-01-05"]
    ),
)
VARIABLES = WORDS.map(lambda w: "?" + w)
PREDICATES = st.one_of(
    WORDS, ODD, st.sampled_from(["NOT", "NAF", "TEST", "has role", "3"])
).filter(
    lambda p: p not in BUILTIN_NAMES  # `lt(1, 2)` is a comparison, never a fact
)


@st.composite
def atoms(
    draw: st.DrawFn, *, terms: st.SearchStrategy[object], body: bool = False
) -> Atom:
    if body and draw(st.booleans()) and draw(st.booleans()):
        op = draw(st.sampled_from(["<", ">", "<=", ">=", "=", "!="]))
        return Atom(op, (draw(terms), draw(terms)))  # type: ignore[arg-type]
    negation = draw(
        st.sampled_from(["", "negated", "naf"] if body else ["", "negated"])
    )
    args = tuple(draw(st.lists(terms, max_size=4)))
    negated, naf = negation == "negated", negation == "naf"
    return Atom(draw(PREDICATES), args, negated, naf)  # type: ignore[arg-type]


ATTRIBUTES = st.dictionaries(
    st.sampled_from(["confidence", "ttl", "metadata", "validUntil"]),
    st.one_of(
        st.integers(0, 10**12),
        st.floats(0, 1),
        st.dictionaries(WORDS, WORDS, max_size=2),
    ),
    max_size=2,
)
SCOPES = st.none() | st.sampled_from(
    ["main", "what-if", "v1.2", "team:a", "a..b", "-x"]
)
KNOWLEDGE = st.one_of(
    st.builds(Tell, st.just(1), st.just(1), atoms(terms=CONSTANTS), SCOPES, ATTRIBUTES),
    st.builds(
        Teach,
        st.just(1),
        st.just(1),
        atoms(terms=st.one_of(VARIABLES, CONSTANTS)),
        st.lists(
            atoms(terms=st.one_of(VARIABLES, CONSTANTS), body=True),
            min_size=1,
            max_size=3,
        ).map(tuple),
        SCOPES,
        ATTRIBUTES.map(lambda d: {k: v for k, v in d.items() if k == "confidence"}),
    ),
    st.builds(
        Restrict,
        st.just(1),
        st.just(1),
        st.lists(
            atoms(terms=st.one_of(VARIABLES, CONSTANTS), body=True),
            min_size=1,
            max_size=3,
        ).map(tuple),
    ),
)


@given(KNOWLEDGE)
def test_knowledge_written_as_text_reads_back_the_same(statement: object) -> None:
    written = text.statement(statement)  # type: ignore[arg-type]
    assert [dataclasses.replace(s, line=1, column=1) for s in parse(written)] == [
        statement
    ], written


def test_text_writes_constants_so_they_read_back_as_sent() -> None:
    assert text.constant("alice") == "alice"
    assert text.constant("b c") == '"b c"'
    assert text.constant("500") == '"500"'
    assert text.constant(500) == "500"
    assert text.constant(500.0) == "500.0"
    assert text.constant("NOT") == '"NOT"'
    assert text.constant("?x") == "?x"
    assert text.atom(a(">", "?y", 3)) == "?y > 3"
    assert text.atom(a("p", "a", negated=True), braced=True) == "-p(a)"
    with pytest.raises(TypeError):
        text.statement(Ask(1, 1, a("p", "?x")))
