"""Rate limits: a token bucket per key, and a lockout per client address after failures.

Both live in each process's memory and take the time as an argument, so tests drive them
without sleeping; :mod:`nocturnus.api.sharedlimits` keeps the processes of a deployment
in step through the shared state (what the others spent, who they locked out). Idle
entries are pruned as the tables grow, so a flood of addresses or keys cannot grow them
without bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

MAX_ENTRIES = 100_000
SPEND_FRACTION = 10
"""A key that has taken a tenth of its limit since the last publication, or whose
bucket is in its last tenth, wakes the publisher at once (with limits under 10, every
token taken does)."""


class Quota(NamedTuple):
    """The outcome of taking one token: for the ``X-RateLimit-*`` headers."""

    allowed: bool
    limit: int
    tokens: float
    rate: float

    @property
    def remaining(self) -> int:
        # below 0 only when other processes spent this key's tokens too (a debt)
        return max(0, int(self.tokens))

    @property
    def reset_s(self) -> int:
        """Seconds until the bucket is full again."""
        return math.ceil((self.limit - self.tokens) / self.rate)

    @property
    def retry_after_s(self) -> int:
        """Seconds until the next token (0 when this request was allowed)."""
        if self.allowed:
            return 0
        return max(1, math.ceil((1.0 - self.tokens) / self.rate))


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float
    limit: int


@dataclass(slots=True)
class TokenBuckets:
    """``limits_rpm[role]`` requests per minute per key, with a burst of a minute's worth.

    A role whose limit is 0 (or absent) is not limited. With :attr:`spent` set (by
    :class:`~nocturnus.api.sharedlimits.SharedLimits`), every token taken is also
    counted there until it is published to the other processes, and ``wake`` is called
    when a key has taken a tenth of its limit since.
    """

    limits_rpm: dict[str, int]
    _buckets: dict[str, _Bucket] = field(default_factory=dict)
    spent: dict[str, int] | None = None
    """Tokens taken per key since the last publication (None: not shared)."""
    wake: Callable[[], None] | None = None

    def take(self, key: str, role: str, now_s: float) -> Quota | None:
        """Spend one token of ``key``; None when its role is unlimited."""
        limit = self.limits_rpm.get(role, 0)
        if limit <= 0:
            return None
        rate = limit / 60.0
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= MAX_ENTRIES:
                self._prune(now_s)
            bucket = self._buckets[key] = _Bucket(float(limit), now_s, limit)
        else:
            bucket.limit = limit
            tokens = bucket.tokens + (now_s - bucket.updated) * rate
            bucket.tokens = tokens if tokens < limit else float(limit)
            bucket.updated = now_s
        allowed = bucket.tokens >= 1.0
        if allowed:
            bucket.tokens -= 1.0
            spent = self.spent
            if spent is not None:
                count = spent[key] = spent.get(key, 0) + 1
                # a tenth of the limit taken, or the bucket in its last tenth: at once
                if self.wake is not None and (
                    count * SPEND_FRACTION >= limit or bucket.tokens * SPEND_FRACTION < limit
                ):
                    self.wake()
        return Quota(allowed, limit, bucket.tokens, rate)

    def limit_of(self, key: str) -> int:
        """The limit ``key``'s bucket was last taken under (0: no bucket)."""
        bucket = self._buckets.get(key)
        return 0 if bucket is None else bucket.limit

    def spend(self, key: str, tokens: float, now_s: float, *, at_most: float | None = None
              ) -> None:
        """Take ``tokens`` that other processes spent from ``key``, and bring the bucket
        down to ``at_most`` if given (after refilling it to ``now_s``). Its debt is at
        most a minute's worth: a bucket below 0 refills to 1 before the key is let
        through again."""
        bucket = self._buckets.get(key)
        if bucket is None:
            return
        limit = bucket.limit
        level = bucket.tokens + (now_s - bucket.updated) * limit / 60.0
        level = min(level, float(limit)) - tokens
        if at_most is not None:
            level = min(level, at_most)
        bucket.tokens = max(level, -float(limit))
        bucket.updated = now_s

    def _prune(self, now_s: float) -> None:
        """Drop buckets idle long enough to be full again (forgetting them changes nothing)."""
        for key in [k for k, b in self._buckets.items() if now_s - b.updated > 60.0]:
            del self._buckets[key]

    def forget(self, key: str) -> None:
        self._buckets.pop(key, None)


