"""A request's budget: how many rows its evaluations may derive, and until when.

One :class:`Budget` spans every evaluation a request makes (each scope, each
component, the proofs), so a question cannot escape its limit by splitting. It is
checked cooperatively: :class:`~nocturnus.engine.fixpoint.Evaluation` charges the
rows of every round and plan, and the generated joins call a check every
:data:`CHECK_EVERY` iterations of any loop that holds another loop (so one check
covers at most one innermost scan), which is how a single round deriving millions of
rows is stopped within a few thousand of the limit instead of after it (issue 13:
``q(?a,?b,?c,?d) :- p(?a),p(?b),p(?c),p(?d)`` over 40 facts derived 2.56 M rows and
500 MB in one round).

The engine reads no clock: the caller passes ``clock`` (seconds, monotonic) and the
``deadline`` on its scale. A budget that runs out raises :class:`BudgetExceeded`
from inside the evaluation; every result is cached only once its evaluation has
finished, so an evaluation stopped half-way leaves nothing a later question would
trust.

``cancel()`` (from another thread: the request went away) makes the next check
raise too.
"""

from __future__ import annotations

from collections.abc import Callable

CHECK_EVERY = 1024
"""Most iterations of an outer join loop between two budget checks."""

CHECK_INTERVAL_S = 0.001
"""The time a budget with a clock aims to leave between two checks of the joins.

How long :data:`CHECK_EVERY` iterations take depends on the inner loops (40 rows or
40 000), so the joins' countdown is paced by the clock (:meth:`Budget.tick`): halved
or cut in proportion when checks come too far apart, doubled when they come too
close. A deadline is then kept to about a millisecond, whatever the join.
"""

ROWS = "rows"
TIME = "time"
CANCELLED = "cancelled"


class BudgetExceeded(Exception):
    """An evaluation went past its budget; ``limit`` says which one (rows, time)."""

    def __init__(self, limit: str, value: float) -> None:
        super().__init__(f"the query went past its {limit} limit ({value})")
        self.limit = limit
        self.value = value


class Budget:
    """What one request's evaluations may still spend.

    ``max_rows`` bounds the rows derived over all of them (None: no bound);
    ``deadline`` is the ``clock()`` reading past which they stop (None: no
    deadline). ``rows`` counts what was derived so far.
    """

    __slots__ = (
        "_cancelled",
        "_every",
        "_last",
        "clock",
        "deadline",
        "max_rows",
        "pause",
        "rows",
        "timeout_ms",
    )

    def __init__(
        self,
        *,
        max_rows: int | None = None,
        timeout_ms: int | None = None,
        clock: Callable[[], float] | None = None,
        pause: Callable[[], None] | None = None,
    ) -> None:
        if timeout_ms is not None and clock is None:
            raise ValueError("a timeout needs a clock")
        self.max_rows = max_rows
        self.timeout_ms = timeout_ms
        self.clock = clock
        self.pause = pause
        self.deadline = (
            None if timeout_ms is None or clock is None else clock() + timeout_ms / 1000
        )
        self.rows = 0
        self._cancelled = False
        self._every = 16  # the joins' countdown, paced by the clock (tick)
        self._last = clock() if clock is not None else 0.0

    def charge(self, rows: int) -> None:
        """Count ``rows`` newly derived rows, then :meth:`check`.

        :raises BudgetExceeded: past a limit.
        """
        self.rows += rows
        self.check()

    def check(self, pending: int = 0) -> None:
        """Stop the evaluation if it went past a limit, counting ``pending`` rows
        derived but not charged yet (a round in progress).

        :raises BudgetExceeded: past ``max_rows``, past the deadline, or cancelled.
        """
        if self.max_rows is not None and self.rows + pending > self.max_rows:
            raise BudgetExceeded(ROWS, self.max_rows)
        clock = self.clock
        if self.deadline is not None and clock is not None and clock() > self.deadline:
            raise BudgetExceeded(TIME, self.timeout_ms or 0)
        if self._cancelled:
            raise BudgetExceeded(CANCELLED, 0)

    def tick(self, pending: int = 0) -> int:
        """The joins' check (:meth:`check`), then ``pause()`` (the caller's way to let
        other threads run); returns how many outer iterations may run before the
        next one, paced to :data:`CHECK_INTERVAL_S` by the clock.

        :raises BudgetExceeded: as :meth:`check`.
        """
        self.check(pending)
        if self.pause is not None:
            self.pause()
        clock = self.clock
        if clock is None:
            return CHECK_EVERY
        now = clock()
        elapsed = now - self._last
        self._last = now
        every = self._every
        if elapsed > CHECK_INTERVAL_S:
            every = max(1, int(every * CHECK_INTERVAL_S / elapsed))
        elif elapsed < CHECK_INTERVAL_S / 4:
            every = min(CHECK_EVERY, every * 2)
        self._every = every
        return every

    def cancel(self) -> None:
        """Make the next check raise: nobody waits for the answer any more."""
        self._cancelled = True
