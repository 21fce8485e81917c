"""Running a script of the text syntax: its steps, in order, through the tenant façade.

The API parses and validates the whole script into steps before this runs, so a
syntax error or a bad field stores nothing. The steps then run one after another, each
exactly as its REST route would run it (``tell``, ``teach``, ``ask``, ``forget``,
``restrict``) and each committed on its own: a later step sees what an earlier one
stored. The first step that fails stops the script; the steps before it stay done and
the outcome says how far it got.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nocturnus.engine.rules import Literal
from nocturnus.errors import NocturnusError
from nocturnus.service import tenants
from nocturnus.service.answers import Answer
from nocturnus.service.commands import (
    RetractOutcome,
    TeachOutcome,
    TeachRule,
    TellFact,
    TellOutcome,
)
from nocturnus.service.constraints import AddConstraint, RestrictOutcome
from nocturnus.service.database import Database, DatabaseState, now_ms
from nocturnus.service.facts import FactKey
from nocturnus.service.logictests import LogicTest, TestResult, run_tests


@dataclass(frozen=True, slots=True)
class Question:
    """``?- goal.``, ``INFER goal [WITH PROOF];`` or ``EXPLAIN goal;``."""

    goal: Literal
    scope: str | None
    with_proof: bool = False


@dataclass(frozen=True, slots=True)
class Forget:
    """``RETRACT fact;``."""

    key: FactKey


Step = TellFact | TeachRule | Question | Forget | AddConstraint | LogicTest
Outcome = (
    TellOutcome
    | TeachOutcome
    | list[Answer]
    | RetractOutcome
    | RestrictOutcome
    | TestResult
)


@dataclass(frozen=True, slots=True)
class ScriptOutcome:
    """What each step that ran gave, in order; ``failure``: what stopped the script."""

    outcomes: tuple[Outcome, ...]
    failure: NocturnusError | None = None

    @property
    def failed_step(self) -> int | None:
        """The index of the step that failed, or None when every step ran."""
        return len(self.outcomes) if self.failure is not None else None


async def run(
    db: Database[DatabaseState], tenant: str, steps: Sequence[Step]
) -> ScriptOutcome:
    """Run ``steps`` in order; stop at the first error (the steps before stay done)."""
    outcomes: list[Outcome] = []
    for step in steps:
        try:
            outcomes.append(await _run_step(db, tenant, step))
        except NocturnusError as e:
            return ScriptOutcome(tuple(outcomes), e)
    return ScriptOutcome(tuple(outcomes))


async def _run_step(db: Database[DatabaseState], tenant: str, step: Step) -> Outcome:
    if isinstance(step, TellFact):
        return await tenants.tell(db, tenant, step)
    if isinstance(step, TeachRule):
        return await tenants.teach(db, tenant, step)
    if isinstance(step, Question):
        return await tenants.ask(
            db, tenant, step.goal, step.scope, with_proof=step.with_proof
        )
    if isinstance(step, Forget):
        return await tenants.forget(db, tenant, step.key)
    if isinstance(step, AddConstraint):
        return await tenants.restrict(db, tenant, step)
    # inline, not in a worker: a script inside a transaction is run again at commit
    # and must not suspend between its steps; the budget bounds it on the loop
    now = now_ms()
    return db.evaluator.bounded(lambda budget: run_tests([step], now, budget))[0]


async def test(
    db: Database[DatabaseState], tenant: str, tests: Sequence[LogicTest]
) -> list[TestResult]:
    """Run logic tests in scratch tenants (``POST /test``), off the event loop under
    one query budget, taking the tenant's turn like its questions (issue 13).

    :raises QueryBudgetExceeded: the tests' evaluations went past the budget.
    """
    evaluator = db.evaluator
    now = now_ms()
    async with evaluator.turn((db.name, tenant)):
        return await evaluator.run_private(lambda budget: run_tests(tests, now, budget))
