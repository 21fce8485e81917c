"""Questions evaluated off the event loop, one at a time per tenant, under a budget.

Issue 13: evaluation ran on the event loop with no bound, so one tenant's question
(``q(?a,?b,?c,?d) :- p(?a),p(?b),p(?c),p(?d)`` over 40 facts: 2.56 M rows, 9.5 s,
500 MB) froze ``/health/live`` and every other tenant for its whole length.

**Budget.** Every question gets a :class:`~nocturnus.engine.budget.Budget` from the
:class:`Limits`: rows derived (``NOCTURNUS_QUERY_MAX_ROWS``), wall time
(``NOCTURNUS_QUERY_TIMEOUT_MS``, from when the question is handed to a worker), and
answers one response may carry (``NOCTURNUS_QUERY_MAX_ANSWERS``). Past one, the
question is a 422 ``QUERY_BUDGET_EXCEEDED`` naming the limit and the setting; the
engine caches a result only once its evaluation has finished, so nothing of a
stopped one is kept.

**Where evaluation runs, and why** (measured, ``benchmarks/fairness.py``; figures in
``benchmarks/README.md``). A question over few facts is first tried on the loop for
:data:`ON_LOOP_MS` (most answer in far less: a trip to a worker would cost more than
the answer); past that it stops, keeping nothing, and runs in a pool of worker
threads (``NOCTURNUS_QUERY_WORKERS``). The engine is pure Python, so a worker holds
the GIL while it computes. Three measures keep the loop responsive, each measured
against the issue's kind of heavy question with small requests of other tenants
arriving: (1) the server lowers the switch interval to :data:`SWITCH_INTERVAL_S` (the
default 5 ms is paid on every hand-over of the GIL, and a request makes many: each
socket call, the writer's commit): ``/health/live`` went from a median 23 ms to
12 ms; (2) the joins check the budget about every millisecond of work
(``Budget.tick``) and a worker past its question's first :data:`ON_LOOP_MS` then
sleeps :data:`YIELD_S` while the loop has been busy in the last
:data:`BUSY_WINDOW_S` (:meth:`Evaluator.busy`), so the loop
finishes a request uncontended: the small tenants' median went from 19 ms to about
1 ms, their p99 to about their p99 without the heavy tenant (1 ms of sleep left
them 1.7-3.4 times it, 2 ms 0.7-2.1 times: the heavy question's core is taken from
everything else on a 2-core machine); (3) a worker never waits for an idle loop, so a
heavy question alone runs at full speed. A process pool was rejected: the question
reads the tenant's in-memory projection, which another process would have to receive
(pickled, per question) or replicate.

**Consistency.** A worker reads the tenant's scope views as they were when the
question was asked: the views it reads are pinned (``ScopeView.readers``) and the
tenant detaches pinned views before any change (``TenantState.detach_read_views``,
called by ``Database.current`` and ``Database.commit``), giving the writer a
copy-on-write fork of the index. So a write never waits for a reader and a reader
never sees half a write. The worker never interns: the rule constants of the
programs it runs are interned on the loop first (``queries.scope_questions``).

**Other evaluations.** A context window's goals (``context.window.goal_window``) and
logic tests (``POST /test``, :meth:`Evaluator.run_private`: scratch tenants, nothing to
pin) run here too. The RESTRICT checks of a write cannot leave the loop (a write
decides and commits with no ``await`` between), so :meth:`Evaluator.bounded` runs them
there under the same limits: the budget bounds how long they hold it.

**Fairness.** Questions of one tenant take turns (:meth:`Evaluator.turn`): a tenant
sending many heavy questions holds one worker, and the other tenants' questions find
the others free.
"""

from __future__ import annotations

import asyncio
import functools
import sys
import time
from collections.abc import AsyncIterator, Callable, Hashable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import TypeVar

from nocturnus.engine.budget import CANCELLED, ROWS, TIME, Budget, BudgetExceeded
from nocturnus.errors import QueryBudgetExceeded, Unavailable
from nocturnus.service.projection import ScopeView, TenantState

T = TypeVar("T")

ON_LOOP_MS = 2
"""How long a question is first tried on the event loop (see :meth:`Evaluator.run`)."""

ON_LOOP_MAX_FACTS = 20_000
"""Visible facts of the views read past which a question goes to a worker at once:
between two budget checks the joins may finish one scan of a relation, and the loop
must not wait for a long one."""

YIELD_S = 0.002
"""How long a worker sleeps at a budget check while the event loop is busy: a heavy
question then computes about 1 ms in 3, the small requests keep their latency."""

BUSY_WINDOW_S = 0.005
"""How long after a sign of work on the loop (a request starting or ending, an
evaluation handing back its answer) the loop counts as busy."""

SWITCH_INTERVAL_S = 0.001
"""The longest a thread holding the GIL keeps it from another that asks for it (the
interpreter's default is 5 ms); set by the server at start (:func:`share_the_gil`)."""

