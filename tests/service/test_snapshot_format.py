"""Snapshots (issue 3): snapshot + tail replays to exactly the state of a full replay."""

from __future__ import annotations

import asyncio
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from nocturnus.engine.rules import Literal
from nocturnus.engine.terms import Var
from nocturnus.errors import NocturnusError
from nocturnus.service import scopes, snapshot_format, tenants
from nocturnus.service.commands import TeachRule, TellFact
from nocturnus.service.database import now_ms
from nocturnus.service.databases import Databases
from nocturnus.service.facts import FactKey
from nocturnus.service.projection import TenantState
from nocturnus.service.replay import read_tenant, replay_tenant, restore_tenant
from nocturnus.store.crypto import MasterKey
from tests.logs import sqlite_log

MASTER = MasterKey(bytes(range(32)))
TENANTS = ("acme", "globex")
SCOPES = ["main", "draft", "branch"]
SCOPE_PAIRS = st.tuples(st.sampled_from(SCOPES), st.sampled_from(SCOPES))
CONSTS = st.sampled_from(["a", "b", "c", 1, 2.5, -0.0, "?x"[1:], "500", 500])


def lit(predicate: str, *args: object, **flags: bool) -> dict[str, Any]:
    return {"predicate": predicate, "args": list(args), "negated": False, "naf": False, **flags}


RULES = [
    TeachRule(lit("path", "?x", "?y"), (lit("edge", "?x", "?y"),)),
    TeachRule(lit("path", "?x", "?z"), (lit("edge", "?x", "?y"), lit("path", "?y", "?z"))),
    TeachRule(lit("lonely", "?x"), (lit("node", "?x"), lit("edge", "?x", "?_", naf=True)),
              scope="main", confidence=0.5),
    TeachRule(lit("big", "?x"), (lit("node", "?x"), lit("gt", "?x", 1))),
]


@dataclass(frozen=True)
class Op:
    kind: str
    tenant: str
    arg: Any = None


def tells() -> st.SearchStrategy[Op]:
    fact = st.builds(
        TellFact,
        predicate=st.sampled_from(["edge", "node"]),
        args=st.tuples(CONSTS, CONSTS),
        negated=st.booleans(),
        scope=st.sampled_from(SCOPES),
        confidence=st.none() | st.floats(0, 1),
        ttl=st.none() | st.integers(1, 10**9),
        valid_from=st.none() | st.integers(now_ms() + 10**8, now_ms() + 10**9),
        valid_until=st.none() | st.integers(now_ms() + 10**9, now_ms() + 10**10),
        metadata=st.sampled_from([{}, {"source": "test", "n": [1, 2]}]),
        conflict_strategy=st.sampled_from(["NEWEST_WINS", "KEEP_BOTH", "CONFIDENCE"]),
    )
    return st.builds(Op, st.just("tell"), st.sampled_from(TENANTS), fact)


OPS = st.lists(
    st.one_of(
        tells(),
        tells(),
        st.builds(Op, st.just("forget"), st.sampled_from(TENANTS), st.tuples(CONSTS, CONSTS)),
        st.builds(Op, st.just("teach"), st.sampled_from(TENANTS), st.sampled_from(RULES)),
        st.builds(Op, st.just("unteach"), st.sampled_from(TENANTS), st.integers(0, 3)),
        st.builds(Op, st.just("delete"), st.sampled_from(TENANTS)),
        st.builds(Op, st.just("create"), st.sampled_from(TENANTS)),
        st.builds(Op, st.just("snapshot"), st.sampled_from(TENANTS)),
        st.builds(Op, st.just("priority"), st.sampled_from(TENANTS),
                  st.tuples(CONSTS, CONSTS, st.sampled_from([0.0, 0.25, 1.0]))),
        st.builds(Op, st.just("fork"), st.sampled_from(TENANTS), SCOPE_PAIRS),
        st.builds(Op, st.just("merge"), st.sampled_from(TENANTS),
                  st.tuples(SCOPE_PAIRS, st.sampled_from(scopes.MERGE_STRATEGIES))),
        st.builds(Op, st.just("drop_scope"), st.sampled_from(TENANTS), st.sampled_from(SCOPES)),
        st.builds(Op, st.just("use"), st.sampled_from(TENANTS), st.tuples(CONSTS, CONSTS)),
        st.builds(Op, st.just("flush_uses"), st.sampled_from(TENANTS)),
    ),
    max_size=40,
)


