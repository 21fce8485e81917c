"""The session bounds, with the clock in the test's hands (issue 14, item 4).

Only the idle rule needs time; the rest is exercised over real sockets in
``test_mcp_owners.py`` (one process) and ``test_mcp_nodes.py`` (two).
"""

from __future__ import annotations

import pytest

from nocturnus.api.mcp_sessions import Owner, SessionLimits, SessionRecord, plan_room
from nocturnus.errors import Unavailable


def owner(key: str, tenant: str = "t") -> Owner:
    return Owner(key, "db", tenant)


def record(session_id: str, who: Owner, used_s: float = 0.0) -> SessionRecord:
    return SessionRecord(session_id, who, opened_s=0.0, used_s=used_s)


def plan(records: list[SessionRecord], who: Owner, limits: SessionLimits, now_s: float = 0.0,
         *, make_room: bool = True) -> list[str]:
    return plan_room(records, who, limits, now_s, make_room=make_room, what="HTTP")


def test_a_full_table_ends_a_session_of_another_key_only_once_it_is_idle() -> None:
    limits = SessionLimits(2, 2, 2, idle_s=60)
    table = [record("a", owner("k1", "t1")), record("b", owner("k2", "t2"), used_s=59)]
    with pytest.raises(Unavailable):
        plan(table, owner("k3", "t3"), limits, now_s=59)
    assert plan(table, owner("k3", "t3"), limits, now_s=61) == ["a"]  # "b" was used at 59


def test_the_openers_own_least_recently_used_session_gives_way_first() -> None:
    limits = SessionLimits(10, 2, 10, idle_s=60)
    mine = owner("k1")
    table = [record("new", mine, used_s=5), record("old", mine, used_s=1),
             record("other", owner("k2"), used_s=0)]
    assert plan(table, mine, limits, now_s=6) == ["old"]


def test_a_refused_session_names_the_full_bound() -> None:
    limits = SessionLimits(3, 2, 3, idle_s=60)
    table = [record("a", owner("k1", "t1")), record("b", owner("k2", "t2")),
             record("c", owner("k3", "t2"))]
    # k4 may end nothing of others' in use: the total is full.
    with pytest.raises(Unavailable) as refused:
        plan(table, owner("k4", "t4"), limits)
    assert refused.value.details == {"limit": 3, "scope": "in all"}


def test_without_make_room_a_full_bound_refuses_even_the_openers_own() -> None:
    limits = SessionLimits(4, 1, 4, idle_s=60)
    with pytest.raises(Unavailable) as refused:
        plan([record("a", owner("k1"))], owner("k1"), limits, make_room=False)
    assert refused.value.details["scope"] == "for this API key"


def test_a_record_round_trips() -> None:
    original = SessionRecord("s", Owner(None, "db", "t"), 1.5, 2.25, "2025-11-25", "p1")
    assert SessionRecord.decode("s", original.encode()) == original
