"""Context sessions in the shared store (issue 16): the stored forms round-trip, a
tenant's sessions are bounded least recently written first, an update is a
compare-and-set, and a deleted or recreated tenant's sessions read as absent. Real
Databases and a real shared store on SQLite files."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from nocturnus.service import tenants
from nocturnus.service.commands import TellFact
from nocturnus.service.context.sessions import (
    TURNS,
    WINDOWS,
    SentEntry,
    SentWindow,
    Sessions,
    decode_turns,
    encode_turns,
)
from nocturnus.service.database import Database, DatabaseState
from nocturnus.service.databases import Databases
from nocturnus.service.facts import FactKey
from tests.service.stores import run_with_tenant

Db = Database[DatabaseState]

scalars = st.one_of(
    st.text(max_size=8),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
)
entries = st.builds(
    SentEntry,
    key=st.builds(
        FactKey,
        st.sampled_from(["main", "h"]),
        st.sampled_from(["p", "q"]),
        st.booleans(),
        st.lists(scalars, max_size=3).map(tuple),
    ),
    fingerprint=st.text(max_size=32),
    confidence=st.one_of(st.none(), st.floats(0, 1)),
    salience=st.floats(0, 1),
    category=st.sampled_from(["recent", "salient", "goal_relevant", "inferred"]),
)


def exact(window: SentWindow) -> list[Any]:
    """``window`` with every constant's type (``1 == 1.0`` and ``0.0 == -0.0`` in Python,
    never in Nocturnus)."""
    return [
        window.window_id,
        [
            (key, [(type(a), repr(a)) for a in key.args], repr(e))
            for key, e in window.entries.items()
        ],
    ]


@given(st.text(max_size=20), st.lists(entries, max_size=6, unique_by=lambda e: e.key))
def test_a_sent_window_round_trips(window_id: str, sent: list[SentEntry]) -> None:
    window = SentWindow(window_id, {e.key: e for e in sent})
    decoded = SentWindow.decode(window.encode())
    assert decoded is not None and exact(decoded) == exact(window)


@given(st.lists(st.text(max_size=50), max_size=6).map(tuple))
def test_turns_round_trip(turns: tuple[str, ...]) -> None:
    assert decode_turns(encode_turns(turns)) == turns


def test_another_encoding_version_reads_as_no_session() -> None:
    assert SentWindow.decode(b'[2, "w", []]') is None
    assert decode_turns(b'[2, ["a"]]') == ()


def run(tmp_path: Path, scenario: Callable[[Databases, Db], Awaitable[None]]) -> None:
    run_with_tenant(tmp_path, "acme", scenario)


def test_sessions_are_bounded_least_recently_written_first(tmp_path: Path) -> None:
    async def scenario(dbs: Databases, db: Db) -> None:
        sessions = Sessions(dbs.shared, db, "acme", capacity=2)

        async def write(name: str, value: bytes) -> int | None:
            # the order is the entries' expiry, in ms: one write per ms
            await asyncio.sleep(0.002)
            return await sessions.write(WINDOWS, name, value)

        for name in ("a", "b"):
            assert await write(name, name.encode()) == 1
        assert await write("a", b"a2") == 2  # a is now the newest
        await write("c", b"c")  # a third: b, the oldest, goes
        assert await sessions.read(WINDOWS, "b") is None
        assert await sessions.read(WINDOWS, "a") == (b"a2", 2)
        assert await sessions.read(WINDOWS, "c") == (b"c", 1)
        # each space and tenant is bounded on its own
        await sessions.write(TURNS, "b", b"turns")
        other = Sessions(dbs.shared, db, "globex", capacity=2)
        await tenants.tell_many(db, "globex", [TellFact("p", ("a",))], atomic=True)
        assert await other.read(WINDOWS, "a") is None
        assert await sessions.read(TURNS, "b") == (b"turns", 1)
        assert await sessions.forget(WINDOWS, "a") is True
        assert await sessions.forget(WINDOWS, "a") is False

    run(tmp_path, scenario)


def test_an_update_is_a_compare_and_set(tmp_path: Path) -> None:
    async def scenario(dbs: Databases, db: Db) -> None:
        sessions = Sessions(dbs.shared, db, "acme", capacity=10)
        assert await sessions.write(WINDOWS, "s", b"one", expect=0) == 1
        assert await sessions.write(WINDOWS, "s", b"two", expect=0) is None
        assert await sessions.write(WINDOWS, "s", b"two", expect=1) == 2
        assert await sessions.write(WINDOWS, "s", b"lost", expect=1) is None

        # another process writes between this update's read and its write: the
        # update is made again on what that one stored, nothing is lost
        racing = Interleaved(dbs.shared, db, "acme", capacity=10)
        racing.other = sessions
        seen: list[bytes | None] = []

        def change(value: bytes | None) -> bytes:
            seen.append(value)
            return (value or b"") + b"+"

        await racing.update(WINDOWS, "s", change)
        assert seen == [b"two", b"other"]
        assert await sessions.read(WINDOWS, "s") == (b"other+", 4)

    run(tmp_path, scenario)


class Interleaved(Sessions):
    """Sessions whose first read is followed by another process's write (``other``:
    the same store through another object)."""

    other: Sessions
    interleave = True

    async def read(self, space: str, session_id: str) -> tuple[bytes, int] | None:
        held = await super().read(space, session_id)
        if self.interleave:
            self.interleave = False
            await self.other.write(space, session_id, b"other")
        return held


def test_a_deleted_or_recreated_tenants_sessions_read_as_absent(tmp_path: Path) -> None:
    async def scenario(dbs: Databases, db: Db) -> None:
        sessions = Sessions(dbs.shared, db, "acme", capacity=10)
        await sessions.write(WINDOWS, "s", b"window")
        await sessions.write(TURNS, "s", b"turns")
        assert await sessions.read(WINDOWS, "s") is not None
        await tenants.delete_tenant(db, "acme")
        assert await sessions.read(WINDOWS, "s") is None
        await tenants.tell_many(db, "acme", [TellFact("p", ("b",))], atomic=True)
        assert await sessions.read(WINDOWS, "s") is None  # a new tenant, a new key
        assert await sessions.read(TURNS, "s") is None
        # the stale entry is replaced by the new incarnation's first update
        await sessions.update(TURNS, "s", lambda stored: (stored or b"") + b"new")
        assert await sessions.read(TURNS, "s") == (b"new", 2)
        assert await sessions.forget(WINDOWS, "s") is False

    run(tmp_path, scenario)


def test_a_transactions_sessions_last_for_the_call_only(tmp_path: Path) -> None:
    async def scenario(dbs: Databases, db: Db) -> None:
        shared = Sessions(dbs.shared, db, "acme", capacity=10)
        await shared.write(WINDOWS, "s", b"live")
        inside = Sessions(None, db, "acme", capacity=10)
        assert await inside.read(WINDOWS, "s") is None
        assert await inside.write(WINDOWS, "s", b"view", expect=0) == 1
        assert await inside.read(WINDOWS, "s") == (b"view", 1)
        assert await shared.read(WINDOWS, "s") == (b"live", 1)
        assert await inside.forget(WINDOWS, "s") is True

    run(tmp_path, scenario)
