"""Context sessions: what each session of a tenant was last sent, in the shared store.

A session is (database, tenant, sessionId). Two things are kept per session, each in a
space of the shared state store (``service/shared.py``, issue 16) so that every process
of a deployment — workers on one data dir, nodes on one PostgreSQL store — sees the
same sessions:

- :data:`WINDOWS`: the last window a session was sent (a :class:`SentWindow`), which
  ``/context/diff`` compares the next window with (``context/diff.py``);
- :data:`TURNS`: the last turns of a conversation of ``POST /context``, the next call's
  hint (``extraction/turns.py``).

Values are sealed with the tenant's data key: a deleted or recreated tenant's sessions
read as absent (and are then overwritten or forgotten like any stale entry). A tenant
without a key (never written, or deleted) keeps no sessions: its windows are empty. A session
id is kept as a digest in the key, so any id the API accepts makes a valid key.

Bounds, and which are exact:

- a session unused for :data:`SESSION_TTL_S` is forgotten (exact: the entry expires);
- at most ``capacity`` (``context_sessions``) sessions per tenant and space, the least
  recently *written* forgotten first (every use of a session writes it, so this is the
  least recently used; to the millisecond: the order is the entries' expiry). Checked
  when a write creates a session: it scans the tenant's sessions (their sealed values
  too: a creation costs a read of the tenant's sessions, a continued session one entry)
  and deletes the oldest beyond ``capacity``. Approximate under concurrency: creations
  racing on several processes may each see the count under the bound, so a tenant may
  briefly hold a few more until its next creation trims them.

A request inside a transaction keeps its sessions in the request only (``shared``
None): a transaction's view must not change the tenant's sessions, as before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from nocturnus.errors import WriteContention
from nocturnus.service.database import Database, DatabaseState
from nocturnus.service.facts import FactKey
from nocturnus.service.shared import Shared, shared_key
from nocturnus.store.shared import SharedEntry

if TYPE_CHECKING:
    from nocturnus.service.context.window import Window, WindowEntry

Db = Database[DatabaseState]

WINDOWS = "context-diff"
"""The space of the sessions' last windows."""
TURNS = "context-turns"
"""The space of the conversations' last turns."""
SESSION_TTL_S = 86_400.0
"""A session unused for a day is forgotten."""
ENCODING = 1
"""The version of the stored values' encoding (the first item of each)."""
MAX_ATTEMPTS = 10
"""Compare-and-set attempts of one update before it gives up (503, retryable)."""


def fingerprint_digest(fingerprint: bytes) -> str:
    """What a session keeps of an entry's fingerprint: a 128-bit digest (hex), as
    good as the fingerprint itself for telling two contents apart."""
    return hashlib.blake2b(fingerprint, digest_size=16).hexdigest()


@dataclass(frozen=True, slots=True)
class SentEntry:
    """What a session keeps of an entry it was sent: enough to compare it with a new
    window's entry (``fingerprint``) and to render it as it was sent (``-`` lines)."""

    key: FactKey
    fingerprint: str
    """:func:`fingerprint_digest` of :attr:`WindowEntry.fingerprint`."""
    confidence: float | None
    salience: float
    category: str

    @classmethod
    def of(cls, entry: WindowEntry) -> SentEntry:
        """What a session keeps of ``entry``."""
        return cls(
            entry.key,
            fingerprint_digest(entry.fingerprint),
            entry.confidence,
            entry.salience,
            entry.category,
        )


@dataclass(frozen=True, slots=True)
class SentWindow:
    """What a session was last sent: the window id and its entries, per fact.

    Stored as orjson ``[version, window_id, [[scope, predicate, negated, args,
    fingerprint, confidence, salience, category], ...]]``.
    """

    window_id: str
    entries: dict[FactKey, SentEntry]

    @classmethod
    def of(cls, window: Window) -> SentWindow:
        """What a session is sent when it gets ``window``."""
        return cls(window.window_id, {e.key: SentEntry.of(e) for e in window.entries})

    def encode(self) -> bytes:
        """The stored form (see the class)."""
        return orjson.dumps(
            [
                ENCODING,
                self.window_id,
                [
                    [*e.key[:3], e.key.args, e.fingerprint, e.confidence, e.salience,
                     e.category]
                    for e in self.entries.values()
                ],
            ]
        )

    @classmethod
    def decode(cls, raw: bytes) -> SentWindow | None:
        """The window ``raw`` holds; None for another encoding version (a newer
        process wrote it during an upgrade: the session starts over)."""
        version, window_id, rows = orjson.loads(raw)
        if version != ENCODING:
            return None
        entries = {}
        for scope, predicate, negated, args, digest, confidence, salience, category in rows:
            key = FactKey(scope, predicate, negated, tuple(args))
            entries[key] = SentEntry(key, digest, confidence, salience, category)
        return cls(window_id, entries)


