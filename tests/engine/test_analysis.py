"""Range restriction and stratification: bad programs are refused with a clear reason."""

from __future__ import annotations

import pytest

from nocturnus.engine.analysis import ProgramError, check_program, check_rule
from nocturnus.engine.evaluate import Program
from tests.engine.dsl import rule


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p(?x, ?y) :- q(?x)", "head variable ?y"),
        ("p(?x) :- q(?y), NAF r(?x)", "head variable ?x"),
        ("p(?x) :- q(?x), NAF r(?y)", "variable ?y of negation-as-failure"),
        ("p(?x) :- q(?x), lt(?y, 3)", "variable ?y of built-in"),
        ("p(?x) :- q(?x), lt(?x)", "takes 2 arguments"),
        ("p(?) :- q(?x)", "anonymous variable"),
        ("lt(?x, 1) :- q(?x)", "built-in"),
        ("NAF p(?x) :- q(?x)", "negation as failure"),
        ("p(?x) :- q(?x), NOT lt(?x, 3)", "cannot be negated"),
    ],
)
def test_check_rule_rejects(text, message):
    with pytest.raises(ProgramError, match=message.replace("?", r"\?")):
        check_rule(rule(text))


@pytest.mark.parametrize(
    "text",
    [
        "p(?x) :- q(?x), NAF r(?x, ?_)",  # anonymous inside NAF means "any value"
        "p(?x, a) :- q(?x), gt(?x, 3)",
        "NOT p(?x) :- q(?x), NOT r(?x)",
        "p(a) :- q(?_)",
    ],
)
def test_check_rule_accepts(text):
    check_rule(rule(text))


@pytest.mark.parametrize(
    ("texts", "names"),
    [
        (["p(?x) :- q(?x), NAF p(?x)"], ["p"]),
        (["p(?x) :- d(?x), NAF q(?x)", "q(?x) :- d(?x), p(?x)"], ["p", "q"]),
        (
            ["p(?x) :- d(?x), NAF NOT p(?x)", "NOT p(?x) :- d(?x), p(?x)"],
            ["NOT p", "p"],
        ),
    ],
)
def test_recursion_through_naf_is_refused(texts, names):
    with pytest.raises(ProgramError, match="not stratified") as info:
        check_program([rule(t) for t in texts])
    for name in names:
        assert name in str(info.value)
    with pytest.raises(ProgramError):
        Program([rule(t) for t in texts])


def test_negated_and_positive_relations_are_separate_for_strata():
    # p depends on NAF NOT p, which does not depend on p: stratified.
    check_program([rule("p(?x) :- d(?x), NAF NOT p(?x)"), rule("NOT p(?x) :- e(?x)")])


def test_program_error_is_a_value_error():
    assert issubclass(ProgramError, ValueError)
