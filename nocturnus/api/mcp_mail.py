"""Answers for SSE streams, in POST order, whichever process served the POSTs.

An HTTP+SSE session's stream is one live connection, on one process; the POSTs of the
session land on any process (issue 16). The process a POST lands on serves it. When the
stream is elsewhere it hands the JSON-RPC answer over as mail in the shared state store
(space ``mcp-mail``, key ``shared_key(holder, session id, number)``); the holder's one
:class:`MailPoller` collects the mail of all its streams with one scan every
:data:`POLL_MIN_S` (backing off to :data:`POLL_MAX_S` while none comes), puts it on the
streams and deletes it. When the stream is on the same process the answer goes straight
to it, never through the store.

Order. Before a POST that needs an answer is accepted (202) it takes the session's next
number from one counter per session in the store (space ``mcp-mail-seq``), and a POST
served away from the stream leaves a placeholder under that number, kept alive while
its call runs. The stream delivers answers strictly by number: an answer waits for the
ones numbered before it (their placeholders, or calls in flight on the stream's own
process). So a client that waits for each POST's 202 before the next gets its answers in
POST order, whichever processes served them (as one process did: a slow call holds back
the answers posted after it). A number that never shows up (its process died between
taking it and leaving the placeholder, or a placeholder not kept alive for
:data:`MAIL_TTL_S`) is waited for :data:`GAP_WAIT_S`, then skipped; an answer arriving
after it was skipped is delivered as soon as it comes.

Mail holds tool results, tenant data: it is sealed under the tenant's data key
(``Shared.put_sealed``). A tenant without a live key has no stored data (none was ever
written, or it was deleted): then the answer can hold nothing of it and is stored as
is. Mail nobody picks up (its stream's process died) expires after
:data:`MAIL_TTL_S`; mail that no longer opens (its tenant or database deleted, or the
tenant recreated, since) is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from nocturnus.errors import NotFound
from nocturnus.service.shared import Shared, shared_key

if TYPE_CHECKING:
    from nocturnus.service.databases import Databases

log = logging.getLogger("nocturnus.mcp")

MAIL = "mcp-mail"
SEQ = "mcp-mail-seq"
MAIL_TTL_S = 60.0
KEEP_S = 15.0
"""How often a call in flight writes its placeholder again."""
SEQ_TTL_S = 30 * 86_400.0
"""A counter's expiry is fixed when it is created: it outlives any stream, whose end
deletes it."""
GAP_WAIT_S = 2.0
POLL_MIN_S = 0.025
POLL_MAX_S = 0.1
_PLAIN = b"\x00"
"""First byte of an answer stored unsealed; sealed ones start with their format (1)."""
_PLACEHOLDER = b"\x02"
SKIPPED = object()
"""What a call that ended without an answer leaves in its place (its number is done)."""


class Stream(Protocol):
    """Where answers are delivered: an open SSE stream of this process."""

    @property
    def is_closing(self) -> bool: ...

    @property
    def pending(self) -> int: ...

    def push(self, message: Any) -> None: ...


@dataclass(slots=True, eq=False)
class Box:
    """A stream of this process: its answers by number, and the next one to deliver."""

    stream: Stream
    database: str
    tenant: str
    next_seq: int = 1
    gap_since: float | None = None
    in_flight: set[int] = field(default_factory=set)
    """Numbers of calls this process is answering (no placeholder in the store)."""
    ready: dict[int, Any] = field(default_factory=dict)
    """Answers of this process waiting for their turn."""
    mail: dict[int, tuple[str, bytes]] = field(default_factory=dict)
    """The store's mail for this stream as last collected: number to key and value."""

    def waiting(self) -> int:
        """Answers taken but not yet on the stream, as this process knows them."""
        return (
            len(self.in_flight) + len(self.ready) + len(self.mail) + self.stream.pending
        )