def encode_turns(turns: tuple[str, ...]) -> bytes:
    """A conversation's kept turns as stored: orjson ``[version, [turn, ...]]``."""
    return orjson.dumps([ENCODING, turns])


def decode_turns(raw: bytes) -> tuple[str, ...]:
    """The turns :func:`encode_turns` stored (none for another encoding version)."""
    version, turns = orjson.loads(raw)
    return tuple(turns) if version == ENCODING else ()


class Sessions:
    """One tenant's sessions, in the shared store (or, inside a transaction, only in
    this object: ``shared`` None).

    Each value is one entry, written whole: :meth:`update` is a compare-and-set loop,
    so of two requests racing on one session on two processes, each sees the value the
    other stored or stores none; nothing is lost between them.
    """

    def __init__(
        self,
        shared: Shared | None,
        db: Db,
        tenant: str,
        capacity: int,
        ttl_s: float = SESSION_TTL_S,
    ) -> None:
        self.shared = shared
        self.db = db
        self.tenant = tenant
        self.capacity = max(1, capacity)
        self.ttl_s = ttl_s
        # the values of a transaction's request: (value, version) per (space, key)
        self._local: dict[tuple[str, str], tuple[bytes, int]] = {}

    def key(self, session_id: str) -> str:
        """The shared-store key of a session of this tenant."""
        digest = hashlib.blake2b(session_id.encode(), digest_size=16).hexdigest()
        return shared_key(self.db.name, self.tenant, digest)

    async def read(self, space: str, session_id: str) -> tuple[bytes, int] | None:
        """The session's value and its version, or None (unknown, expired, or of a
        deleted or recreated tenant)."""
        key = self.key(session_id)
        if self.shared is None:
            return self._local.get((space, key))
        return await self.shared.get_sealed(self.db, self.tenant, space, key)

    async def write(
        self, space: str, session_id: str, value: bytes, *, expect: int | None = None
    ) -> int | None:
        """Store the session's value (``expect`` as :meth:`Shared.put`); its new
        version, None when the expectation failed, or 0 when nothing can be kept: the
        tenant has no data key (it was never written, or it was deleted), so it has no
        sessions. A write that creates a session forgets the tenant's least recently
        written ones beyond the capacity."""
        key = self.key(session_id)
        if self.shared is None:
            held = self._local.get((space, key))
            version = 0 if held is None else held[1]
            if expect is not None and expect != version:
                return None
            self._local[(space, key)] = (value, version + 1)
            return version + 1
        try:
            written = await self.shared.put_sealed(
                self.db, self.tenant, space, key, value, ttl_s=self.ttl_s, expect=expect
            )
        except LookupError:
            return 0
        if written == 1:
            await self._trim(space)
        return written

    async def update(
        self, space: str, session_id: str, change: Callable[[bytes | None], bytes]
    ) -> None:
        """Replace the session's value with ``change(value)`` (None: no value),
        atomically: ``change`` is called again on the newer value when another request
        wrote the session in between.

        :raises WriteContention: the session kept changing (:data:`MAX_ATTEMPTS`).
        """
        for _ in range(MAX_ATTEMPTS):
            held = await self.read(space, session_id)
            if held is not None:
                value, version = held
            else:  # absent, or a stale entry of a former incarnation: replaced
                value, version = None, await self._stored_version(space, session_id)
            written = await self.write(space, session_id, change(value), expect=version)
            if written is not None:
                return
        raise WriteContention(
            f"context session {session_id[:80]!r} changed under each of {MAX_ATTEMPTS} "
            "attempts to update it; retry",
            {"sessionId": session_id[:80], "attempts": MAX_ATTEMPTS},
        )

    async def _stored_version(self, space: str, session_id: str) -> int:
        """The version of the session's entry, readable or not (0: none)."""
        if self.shared is None:
            return 0
        entry = await self.shared.get(space, self.key(session_id))
        return 0 if entry is None else entry.version

    async def forget(self, space: str, session_id: str) -> bool:
        """Forget the session; False when it was not known (a stale entry of a
        deleted tenant is removed all the same)."""
        key = self.key(session_id)
        if self.shared is None:
            return self._local.pop((space, key), None) is not None
        known = await self.shared.get_sealed(self.db, self.tenant, space, key)
        deleted = await self.shared.delete(space, key)
        return known is not None and deleted

    async def _trim(self, space: str) -> None:
        """Forget the least recently written sessions beyond the capacity (each
        write sets an entry's expiry from now, so the oldest expire first)."""
        assert self.shared is not None
        held: list[tuple[str, SharedEntry]] = await self.shared.scan(
            space, shared_key(self.db.name, self.tenant, "")
        )
        excess = len(held) - self.capacity
        if excess <= 0:
            return
        held.sort(key=lambda item: item[1].expires_ms)
        for key, _ in held[:excess]:
            await self.shared.delete(space, key)
