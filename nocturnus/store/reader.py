"""A database's reader: read jobs on a read-only log, in a thread of its own.

Reads that scan many events (loading a tenant, time travel, the audit trail) run here,
so the writer keeps committing everyone else's writes meanwhile. The thread machinery
is the writer's (one dedicated thread, jobs in order, the log opened inside it); a
:class:`Reader` offers only its read side.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from nocturnus.store.sealer import Sealer
from nocturnus.store.writer import Writer

T = TypeVar("T")


class Reader:
    """Runs read jobs on the log ``open_log`` opens (read-only), one at a time."""

    def __init__(self, open_log: Callable[[], Sealer], *, name: str = "reader") -> None:
        self._thread = Writer(open_log, name=name)

    async def start(self) -> None:
        """Start the thread and open the log in it.

        :raises NocturnusError: whatever opening the log raised.
        """
        await self._thread.start()

    async def run(self, fn: Callable[[Sealer], T]) -> T:
        """Run ``fn(log)`` in the reader's thread."""
        return await self._thread.run(fn)

    async def close(self) -> None:
        """Close the log and stop the thread."""
        await self._thread.close()