class MailPoller:
    """The answers of this process's SSE streams (one per process), and the sending of
    answers to other processes' streams.

    ``holder`` is this process's random instance id, as session records name it.
    """

    def __init__(
        self,
        holder: str,
        shared: Callable[[], Shared],
        databases: Callable[[], Databases],
        max_pending: int,
    ) -> None:
        self.holder = holder
        self._shared = shared
        self._databases = databases
        self._max_pending = max_pending
        self.boxes: dict[str, Box] = {}
        self.interval_s = POLL_MIN_S

    # -- numbers ------------------------------------------------------------------------

    async def number(self, session_id: str) -> int:
        """The session's next answer number (before the POST is accepted)."""
        return await self._shared().add(SEQ, session_id, 1, ttl_s=SEQ_TTL_S)

    async def backlog(self, holder: str, session_id: str) -> int:
        """Answers of ``session_id`` not yet delivered: every process's calls in flight
        for a stream elsewhere, and answers waiting (all of them on the holder)."""
        box = self.boxes.get(session_id) if holder == self.holder else None
        if box is not None:
            return box.waiting()
        entries = await self._shared().scan(MAIL, shared_key(holder, session_id, ""))
        return len(entries)

    # -- answers for another process's stream ------------------------------------------

    async def reserve(self, holder: str, session_id: str, seq: int) -> int | None:
        """Leave the placeholder of answer ``seq``; its version."""
        return await self._shared().put(
            MAIL, _key(holder, session_id, seq), _PLACEHOLDER, ttl_s=MAIL_TTL_S
        )

    async def keep(self, holder: str, session_id: str, seq: int, version: int) -> None:
        """Write the placeholder again every :data:`KEEP_S` while the call runs (a
        compare-and-set: it never overwrites the answer)."""
        key = _key(holder, session_id, seq)
        current: int | None = version
        try:
            while current is not None:
                await asyncio.sleep(KEEP_S)
                current = await self._shared().put(
                    MAIL, key, _PLACEHOLDER, ttl_s=MAIL_TTL_S, expect=current
                )
        except Exception:  # the placeholder may lapse: the stream skips it, no more
            log.warning(
                "MCP: could not keep the place of answer %d", seq, exc_info=True
            )

    async def deposit(
        self,
        holder: str,
        session_id: str,
        seq: int,
        database: str,
        tenant: str,
        message: Any,
    ) -> None:
        """Put answer ``seq`` (None: a call without one) where its placeholder is."""
        shared = self._shared()
        key = _key(holder, session_id, seq)
        body = orjson.dumps(message)
        db = self._databases().get(database)
        try:
            await shared.put_sealed(db, tenant, MAIL, key, body, ttl_s=MAIL_TTL_S)
        except LookupError:  # no live data key: no data of the tenant to hold
            await shared.put(MAIL, key, _PLAIN + body, ttl_s=MAIL_TTL_S)

    # -- this process's streams --------------------------------------------------------

    def attach(self, session_id: str, box: Box) -> None:
        self.boxes[session_id] = box

    def detach(self, session_id: str) -> None:
        self.boxes.pop(session_id, None)

    def expect(self, session_id: str, seq: int) -> None:
        """A call of this process will answer ``seq`` on its stream here."""
        box = self.boxes.get(session_id)
        if box is not None:
            box.in_flight.add(seq)

    def arrive(self, session_id: str, seq: int, message: Any) -> None:
        """The answer of ``seq`` (or :data:`SKIPPED`) from a call of this process:
        delivered now if its turn has come, else when the answers before it are."""
        box = self.boxes.get(session_id)
        if box is None:
            return
        box.in_flight.discard(seq)
        box.ready[seq] = message
        while box.next_seq in box.ready and box.stream.pending < self._max_pending:
            self._push(box, box.ready.pop(box.next_seq))
            box.next_seq += 1
            box.gap_since = None

    async def collect(self) -> int:
        """Deliver what may be delivered on this process's streams; how many answers.

        The interval to the next collection shrinks to :data:`POLL_MIN_S` when mail
        came or is awaited, and grows towards :data:`POLL_MAX_S` while none is.
        """
        shared = self._shared()
        entries = await shared.scan(MAIL, shared_key(self.holder, ""))
        found: dict[str, dict[int, tuple[str, bytes]]] = {}
        for key, entry in entries:
            _, session_id, seq = key.split("\x1f")
            found.setdefault(session_id, {})[int(seq)] = (key, entry.value)
        delivered = 0
        for session_id, box in list(self.boxes.items()):
            box.mail = found.get(session_id, {})
            if not box.stream.is_closing:  # (the stream's end deletes its mail)
                delivered += await self._deliver(shared, box)
        waiting = any(box.mail or box.ready for box in self.boxes.values())
        if delivered or waiting:
            self.interval_s = POLL_MIN_S
        else:
            self.interval_s = min(POLL_MAX_S, self.interval_s * 1.5)
        return delivered

    async def _deliver(self, shared: Shared, box: Box) -> int:
        delivered = 0
        for seq in sorted(s for s in box.mail if s < box.next_seq):
            if (
                box.mail[seq][1] != _PLACEHOLDER
            ):  # an answer after its number was skipped
                delivered += await self._take(shared, box, seq)
        while box.stream.pending < self._max_pending:
            seq = box.next_seq
            if seq in box.ready:
                self._push(box, box.ready.pop(seq))
            elif seq in box.in_flight:
                break
            elif seq in box.mail:
                if box.mail[seq][1] == _PLACEHOLDER:
                    break
                delivered += await self._take(shared, box, seq)
            elif not self._skip_gap(box):
                break
            else:
                continue
            box.next_seq = seq + 1
            box.gap_since = None
        return delivered

    def _skip_gap(self, box: Box) -> bool:
        """Whether to give up waiting for ``next_seq`` (moving it to the next number
        known), or wait on (also when nothing later is known)."""
        later = [s for s in (*box.ready, *box.in_flight, *box.mail) if s > box.next_seq]
        if not later:
            return False
        now = time.monotonic()
        if box.gap_since is None:
            box.gap_since = now
        if now - box.gap_since < GAP_WAIT_S:
            return False
        log.warning(
            "MCP stream: answers %d..%d never came; skipped",
            box.next_seq,
            min(later) - 1,
        )
        box.next_seq = min(later)
        box.gap_since = None
        return True

    async def _take(self, shared: Shared, box: Box, seq: int) -> int:
        """Deliver the stored answer ``seq`` and delete it; 1 if it opened, else 0."""
        key, value = box.mail.pop(seq)
        message = await self._open(shared, box, key, value)
        if message is not None:
            self._push(box, message)
        await shared.delete(MAIL, key)
        return 0 if message is None else 1

    def _push(self, box: Box, message: Any) -> None:
        if message is not SKIPPED and not box.stream.is_closing:
            box.stream.push(message)

    async def _open(self, shared: Shared, box: Box, key: str, value: bytes) -> Any:
        """The message of one answer, or None when it no longer opens."""
        if value[:1] == _PLAIN:
            return orjson.loads(value[1:])
        try:
            db = self._databases().get(box.database)
        except NotFound:  # deleted since: its answers go with it
            return None
        opened = await shared.get_sealed(db, box.tenant, MAIL, key)
        return None if opened is None else orjson.loads(opened[0])

    async def forget(self, holder: str, session_id: str) -> None:
        """Delete the mail and the counter of an ended session."""
        shared = self._shared()
        await shared.delete_prefix(MAIL, shared_key(holder, session_id, ""))
        await shared.delete(SEQ, session_id)


def _key(holder: str, session_id: str, seq: int) -> str:
    return shared_key(holder, session_id, f"{seq:016d}")
