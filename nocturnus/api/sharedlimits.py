"""Rate limits and lockouts held across the processes of a deployment (issue 16).

Every process decides on its own counters (:mod:`nocturnus.api.ratelimit`): a request
never waits for the shared state. One task per process keeps those counters in step
with the others' through the shared state (``Databases.shared``):

- **Rate limits.** Every :data:`SYNC_INTERVAL_S` (at once when a key has taken a tenth
  of its limit since), the tokens each key took are published with ``add`` on a
  fixed-window counter (space ``rate``, key = bucket kind, key id, window of
  :data:`WINDOW_S`), and what the other processes published since is taken from this
  process's bucket of the key: all processes spend from one bucket, as one process does.
  A key first used by this process starts from the bucket the counters describe.
- **Lockouts.** A failed authentication (slow on purpose already) is counted with
  ``add`` at once (space ``lockout``, per client address and minute); when the failures
  every process counted reach the limit, the lockout is stored as an entry that every
  process reads with one ``scan`` per interval. So a lockout decided on one process
  refuses on every other within :data:`SYNC_INTERVAL_S`.

The bound: a process spends tokens it has not heard were spent elsewhere only for what
it admits between two of its rounds: at most :data:`SYNC_INTERVAL_S` of requests and a
tenth of the limit (a round starts at once after a tenth of the limit, and after every
token once the bucket is in its last tenth), plus what arrives while a round waits for
the shared state (tens of microseconds on SQLite, a millisecond or more on
PostgreSQL). So N processes let through about the limit plus that much per process:
``N x max(1, limit / 10)`` beyond it at worst, about N x (requests per round trip)
near the limit. A debt (a bucket below 0) makes up for what was let through. A
lockout comes after the limit of failures counted by all processes together, plus the
failures another process was checking at that moment.
What one process alone admits is exactly what it admitted without the shared state.

If the shared state fails (PostgreSQL unreachable, a disk refusing ``shared.sqlite``),
each process goes on with its own limits (N processes then allow up to N times a
limit): it is logged once, and once more when it answers again. A limiter must not
become an outage.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

from nocturnus.api.ratelimit import FailureLimiter, TokenBuckets
from nocturnus.service.shared import Shared
from nocturnus.store.shared import SEPARATOR, counter_value, shared_key

log = logging.getLogger("nocturnus.security")

RATE_SPACE = "rate"
LOCKOUT_SPACE = "lockout"
SYNC_INTERVAL_S = 0.2
"""How often a process publishes what its keys spent and reads the lockouts."""
WINDOW_S = 5.0
"""The width of one rate counter: a bucket first used here is estimated from them."""
REFILL_S = 60.0
"""A bucket refills from empty in a minute (its limit is per minute)."""
RATE_TTL_S = REFILL_S + 2 * WINDOW_S
SYNC_TIMEOUT_S = 5.0
"""A round of publishing that takes longer counts as the shared state failing."""
FAILURE_TIMEOUT_S = 2.0
"""How long a failed authentication waits to count its failure in the shared state."""
_LOCKED = "locked"
_FAILURES = "failures"

T = TypeVar("T")


def estimate_tokens(totals: dict[int, int], limit: int, now_wall_s: float) -> float:
    """The tokens left in a bucket of ``limit`` per minute that every process spent
    ``totals[window]`` from (windows of :data:`WINDOW_S` on the wall clock).

    A token bucket holds ``min over s of limit + rate x (now - s) - spent since s``;
    each window's tokens count as spent at its end (or now), so the estimate errs low
    by at most ``limit x WINDOW_S / 60``, and only for a key this process has not
    used before that another spent from in the last minute.
    """
    rate = limit / REFILL_S
    level = float(limit)
    spent = 0
    for window in sorted(totals, reverse=True):
        end = min(now_wall_s, (window + 1) * WINDOW_S)
        if now_wall_s - end >= REFILL_S:
            break  # a bucket refills from empty in a minute: older spending is gone
        spent += totals[window]
        level = min(level, limit + rate * (now_wall_s - end) - spent)
    return level


@dataclass(slots=True)
class _Seen:
    """What this process knows of one key's counters."""

    window: int
    own: dict[int, int] = field(default_factory=dict)
    """What this process published, per window."""
    others: dict[int, int] = field(default_factory=dict)
    """What the other processes had published, per window, when last read."""


