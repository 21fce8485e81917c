"""Deciding again when another writer got there first (issue 16).

Every write decides on a tenant caught up with the log and appends with the position it
decided on; when another process appended to the tenant in between, the store refuses
the append (:class:`~nocturnus.store.errors.AppendConflict`) and nothing of it is kept.
The write then catches up and decides again, on the state that now includes the other
writer's events: a ``REJECT`` tell racing a contradicting tell on another node finds
the contradiction the second time and is refused with 409, so exactly one of them wins.
After :data:`MAX_ATTEMPTS` refusals in a row it gives up with ``503 WRITE_CONTENTION``
(retryable): a tenant written that hard from many nodes at once should be routed to one.

Only operations whose one side effect is their final append may be decorated: deciding
again repeats everything before it.
"""

from __future__ import annotations

import asyncio
import functools
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from nocturnus.errors import WriteContention
from nocturnus.store.errors import AppendConflict

if TYPE_CHECKING:  # database.py retries its own appends of uses with this module
    from nocturnus.service.database import Database

MAX_ATTEMPTS = 10
BACKOFF_S = 0.001
MAX_BACKOFF_S = 0.05

P = ParamSpec("P")
R = TypeVar("R")
D = TypeVar("D", bound="Database[Any]")


async def attempt(db: Database[Any], decide_and_append: Callable[[], Awaitable[R]]) -> R:
    """Run ``decide_and_append`` until the store takes its append, catching up between.

    :raises WriteContention: refused :data:`MAX_ATTEMPTS` times.
    """
    refusal: AppendConflict | None = None
    for tried in range(MAX_ATTEMPTS):
        if tried:
            db.stats.retries += 1
            # a random pause, doubling with each refusal: writers racing for one
            # tenant fall out of step instead of refusing each other in lockstep
            await asyncio.sleep(random.uniform(0, min(MAX_BACKOFF_S, BACKOFF_S * 2**tried)))
            await db.catch_up()
        try:
            return await decide_and_append()
        except AppendConflict as e:
            db.stats.conflicts += 1
            refusal = e
    db.stats.contended += 1
    who = f"tenant {refusal.stream!r}" if refusal and refusal.stream else "the database level"
    raise WriteContention(
        f"other writers changed {who} of database {db.name!r} before each of "
        f"{MAX_ATTEMPTS} attempts of this write could be stored; retry it",
        {"database": db.name, "attempts": MAX_ATTEMPTS},
    ) from refusal


def retried(
    operation: Callable[Concatenate[D, P], Awaitable[R]],
) -> Callable[Concatenate[D, P], Awaitable[R]]:
    """Make ``operation(db, ...)`` decide again on conflict (see :func:`attempt`)."""

    @functools.wraps(operation)
    async def run(db: D, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await attempt(db, lambda: operation(db, *args, **kwargs))

    return run
