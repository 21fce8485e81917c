"""A write that cannot be stored changes nothing but itself (issue 14, item 1).

Over real SQLite files: an event that cannot be encoded is refused before it takes a
seq or touches a projection; an append the disk refuses (a trigger on the real log
file stands in for the failing disk) drops only the projections of the writes that
were lost, puts back the durable database level, and the next write is stored.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import orjson
import pytest

from nocturnus.engine.rules import Literal
from nocturnus.engine.terms import Var
from nocturnus.errors import Unavailable
from nocturnus.service import tenants
from nocturnus.service.commands import TeachRule, TellFact
from nocturnus.service.database import Database, DatabaseState
from nocturnus.service.databases import Databases
from nocturnus.store.crypto import MasterKey

MASTER = MasterKey(bytes(range(32)))


def nested(depth: int) -> dict[str, Any]:
    value: Any = "leaf"
    for _ in range(depth):
        value = {"a": value}
    return value  # type: ignore[no-any-return]


def lit(predicate: str, *args: object) -> dict[str, Any]:
    return {"predicate": predicate, "args": list(args), "negated": False, "naf": False}


async def facts_of(db: Database[DatabaseState], tenant: str, predicate: str) -> list[Any]:
    found = await tenants.match(db, tenant, predicate, False, (Var("x"),), None)
    return sorted(r.key.args for r in found)


def fail_inserts_of(path: Path, tenant: str) -> None:
    """Make the real log file refuse every event of ``tenant``, as a failing disk would."""
    with sqlite3.connect(path) as conn:
        conn.execute(
            f"CREATE TRIGGER refuse_{tenant or 'root'} BEFORE INSERT ON events "
            f"WHEN NEW.tenant = '{tenant}' BEGIN SELECT RAISE(ABORT, 'disk on fire'); END"
        )


def accept_inserts_of(path: Path, tenant: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute(f"DROP TRIGGER refuse_{tenant or 'root'}")


async def hold_writer(db: Database[DatabaseState]) -> tuple[threading.Event, asyncio.Future[None]]:
    """Park the writer thread in a job, so appends queue up behind it."""
    started, release = threading.Event(), threading.Event()

    def wait(log: Any) -> None:
        started.set()
        release.wait(30)

    held = asyncio.ensure_future(db.writer.run(wait))
    await asyncio.to_thread(started.wait, 30)
    return release, held


def test_an_event_that_cannot_be_encoded_takes_no_seq_and_touches_nothing(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        databases = Databases(tmp_path, MASTER)
        await databases.open()
        db = databases.get("default")
        await tenants.tell(db, "other", TellFact("p", ("o1",)))
        other = db._tenants["other"]
        head = db.head
        # orjson refuses to nest this deep: encoding the second event fails.
        batch = [TellFact("good", ("a",)), TellFact("bad", ("b",), metadata=nested(300))]
        with pytest.raises(orjson.JSONEncodeError):
            await tenants.tell_many(db, "victim", batch, atomic=True)
        assert db.head == head
        assert await facts_of(db, "victim", "good") == []  # no phantom fact
        # Another tenant's next write is stored at the next seq, its projection kept.
        await tenants.tell(db, "other", TellFact("p", ("o2",)))
        assert db.head == head + 1
        assert db._tenants["other"] is other
        assert await facts_of(db, "other", "p") == [("o1",), ("o2",)]
        await databases.close()

        reopened = Databases(tmp_path, MASTER)
        await reopened.open()
        db = reopened.get("default")
        assert await facts_of(db, "victim", "good") == []
        assert await facts_of(db, "other", "p") == [("o1",), ("o2",)]
        await reopened.close()

    asyncio.run(scenario())


def test_a_refused_append_drops_only_the_writes_that_were_lost(tmp_path: Path) -> None:
    async def scenario() -> None:
        databases = Databases(tmp_path, MASTER)
        await databases.open()
        db = databases.get("default")
        for tenant in ("doomed", "behind", "bystander"):
            await tenants.tell(db, tenant, TellFact("p", ("durable",)))
        bystander = db._tenants["bystander"]
        fail_inserts_of(tmp_path / "default.db", "doomed")

        release, held = await hold_writer(db)
        lost = asyncio.ensure_future(tenants.tell(db, "doomed", TellFact("p", ("lost",))))
        queued = asyncio.ensure_future(tenants.tell(db, "behind", TellFact("p", ("queued",))))
        await asyncio.sleep(0.05)  # both numbered and applied, both waiting
        assert await facts_of(db, "doomed", "p") == [("durable",), ("lost",)]
        release.set()
        await held
        results = await asyncio.gather(lost, queued, return_exceptions=True)
        # The refused batch fails; the write numbered behind it never reached the
        # log either: both are answered, and both projections forget them.
        assert all(isinstance(r, Unavailable) for r in results), results
        assert await facts_of(db, "doomed", "p") == [("durable",)]
        assert await facts_of(db, "behind", "p") == [("durable",)]
        # The tenant with nothing in flight keeps its projection.
        assert db._tenants["bystander"] is bystander

        await tenants.tell(db, "behind", TellFact("p", ("next",)))
        accept_inserts_of(tmp_path / "default.db", "doomed")
        await tenants.tell(db, "doomed", TellFact("p", ("again",)))
        assert await facts_of(db, "doomed", "p") == [("again",), ("durable",)]
        await databases.close()

        reopened = Databases(tmp_path, MASTER)
        await reopened.open()
        db = reopened.get("default")
        assert await facts_of(db, "doomed", "p") == [("again",), ("durable",)]
        assert await facts_of(db, "behind", "p") == [("durable",), ("next",)]
        await reopened.close()

    asyncio.run(scenario())


def test_a_refused_database_rule_leaves_no_trace_in_any_tenant(tmp_path: Path) -> None:
    """The database level goes back to its durable copy; tenants that cached a program
    built with the lost rule never meet that program again."""

    async def scenario() -> None:
        databases = Databases(tmp_path, MASTER)
        await databases.open()
        db = databases.get("default")
        await tenants.tell(db, "acme", TellFact("edge", ("a", "b")))
        goal = Literal("linked", (Var("x"), Var("y")))
        assert await tenants.ask(db, "acme", goal, None) == []
        fail_inserts_of(tmp_path / "default.db", "")

        release, held = await hold_writer(db)
        lost_rule = TeachRule(lit("linked", "?x", "?y"), (lit("edge", "?x", "?y"),))
        lost = asyncio.ensure_future(tenants.teach_database_rule(db, lost_rule))
        await asyncio.sleep(0.05)
        # Applied ahead of the disk: a question now sees it (and caches its program).
        assert len(await tenants.ask(db, "acme", goal, None)) == 1
        release.set()
        await held
        with pytest.raises(Unavailable):
            await lost
        assert db.root.rules.records == {}

        accept_inserts_of(tmp_path / "default.db", "")
        kept_rule = TeachRule(lit("linked", "?y", "?x"), (lit("edge", "?x", "?y"),))
        await tenants.teach_database_rule(db, kept_rule)
        answers = await tenants.ask(db, "acme", goal, None)
        assert [a.key.args for a in answers] == [("b", "a")]
        await databases.close()

    asyncio.run(scenario())
