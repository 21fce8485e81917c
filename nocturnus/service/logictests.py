"""Logic unit tests: facts and rules given, questions expected, in a scratch tenant.

A test never touches the caller's knowledge: it builds an empty tenant projection in
memory, sends its setup through the same decisions and the same ``apply`` as real
writes (so contradictions, unsafe rules and RESTRICT constraints fail as they would),
logs nothing, and asks its expectations with the same query code as ``/ask``. A setup
step that is refused fails its test with that error; the other tests still run.

One budget spans every evaluation of a run (expectations and constraint checks of
every test), as one request's question would (issue 13): a run past it stops whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nocturnus.engine.budget import Budget
from nocturnus.engine.rules import Literal
from nocturnus.engine.terms import Const, const_key
from nocturnus.errors import NocturnusError
from nocturnus.service import queries
from nocturnus.service.commands import TeachRule, TellFact, decide_teach, decide_tell
from nocturnus.service.constraints import AddConstraint, check_writes, decide_restrict
from nocturnus.service.events import Event
from nocturnus.service.projection import TenantState, apply
from nocturnus.service.rulebook import Rulebook

EXPECTATION_KINDS = ("provable", "not_provable", "result_count", "results_exactly")
SetupStep = TellFact | TeachRule | AddConstraint


@dataclass(frozen=True, slots=True)
class Expectation:
    """``provable``, ``not_provable``, ``result_count`` (``count``) or
    ``results_exactly`` (``expected``: the answers' arguments, in any order)."""

    kind: str
    goal: Literal
    scope: str | None = None
    count: int | None = None
    expected: tuple[tuple[Const, ...], ...] = ()


@dataclass(frozen=True, slots=True)
class LogicTest:
    """A named test: facts and rules to set up, then what must (not) hold."""

    name: str
    setup: tuple[SetupStep, ...]
    expectations: tuple[Expectation, ...]


@dataclass(frozen=True, slots=True)
class ExpectationResult:
    """Whether one expectation held, with the answers found."""

    expectation: Expectation
    passed: bool
    answers: tuple[tuple[Const, ...], ...]


@dataclass(frozen=True, slots=True)
class TestResult:
    """One test's verdict; ``error`` and ``failed_step`` name a refused setup step."""

    __test__ = False  # not a pytest class

    name: str
    passed: bool
    results: tuple[ExpectationResult, ...]
    error: NocturnusError | None = None
    failed_step: int | None = None


def run_tests(
    tests: Sequence[LogicTest], now_ms: int, budget: Budget | None = None
) -> list[TestResult]:
    """Run each test in its own scratch tenant (pure computation: no I/O, no log).

    :raises BudgetExceeded: past ``budget``.
    """
    return [_run(test, now_ms, budget) for test in tests]


def _run(test: LogicTest, now_ms: int, budget: Budget | None) -> TestResult:
    state = TenantState(name="test")
    no_rules = Rulebook()
    seq = 0
    for index, step in enumerate(test.setup):
        events: list[Event]
        try:
            if isinstance(step, TellFact):
                events, _ = decide_tell(state, step, now_ms, "REJECT")
            elif isinstance(step, TeachRule):
                events, _ = decide_teach(state.rules, step, now_ms, "tenant")
            else:
                events, _ = decide_restrict(state, no_rules, step, now_ms, budget)
            check_writes(state, no_rules, events, now_ms, budget)
        except NocturnusError as e:
            return TestResult(test.name, False, (), error=e, failed_step=index)
        for event in events:
            seq += 1
            apply(state, seq, event)
        state.refresh(now_ms)
    results = tuple(_check(state, no_rules, e, budget) for e in test.expectations)
    return TestResult(test.name, all(r.passed for r in results), results)


def _check(
    state: TenantState, rules: Rulebook, expectation: Expectation, budget: Budget | None
) -> ExpectationResult:
    answers = queries.ask(
        state, rules, expectation.goal, expectation.scope, budget=budget
    )
    found = tuple(a.key.args for a in answers)
    kind = expectation.kind
    if kind == "provable":
        passed = bool(found)
    elif kind == "not_provable":
        passed = not found
    elif kind == "result_count":
        passed = len(found) == expectation.count
    else:
        passed = _keys(found) == _keys(expectation.expected)
    return ExpectationResult(expectation, passed, found)


def _keys(rows: Sequence[tuple[Const, ...]]) -> set[tuple[object, ...]]:
    return {tuple(const_key(v) for v in row) for row in rows}
