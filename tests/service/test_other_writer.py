"""A second writer on the same store (issue 15): the service never relies on being the
only one. Two Databases over one SQLite store stand in for two processes."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nocturnus.engine.terms import Var
from nocturnus.errors import NocturnusError
from nocturnus.service import tenants
from nocturnus.service.commands import TeachRule, TellFact
from nocturnus.service.database import Database, DatabaseState
from nocturnus.service.databases import Databases
from nocturnus.store.backends import open_store
from nocturnus.store.crypto import MasterKey
from nocturnus.store.errors import AppendConflict

MASTER = MasterKey(bytes(range(32)))


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest) -> Iterator[str]:
    """Where both writers' store is: the data dir's files, or a PostgreSQL database."""
    if request.param == "sqlite":
        yield ""
        return
    from tests.pg import fresh_database

    with fresh_database() as url:
        yield url


def databases(data_dir: Path, location: str) -> Databases:
    return Databases(data_dir, MASTER, store=open_store(location, data_dir))


async def facts_of(db: Database[DatabaseState], tenant: str) -> list[Any]:
    found = await tenants.match(db, tenant, "p", False, (Var("x"),), None)
    return sorted(r.key.args for r in found)


def lit(predicate: str, *args: object) -> dict[str, Any]:
    return {"predicate": predicate, "args": list(args), "negated": False, "naf": False}


def test_a_decision_on_a_stale_tenant_is_refused_then_succeeds_caught_up(
    tmp_path: Path, location: str
) -> None:
    async def scenario() -> None:
        first = databases(tmp_path, location)
        await first.open()
        second = databases(tmp_path, location)
        await second.open()
        a, b = first.get("default"), second.get("default")
        await tenants.tell(a, "acme", TellFact("p", ("one",)))
        assert await facts_of(b, "acme") == [("one",)]  # b loads acme now
        await tenants.tell(a, "acme", TellFact("p", ("two",)))  # b does not know
        await tenants.tell(a, "other", TellFact("p", ("x",)))  # takes seqs b numbered
        with pytest.raises(AppendConflict) as info:
            await tenants.tell(b, "acme", TellFact("p", ("three",)))
        assert info.value.code == "WRITE_CONFLICT" and info.value.status == 503
        # The stale projection is gone: the retry decides on the log and is stored.
        await tenants.tell(b, "acme", TellFact("p", ("three",)))
        assert await facts_of(b, "acme") == [("one",), ("three",), ("two",)]
        # Another tenant of b, numbered behind a's seqs, is stored and renumbered.
        await tenants.tell(b, "fresh", TellFact("p", ("f",)))
        assert await facts_of(b, "fresh") == [("f",)]
        await second.close()
        await first.close()
        first.store.close()
        second.store.close()

        reopened = databases(tmp_path, location)
        await reopened.open()
        db = reopened.get("default")
        assert await facts_of(db, "acme") == [("one",), ("three",), ("two",)]
        assert await facts_of(db, "fresh") == [("f",)]
        assert await facts_of(db, "other") == [("x",)]
        await reopened.close()
        reopened.store.close()

    asyncio.run(scenario())


def test_the_database_level_catches_up_after_a_refusal(tmp_path: Path, location: str) -> None:
    async def scenario() -> None:
        first = databases(tmp_path, location)
        await first.open()
        second = databases(tmp_path, location)
        await second.open()
        a, b = first.get("default"), second.get("default")
        rule = TeachRule(lit("q", "?x"), (lit("p", "?x"),))
        await tenants.teach_database_rule(a, rule)
        other = TeachRule(lit("r", "?x"), (lit("p", "?x"),))
        with pytest.raises(AppendConflict):
            await tenants.teach_database_rule(b, other)
        await b.flush_snapshots()  # the reload of the database level runs there
        assert {r.rule.head.predicate for r in tenants.database_rules(b)} == {"q"}
        await tenants.teach_database_rule(b, other)
        assert {r.rule.head.predicate for r in tenants.database_rules(b)} == {"q", "r"}
        await second.close()
        await first.close()
        first.store.close()
        second.store.close()

    asyncio.run(scenario())


def test_nothing_of_a_refused_write_is_kept(tmp_path: Path, location: str) -> None:
    async def scenario() -> None:
        first = databases(tmp_path, location)
        await first.open()
        second = databases(tmp_path, location)
        await second.open()
        a, b = first.get("default"), second.get("default")
        await tenants.tell(a, "acme", TellFact("p", ("one",)))
        await facts_of(b, "acme")
        await tenants.tell(a, "acme", TellFact("p", ("two",)))
        with pytest.raises(NocturnusError):
            await tenants.tell(b, "acme", TellFact("p", ("refused",)))
        assert ("refused",) not in await facts_of(b, "acme")
        await second.close()
        await first.close()
        first.store.close()
        second.store.close()

    asyncio.run(scenario())
