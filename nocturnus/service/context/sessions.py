"""Context sessions: the last window sent to each session of one tenant, in a bounded LRU.

A session is (database, tenant, sessionId). The store lives in the tenant's read model
(``readmodels.py``), so a session id of one tenant (or database) is invisible to every
other, and deleting the tenant forgets its sessions with the rest of its data.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nocturnus.service.facts import FactKey

if TYPE_CHECKING:
    from nocturnus.service.context.window import Window, WindowEntry


@dataclass(frozen=True, slots=True)
class SentWindow:
    """What a session was last sent: the window id and its entries, per fact.

    A diff compares each entry's ``fingerprint`` and renders the entries that left
    the window as they were sent (``context.diff``).
    """

    window_id: str
    entries: dict[FactKey, WindowEntry]

    @classmethod
    def of(cls, window: Window) -> SentWindow:
        """What a session is sent when it gets ``window``."""
        return cls(window.window_id, {e.key: e for e in window.entries})


class Sessions:
    """At most ``capacity`` sessions; the least recently used one is forgotten first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = max(1, capacity)
        self._windows: OrderedDict[str, SentWindow] = OrderedDict()

    def __len__(self) -> int:
        return len(self._windows)

    def get(self, session_id: str) -> SentWindow | None:
        """The session's last window (the session becomes the most recently used)."""
        window = self._windows.get(session_id)
        if window is not None:
            self._windows.move_to_end(session_id)
        return window

    def put(self, session_id: str, window: SentWindow) -> None:
        """Make ``window`` the session's last one, forgetting the least recent session
        beyond ``capacity``."""
        self._windows[session_id] = window
        self._windows.move_to_end(session_id)
        while len(self._windows) > self.capacity:
            self._windows.popitem(last=False)

    def clear(self, session_id: str) -> bool:
        """Forget a session; False when it was not known."""
        return self._windows.pop(session_id, None) is not None
