"""Evaluation in worker threads reads one state, whatever the loop writes meanwhile.

Issue 13: evaluation moved off the event loop, and writes of the same tenant must see
a consistent state. A worker reads pinned views; a write detaches them first (a
copy-on-write fork of the index), so the write neither waits for the reader nor
shows it half of anything. The worker here is held mid-question by a gate while
the loop writes, so the overlap is certain, not a matter of timing.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from nocturnus.engine.budget import Budget, BudgetExceeded
from nocturnus.engine.evaluate import Matches
from nocturnus.engine.rules import Literal
from nocturnus.engine.terms import Var
from nocturnus.errors import QueryBudgetExceeded, Unavailable
from nocturnus.service import queries, tenants
from nocturnus.service.commands import TeachRule, TellFact
from nocturnus.service.database import Database, DatabaseState
from nocturnus.service.databases import Databases
from nocturnus.service.evaluation import Evaluator, Limits
from nocturnus.service.facts import FactKey
from nocturnus.service.projection import TenantState
from nocturnus.store.crypto import MasterKey

MASTER = MasterKey(bytes(range(32)))
GOAL = Literal("r", (Var("x"),))


def lit(predicate: str, *args: object) -> dict:
    return {"predicate": predicate, "args": list(args), "negated": False, "naf": False}


async def seeded(path: Path, evaluator: Evaluator) -> tuple[Databases, Database[DatabaseState]]:
    databases = Databases(path, MASTER, evaluator=evaluator)
    await databases.open()
    db = databases.get("default")
    for name in ("a", "b", "c"):
        await tenants.tell(db, "acme", TellFact("p", (name,)))
    await tenants.teach(db, "acme", TeachRule(lit("r", "?x"), (lit("p", "?x"),)))
    return databases, db


def held(
    questions: list[queries.ScopeQuestion],
) -> tuple[Callable[[Budget], list[Matches]], threading.Event, threading.Event]:
    """A question that waits for ``gate`` once it has started (``started``)."""
    started, gate = threading.Event(), threading.Event()

    def work(budget: Budget) -> list[Matches]:
        started.set()
        assert gate.wait(30)
        return queries.evaluate(questions, GOAL, budget=budget)

    return work, started, gate


def pins(state: TenantState) -> int:
    return state.reading + sum(view.readers for view in state.views.values())


def args_of(found: queries.AnswerSet) -> list[tuple]:
    return [a.key.args for a in found.answers()]


def test_writes_during_an_evaluation_neither_wait_for_it_nor_show_in_it(tmp_path: Path) -> None:
    async def scenario() -> None:
        databases, db = await seeded(tmp_path, Evaluator(workers=2, on_loop_ms=None))
        state, _ = await db.current("acme")
        questions = queries.scope_questions(state, db.root.rules, None)
        work, started, gate = held(questions)
        reading = asyncio.ensure_future(
            db.evaluator.run(state, [q.view for q in questions], work)
        )
        assert await asyncio.to_thread(started.wait, 30)
        # the worker is mid-question: these writes complete while it still reads
        await tenants.tell(db, "acme", TellFact("p", ("d",)))
        await tenants.forget(db, "acme", FactKey("main", "p", False, ("a",)))
        assert [a.key.args for a in await tenants.ask(db, "acme", GOAL, None)] == [
            ("b",), ("c",), ("d",)
        ]
        assert not reading.done()
        gate.set()
        found = await reading
        assert args_of(queries.collect(state, GOAL, questions, found)) == [("a",), ("b",), ("c",)]
        assert pins(state) == 0
        await databases.close()

    asyncio.run(scenario())


def test_a_cancelled_request_keeps_its_views_pinned_until_the_worker_stops(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        databases, db = await seeded(tmp_path, Evaluator(workers=1, on_loop_ms=None))
        state, _ = await db.current("acme")
        questions = queries.scope_questions(state, db.root.rules, None)
        work, started, gate = held(questions)
        reading = asyncio.ensure_future(
            db.evaluator.run(state, [q.view for q in questions], work)
        )
        assert await asyncio.to_thread(started.wait, 30)
        reading.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reading
        assert state.reading == 1  # the worker still reads: no write may touch its views
        await tenants.tell(db, "acme", TellFact("p", ("d",)))
        gate.set()  # its budget was cancelled: the worker stops at its first check
        for _ in range(600):
            if state.reading == 0:
                break
            await asyncio.sleep(0.05)
        assert pins(state) == 0
        answers = await tenants.ask(db, "acme", GOAL, None)
        assert [a.key.args for a in answers] == [("a",), ("b",), ("c",), ("d",)]
        await databases.close()

    asyncio.run(scenario())


def test_a_question_gives_way_to_a_busy_loop_only_after_its_first_milliseconds(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 17: a small question over a big tenant runs in a worker, and its own
    request had just made the loop busy; it slept 2 ms at its first budget check.
    The clock and the sleep are the module's, replaced: no timing is measured."""
    from nocturnus.service import evaluation

    now = [100.0]
    slept: list[float] = []
    monkeypatch.setattr(evaluation.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(evaluation.time, "sleep", slept.append)
    evaluator = Evaluator()
    try:
        evaluator.busy()  # the question's own request starts
        started = now[0]
        now[0] += evaluation.ON_LOOP_MS / 1000 / 2
        evaluator._give_way(started)
        assert slept == []  # still within its first milliseconds
        now[0] = started + 2 * evaluation.ON_LOOP_MS / 1000
        evaluator.busy()  # another request
        evaluator._give_way(started)
        assert slept == [evaluation.YIELD_S]  # a long question gives way
        now[0] += 2 * evaluation.BUSY_WINDOW_S
        evaluator._give_way(started)
        assert slept == [evaluation.YIELD_S]  # the loop is idle again
    finally:
        evaluator.close()


def test_past_the_budget_a_question_is_refused_and_the_tenant_still_answers(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        databases, db = await seeded(tmp_path, Evaluator(Limits(max_rows=2), workers=1))
        with pytest.raises(QueryBudgetExceeded) as refused:
            await tenants.ask(db, "acme", GOAL, None)
        assert refused.value.details == {
            "limit": "rows", "value": 2, "setting": "NOCTURNUS_QUERY_MAX_ROWS"
        }
        assert isinstance(refused.value.__cause__, BudgetExceeded)
        state, _ = await db.current("acme")
        assert pins(state) == 0
        db.evaluator.limits = Limits(max_rows=3)
        assert len(await tenants.ask(db, "acme", GOAL, None)) == 3
        await databases.close()

    asyncio.run(scenario())


def test_a_page_of_more_answers_than_one_response_may_carry_is_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        databases, db = await seeded(tmp_path, Evaluator(Limits(max_answers=2), workers=1))
        with pytest.raises(QueryBudgetExceeded) as refused:
            await tenants.ask(db, "acme", GOAL, None)
        assert refused.value.details == {
            "limit": "answers", "value": 2, "setting": "NOCTURNUS_QUERY_MAX_ANSWERS", "count": 3
        }
        assert len(await tenants.ask(db, "acme", GOAL, None, limit=2)) == 2
        assert await tenants.count_answers(db, "acme", GOAL, None) == 3
        await databases.close()

    asyncio.run(scenario())


def test_a_small_question_is_answered_on_the_loop_and_a_longer_one_in_a_worker(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        databases, db = await seeded(tmp_path, Evaluator(workers=1))
        state, _ = await db.current("acme")
        views = [q.view for q in queries.scope_questions(state, db.root.rules, None)]
        threads: list[str] = []

        def small(budget: Budget) -> str:
            threads.append(threading.current_thread().name)
            return "small"

        def longer(budget: Budget) -> str:
            threads.append(threading.current_thread().name)
            if threading.current_thread() is threading.main_thread():
                while True:  # more than the loop's share: stopped by its deadline
                    budget.tick()
            return "longer"

        assert await db.evaluator.run(state, views, small) == "small"
        assert threads == ["MainThread"]
        threads.clear()
        assert await db.evaluator.run(state, views, longer) == "longer"
        assert threads[0] == "MainThread" and threads[1].startswith("nocturnus-eval")
        await databases.close()

    asyncio.run(scenario())


def test_a_question_stopped_by_a_shutdown_is_a_503_not_a_budget_error() -> None:
    """close() cancels the budgets of running questions; the request still waiting
    for one gets UNAVAILABLE (retry elsewhere), never an unknown-limit crash."""

    async def scenario() -> None:
        evaluator = Evaluator(workers=1, on_loop_ms=None)
        started = threading.Event()

        def spin(budget: Budget) -> int:
            started.set()
            while True:
                budget.check()

        asked = asyncio.ensure_future(evaluator.run_private(spin))
        await asyncio.to_thread(started.wait, 5)
        evaluator.close()
        with pytest.raises(Unavailable, match="shutting down"):
            await asyncio.wait_for(asked, 5)

    asyncio.run(scenario())
