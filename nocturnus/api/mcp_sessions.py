"""Open MCP sessions of one transport: whose each one is, and how many anyone may hold.

A session id is a capability only in the hands of who opened it (issue 14): each
session remembers its :class:`Owner` — the API key that opened it and the database and
tenant it works on — and :meth:`Sessions.get` finds it only for that same owner, so a
leaked id is worth nothing to another key (it reads as unknown: 404).

Slots are bounded three ways, per transport: in all (``mcp_sessions``), per API key
(``mcp_sessions_per_key``; with auth off every caller is the one loopback principal
and only the other two bounds apply) and per database and tenant
(``mcp_sessions_per_tenant``). A transport whose sessions may be abandoned without a
word (Streamable HTTP) makes room under a full bound by ending the opener's *own* least
recently used session there, else one unused for ``mcp_session_idle_s``; it never ends
a session another principal has used since. Otherwise, and always for SSE streams
(live connections), the new session is refused with 503.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from nocturnus.errors import Unavailable

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Owner:
    """Who opened a session and where it works.

    ``key_id`` is the API key's id; ``None`` only with auth off, where every caller is
    the same trusted loopback principal.
    """

    key_id: str | None
    database: str
    tenant: str


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """The three bounds of one transport, and when an unused session may be ended."""

    total: int
    per_key: int
    per_tenant: int
    idle_s: float


@dataclass(slots=True)
class _Entry(Generic[T]):
    item: T
    owner: Owner
    used_at: float


class Sessions(Generic[T]):
    """Sessions by id, least recently used first, bounded as :class:`SessionLimits` says.

    ``clock`` is ``time.monotonic`` (a parameter for nothing but clarity of what
    "idle" measures).
    """

    def __init__(
        self,
        transport: str,
        limits: SessionLimits,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.limits = limits
        self._clock = clock
        self._entries: OrderedDict[str, _Entry[T]] = OrderedDict()

    def get(self, session_id: str, owner: Owner) -> T | None:
        """The session ``session_id`` if ``owner`` opened it, else None (also when
        it exists but is another's: the caller answers both the same way)."""
        entry = self._entries.get(session_id)
        if entry is None or entry.owner != owner:
            return None
        entry.used_at = self._clock()
        self._entries.move_to_end(session_id)
        return entry.item

    def owner_of(self, session_id: str) -> Owner | None:
        entry = self._entries.get(session_id)
        return None if entry is None else entry.owner

    def add(self, session_id: str, item: T, owner: Owner, *, make_room: bool) -> list[T]:
        """Add a session for ``owner``; return the sessions ended to make room.

        With ``make_room`` each full bound ends the opener's own least recently used
        session under it, else a session under it unused for ``idle_s``. Without
        ``make_room``, or when no such session exists, nothing changes.

        :raises Unavailable: a bound is full and no room can be made.
        """
        leaving: list[str] = []
        for bound, limit, mine, what in self._bounds(owner):
            while self._count(bound, leaving) >= limit:
                victim = self._room(bound, mine, leaving) if make_room else None
                if victim is None:
                    raise Unavailable(
                        f"too many open MCP {self.transport} sessions {what} "
                        f"(limit {limit})",
                        {"limit": limit, "scope": what},
                    )
                leaving.append(victim)
        ended = [self._entries.pop(victim).item for victim in leaving]
        self._entries[session_id] = _Entry(item, owner, self._clock())
        return ended

    def remove(self, session_id: str) -> T | None:
        entry = self._entries.pop(session_id, None)
        return None if entry is None else entry.item

    def __iter__(self) -> Iterator[T]:
        return iter([entry.item for entry in self._entries.values()])

    def __len__(self) -> int:
        return len(self._entries)

    def _bounds(
        self, owner: Owner
    ) -> Iterator[tuple[Callable[[_Entry[T]], bool], int, Callable[[_Entry[T]], bool], str]]:
        """(who counts against the bound, its limit, whose sessions may give way, name)."""
        limits = self.limits

        def own(entry: _Entry[T]) -> bool:
            return entry.owner.key_id == owner.key_id

        if owner.key_id is not None:
            yield own, limits.per_key, own, "for this API key"

        def same_tenant(entry: _Entry[T]) -> bool:
            return (entry.owner.database, entry.owner.tenant) == (
                owner.database,
                owner.tenant,
            )

        def own_in_tenant(entry: _Entry[T]) -> bool:
            return same_tenant(entry) and own(entry)

        yield same_tenant, limits.per_tenant, own_in_tenant, "for this tenant"
        yield (lambda entry: True), limits.total, own, "in all"

    def _count(self, bound: Callable[[_Entry[T]], bool], leaving: list[str]) -> int:
        return sum(
            1 for i, entry in self._entries.items() if i not in leaving and bound(entry)
        )

    def _room(
        self,
        bound: Callable[[_Entry[T]], bool],
        mine: Callable[[_Entry[T]], bool],
        leaving: list[str],
    ) -> str | None:
        """The session to end for room under ``bound``: the opener's own least
        recently used, else the least recently used unused for ``idle_s``; or None."""
        candidates = [
            (i, entry)
            for i, entry in self._entries.items()  # least recently used first
            if i not in leaving and bound(entry)
        ]
        for session_id, entry in candidates:
            if mine(entry):
                return session_id
        idle_since = self._clock() - self.limits.idle_s
        for session_id, entry in candidates:
            if entry.used_at <= idle_since:
                return session_id
        return None
