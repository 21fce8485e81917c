"""Uses of facts are events in the log (issue 16): the same counts, and so the same
context windows, on every process and after a restart.

The API tests (tests/api/test_context.py, tests/api/test_nodes.py) run real servers;
here the parts: the ``facts_used`` applier, the snapshot section, the per-process
buffer, and where a database appends the uses it buffered.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from nocturnus.engine.rules import Literal
from nocturnus.engine.terms import Var
from nocturnus.service import snapshot_format, tenants
from nocturnus.service.codec import CODEC
from nocturnus.service.commands import TellFact
from nocturnus.service.context.window import ContextConfig, WindowRequest, optimize
from nocturnus.service.database import Database, DatabaseState
from nocturnus.service.events import (
    MAX_USED_FACTS,
    FactRetracted,
    FactsUsed,
    FactTold,
    ScopeDeleted,
    ScopeForked,
    TenantDeleted,
)
from nocturnus.service.facts import FactKey
from nocturnus.service.projection import TenantState, apply, apply_fields, reader
from nocturnus.service.uses import UseBuffer
from tests.service.stores import close, databases

A = FactKey("main", "p", False, ("a",))
B = FactKey("main", "p", False, ("b",))
GOAL = Literal("p", (Var("x"),))
CFG = ContextConfig(half_life_ms=60_000)


def told(key: FactKey, at: int = 1_000) -> FactTold:
    return FactTold(key.predicate, key.args, key.negated, key.scope, at, at)


def used(*rows: tuple[FactKey, int, int]) -> FactsUsed:
    return FactsUsed(facts=tuple((*key, count, last) for key, count, last in rows))


def state_of(*events: Any) -> TenantState:
    state = TenantState("t")
    for seq, event in enumerate(events, start=1):
        apply(state, seq, event)
    return state


# -- the applier and the snapshot -------------------------------------------------------


def test_uses_add_up_for_stored_facts_only() -> None:
    state = state_of(told(A), used((A, 2, 5_000), (B, 7, 6_000)), used((A, 1, 4_000)))
    assert state.uses == {A: (3, 5_000)}  # b is not stored: its uses are ignored
    assert state.last_seq == 3


def test_a_logged_and_a_decided_use_fold_the_same() -> None:
    event = used((A, 2, 5_000))
    decided = state_of(told(A))
    apply(decided, 2, event)
    logged = state_of(told(A))
    apply_fields(logged, 2, event.kind, reader(event.kind)(CODEC.encode(event)))
    assert logged.uses == decided.uses == {A: (2, 5_000)}


@pytest.mark.parametrize(
    "removal",
    [
        FactRetracted(A.predicate, A.args, A.negated, A.scope),
        ScopeDeleted(scope="main", facts=1, rules=0),
        TenantDeleted(facts=1, rules=0),
    ],
)
def test_uses_go_with_their_fact(removal: Any) -> None:
    state = state_of(told(A), used((A, 2, 5_000)), removal, told(A))
    assert state.uses == {}  # told again: a new fact, unused


def test_a_fork_does_not_copy_uses_and_a_staged_copy_does() -> None:
    state = state_of(told(A), used((A, 2, 5_000)), ScopeForked("main", "copy", 9))
    assert state.uses == {A: (2, 5_000)}
    assert state.staged_copy().uses == state.uses


def test_a_snapshot_holds_the_uses() -> None:
    state = state_of(told(A), told(B), used((A, 2, 5_000), (B, 1, 3_000)))
    loaded = snapshot_format.decode("t", snapshot_format.encode(state))
    assert loaded.uses == state.uses


# -- the buffer --------------------------------------------------------------------------


def test_the_buffer_aggregates_per_fact_and_splits_big_events() -> None:
    buffer = UseBuffer()
    assert not buffer.record("t", [], 1) and not buffer
    assert buffer.record("t", [A, A, B], 10) and buffer.record("t", [A], 5)
    (event,) = buffer.take("t")
    assert sorted(event.facts) == [(*A, 3, 10), (*B, 1, 10)]
    assert buffer.take("t") == [] and not buffer

    many = [FactKey("main", "p", False, (i,)) for i in range(MAX_USED_FACTS + 1)]
    buffer.record("t", many, 1)
    events = buffer.take("t")
    assert [len(e.facts) for e in events] == [MAX_USED_FACTS, 1]
    buffer.give_back("t", events)
    buffer.record("t", many[:1], 2)
    assert sum(len(e.facts) for e in buffer.take("t")) == len(many)


# -- where a database appends them ---------------------------------------------------------


async def kinds(db: Database[DatabaseState], tenant: str) -> list[str]:
    rows = await db.read_log(lambda log: list(log.entries(tenant=tenant)))
    return [row[3] for row in rows]


async def window(db: Database[DatabaseState], tenant: str) -> tuple[str, str]:
    found = await optimize(db, tenant, WindowRequest(max_facts=10), CFG)
    return found.window_id, found.text


def test_uses_go_before_the_next_write_in_the_same_commit(tmp_path: Path) -> None:
    async def scenario() -> None:
        dbs = databases(tmp_path)
        await dbs.open()
        db = dbs.get("default")
        for name in ("a", "b"):
            await tenants.tell(db, "acme", TellFact("p", (name,)))
        before = await window(db, "acme")
        await tenants.ask(db, "acme", Literal("p", ("a",)), None)
        assert await window(db, "acme") == before  # noted, not logged yet
        assert await kinds(db, "acme") == ["fact_told", "fact_told"]

        await tenants.tell(db, "acme", TellFact("q", ("c",)))
        rows = await db.read_log(lambda log: list(log.entries(tenant="acme")))
        assert [r[3] for r in rows] == ["fact_told"] * 2 + ["facts_used", "fact_told"]
        assert rows[2][1] == rows[3][1]  # one commit, one instant
        state = await db.tenant("acme")
        assert state.uses[A][0] == 1 and B not in state.uses
        assert await window(db, "acme") != before
        await close(dbs)

    asyncio.run(scenario())


def test_a_deletion_drops_the_uses_and_nothing_is_logged_for_them(tmp_path: Path) -> None:
    async def scenario() -> None:
        dbs = databases(tmp_path)
        await dbs.open()
        db = dbs.get("default")
        await tenants.tell(db, "acme", TellFact("p", ("a",)))
        await tenants.ask(db, "acme", GOAL, None)
        await tenants.delete_tenant(db, "acme")
        assert not db.uses
        await db.flush_uses()
        assert await kinds(db, "acme") == ["fact_told", "tenant_deleted"]
        await close(dbs)

    asyncio.run(scenario())


def test_processes_and_a_restart_render_the_same_windows(tmp_path: Path, location: str) -> None:
    """Two Databases over one store stand in for two processes (the real processes
    are tests/api/test_nodes.py's); the second decides on what it last saw, so its
    flush is refused once and decided again."""

    async def scenario() -> None:
        first = databases(tmp_path, location)
        second = databases(tmp_path, location, blind=True)
        await first.open()
        await second.open()
        a, b = first.get("default"), second.get("default")
        for name in ("a", "b", "c"):
            await tenants.tell(a, "acme", TellFact("p", (name,)))
        unused = await window(b, "acme")
        for _ in range(3):
            await tenants.ask(a, "acme", Literal("p", ("b",)), None)
        await tenants.ask(b, "acme", Literal("p", ("c",)), None)
        await a.flush_uses()
        await b.flush_uses()  # refused (a's came first), given back, appended again
        assert b.stats.conflicts == 1 and not b.uses
        seen = await window(a, "acme")
        assert seen != unused and await window(b, "acme") == seen
        counts = {k.args: n for k, (n, _) in (await b.tenant("acme")).uses.items()}
        assert counts == {("b",): 3, ("c",): 1}
        assert (await a.tenant("acme")).uses == (await b.tenant("acme")).uses
        await close(second, first)

        again = databases(tmp_path, location)
        await again.open()
        assert await window(again.get("default"), "acme") == seen
        await close(again)

    asyncio.run(scenario())


def test_the_timer_and_the_close_log_uses_without_a_write(tmp_path: Path) -> None:
    async def scenario() -> None:
        dbs = databases(tmp_path, flush_ms=1)
        await dbs.open()
        db = dbs.get("default")
        await tenants.tell(db, "acme", TellFact("p", ("a",)))
        await tenants.ask(db, "acme", GOAL, None)
        for _ in range(3000):  # the flusher runs after 1 ms (waited for, not timed)
            if not db.uses and "facts_used" in await kinds(db, "acme"):
                break
            await asyncio.sleep(0.01)
        assert await kinds(db, "acme") == ["fact_told", "facts_used"]
        await close(dbs)

        closing = databases(tmp_path)  # no timer: only the close logs them
        await closing.open()
        db = closing.get("default")
        await tenants.ask(db, "acme", GOAL, None)
        await close(closing)
        reopened = databases(tmp_path)
        await reopened.open()
        state = await reopened.get("default").tenant("acme")
        assert state.uses[A][0] == 2
        await close(reopened)

    asyncio.run(scenario())


def test_logged_uses_change_no_fact_and_keep_cached_answers(tmp_path: Path) -> None:
    async def scenario() -> None:
        dbs = databases(tmp_path)
        await dbs.open()
        db = dbs.get("default")
        await tenants.tell(db, "acme", TellFact("p", ("a",)))
        await tenants.ask(db, "acme", GOAL, None)
        state = await db.tenant("acme")
        index = state.views["main"].index
        cached, version = dict(index.cache), index.version
        assert cached
        await db.flush_uses()
        assert state.last_seq == 2 and state.uses[A][0] == 1
        assert state.views["main"].index is index and index.version == version
        assert index.cache == cached
        await close(dbs)

    asyncio.run(scenario())
