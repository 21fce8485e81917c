"""MCP session records in the shared state store: any process serves any session.

A session (either transport) is a record in space ``mcp-session`` of the shared state
store (``nocturnus.store.shared``), under ``shared_key(transport, session id)``: who opened
it (:class:`Owner`: the API key's id, the database and tenant it works on), the protocol
version ``initialize`` negotiated, when it was opened and last used, and for an SSE
session the process holding its stream. Every process of a deployment (``serve
--workers N``, nodes on one PostgreSQL store) reads the same records, so a request naming a
session is served wherever it lands (issue 16). A GET stream of a Streamable HTTP session
is claimed under ``shared_key("stream", session id)`` by the process holding it: one
stream per session, whichever process it opens on.

A session id is a capability only in the hands of who opened it (issue 14):
:meth:`SessionTable.get` finds a session only for that same owner, so a leaked id is
worth nothing to another key (it reads as unknown: 404).

Slots are bounded three ways, per transport: in all (``mcp_sessions``), per API key
(``mcp_sessions_per_key``; with auth off every caller is the one loopback principal
and only the other two bounds apply) and per database and tenant
(``mcp_sessions_per_tenant``). A transport whose sessions may be abandoned without a
word (Streamable HTTP) makes room under a full bound by ending the opener's *own* least
recently used session there, else one unused for ``mcp_session_idle_s``; it never ends
a session another principal has used since. Otherwise, and always for SSE streams
(live connections), the new session is refused with 503.

Under races the bounds are approximate: an opening counts the records it scans, so
sessions opened at the same moment on several processes may together pass a bound by
the number of openings racing; "least recently used" is exact to :data:`TOUCH_S`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from nocturnus.errors import Unavailable
from nocturnus.service.shared import Shared, shared_key

SPACE = "mcp-session"
STREAM = "stream"
"""Key prefix of the claims of Streamable HTTP GET streams."""
LIVE_TTL_S = 60.0
"""Life of what a live stream holds (an SSE session's record, a GET stream's claim)
unless its process writes it again: every :data:`REFRESH_S`. A process that dies
leaves them behind for at most this long."""
REFRESH_S = 15.0
TOUCH_S = 1.0
"""A session's last use is written again only once it is this much older (a write per
request would cost every MCP call a store write)."""


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


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One session as every process sees it. Times are wall-clock epoch seconds (they
    are compared across processes and machines)."""

    id: str
    owner: Owner
    opened_s: float
    used_s: float
    protocol_version: str | None = None
    """Negotiated by ``initialize``; ``None`` before it."""
    holder: str | None = None
    """The process holding the session's stream (SSE), by its random instance id."""

    def encode(self) -> bytes:
        return orjson.dumps(
            {
                "key": self.owner.key_id,
                "database": self.owner.database,
                "tenant": self.owner.tenant,
                "opened": self.opened_s,
                "used": self.used_s,
                "version": self.protocol_version,
                "holder": self.holder,
            }
        )

    @classmethod
    def decode(cls, session_id: str, raw: bytes) -> SessionRecord:
        fields: dict[str, Any] = orjson.loads(raw)
        return cls(
            session_id,
            Owner(fields["key"], fields["database"], fields["tenant"]),
            opened_s=fields["opened"],
            used_s=fields["used"],
            protocol_version=fields["version"],
            holder=fields["holder"],
        )


@dataclass(frozen=True, slots=True)
class Found:
    """A record as read, with the version a compare-and-set of it expects."""

    record: SessionRecord
    version: int