async def run_ops(databases: Databases, ops: list[Op]) -> None:
    db = databases.get("default")
    for op in ops:
        try:
            if op.kind == "tell":
                await tenants.tell(db, op.tenant, op.arg)
            elif op.kind == "forget":
                await tenants.forget(db, op.tenant, FactKey("main", "edge", False, op.arg))
            elif op.kind == "teach":
                await tenants.teach(db, op.tenant, op.arg)
            elif op.kind == "unteach":
                own = [r for r in await tenants.rules(db, op.tenant) if r.level == "tenant"]
                if own:
                    await tenants.remove_rule(db, op.tenant, own[op.arg % len(own)].rule.id)
            elif op.kind == "delete":
                await tenants.delete_tenant(db, op.tenant)
            elif op.kind == "create":
                await tenants.create_tenant(db, op.tenant)
            elif op.kind == "fork":
                await scopes.fork(db, op.tenant, *op.arg)
            elif op.kind == "merge":
                (source, target), strategy = op.arg
                await scopes.merge(db, op.tenant, source, target, strategy)
            elif op.kind == "drop_scope":
                await scopes.delete(db, op.tenant, op.arg)
            elif op.kind == "use":  # logged with the next write or flush (issue 16)
                await db.tenant(op.tenant)
                key = FactKey("main", "edge", False, op.arg)
                db.record_uses(op.tenant, [key], now_ms())
            elif op.kind == "flush_uses":
                await db.flush_uses()
            elif op.kind == "priority":
                a, b, priority = op.arg
                key = FactKey("main", "edge", False, (a, b))
                await tenants.set_priority(db, op.tenant, key, priority)
            else:
                await db.tenant(op.tenant)
                await db.snapshot_tenant(op.tenant)
        except NocturnusError as e:
            assert e.status < 500, e


def observe(state: TenantState, now: int) -> tuple[Any, ...]:
    """Everything a read can see, plus the stored encoding itself."""
    state.refresh(now)
    visible = sorted(repr(r) for r in state.iter_visible())
    priorities = sorted(repr(p) for p in state.priorities.items())
    uses = sorted(repr(u) for u in state.uses.items())
    return (
        snapshot_format.encode(state), visible, priorities, uses, state.last_seq,
        state.created_at,
    )


def full_and_restored(path: Path, tenant: str) -> tuple[TenantState, TenantState, bool]:
    log = sqlite_log(path, "default", MASTER, readonly=True)
    try:
        full = replay_tenant(tenant, log.read(tenant=tenant))
        stored = read_tenant(log, tenant)
    finally:
        log.close()
    restored = restore_tenant(tenant, stored)
    assert restored is not None
    return full, restored, stored.snapshot is not None


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=OPS, every=st.integers(1, 6))
def test_snapshot_plus_tail_equals_full_replay(ops: list[Op], every: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)

        async def scenario() -> dict[str, Any]:
            databases = Databases(data_dir, MASTER, snapshot_every=every)
            await databases.open()
            await run_ops(databases, ops)
            db = databases.get("default")
            await db.flush_uses()  # as the close below would: the live state holds them
            await db.flush_snapshots()
            now = now_ms()
            live = {t: observe(db._tenants[t], now) for t in TENANTS if t in db._tenants}
            await databases.close()
            return {"live": live, "now": now}

        seen = asyncio.run(scenario())
        for tenant in TENANTS:
            full, restored, used = full_and_restored(data_dir / "default.db", tenant)
            event(f"snapshot used: {used}")
            assert observe(restored, seen["now"]) == observe(full, seen["now"])
            if tenant in seen["live"]:
                assert observe(full, seen["now"]) == seen["live"][tenant]


def test_every_projection_field_is_in_exactly_one_section() -> None:
    covered = snapshot_format.covered_fields()
    assert set(covered) == snapshot_format.stored_fields(), (
        "a TenantState field is missing from the snapshot: register a Section for it "
        "in nocturnus/service/snapshot_format.py (or add it to DERIVED_FIELDS if refresh "
        "rebuilds it)"
    )
    names = [f for s in snapshot_format.SECTIONS.values() for f in s.fields]
    assert len(names) == len(set(names))


def open_databases(path: Path, every: int = 10_000) -> Databases:
    return Databases(path, MASTER, snapshot_every=every)