@dataclass(slots=True)
class _SharedBuckets:
    """One kind of bucket (``req``: requests per key; ``llm``: LLM calls per caller)."""

    kind: str
    buckets: TokenBuckets
    seen: dict[str, _Seen] = field(default_factory=dict)
    pruned: int = 0
    """The window of the last pruning."""

    async def sync(self, shared: Shared, now_s: float, now_wall_s: float) -> None:
        spent = self.buckets.spent
        if not spent:
            self._prune(int(now_wall_s // WINDOW_S))
            return
        # takes made while this round awaits count towards the next one
        self.buckets.spent = {}
        window = int(now_wall_s // WINDOW_S)
        for key, count in spent.items():
            if SEPARATOR not in key:
                await self._publish(shared, key, count, window, now_s, now_wall_s)
        self._prune(window)

    async def _publish(
        self, shared: Shared, key: str, count: int, window: int, now_s: float,
        now_wall_s: float,
    ) -> None:
        total = await shared.add(
            RATE_SPACE, shared_key(self.kind, key, str(window)), count, ttl_s=RATE_TTL_S
        )
        seen = self.seen.get(key)
        fresh = seen is None
        if seen is None:
            # window -1: the earlier windows are read below (again, should that fail)
            seen = self.seen[key] = _Seen(-1)
        seen.own[window] = seen.own.get(window, 0) + count
        totals = {window: total}
        if fresh or seen.window != window:
            # A key new here: every window of the last minute. After a window closed:
            # it again, for what the others published there since it was last read.
            prefix = shared_key(self.kind, key) + SEPARATOR
            for name, entry in await shared.scan(RATE_SPACE, prefix):
                past = int(name.rpartition(SEPARATOR)[2])
                if past != window:
                    totals[past] = counter_value(entry.value)
            seen.window = window
        news = 0
        for past, total_then in totals.items():
            others = max(0, total_then - seen.own.get(past, 0))
            news += others - seen.others.get(past, 0)
            seen.others[past] = others
        if news <= 0:
            return
        if fresh:
            # its bucket was made here full: start it from what the counters say
            limit = self.buckets.limit_of(key)
            if limit:
                # ``totals`` holds what this round published, not what was taken since
                unpublished = (self.buckets.spent or {}).get(key, 0)
                level = estimate_tokens(totals, limit, now_wall_s) - unpublished
                self.buckets.spend(key, 0.0, now_s, at_most=level)
        else:
            self.buckets.spend(key, float(news), now_s)

    def _prune(self, window: int) -> None:
        """Forget counters that have expired (a key seen again is new again)."""
        if window == self.pruned:
            return
        self.pruned = window
        oldest = window - int(RATE_TTL_S // WINDOW_S) - 1
        for key in [k for k, s in self.seen.items() if s.window < oldest]:
            del self.seen[key]
        for seen in self.seen.values():
            for counts in (seen.own, seen.others):
                for past in [w for w in counts if w < oldest]:
                    del counts[past]


@dataclass(slots=True)
class _SharedLockouts:
    failures: FailureLimiter
    own: dict[tuple[str, int], int] = field(default_factory=dict)
    """The failures this process counted, per client and window."""
    pruned: int = 0
    """The window of the last pruning."""

    async def fail(self, shared: Shared, client: str, locked: bool, now_s: float) -> bool:
        """Count a failure ``failures`` already counted here; True when it starts a
        lockout (here, or by what the other processes counted)."""
        failures = self.failures
        window = int(time.time() // failures.window_s)
        if window != self.pruned:
            self.pruned = window
            for stale in [k for k in self.own if k[1] < window - 1]:
                del self.own[stale]
        total = await shared.add(
            LOCKOUT_SPACE, shared_key(_FAILURES, client, str(window)), 1,
            ttl_s=2 * failures.window_s,
        )
        own = self.own[(client, window)] = self.own.get((client, window), 0) + 1
        others = total - own
        if not locked and others > 0:
            seen = failures.failed_lately(client, now_s) + others
            if seen >= failures.max_failures:
                locked = failures.lock(client, now_s + failures.lockout_s, now_s)
        if locked:
            await shared.put(
                LOCKOUT_SPACE, shared_key(_LOCKED, client), b"", ttl_s=failures.lockout_s
            )
        return locked

    async def sync(self, shared: Shared, now_s: float, now_wall_s: float) -> None:
        """Take up the lockouts every process decided."""
        for name, entry in await shared.scan(LOCKOUT_SPACE, _LOCKED + SEPARATOR):
            left_s = entry.expires_ms / 1000.0 - now_wall_s
            self.failures.lock(name.partition(SEPARATOR)[2], now_s + left_s, now_s)


class SharedLimits:
    """The task that keeps this process's limits in step with the other processes'."""

    def __init__(self, failures: FailureLimiter | None = None) -> None:
        self._buckets: list[_SharedBuckets] = []
        self._lockouts = None if failures is None else _SharedLockouts(failures)
        self._shared: Shared | None = None
        self._due: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._down = False

    def track(self, kind: str, buckets: TokenBuckets) -> None:
        """Keep ``buckets`` in step (``kind`` names them in the counters' keys)."""
        buckets.spent = {}
        buckets.wake = self._wake
        self._buckets.append(_SharedBuckets(kind, buckets))

    @property
    def is_needed(self) -> bool:
        lockouts = self._lockouts
        return bool(self._buckets) or (
            lockouts is not None and lockouts.failures.max_failures > 0
        )

    def attach(self, shared: Shared) -> None:
        """Use ``shared`` from now on (:meth:`start` runs the task)."""
        self._shared = shared

    def start(self, shared: Shared) -> None:
        """Publish and read every :data:`SYNC_INTERVAL_S` (in the running loop)."""
        self.attach(shared)
        if self.is_needed and self._task is None:
            self._stopping = False
            self._due = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """End the task. It also ends by itself once its round sees the flag: before
        Python 3.12, ``wait_for`` may swallow a cancellation that meets its event just
        set, and a stop waiting on a task that goes on would never return."""
        self._stopping = True
        task, self._task = self._task, None
        if task is not None:
            self._wake()
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _wake(self) -> None:
        if self._due is not None:
            self._due.set()

    async def _run(self) -> None:
        due = self._due
        assert due is not None
        while not self._stopping:
            try:
                await asyncio.wait_for(due.wait(), SYNC_INTERVAL_S)
            except TimeoutError:
                pass
            if self._stopping:
                return
            due.clear()
            await self.sync()

    async def sync(self) -> None:
        """One round: publish what the keys spent, take up the others' spending and
        lockouts. A failing shared state is logged (once) and changes nothing else."""
        shared = self._shared
        if shared is None:
            return
        await self._guarded(self._sync(shared), SYNC_TIMEOUT_S)

    async def _sync(self, shared: Shared) -> None:
        now_s, now_wall_s = time.monotonic(), time.time()
        for buckets in self._buckets:
            await buckets.sync(shared, now_s, now_wall_s)
        if self._lockouts is not None and self._lockouts.failures.max_failures > 0:
            await self._lockouts.sync(shared, now_s, now_wall_s)

    async def fail(self, client: str, now_s: float) -> bool:
        """Count a failed authentication from ``client``, here and in the shared state;
        True when it starts a lockout."""
        lockouts = self._lockouts
        assert lockouts is not None
        locked = lockouts.failures.fail(client, now_s)
        shared = self._shared
        if shared is None or lockouts.failures.max_failures <= 0 or SEPARATOR in client:
            return locked
        shared_locked = await self._guarded(
            lockouts.fail(shared, client, locked, now_s), FAILURE_TIMEOUT_S
        )
        return locked if shared_locked is None else shared_locked

    async def _guarded(self, call: Awaitable[T], timeout_s: float) -> T | None:
        """``call``'s result, or None when the shared state failed (logged once)."""
        shared = self._shared
        try:
            result = await asyncio.wait_for(call, timeout_s)
        except Exception as e:  # noqa: BLE001 - a limiter must not become an outage
            if not self._down:
                self._down = True
                where = shared.where if shared is not None else "?"
                log.warning(
                    "rate limits and lockouts hold per process: the shared state %s "
                    "failed (%s: %s)", where, type(e).__name__, e,
                )
            return None
        if self._down:
            self._down = False
            log.warning("rate limits and lockouts hold across processes again")
        return result
