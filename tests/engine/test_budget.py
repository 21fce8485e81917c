"""A request's budget stops evaluations past their rows or time, and leaves no trace.

Issue 13: ``q(?a,?b,?c,?d) :- p(?a),p(?b),p(?c),p(?d)`` over 40 facts derived 2.56 M
rows in one round before anything looked. The budget is checked inside the joins,
so a single round stops near the limit; and since results are cached only once an
evaluation finishes, the same reasoner answers correctly afterwards.
"""

from __future__ import annotations

import itertools

import pytest

from nocturnus.engine.budget import CHECK_EVERY, Budget, BudgetExceeded
from nocturnus.engine.evaluate import Program, Reasoner
from nocturnus.engine.index import FactIndex
from nocturnus.engine.rules import Literal
from tests.engine.dsl import lit, rule

CROSS = "q(?a, ?b, ?c, ?d) :- p(?a), p(?b), p(?c), p(?d)"


def unary(n: int) -> FactIndex:
    facts = FactIndex()
    for i in range(n):
        facts.add("p", False, (f"n{i}",))
    return facts


class Recording(Budget):
    """A budget that records the rows it saw at every check."""

    __slots__ = ("seen",)

    def __init__(self, max_rows: int) -> None:
        super().__init__(max_rows=max_rows)
        self.seen: list[int] = []

    def check(self, pending: int = 0) -> None:
        self.seen.append(self.rows + pending)
        super().check(pending)


def test_one_round_of_a_cross_product_stops_within_one_check_of_the_limit() -> None:
    facts = unary(40)
    derived = Recording(10_000)
    with pytest.raises(BudgetExceeded) as raised:
        Reasoner(facts, budget=derived).count(Program([rule(CROSS)]), lit(CROSS.split(" :- ")[0]))
    assert raised.value.limit == "rows" and raised.value.value == 10_000
    # One check covers at most CHECK_EVERY runs of the innermost scan (40 rows).
    assert max(derived.seen) <= 10_000 + CHECK_EVERY * 40
    assert max(derived.seen) < 40**4


@pytest.mark.parametrize("goal", ["q(?a, ?b, ?c, ?d)", "q(n1, ?b, ?c, ?d)"])
def test_a_stopped_evaluation_leaves_nothing_a_later_question_trusts(goal: str) -> None:
    facts = unary(12)
    program = Program([rule(CROSS)])
    with pytest.raises(BudgetExceeded):
        Reasoner(facts, budget=Budget(max_rows=100)).count(program, lit(goal))
    wanted = 12**4 if "?a" in goal else 12**3
    assert Reasoner(facts).count(program, lit(goal)) == wanted
    assert Reasoner(facts, budget=Budget(max_rows=wanted)).count(program, lit(goal)) == wanted


def test_the_deadline_stops_an_evaluation_on_the_given_clock() -> None:
    ticks = itertools.count()
    budget = Budget(timeout_ms=5_000, clock=lambda: float(next(ticks)))
    with pytest.raises(BudgetExceeded) as raised:
        Reasoner(unary(40), budget=budget).count(Program([rule(CROSS)]), lit("q(?a, ?b, ?c, ?d)"))
    assert raised.value.limit == "time" and raised.value.value == 5_000
    assert next(ticks) <= 8  # the clock is read at checks only, not per row


def test_cancel_stops_at_the_next_check() -> None:
    budget = Budget()
    budget.cancel()
    with pytest.raises(BudgetExceeded) as raised:
        Reasoner(unary(40), budget=budget).count(Program([rule(CROSS)]), lit("q(?a, ?b, ?c, ?d)"))
    assert raised.value.limit == "cancelled"


def test_every_row_of_a_finished_evaluation_is_charged() -> None:
    budget = Budget(max_rows=10**6)
    assert Reasoner(unary(10), budget=budget).count(Program([rule(CROSS)]), lit("q(?a, ?b, ?c, ?d)")) == 10**4
    assert budget.rows == 10**4


def test_a_strategy_charges_the_budget_too() -> None:
    facts = FactIndex()
    for i in range(300):
        facts.add("e", False, (f"n{i}", f"n{i + 1}"))
    rules = [rule("t(?x, ?y) :- e(?x, ?y)"), rule("t(?x, ?z) :- t(?x, ?y), e(?y, ?z)")]
    observed: list[str] = []
    reasoner = Reasoner(facts, observe=observed.append, budget=Budget(max_rows=1_000))
    with pytest.raises(BudgetExceeded):
        reasoner.count(Program(rules), lit("t(?x, ?y)"))
    assert "closure" in observed
    assert Reasoner(facts).count(Program(rules), lit("t(?x, ?y)")) == 300 * 301 // 2


def test_proofs_are_bounded_by_the_same_budget() -> None:
    facts = FactIndex()
    for i in range(200):
        facts.add("e", False, (f"n{i}", f"n{i + 1}"))
    rules = [rule("t(?x, ?y) :- e(?x, ?y)"), rule("t(?x, ?z) :- e(?x, ?y), t(?y, ?z)")]
    with pytest.raises(BudgetExceeded):
        Reasoner(facts, budget=Budget(max_rows=50)).explain(Program(rules), Literal("t", ("n0", "n200")))
    assert Reasoner(facts).explain(Program(rules), Literal("t", ("n0", "n200"))) is not None


def test_a_rule_longer_than_one_generated_function_is_checked_in_its_continuations() -> None:
    body = ", ".join(f"p(?x{i})" for i in range(20))
    head = "q(" + ", ".join(f"?x{i}" for i in range(16)) + ")"
    goal = lit("q(" + ", ".join(f"?y{i}" for i in range(16)) + ")")
    with pytest.raises(BudgetExceeded):  # 3 ** 20 rows unless stopped
        Reasoner(unary(3), budget=Budget(max_rows=5_000)).count(Program([rule(f"{head} :- {body}")]), goal)