def test_snapshots_are_written_every_n_events_and_on_shutdown(tmp_path: Path) -> None:
    async def scenario() -> None:
        databases = open_databases(tmp_path, every=5)
        await databases.open()
        db = databases.get("default")
        for i in range(12):
            await tenants.tell(db, "acme", TellFact("edge", (f"n{i}", f"n{i + 1}")))
        await db.flush_snapshots()
        found = await db.writer.run(lambda log: log.latest_snapshot("acme"))
        assert found is not None and found[0] >= 5
        await tenants.tell(db, "acme", TellFact("edge", ("last", "one")))
        head = db.head
        await databases.close()

        log = sqlite_log(tmp_path / "default.db", "default", MASTER, readonly=True)
        try:
            found = log.latest_snapshot("acme")
        finally:
            log.close()
        assert found is not None and found[0] == head  # written on clean shutdown

        reopened = open_databases(tmp_path)
        await reopened.open()
        db = reopened.get("default")
        state = await db.tenant("acme")
        assert db._unsnapshotted["acme"] == 0  # loaded from the snapshot, no tail
        assert state.fact_count() == 13
        answers = await tenants.match(db, "acme", "edge", False, ("last", Var("y")), None)
        assert [a.key.args for a in answers] == [("last", "one")]
        await reopened.close()

    asyncio.run(scenario())


def test_a_big_tenant_waits_for_a_tail_of_half_its_facts(tmp_path: Path) -> None:
    """Snapshot work per write stays bounded: 40 facts and every=5 wait for 40 events."""

    async def scenario() -> None:
        databases = open_databases(tmp_path, every=5)
        await databases.open()
        db = databases.get("default")

        async def latest() -> int | None:
            await db.flush_snapshots()
            found = await db.writer.run(lambda log: log.latest_snapshot("acme"))
            return None if found is None else found[0]

        cmds = [TellFact("bulk", (i,)) for i in range(40)]
        await tenants.tell_many(db, "acme", cmds, atomic=True)
        first = await latest()
        assert first == db.head  # 40 events >= half of 40 facts
        for i in range(39):  # tail 39 < half of 40 + 39 facts
            await tenants.tell(db, "acme", TellFact("single", (i,)))
            assert await latest() == first
        await tenants.tell(db, "acme", TellFact("single", (39,)))  # tail 40 = half of 80
        assert await latest() == db.head
        await databases.close()

    asyncio.run(scenario())


def test_a_snapshot_in_parts_lets_other_writes_commit_in_between(tmp_path: Path) -> None:
    """Issue 3: snapshots never block writes. A big snapshot is one writer job per
    part, so a write queued while it is being stored commits before it finishes."""

    async def scenario() -> None:
        databases = open_databases(tmp_path)
        await databases.open()
        db = databases.get("default")
        db.snapshot_part_bytes = 256
        cmds = [TellFact("edge", (f"n{i}", f"n{i + 1}")) for i in range(2000)]
        await tenants.tell_many(db, "big", cmds, atomic=True)
        big_seq = db.head
        await tenants.tell(db, "other", TellFact("edge", ("a", "b")))

        def parts(log: Any) -> int:
            return int(log.recorder._conn.execute("SELECT count(*) FROM snapshot_parts").fetchone()[0])

        storing = asyncio.ensure_future(db.snapshot_tenant("big"))
        while await db.read_log(parts) == 0:
            await asyncio.sleep(0.001)
        await tenants.tell(db, "other", TellFact("edge", ("b", "c")))
        assert not storing.done()  # hundreds of parts still to go
        assert await storing is True
        found = await db.read_log(lambda log: log.latest_snapshot("big"))
        assert found is not None and found[0] == big_seq
        restored = snapshot_format.decode("big", found[1])
        assert restored.fact_count() == 2000
        await databases.close()

    asyncio.run(scenario())