@dataclass(slots=True)
class _Failures:
    window_start: float
    count: int = 0
    locked_until: float = 0.0


@dataclass(slots=True)
class FailureLimiter:
    """``max_failures`` failed authentications per ``window_s`` per client address, then
    every authenticated request from that address is refused for ``lockout_s``.

    A success does not reset the count: a caller holding one valid key must not be able to
    interleave it to keep guessing others. A key check that costs argon2 is an *attempt*
    from :meth:`begin` to :meth:`end` (issue 14): at most ``max_in_flight`` run at once
    per address, and those in flight count against the lockout as if they had failed, so
    a burst of concurrent guesses cannot all slip past it.
    """

    max_failures: int = 20
    lockout_s: float = 60.0
    window_s: float = 60.0
    max_in_flight: int = 2
    _clients: dict[str, _Failures] = field(default_factory=dict)
    _in_flight: dict[str, int] = field(default_factory=dict)

    @property
    def has_entries(self) -> bool:
        """False while no address has failed lately (the common case costs nothing)."""
        return bool(self._clients)

    def locked_for(self, client: str, now_s: float) -> int:
        """Seconds the client stays locked out (0: not locked)."""
        entry = self._clients.get(client)
        if entry is None:
            return 0
        if entry.locked_until <= now_s:
            if now_s - entry.window_start >= self.window_s:
                del self._clients[client]  # forgotten: the fast path comes back
            return 0
        return max(1, math.ceil(entry.locked_until - now_s))

    def begin(self, client: str, now_s: float) -> int:
        """Start a costly key check for ``client``; 0 when it may run (then call
        :meth:`end`), else the seconds to wait: its checks in flight are at
        ``max_in_flight``, or would reach the lockout should they all fail."""
        flying = self._in_flight.get(client, 0)
        if 0 < self.max_in_flight <= flying:
            return 1
        if self.max_failures > 0 and flying:
            entry = self._clients.get(client)
            failed = 0
            if entry is not None and now_s - entry.window_start < self.window_s:
                failed = entry.count
            if failed + flying >= self.max_failures:
                return 1
        self._in_flight[client] = flying + 1
        return 0

    def end(self, client: str) -> None:
        """A check :meth:`begin` let run is over (count its failure with :meth:`fail`)."""
        left = self._in_flight[client] - 1
        if left:
            self._in_flight[client] = left
        else:
            del self._in_flight[client]

    def fail(self, client: str, now_s: float) -> bool:
        """Count a failure; True when it starts a lockout."""
        if self.max_failures <= 0:
            return False
        entry = self._clients.get(client)
        if entry is None or now_s - entry.window_start >= self.window_s:
            if entry is None and len(self._clients) >= MAX_ENTRIES:
                self._prune(now_s)
            entry = self._clients[client] = _Failures(now_s)
        entry.count += 1
        if entry.count >= self.max_failures and entry.locked_until <= now_s:
            entry.locked_until = now_s + self.lockout_s
            entry.count = 0
            entry.window_start = now_s
            return True
        return False

    def failed_lately(self, client: str, now_s: float) -> int:
        """The client's failures in its current window (none once it is over)."""
        entry = self._clients.get(client)
        if entry is None or now_s - entry.window_start >= self.window_s:
            return 0
        return entry.count

    def lock(self, client: str, until_s: float, now_s: float) -> bool:
        """Lock ``client`` out until ``until_s`` (a lockout decided elsewhere, or on
        the failures counted by every process); True when it was not locked yet."""
        if self.max_failures <= 0 or until_s <= now_s:
            return False
        entry = self._clients.get(client)
        if entry is None:
            if len(self._clients) >= MAX_ENTRIES:
                self._prune(now_s)
            entry = self._clients[client] = _Failures(now_s)
        was_locked = entry.locked_until > now_s
        entry.locked_until = max(entry.locked_until, until_s)
        if not was_locked:
            entry.count = 0
            entry.window_start = now_s
        return not was_locked

    def _prune(self, now_s: float) -> None:
        stale = [
            c for c, e in self._clients.items()
            if e.locked_until <= now_s and now_s - e.window_start >= self.window_s
        ]
        for client in stale:
            del self._clients[client]
