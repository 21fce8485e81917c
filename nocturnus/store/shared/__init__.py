"""Shared state: small, short-lived state that every process of a deployment sees.

Knowledge lives in the log; a projection is a cache of it. Some state is neither: a
``/context/diff`` session's last window, an MCP session's owner, an open transaction, a
rate-limit counter. It changes answers, so it cannot live in one process's memory when
several processes serve (``serve --workers N``, nodes on one PostgreSQL store), yet it
is not worth an event: it expires, it is rewritten on every use, and nothing replays it.

One contract (:class:`SharedState`), two backends picked like the log's
(each store gives its own: ``Store.shared()``):

- :mod:`.sqlite`: ``<data dir>/shared.sqlite`` beside the logs, for every process on
  that data dir. WAL with ``synchronous = NORMAL``: an entry survives a crash of the
  process; a power loss may take the last moments' entries (never the log's events).
- :mod:`.postgresql`: table ``nocturnus.shared_state`` in the store's database, for
  every node on it.

Entries are bytes under ``(space, key)``: a space belongs to one module (its name says
whose), a key is built with :func:`shared_key`. Every entry has an expiry and reads as
absent after it; expired rows are swept now and then. Values holding tenant data are
sealed above this layer (``service/shared.py``): this layer sees bytes only.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from typing import Protocol

SEPARATOR = "\x1f"
_COUNTER = struct.Struct(">q")
SWEEP_EVERY_S = 60.0
"""How often (per process, at most) a write also deletes expired rows."""


@dataclass(frozen=True, slots=True)
class SharedEntry:
    """One live entry: its bytes, its version and when it expires."""

    value: bytes
    version: int
    """1 when created, one more at every put (the ``expect`` of a compare-and-set)."""
    expires_ms: int
    """Wall-clock epoch ms after which the entry reads as absent."""


class SharedState(Protocol):
    """Entries under ``(space, key)``, the same for every process of the store.

    Every method is one short transaction; none waits for another process except on
    the store's row locks.
    """

    @property
    def where(self) -> str:
        """Where the entries are, for messages."""
        ...

    @property
    def local(self) -> bool:
        """Whether a call is a local file operation of microseconds, fit to run on an
        event loop (else the caller runs it in a thread)."""
        ...

    def get(self, space: str, key: str) -> SharedEntry | None:
        """The live entry, or None (absent or expired)."""
        ...

    def put(
        self,
        space: str,
        key: str,
        value: bytes,
        *,
        ttl_s: float,
        expect: int | None = None,
    ) -> int | None:
        """Store ``value``, expiring ``ttl_s`` from now; return its new version.

        ``expect``: None stores unconditionally; 0 only if no live entry exists; ``n``
        only if the live entry's version is ``n`` (compare-and-set). None is returned,
        and nothing stored, when the expectation does not hold.
        """
        ...

    def delete(self, space: str, key: str) -> bool:
        """Remove an entry; False when there was no live one."""
        ...

    def delete_prefix(self, space: str, prefix: str) -> int:
        """Remove every entry whose key starts with ``prefix``; how many were live."""
        ...

    def add(self, space: str, key: str, delta: int, *, ttl_s: float) -> int:
        """Add ``delta`` to a counter and return its new total.

        A counter is created (at 0) with an expiry ``ttl_s`` from now, which later adds
        keep: a fixed window. Its value is an 8-byte signed big-endian integer
        (:func:`counter_value`).
        """
        ...

    def scan(self, space: str, prefix: str = "") -> list[tuple[str, SharedEntry]]:
        """The live entries whose key starts with ``prefix``, in key order."""
        ...

    def close(self) -> None:
        """Release this process's connections."""
        ...


def shared_key(*parts: str) -> str:
    """One key of several parts (database, tenant, an id...), none of which can be
    confused with another's: the separator is a control character no name contains."""
    for part in parts:
        if SEPARATOR in part:
            raise ValueError(f"a shared-state key part cannot contain \\x1f: {part!r}")
    return SEPARATOR.join(parts)


def counter_bytes(value: int) -> bytes:
    """The stored form of a counter's total."""
    return _COUNTER.pack(value)


def counter_value(value: bytes) -> int:
    """A counter's total from its stored form."""
    return int(_COUNTER.unpack(value)[0])


def prefix_end(prefix: str) -> str:
    """The smallest string greater than every string starting with ``prefix`` (a key
    range's exclusive end; ``prefix`` must not be empty)."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def now_ms() -> int:
    """Wall-clock epoch ms: expiries are compared across processes and machines."""
    return int(time.time() * 1000)