class SessionTable:
    """The sessions of one transport in the shared store.

    ``shared`` gives the store (it opens with the databases, after this table is
    made); ``ttl_s`` is how long a record lives unless written again; ``clock`` is
    ``time.time`` (a parameter so that tests can say what "idle" measures).
    """

    def __init__(
        self,
        transport: str,
        name: str,
        limits: SessionLimits,
        *,
        ttl_s: float,
        shared: Callable[[], Shared],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.transport = transport
        self.name = name
        self.limits = limits
        self.ttl_s = ttl_s
        self._shared = shared
        self._clock = clock

    def now(self) -> float:
        return self._clock()

    def _key(self, session_id: str) -> str:
        return shared_key(self.transport, session_id)

    async def find(self, session_id: str) -> Found | None:
        """The session ``session_id``, whoever opened it (the caller checks the owner)."""
        entry = await self._shared().get(SPACE, self._key(session_id))
        if entry is None:
            return None
        return Found(SessionRecord.decode(session_id, entry.value), entry.version)

    async def get(self, session_id: str, owner: Owner) -> Found | None:
        """The session ``session_id`` if ``owner`` opened it, else None (also when it
        exists but is another's: the caller answers both the same way). Records the
        use (to :data:`TOUCH_S`)."""
        found = await self.find(session_id)
        if found is None or found.record.owner != owner:
            return None
        now = self._clock()
        if now - found.record.used_s >= TOUCH_S:
            used = replace(found.record, used_s=now)
            version = await self.put(used, expect=found.version)
            if version is not None:
                found = Found(used, version)
        return found

    async def put(self, record: SessionRecord, *, expect: int | None) -> int | None:
        """Write ``record`` (a compare-and-set when ``expect`` is a version)."""
        return await self._shared().put(
            SPACE,
            self._key(record.id),
            record.encode(),
            ttl_s=self.ttl_s,
            expect=expect,
        )

    async def open(
        self, record: SessionRecord, *, make_room: bool
    ) -> list[SessionRecord]:
        """Add ``record``; return the sessions ended to make room for it.

        :raises Unavailable: a bound is full and no room can be made.
        """
        records = await self.scan()
        leaving = plan_room(
            records,
            record.owner,
            self.limits,
            self._clock(),
            make_room=make_room,
            what=self.name,
        )
        ended = [r for r in records if r.id in leaving]
        for old in ended:
            await self.remove(old.id)
        if await self.put(record, expect=0) is None:  # 128 random bits: never
            raise Unavailable(f"MCP session id {record.id!r} is taken")
        return ended

    async def remove(self, session_id: str) -> bool:
        """End a session: its record and its stream's claim. False when it was gone."""
        shared = self._shared()
        await shared.delete(SPACE, shared_key(STREAM, session_id))
        return await shared.delete(SPACE, self._key(session_id))

    async def claim_stream(self, session_id: str, claim: str) -> int | None:
        """Claim the one stream of ``session_id`` for ``claim`` (its holder's mark);
        the claim's version, or None when another stream holds it."""
        return await self._shared().put(
            SPACE,
            shared_key(STREAM, session_id),
            claim.encode(),
            ttl_s=LIVE_TTL_S,
            expect=0,
        )

    async def keep_stream(
        self, session_id: str, claim: str, version: int
    ) -> int | None:
        """Extend a claim; None when it is no longer this one (the session ended)."""
        return await self._shared().put(
            SPACE,
            shared_key(STREAM, session_id),
            claim.encode(),
            ttl_s=LIVE_TTL_S,
            expect=version,
        )

    async def release_stream(self, session_id: str, claim: str) -> None:
        """Drop the claim of ``session_id`` if it is still ``claim``."""
        key = shared_key(STREAM, session_id)
        shared = self._shared()
        entry = await shared.get(SPACE, key)
        if entry is not None and entry.value == claim.encode():
            await shared.delete(SPACE, key)

    async def stream_claims(self) -> dict[str, str]:
        """Every live claim: session id to its holder's mark."""
        prefix = shared_key(STREAM, "")
        entries = await self._shared().scan(SPACE, prefix)
        return {key[len(prefix) :]: e.value.decode() for key, e in entries}

    async def scan(self) -> list[SessionRecord]:
        """Every live session of this transport."""
        prefix = self._key("")
        entries = await self._shared().scan(SPACE, prefix)
        return [SessionRecord.decode(key[len(prefix) :], e.value) for key, e in entries]


def plan_room(
    records: Sequence[SessionRecord],
    owner: Owner,
    limits: SessionLimits,
    now_s: float,
    *,
    make_room: bool,
    what: str,
) -> list[str]:
    """The sessions to end so that one more of ``owner`` fits under every bound.

    With ``make_room`` each full bound ends the opener's own least recently used
    session under it, else a session under it unused for ``idle_s``.

    :raises Unavailable: a bound is full and no room can be made (without
        ``make_room``, or when no such session exists).
    """
    by_use = sorted(records, key=lambda r: (r.used_s, r.opened_s, r.id))
    leaving: list[str] = []
    for bound, limit, mine, scope in _bounds(owner, limits):
        while sum(1 for r in by_use if r.id not in leaving and bound(r)) >= limit:
            victim = _room(by_use, bound, mine, leaving, now_s - limits.idle_s)
            if victim is None or not make_room:
                raise Unavailable(
                    f"too many open MCP {what} sessions {scope} (limit {limit})",
                    {"limit": limit, "scope": scope},
                )
            leaving.append(victim)
    return leaving


Predicate = Callable[[SessionRecord], bool]


def _bounds(
    owner: Owner, limits: SessionLimits
) -> Iterator[tuple[Predicate, int, Predicate, str]]:
    """(who counts against the bound, its limit, whose sessions may give way, name)."""

    def own(record: SessionRecord) -> bool:
        return record.owner.key_id == owner.key_id

    if owner.key_id is not None:
        yield own, limits.per_key, own, "for this API key"

    def same_tenant(record: SessionRecord) -> bool:
        return (record.owner.database, record.owner.tenant) == (
            owner.database,
            owner.tenant,
        )

    def own_in_tenant(record: SessionRecord) -> bool:
        return same_tenant(record) and own(record)

    yield same_tenant, limits.per_tenant, own_in_tenant, "for this tenant"
    yield (lambda record: True), limits.total, own, "in all"


def _room(
    by_use: Sequence[SessionRecord],
    bound: Predicate,
    mine: Predicate,
    leaving: list[str],
    idle_since_s: float,
) -> str | None:
    """The session to end for room under ``bound``: the opener's own least recently
    used, else the least recently used unused since ``idle_since_s``; or None."""
    candidates = [r for r in by_use if r.id not in leaving and bound(r)]
    for record in candidates:
        if mine(record):
            return record.id
    for record in candidates:
        if record.used_s <= idle_since_s:
            return record.id
    return None
