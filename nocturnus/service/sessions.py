"""Context sessions: the last window sent to each session of one tenant, in a bounded LRU.

A session is (database, tenant, sessionId). The store lives inside the tenant's in-memory
context data, so a session id of one tenant (or database) is invisible to every other,
and deleting the tenant forgets its sessions with the rest of its data.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from nocturnus.service.facts import FactKey


@dataclass(frozen=True, slots=True)
class SentWindow:
    """What a session was last sent: the window id and, per fact, its content fingerprint."""

    window_id: str
    entries: dict[FactKey, Any]


class Sessions:
    """At most ``capacity`` sessions; the least recently used one is forgotten first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._windows: OrderedDict[str, SentWindow] = OrderedDict()

    def __len__(self) -> int:
        return len(self._windows)

    def get(self, session_id: str) -> SentWindow | None:
        window = self._windows.get(session_id)
        if window is not None:
            self._windows.move_to_end(session_id)
        return window

    def put(self, session_id: str, window: SentWindow) -> None:
        self._windows[session_id] = window
        self._windows.move_to_end(session_id)
        while len(self._windows) > self.capacity:
            self._windows.popitem(last=False)

    def clear(self, session_id: str) -> bool:
        """Forget a session; False when it was not known."""
        return self._windows.pop(session_id, None) is not None