def test_unreadable_snapshot_falls_back_to_full_replay_loudly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def scenario() -> None:
        databases = open_databases(tmp_path)
        await databases.open()
        db = databases.get("default")
        for i in range(4):
            await tenants.tell(db, "acme", TellFact("node", (i,)))
        await databases.close()
        log = sqlite_log(tmp_path / "default.db", "default", MASTER)
        try:
            seq = log.latest_snapshot("acme")[0]  # type: ignore[index]
            future = orjson.dumps({"format": snapshot_format.FORMAT, "v": 99, "sections": {}})
            assert log.save_snapshot("acme", seq, future)
        finally:
            log.close()

        reopened = open_databases(tmp_path)
        await reopened.open()
        db = reopened.get("default")
        with caplog.at_level(logging.ERROR, logger="nocturnus.service"):
            state = await db.tenant("acme")
        assert state.fact_count() == 4
        assert "format version 99" in caplog.text and "replaying tenant 'acme'" in caplog.text
        await reopened.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        orjson.dumps({"format": snapshot_format.FORMAT, "v": 1, "sections": {"mystery": [1, []]}}),
        orjson.dumps({"format": snapshot_format.FORMAT, "v": 1, "sections": {"facts": [9, []]}}),
        orjson.dumps({"format": snapshot_format.FORMAT, "v": 1, "sections": {"facts": [1, [[1]]]}}),
        *(
            orjson.dumps({"format": snapshot_format.FORMAT, "v": 1, "sections": {"facts": [3, [part]]}})
            for part in (
                "[[1]]",
                '[["main", "p", false, [["a"], ["a", "b"]], [1, 2], []]]',  # mixed arity
                '[["main", "p", false, [["a"], ["b"]], [1], []]]',  # a createdAt missing
                '[["main", "p", false, [["a"]], [1.5], []]]',  # a plain createdAt not an int
                '[["main", "p", false, [[true]], [1], []]]',  # not a constant
                '[["main", "p", false, [], [], [[["a"], 1, 1]]]]',  # a short record
            )
        ),
    ],
)
def test_decode_refuses_what_it_cannot_read(body: bytes) -> None:
    with pytest.raises(snapshot_format.SnapshotFormatError):
        snapshot_format.decode("acme", body)


def test_rules_with_anonymous_variables_survive_a_snapshot(tmp_path: Path) -> None:
    async def scenario() -> None:
        databases = open_databases(tmp_path)
        await databases.open()
        db = databases.get("default")
        await tenants.teach(db, "acme", RULES[2])
        await tenants.tell(db, "acme", TellFact("node", ("a",)))
        await tenants.tell(db, "acme", TellFact("node", ("b",)))
        await tenants.tell(db, "acme", TellFact("edge", ("b", "c")))
        before = await tenants.ask(db, "acme", Literal("lonely", (Var("x"),)), None)
        await databases.close()
        reopened = open_databases(tmp_path)
        await reopened.open()
        db = reopened.get("default")
        after = await tenants.ask(db, "acme", Literal("lonely", (Var("x"),)), None)
        assert db._unsnapshotted["acme"] == 0
        assert [(a.key, a.confidence) for a in after] == [(a.key, a.confidence) for a in before]
        assert [a.key.args for a in after] == [("a",)]
        await reopened.close()

    asyncio.run(scenario())


def test_facts_section_versions_1_and_2_still_load() -> None:
    """Snapshots written before the facts came in chunks (issue 4, version 1), and
    before they came as relation groups with a column of plain facts (issue 3,
    version 2), read the same as the current version."""
    from nocturnus.service.events import FactTold
    from nocturnus.service.facts import DUMP_VERSION
    from nocturnus.service.projection import TenantState, apply

    state = TenantState("acme")
    for seq in range(1, 5000):
        told = FactTold(
            "edge",
            (f"n{seq}", seq % 7),
            False,
            "main" if seq % 3 else "b",
            5,
            5 + seq % 2,
            confidence=0.5 if seq % 5 == 0 else None,
            metadata={"k": seq} if seq % 11 == 0 else {},
        )
        apply(state, seq, told)
    current = orjson.loads(snapshot_format.encode(state))
    version, parts = current["sections"]["facts"]
    assert version == DUMP_VERSION and len(parts) == 2
    # what the version 2 writer wrote: flat rows, 4096 to a text
    rows = [
        [*r.key, r.created_at, r.valid_from, r.valid_until, r.ttl, r.confidence, r.metadata]
        for scoped in state.facts.values()
        for r in scoped.records()
    ]
    old_parts = [orjson.dumps(rows[i : i + 4096]).decode() for i in range(0, len(rows), 4096)]
    bodies = [orjson.dumps(current)]
    for old_version, value in ((2, old_parts), (1, rows)):
        old = {**current, "sections": {**current["sections"]}}
        old["sections"]["facts"] = [old_version, value]
        bodies.append(orjson.dumps(old))
    for body in bodies:
        loaded = snapshot_format.decode("acme", body)
        assert {
            name: sorted(facts.records(), key=lambda r: r.key.args)
            for name, facts in loaded.facts.items()
        } == {
            name: sorted(facts.records(), key=lambda r: r.key.args)
            for name, facts in state.facts.items()
        }
        assert snapshot_format.encode(loaded) == snapshot_format.encode(state)
