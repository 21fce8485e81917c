"""Answers for SSE streams held by another process: mail in the shared state store.

An HTTP+SSE session's stream is one live connection, on one process; the POSTs of the
session land on any process (issue 16). The process a POST lands on serves it and, when
the stream is elsewhere, deposits the JSON-RPC answer as mail (space ``mcp-mail``, key
``shared_key(holder, session id, seq)``); the holder's one :class:`MailPoller` picks up
the mail of all its streams with one scan every :data:`POLL_MIN_S` (backing off to
:data:`POLL_MAX_S` while none comes), puts it on the streams and deletes it.

Order. ``seq`` comes from one counter per session in the store (space
``mcp-mail-seq``), taken after the answer is ready; a process takes its numbers and
stores its mail one answer at a time, so its answers are numbered in the order it
finished them. The poller delivers a session's mail in ``seq`` order; a number missing
while a later one is there (another process between taking the number and storing the
mail) is waited for up to :data:`GAP_WAIT_S`, then skipped (that process died). So the
answers of one process reach the stream in the order it finished them, and an answer
deposited before another, by whichever processes, is delivered before it.

Mail holds tool results, tenant data: it is sealed under the tenant's data key
(``Shared.put_sealed``). A tenant without a live key has no stored data (none was ever
written, or it was deleted): then the answer can hold nothing of it and is stored as
is. Mail nobody picks up (its stream's process died) expires after
:data:`MAIL_TTL_S`; mail that no longer opens (its tenant deleted or recreated since) is
dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from nocturnus.service.shared import Shared, shared_key

if TYPE_CHECKING:
    from nocturnus.service.databases import Databases

log = logging.getLogger("nocturnus.mcp")

MAIL = "mcp-mail"
SEQ = "mcp-mail-seq"
MAIL_TTL_S = 60.0
SEQ_TTL_S = 7 * 86_400.0
"""A session's counter outlives any stream (a counter's expiry is fixed at creation);
the stream's end deletes it."""
GAP_WAIT_S = 2.0
POLL_MIN_S = 0.025
POLL_MAX_S = 0.1
_PLAIN = b"\x00"
"""First byte of mail stored unsealed; sealed values start with their format (1)."""


class Stream(Protocol):
    """Where mail is delivered: an open SSE stream of this process."""

    @property
    def is_closing(self) -> bool: ...

    @property
    def pending(self) -> int: ...

    def push(self, message: Any) -> None: ...


@dataclass(slots=True, eq=False)
class Box:
    """A local stream's place in the poller: where its mail goes, and what came last."""

    stream: Stream
    database: str
    tenant: str
    next_seq: int = 1
    gap_since: float | None = None


@dataclass(slots=True, eq=False)
class _Sender:
    """One answer at a time per session from this process: numbers in finishing order."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0


class MailPoller:
    """The mail of this process's SSE streams (one per process), and its sending.

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
        self._senders: dict[str, _Sender] = {}
        self.interval_s = POLL_MIN_S

    # -- sending ----------------------------------------------------------------------

    async def deposit(
        self, holder: str, session_id: str, database: str, tenant: str, message: Any
    ) -> None:
        """Mail ``message`` to the stream of ``session_id`` held by ``holder``."""
        sender = self._senders.setdefault(session_id, _Sender())
        sender.users += 1
        try:
            async with sender.lock:
                shared = self._shared()
                seq = await shared.add(SEQ, session_id, 1, ttl_s=SEQ_TTL_S)
                key = shared_key(holder, session_id, f"{seq:016d}")
                body = orjson.dumps(message)
                db = self._databases().get(database)
                try:
                    await shared.put_sealed(
                        db, tenant, MAIL, key, body, ttl_s=MAIL_TTL_S
                    )
                except LookupError:  # no live data key: no data of the tenant to hold
                    await shared.put(MAIL, key, _PLAIN + body, ttl_s=MAIL_TTL_S)
        finally:
            sender.users -= 1
            if not sender.users:
                del self._senders[session_id]

    async def backlog(self, holder: str, session_id: str) -> int:
        """How much mail waits for the stream of ``session_id``."""
        entries = await self._shared().scan(MAIL, shared_key(holder, session_id, ""))
        return len(entries)

    # -- receiving --------------------------------------------------------------------

    def attach(self, session_id: str, box: Box) -> None:
        self.boxes[session_id] = box

    def detach(self, session_id: str) -> None:
        self.boxes.pop(session_id, None)

    async def collect(self) -> int:
        """Deliver the mail waiting for this process's streams; how much was delivered.

        The interval to the next collection shrinks to :data:`POLL_MIN_S` when mail
        came and grows towards :data:`POLL_MAX_S` while none does.
        """
        shared = self._shared()
        entries = await shared.scan(MAIL, shared_key(self.holder, ""))
        delivered = 0
        by_session: dict[str, list[tuple[int, str, bytes]]] = {}
        for key, entry in entries:
            _, session_id, seq = key.split("\x1f")
            by_session.setdefault(session_id, []).append((int(seq), key, entry.value))
        for session_id, mail in by_session.items():
            delivered += await self._deliver(shared, session_id, mail)
        waiting = any(box.gap_since is not None for box in self.boxes.values())
        if delivered or waiting:
            self.interval_s = POLL_MIN_S
        else:
            self.interval_s = min(POLL_MAX_S, self.interval_s * 1.5)
        return delivered

    async def _deliver(
        self, shared: Shared, session_id: str, mail: list[tuple[int, str, bytes]]
    ) -> int:
        box = self.boxes.get(session_id)
        if box is None or box.stream.is_closing:
            return 0  # the stream's end deletes its mail
        delivered = 0
        for seq, key, value in mail:  # in seq order: the key's zero-padded number
            if box.stream.pending >= self._max_pending:
                break  # the client reads slowly: the mail waits, and counts for new POSTs
            if seq > box.next_seq:
                now = time.monotonic()
                if box.gap_since is None:
                    box.gap_since = now
                if now - box.gap_since < GAP_WAIT_S:
                    break
                log.warning(
                    "MCP session %s: answers %d..%d never arrived; skipping them",
                    session_id,
                    box.next_seq,
                    seq - 1,
                )
            message = await self._open(shared, box, key, value)
            if message is not None:
                box.stream.push(message)
                delivered += 1
            await shared.delete(MAIL, key)
            box.next_seq = seq + 1
            box.gap_since = None
        return delivered

    async def _open(self, shared: Shared, box: Box, key: str, value: bytes) -> Any:
        """The message of one piece of mail, or None when it no longer opens."""
        if value[:1] == _PLAIN:
            return orjson.loads(value[1:])
        db = self._databases().get(box.database)
        opened = await shared.get_sealed(db, box.tenant, MAIL, key)
        return None if opened is None else orjson.loads(opened[0])

    async def forget(self, holder: str, session_id: str) -> None:
        """Delete the mail and the counter of an ended session."""
        shared = self._shared()
        await shared.delete_prefix(MAIL, shared_key(holder, session_id, ""))
        await shared.delete(SEQ, session_id)
