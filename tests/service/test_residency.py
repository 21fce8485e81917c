"""The memory budget (issue 16, item 6): idle tenants are snapshotted and evicted least
recently used first, reload with the same answers and read models, and a tenant that is
in use stays. Real Databases on real SQLite files."""

from __future__ import annotations

import asyncio
import gc
import time
import tracemalloc
import weakref
from pathlib import Path
from typing import Any

import pytest

from nocturnus.engine.terms import Var
from nocturnus.service import snapshot_format, tenants
from nocturnus.service.commands import TellFact
from nocturnus.service.context.window import ContextConfig, ranking_of
from nocturnus.service.database import Database, DatabaseState
from nocturnus.service.databases import Databases
from nocturnus.service.events import FactTold
from nocturnus.service.projection import TenantState, apply
from nocturnus.service.residency import Residency, estimate_bytes, sample_fact_bytes
from nocturnus.store.crypto import MasterKey

MASTER = MasterKey(bytes(range(32)))
Db = Database[DatabaseState]


def plain(i: int, now: int) -> FactTold:
    return FactTold("edge", (f"n{i}", f"n{(i * 7) % 1000}"), False, "main", now, now)


def rich(i: int, now: int) -> FactTold:
    return FactTold(
        "person", (f"customer-{i:08d}", f"city-{i % 50}", i), False, f"s{i % 3}", now, now,
        None, None, 0.9, {"source": "crm", "batch": str(i // 100)},
    )


@pytest.mark.parametrize("shape", [plain, rich], ids=["plain", "rich"])
def test_the_estimate_is_within_a_factor_of_the_measured_size(shape: Any) -> None:
    """The estimate against tracemalloc on a snapshot load (how a tenant reloads)."""
    now = int(time.time() * 1000)
    state = TenantState("t")
    for i in range(5000):
        apply(state, i + 1, shape(i, now))
    state.refresh(now)
    body = snapshot_format.encode(state)
    del state
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        loaded = snapshot_format.decode("t", body)
        loaded.refresh(now + 1)
        gc.collect()
        measured = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    estimate = estimate_bytes(loaded, sample_fact_bytes(loaded))
    assert 0.67 <= estimate / measured <= 1.5, (estimate, measured)


def databases(data_dir: Path, budget_bytes: int, holds: Any = None) -> Databases:
    residency = Residency(budget_bytes, holds or (lambda db, tenant: False))
    return Databases(data_dir, MASTER, residency=residency)


async def fill(db: Db, tenant: str, count: int) -> None:
    cmds = [TellFact("p", (f"{tenant}-{i}", i)) for i in range(count)]
    await tenants.tell_many(db, tenant, cmds, atomic=True)


async def answers(db: Db, tenant: str) -> list[Any]:
    found = await tenants.match(db, tenant, "p", False, (Var("x"), Var("y")), None)
    return sorted(r.key.args for r in found)


async def use(db: Db, tenant: str) -> list[Any]:
    """A request of the tenant, pinned as the API layer pins it."""
    db.pin(tenant)
    try:
        return await answers(db, tenant)
    finally:
        db.unpin(tenant)


def loaded(db: Db) -> set[str]:
    return {state.name for state in db.loaded_tenants()}


def test_least_recently_used_idle_tenants_are_evicted_and_reload_the_same(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        # Room for two tenants of 400 facts (each ~140 kB estimated), not three.
        dbs = databases(tmp_path, 300_000)
        await dbs.open()
        db, residency = dbs.get("default"), dbs.residency
        assert residency is not None
        expected = {}
        for name in ("a", "b", "c", "d"):
            await fill(db, name, 400)
            expected[name] = await use(db, name)
            await residency.settled()
        assert residency.evictions >= 2
        assert loaded(db) == {"c", "d"} and residency.resident("default") == ["c", "d"]
        assert residency.resident_bytes <= residency.budget_bytes
        # Evicted tenants were snapshotted first: a reload reads no tail.
        stored = await db.read_log(lambda log: log.latest_snapshot("a"))
        assert stored is not None
        # "a" comes back with the same answers, and pushes out the least recent ("c").
        assert await use(db, "a") == expected["a"]
        await residency.settled()
        assert residency.resident("default") == ["d", "a"]
        # A write to an evicted tenant works and is seen.
        await tenants.tell(db, "b", TellFact("p", ("late", 1)))
        assert await use(db, "b") == sorted([*expected["b"], ("late", 1)])
        await dbs.close()

    asyncio.run(scenario())


def test_a_tenant_in_use_or_with_a_transaction_is_never_evicted(tmp_path: Path) -> None:
    async def scenario() -> None:
        held: set[tuple[str, str]] = set()
        dbs = databases(tmp_path, 1, lambda db, tenant: (db, tenant) in held)
        await dbs.open()
        db, residency = dbs.get("default"), dbs.residency
        assert residency is not None
        await fill(db, "busy", 50)
        await fill(db, "tx", 50)
        await fill(db, "idle", 50)
        db.pin("busy")  # a request of "busy" is running
        held.add(("default", "tx"))  # an open transaction on "tx"
        await use(db, "busy")
        await use(db, "tx")
        await use(db, "idle")
        await residency.settled()
        assert loaded(db) == {"busy", "tx"}  # over a 1-byte budget, still there
        db.unpin("busy")  # the request ends: the next round may take it
        await residency.settled()
        assert loaded(db) == {"tx"}
        held.clear()
        await use(db, "idle")
        await residency.settled()
        assert loaded(db) == set()
        await dbs.close()

    asyncio.run(scenario())


def test_an_eviction_lets_the_projection_go_with_its_read_model(tmp_path: Path) -> None:
    """The ranking and cached windows hold references into the projection: an eviction
    drops them with it (rebuilt from the same knowledge on the next use)."""

    async def scenario() -> None:
        dbs = databases(tmp_path, 1 << 30)
        await dbs.open()
        db = dbs.get("default")
        await fill(db, "acme", 20)
        state = await db.tenant("acme")
        model = db.read_models.of(state)
        assert ranking_of(state, model, ContextConfig()) is model.ranking  # built now
        assert await db.persist("acme")
        assert db.unload("acme")
        dropped = weakref.ref(state)
        del state, model
        gc.collect()
        assert dropped() is None
        reloaded = await db.tenant("acme")
        assert db.read_models.known(reloaded) is None
        await dbs.close()

    asyncio.run(scenario())
