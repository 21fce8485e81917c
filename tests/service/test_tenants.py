"""Service layer over a real event log: writes, replay equality, concurrency."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from nocturnus.engine.rules import Literal
from nocturnus.engine.terms import Var
from nocturnus.errors import Conflict
from nocturnus.service import tenants
from nocturnus.service.commands import TeachRule, TellFact
from nocturnus.service.databases import Databases
from nocturnus.service.facts import FactKey
from nocturnus.store.crypto import MasterKey

MASTER = MasterKey(bytes(range(32)))


def lit(predicate: str, *args: object, **flags: bool) -> dict:
    return {"predicate": predicate, "args": list(args), "negated": False, "naf": False, **flags}


async def open_databases(path: Path) -> Databases:
    databases = Databases(path, MASTER)
    await databases.open()
    return databases


def state_of(databases: Databases, tenant: str) -> tuple:
    db = databases.get("default")
    state = db._tenants[tenant]
    facts = sorted((repr(k), r.confidence, r.created_at) for s in state.facts.values() for k, r in s.items())
    rules = sorted(r.rule.text() for r in state.rules)
    return facts, rules, state.last_seq


def test_replay_rebuilds_the_same_state(tmp_path: Path) -> None:
    async def scenario() -> None:
        databases = await open_databases(tmp_path)
        db = databases.get("default")
        for i in range(20):
            await tenants.tell(db, "acme", TellFact("edge", (f"n{i}", f"n{i + 1}"), confidence=0.9))
        await tenants.forget(db, "acme", FactKey("main", "edge", False, ("n3", "n4")))
        await tenants.teach(db, "acme", TeachRule(lit("path", "?x", "?y"), (lit("edge", "?x", "?y"),)))
        await tenants.tell(db, "globex", TellFact("edge", ("g", "h")))
        live = state_of(databases, "acme")
        answers = await tenants.ask(db, "acme", Literal("path", ("n0", Var("y"))), None)
        await databases.close()

        reopened = await open_databases(tmp_path)
        db = reopened.get("default")
        await db.tenant("acme")
        assert state_of(reopened, "acme") == live
        again = await tenants.ask(db, "acme", Literal("path", ("n0", Var("y"))), None)
        assert [a.key for a in again] == [a.key for a in answers]
        assert set(db.tenant_names) == {"acme", "globex"}
        await reopened.close()

    asyncio.run(scenario())


def test_concurrent_contradictions_are_decided_in_write_order(tmp_path: Path) -> None:
    async def scenario() -> None:
        databases = await open_databases(tmp_path)
        db = databases.get("default")
        results = await asyncio.gather(
            *[tenants.tell(db, "acme", TellFact("open", ("shop",), negated=bool(i % 2))) for i in range(10)],
            return_exceptions=True,
        )
        stored = [r for r in results if not isinstance(r, BaseException)]
        conflicts = [r for r in results if isinstance(r, Conflict)]
        assert len(conflicts) == 5 and len(stored) == 5
        assert all(not r.record.key.negated for r in stored)
        await databases.close()

    asyncio.run(scenario())


def test_tenant_deletion_forgets_everything_and_survives_restart(tmp_path: Path) -> None:
    async def scenario() -> None:
        databases = await open_databases(tmp_path)
        db = databases.get("default")
        await tenants.tell(db, "acme", TellFact("secret", ("x",)))
        info = await tenants.delete_tenant(db, "acme")
        assert info is not None and info.facts == 1
        await tenants.tell(db, "acme", TellFact("fresh", ("y",)))
        await databases.close()
        reopened = await open_databases(tmp_path)
        db = reopened.get("default")
        found = await tenants.match(db, "acme", "secret", False, (Var("x"),), None)
        assert found == []
        assert len(await tenants.match(db, "acme", "fresh", False, (Var("x"),), None)) == 1
        await reopened.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("strategy", ["NEWEST_WINS", "KEEP_BOTH"])
def test_strategies_replay_identically(tmp_path: Path, strategy: str) -> None:
    async def scenario() -> None:
        databases = await open_databases(tmp_path)
        db = databases.get("default")
        await tenants.tell(db, "acme", TellFact("on", ("lamp",)))
        await tenants.tell(db, "acme", TellFact("on", ("lamp",), negated=True, conflict_strategy=strategy))
        live = state_of(databases, "acme")
        await databases.close()
        reopened = await open_databases(tmp_path)
        await reopened.get("default").tenant("acme")
        assert state_of(reopened, "acme") == live
        await reopened.close()

    asyncio.run(scenario())


def test_log_reads_run_beside_the_writer_and_see_every_queued_append(tmp_path: Path) -> None:
    """A long read (a big tenant loading, time travel, the audit trail) must not hold up
    the writes of every other tenant, and must see the appends queued before it."""

    async def scenario() -> None:
        databases = await open_databases(tmp_path)
        db = databases.get("default")
        await tenants.tell(db, "big", TellFact("edge", ("a", "b")))
        await tenants.tell(db, "other", TellFact("edge", ("x", "y")))  # loaded now
        release = threading.Event()
        started = threading.Event()

        def long_read(log: Any) -> int:
            started.set()
            release.wait(30)
            return len(list(log.read(tenant="big")))

        reading = asyncio.ensure_future(db.read_log(long_read))
        await asyncio.to_thread(started.wait, 30)
        # The read holds the reader thread; the writer still commits other tenants.
        await asyncio.wait_for(tenants.tell(db, "other", TellFact("edge", ("c", "d"))), 30)
        assert not reading.done()
        release.set()
        assert await reading == 1

        queued = asyncio.ensure_future(tenants.tell(db, "big", TellFact("edge", ("b", "c"))))
        await asyncio.sleep(0)  # the tell decided and queued its append, not yet durable
        seen = await db.read_log(lambda log: [r.seq for r in log.read(tenant="big")])
        assert len(seen) == 2 and seen[-1] == db.head
        await queued
        await databases.close()

    asyncio.run(scenario())