ANSWERS = "answers"
SETTINGS = {
    ROWS: "NOCTURNUS_QUERY_MAX_ROWS",
    TIME: "NOCTURNUS_QUERY_TIMEOUT_MS",
    ANSWERS: "NOCTURNUS_QUERY_MAX_ANSWERS",
}
"""The setting that raises each limit, as an error names it."""


@dataclass(frozen=True, slots=True)
class Limits:
    """A question's budget; None means unbounded (a setting of 0)."""

    max_rows: int | None = 1_000_000
    timeout_ms: int | None = 10_000
    max_answers: int | None = 100_000

    @classmethod
    def of(cls, max_rows: int, timeout_ms: int, max_answers: int) -> Limits:
        """The limits of three settings, where 0 (or less) means no limit."""
        return cls(
            max_rows if max_rows > 0 else None,
            timeout_ms if timeout_ms > 0 else None,
            max_answers if max_answers > 0 else None,
        )


def share_the_gil() -> None:
    """Lower the interpreter's switch interval to :data:`SWITCH_INTERVAL_S`.

    Process-wide, so the server calls it once at start; it costs nothing while one
    thread runs alone (the interval only matters when another thread waits).
    """
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def pin(state: TenantState, views: Sequence[ScopeView]) -> None:
    """Mark ``views`` of ``state`` as read: no change touches them from now on."""
    for view in views:
        view.readers += 1
    state.reading += 1


def unpin(state: TenantState, views: Sequence[ScopeView]) -> None:
    """Undo one :func:`pin` of the same views."""
    for view in views:
        view.readers -= 1
    state.reading -= 1


@contextmanager
def pinned(state: TenantState, views: Sequence[ScopeView]) -> Iterator[None]:
    """Keep ``views`` as they are for the body: several evaluations (answers, then
    their proofs) and the loop's reading between them see one state."""
    pin(state, views)
    try:
        yield
    finally:
        unpin(state, views)


