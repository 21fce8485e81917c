"""The session table's bounds, with the clock in the test's hands (issue 14, item 4).

Only the idle rule needs time; the rest is exercised over real sockets in
``test_mcp_owners.py``.
"""

from __future__ import annotations

import pytest

from nocturnus.api.mcp_sessions import Owner, SessionLimits, Sessions
from nocturnus.errors import Unavailable


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def owner(key: str, tenant: str = "t") -> Owner:
    return Owner(key, "db", tenant)


def test_a_full_table_ends_a_session_of_another_key_only_once_it_is_idle() -> None:
    clock = Clock()
    sessions: Sessions[str] = Sessions("HTTP", SessionLimits(2, 2, 2, idle_s=60), clock)
    sessions.add("a", "a", owner("k1", "t1"), make_room=True)
    sessions.add("b", "b", owner("k2", "t2"), make_room=True)
    with pytest.raises(Unavailable):
        sessions.add("c", "c", owner("k3", "t3"), make_room=True)
    clock.now = 59
    assert sessions.get("b", owner("k2", "t2")) == "b"  # used: not idle
    clock.now = 61
    assert sessions.add("c", "c", owner("k3", "t3"), make_room=True) == ["a"]
    assert sessions.get("a", owner("k1", "t1")) is None
    assert sessions.get("b", owner("k2", "t2")) == "b"


def test_a_refused_session_changes_nothing() -> None:
    sessions: Sessions[str] = Sessions("HTTP", SessionLimits(3, 2, 3, idle_s=60), Clock())
    sessions.add("a", "a", owner("k1", "t1"), make_room=True)
    sessions.add("b", "b", owner("k2", "t2"), make_room=True)
    sessions.add("c", "c", owner("k3", "t2"), make_room=True)
    # k1 may end its own "a" for the key bound, but the total is full of others'.
    with pytest.raises(Unavailable):
        sessions.add("d", "d", owner("k4", "t4"), make_room=True)
    assert len(sessions) == 3
    assert sessions.get("a", owner("k1", "t1")) == "a"


def test_only_the_owner_finds_a_session() -> None:
    sessions: Sessions[str] = Sessions("SSE", SessionLimits(4, 4, 4, idle_s=60), Clock())
    sessions.add("s", "s", owner("k1"), make_room=False)
    assert sessions.get("s", owner("k2")) is None
    assert sessions.get("s", owner("k1", "elsewhere")) is None
    assert sessions.get("s", owner("k1")) == "s"
