"""Other writers on the same store (issues 15, 16): every projection is a cache of the
log. Two Databases over one store stand in for two processes; the fault tests with real
processes are in tests/api/test_nodes.py."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from nocturnus.engine.terms import Var
from nocturnus.errors import Conflict, TenantDamaged, WriteContention
from nocturnus.service import retry, tenants
from nocturnus.service.commands import TeachRule, TellFact
from nocturnus.service.database import Database, DatabaseState
from nocturnus.service.databases import Databases
from nocturnus.store.errors import AppendConflict
from tests.service.stores import close, databases


async def facts_of(db: Database[DatabaseState], tenant: str) -> list[Any]:
    found = await tenants.match(db, tenant, "p", False, (Var("x"),), None)
    return sorted(r.key.args for r in found)


def lit(predicate: str, *args: object) -> dict[str, Any]:
    return {"predicate": predicate, "args": list(args), "negated": False, "naf": False}


async def pair(
    data_dir: Path, location: str, *, blind: bool = False
) -> tuple[Databases, Databases]:
    first = databases(data_dir, location)
    await first.open()
    second = databases(data_dir, location, blind=blind)
    await second.open()
    return first, second


def test_a_read_reflects_every_write_of_the_other_writer(
    tmp_path: Path, location: str
) -> None:
    async def scenario() -> None:
        first, second = await pair(tmp_path, location)
        a, b = first.get("default"), second.get("default")
        await tenants.tell(a, "acme", TellFact("p", ("one",)))
        assert await facts_of(b, "acme") == [("one",)]  # b loads acme now
        await tenants.tell(a, "acme", TellFact("p", ("two",)))  # b has it loaded
        await tenants.tell(a, "other", TellFact("p", ("x",)))
        assert await facts_of(b, "acme") == [("one",), ("two",)]
        assert await facts_of(b, "other") == [("x",)]
        # b's own write, numbered before it knew a's seqs, lands after them
        await tenants.tell(b, "acme", TellFact("p", ("three",)))
        assert await facts_of(a, "acme") == [("one",), ("three",), ("two",)]
        assert b.stats.catch_ups >= 1 and b.stats.conflicts == 0
        await close(second, first)

        reopened = databases(tmp_path, location)
        await reopened.open()
        db = reopened.get("default")
        assert await facts_of(db, "acme") == [("one",), ("three",), ("two",)]
        assert await facts_of(db, "other") == [("x",)]
        await close(reopened)

    asyncio.run(scenario())


def test_a_decision_on_a_stale_tenant_is_refused_then_decided_again(
    tmp_path: Path, location: str
) -> None:
    async def scenario() -> None:
        first, second = await pair(tmp_path, location, blind=True)
        a, b = first.get("default"), second.get("default")
        await tenants.tell(a, "acme", TellFact("p", ("one",)))
        assert await facts_of(b, "acme") == [("one",)]
        await tenants.tell(a, "acme", TellFact("p", ("two",)))  # b cannot see it
        assert await facts_of(b, "acme") == [("one",)]
        await tenants.tell(b, "acme", TellFact("p", ("three",)))
        assert (b.stats.conflicts, b.stats.retries) == (1, 1)
        # the refused decision left nothing; the second one, on the log, is stored
        assert await facts_of(b, "acme") == [("one",), ("three",), ("two",)]
        assert await facts_of(a, "acme") == [("one",), ("three",), ("two",)]
        await close(second, first)

    asyncio.run(scenario())


def test_a_write_refused_every_time_gives_up_with_a_retryable_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        (only,) = await pair_of_one(tmp_path)
        db = only.get("default")
        tries = 0

        async def refused() -> None:
            nonlocal tries
            tries += 1
            raise AppendConflict("acme", 1, 2)

        with pytest.raises(WriteContention) as info:
            await retry.attempt(db, refused)
        assert tries == retry.MAX_ATTEMPTS
        assert (info.value.status, info.value.code) == (503, "WRITE_CONTENTION")
        assert (db.stats.conflicts, db.stats.retries, db.stats.contended) == (
            retry.MAX_ATTEMPTS, retry.MAX_ATTEMPTS - 1, 1
        )
        await close(only)

    asyncio.run(scenario())


async def pair_of_one(data_dir: Path) -> tuple[Databases]:
    only = databases(data_dir, "")
    await only.open()
    return (only,)


def test_racing_contradictory_reject_tells_exactly_one_wins(
    tmp_path: Path, location: str
) -> None:
    async def scenario() -> None:
        first, second = await pair(tmp_path, location)
        a, b = first.get("default"), second.get("default")
        for round_ in range(5):
            tenant = f"race{round_}"
            await asyncio.gather(facts_of(a, tenant), facts_of(b, tenant))
            told = await asyncio.gather(
                tenants.tell(a, tenant, TellFact("p", ("x",))),
                tenants.tell(b, tenant, TellFact("p", ("x",), negated=True)),
                return_exceptions=True,
            )
            refused = [r for r in told if isinstance(r, Conflict)]
            assert len(refused) == 1, told
            assert sum(1 for r in told if not isinstance(r, BaseException)) == 1
            seen_a = await tenants.match(a, tenant, "p", False, (Var("x"),), None)
            seen_b = await tenants.match(b, tenant, "p", False, (Var("x"),), None)
            negated_a = await tenants.match(a, tenant, "p", True, (Var("x"),), None)
            assert len(seen_a) + len(negated_a) == 1
            assert [r.key for r in seen_a] == [r.key for r in seen_b]
        await close(second, first)

    asyncio.run(scenario())


def test_the_database_level_follows_the_other_writer(tmp_path: Path, location: str) -> None:
    async def scenario() -> None:
        first, second = await pair(tmp_path, location, blind=True)
        a, b = first.get("default"), second.get("default")
        await tenants.teach_database_rule(a, TeachRule(lit("q", "?x"), (lit("p", "?x"),)))
        # b decides on the level without a's rule: refused, caught up, decided again
        other = TeachRule(lit("r", "?x"), (lit("p", "?x"),))
        await tenants.teach_database_rule(b, other)
        assert b.stats.conflicts == 1
        assert {r.rule.head.predicate for r in tenants.database_rules(b)} == {"q", "r"}
        await a.fresh()
        assert {r.rule.head.predicate for r in tenants.database_rules(a)} == {"q", "r"}
        await close(second, first)

    asyncio.run(scenario())


def test_a_tenant_deleted_by_the_other_writer_is_gone_at_once(
    tmp_path: Path, location: str
) -> None:
    async def scenario() -> None:
        first, second = await pair(tmp_path, location)
        a, b = first.get("default"), second.get("default")
        await tenants.tell(a, "acme", TellFact("p", ("secret",)))
        assert await facts_of(b, "acme") == [("secret",)]
        assert "acme" in {t.name for t in await tenants.list_tenants(b)}
        assert await tenants.delete_tenant(a, "acme") is not None
        assert await facts_of(b, "acme") == []
        assert "acme" not in {t.name for t in await tenants.list_tenants(b)}
        # and b's next write starts the tenant afresh, seen by a
        await tenants.tell(b, "acme", TellFact("p", ("new",)))
        assert await facts_of(a, "acme") == [("new",)]
        await close(second, first)

    asyncio.run(scenario())


def test_databases_created_and_deleted_elsewhere_are_followed(
    tmp_path: Path, location: str
) -> None:
    async def scenario() -> None:
        first, second = await pair(tmp_path, location)
        await first.create("sales")
        await second.refresh()
        sales = second.get("sales")
        await tenants.tell(first.get("sales"), "t", TellFact("p", ("1",)))
        assert await facts_of(sales, "t") == [("1",)]
        await first.delete("sales")
        await second.refresh()
        assert "sales" not in {i.name for i in second.infos()}
        await close(second, first)

    asyncio.run(scenario())


def test_a_snapshot_taken_while_appends_are_renumbered_names_their_stored_seq(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        first, second = await pair(tmp_path, "", blind=True)
        a, b = first.get("default"), second.get("default")
        await tenants.tell(b, "mine", TellFact("p", (0,)))
        await tenants.tell(a, "other", TellFact("p", ("x",)))  # takes the seqs b numbers next
        # both tells apply at once (numbered by b), the snapshot captures them in flight
        _, _, stored = await asyncio.gather(
            tenants.tell(b, "mine", TellFact("p", (1,))),
            tenants.tell(b, "mine", TellFact("p", (2,))),
            b.snapshot_tenant("mine"),
        )
        assert stored

        def newest(log: Any) -> tuple[int, int]:
            snapshot = log.latest_snapshot("mine")
            return snapshot[0], max(row[0] for row in log.entries(tenant="mine"))

        snapshot_seq, last_seq = await b.read_log(newest)
        assert snapshot_seq == last_seq
        await close(second, first)
        reopened = databases(tmp_path, "")
        await reopened.open()
        assert await facts_of(reopened.get("default"), "mine") == [(0,), (1,), (2,)]
        await close(reopened)

    asyncio.run(scenario())


def test_a_damaged_row_met_by_a_catch_up_stops_its_tenant_only(tmp_path: Path) -> None:
    async def scenario() -> None:
        first, second = await pair(tmp_path, "")
        a, b = first.get("default"), second.get("default")
        await tenants.tell(a, "acme", TellFact("p", ("one",)))
        assert await facts_of(b, "acme") == [("one",)]
        await tenants.tell(a, "acme", TellFact("p", ("two",)))
        await tenants.tell(a, "other", TellFact("p", ("x",)))
        with sqlite3.connect(tmp_path / "default.db") as conn:  # bit rot in acme's row
            conn.execute(
                "UPDATE events SET payload = zeroblob(length(payload)) WHERE seq ="
                " (SELECT max(seq) FROM events WHERE tenant = 'acme')"
            )
        assert await facts_of(b, "other") == [("x",)]
        with pytest.raises(TenantDamaged):
            await facts_of(b, "acme")
        await close(second, first)

    asyncio.run(scenario())