class _Turn:
    """The lock one tenant's questions take turns on, and how many use it."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class Evaluator:
    """Runs questions' evaluations in worker threads under :class:`Limits`.

    One per process, shared by every database (like the plan cache).
    ``on_loop_ms`` is how long a small question is first tried on the loop (None:
    never, every question goes to a worker).
    """

    def __init__(
        self,
        limits: Limits | None = None,
        workers: int = 4,
        on_loop_ms: int | None = ON_LOOP_MS,
    ) -> None:
        if workers < 1:
            raise ValueError("at least one evaluation worker")
        self.limits = limits if limits is not None else Limits()
        self.workers = workers
        self.on_loop_ms = on_loop_ms
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="nocturnus-eval")
        self._turns: dict[Hashable, _Turn] = {}
        self._busy_at = 0.0
        self._running: set[Budget] = set()  # the budgets of questions in workers

    def busy(self) -> None:
        """Note work on the event loop (the server calls it as requests start and
        end): for :data:`BUSY_WINDOW_S`, workers give way at their budget checks."""
        self._busy_at = time.monotonic()

    def _give_way(self, started: float) -> None:
        """A worker's pause at each budget check (about every millisecond of work):
        sleep :data:`YIELD_S` while the loop is busy, else go on at once.

        Not in the question's first :data:`ON_LOOP_MS` (``started`` is when it was
        handed over): the loop counts as busy then because of the question's own
        request, and a small question over a tenant too big to try on the loop (a
        bound goal with a few answers) is done by then. Giving way there cost each
        such question 2 ms or more (issue 17: ``anc(nK, ?y)`` on a 20 000-fact
        tenant, 0.7 ms after a write without it, 7 ms with it).

        The switch interval alone hands the GIL over within a millisecond, but a
        request takes many hand-overs (every socket call, the writer's commit), so
        a small request waited 20 ms behind a heavy question; sleeping lets the
        loop finish it uncontended (``benchmarks/README.md``, Fairness).
        """
        now = time.monotonic()
        if now - started >= ON_LOOP_MS / 1000 and now - self._busy_at < BUSY_WINDOW_S:
            time.sleep(YIELD_S)

    @asynccontextmanager
    async def turn(self, owner: Hashable) -> AsyncIterator[None]:
        """Wait until no other question of ``owner`` (a database's tenant) runs."""
        found = self._turns.get(owner)
        if found is None:
            found = self._turns[owner] = _Turn()
        found.users += 1
        try:
            async with found.lock:
                yield
        finally:
            found.users -= 1
            if not found.users:
                del self._turns[owner]

    def budget(self) -> Budget:
        """A fresh budget of these limits, its deadline counted from now."""
        limits = self.limits
        return Budget(
            max_rows=limits.max_rows, timeout_ms=limits.timeout_ms, clock=time.monotonic
        )

    async def run(
        self,
        state: TenantState,
        views: Sequence[ScopeView],
        work: Callable[[Budget], T],
    ) -> T:
        """``work(budget)`` under the limits, off the event loop unless it is small.

        Most questions are answered in well under a millisecond (a cached answer, a
        bound goal over few facts), and a trip to a worker costs several hand-overs
        of the GIL, each up to :data:`SWITCH_INTERVAL_S` while another worker
        computes. So a question over at most :data:`ON_LOOP_MAX_FACTS` visible facts
        is first tried on the loop for ``on_loop_ms`` (:data:`ON_LOOP_MS`); one that
        needs more stops there, leaving nothing behind, and starts again in a
        worker, reading ``views`` of ``state`` pinned. The views stay pinned until
        the worker is done, even when the request is cancelled meanwhile (the budget
        is cancelled then, so the worker stops at its next check).

        :raises QueryBudgetExceeded: the work went past the budget.
        """
        if sum(len(view.index) for view in views) <= ON_LOOP_MAX_FACTS:
            quick = self._quickly(work)
            if quick is not None:
                return quick[0]
        pin(state, views)
        return await self._in_worker(work, lambda: unpin(state, views))

    async def run_private(self, work: Callable[[Budget], T]) -> T:
        """:meth:`run` for work that reads only what it builds itself (the scratch
        tenants of ``POST /test``): nothing to pin, the same budget and worker.

        :raises QueryBudgetExceeded: the work went past the budget.
        """
        quick = self._quickly(work)
        if quick is not None:
            return quick[0]
        return await self._in_worker(work, lambda: None)

    def bounded(self, work: Callable[[Budget], T]) -> T:
        """``work(budget)`` on the event loop, under the limits.

        For the evaluations inside a write (RESTRICT checks): a write decides and
        commits with no ``await`` in between, so it cannot hand its check to a
        worker; the budget bounds how long it holds the loop, and a write past it
        is refused before anything is applied.

        :raises QueryBudgetExceeded: the work went past the budget.
        """
        try:
            return work(self.budget())
        except BudgetExceeded as e:
            raise self.exceeded(e.limit, e.value) from e

    def _quickly(self, work: Callable[[Budget], T]) -> tuple[T] | None:
        """``work`` tried on the loop for ``on_loop_ms``, its result in a 1-tuple;
        None when it needs longer (nothing of it is kept) or trying is off.

        :raises QueryBudgetExceeded: past a limit other than time.
        """
        if self.on_loop_ms is None:
            return None
        quick = Budget(
            max_rows=self.limits.max_rows,
            timeout_ms=self.on_loop_ms,
            clock=time.monotonic,
        )
        try:
            return (work(quick),)
        except BudgetExceeded as e:
            if e.limit != TIME:
                raise self.exceeded(e.limit, e.value) from e
        return None

    async def _in_worker(self, work: Callable[[Budget], T], done: Callable[[], None]) -> T:
        """``work(budget)`` in a worker under a fresh budget; ``done()`` on the loop
        once the worker has finished (also after a cancelled request)."""
        budget = self.budget()
        budget.pause = functools.partial(self._give_way, time.monotonic())
        self._running.add(budget)

        def release(finished: asyncio.Future[T]) -> None:
            self._running.discard(budget)
            done()
            if not finished.cancelled():
                finished.exception()  # retrieved: nobody awaits a cancelled request's

        future = asyncio.get_running_loop().run_in_executor(self._pool, work, budget)
        future.add_done_callback(release)
        try:
            found = await asyncio.shield(future)
            self.busy()  # the loop goes on with the answer
            return found
        except asyncio.CancelledError:
            budget.cancel()
            raise
        except BudgetExceeded as e:
            if e.limit == CANCELLED:  # only :meth:`close` cancels a question still awaited
                raise Unavailable("the server is shutting down: ask again") from e
            raise self.exceeded(e.limit, e.value) from e

    def check_answers(self, count: int) -> None:
        """Refuse a response of ``count`` answers past ``max_answers``.

        :raises QueryBudgetExceeded: ``count`` is over the limit.
        """
        limit = self.limits.max_answers
        if limit is not None and count > limit:
            raise self.exceeded(ANSWERS, limit, count)

    @staticmethod
    def exceeded(limit: str, value: float, count: int | None = None) -> QueryBudgetExceeded:
        """The error of a question past ``limit`` (whose value is ``value``)."""
        setting = SETTINGS[limit]
        if limit == ROWS:
            what = f"derived more than {value} rows"
            hint = "ask a more selective goal"
        elif limit == TIME:
            what = f"ran longer than {value} ms"
            hint = "ask a more selective goal"
        else:
            what = f"has {count} answers, more than {value} in one response"
            hint = "ask with a limit and page with the cursor"
        details: dict[str, object] = {"limit": limit, "value": value, "setting": setting}
        if count is not None:
            details["count"] = count
        return QueryBudgetExceeded(
            f"the question {what}: {hint}, or raise {setting}", details
        )

    def close(self) -> None:
        """Stop the workers: queued questions are dropped, running ones stop at their
        next budget check (a server shutting down does not wait for a long one)."""
        for budget in list(self._running):
            budget.cancel()
        self._pool.shutdown(wait=False, cancel_futures=True)
