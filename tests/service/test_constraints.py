"""RESTRICT constraints (issue 18) over a real event log: which writes they refuse, on
every write path, and that they are knowledge (replay, snapshots, tenant deletion)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from nocturnus.engine.terms import Var
from nocturnus.errors import Conflict, NotFound, ValidationError
from nocturnus.service import scopes, tenants
from nocturnus.service.commands import TeachRule, TellFact
from nocturnus.service.constraints import CHANGE_READERS, HARMLESS_KINDS, AddConstraint
from nocturnus.service.databases import Databases
from nocturnus.service.events import EVENT_TYPES, DatabaseCreated, DatabaseDeleted
from nocturnus.service.facts import FactKey
from nocturnus.service.projection import APPLIERS
from nocturnus.store.crypto import MasterKey

MASTER = MasterKey(bytes(range(32)))
T = "acme"


def lit(
    predicate: str, *args: object, negated: bool = False, naf: bool = False
) -> dict[str, Any]:
    return {"predicate": predicate, "args": list(args), "negated": negated, "naf": naf}


def constraint(*body: dict[str, Any]) -> AddConstraint:
    return AddConstraint(tuple(body))


def fact(
    key: str, *args: object, scope: str = "main", negated: bool = False
) -> TellFact:
    return TellFact(key, tuple(args), negated=negated, scope=scope)


def run(
    tmp_path: Path, scenario: Callable[[Any], Awaitable[Any]], every: int = 10_000
) -> Any:
    async def go() -> Any:
        databases = Databases(tmp_path, MASTER, snapshot_every=every)
        await databases.open()
        try:
            return await scenario(databases.get("default"))
        finally:
            await databases.close()

    return asyncio.run(go())


def test_a_fact_that_makes_a_constraint_hold_is_refused_and_not_stored(
    tmp_path: Path,
) -> None:
    async def scenario(db: Any) -> None:
        await tenants.tell(db, T, fact("employee", "ann"))
        added = await tenants.restrict(
            db, T, constraint(lit("employee", "?x"), lit("contractor", "?x"))
        )
        assert (
            added.stored
            and added.record.text() == "RESTRICT { employee(?x) AND contractor(?x) }"
        )
        await tenants.tell(db, T, fact("contractor", "bob"))  # bob is no employee: fine
        with pytest.raises(Conflict) as refused:
            await tenants.tell(db, T, fact("contractor", "ann"))
        assert refused.value.details["witnesses"] == [
            {"scope": "main", "bindings": {"x": "ann"}}
        ]
        assert "?x = ann in scope main" in refused.value.message
        stored = await tenants.match(db, T, "contractor", False, (Var("c"),), None)
        assert [r.key.args for r in stored] == [("bob",)]
        # each scope on its own: ann is no employee in scope s
        await tenants.tell(db, T, fact("contractor", "ann", scope="s"))
        # the same constraint again changes nothing
        again = await tenants.restrict(
            db, T, constraint(lit("employee", "?x"), lit("contractor", "?x"))
        )
        assert not again.stored and again.record.id == added.record.id

    run(tmp_path, scenario)


def test_rules_and_negation_as_failure_take_part(tmp_path: Path) -> None:
    async def scenario(db: Any) -> None:
        await tenants.tell(db, T, fact("employee", "ann"))
        await tenants.tell(db, T, fact("badge", "ann"))
        await tenants.teach(
            db, T, TeachRule(lit("has_badge", "?x"), (lit("badge", "?x"),))
        )
        # every employee needs a badge, directly or through a rule
        await tenants.restrict(
            db, T, constraint(lit("employee", "?x"), lit("has_badge", "?x", naf=True))
        )
        with pytest.raises(Conflict):  # bob would be an employee without a badge
            await tenants.tell(db, T, fact("employee", "bob"))
        with pytest.raises(Conflict):  # retracting ann's badge makes it hold
            await tenants.forget(db, T, FactKey("main", "badge", False, ("ann",)))
        await tenants.tell(db, T, fact("visitor_pass", "bob"))
        await tenants.teach(
            db, T, TeachRule(lit("has_badge", "?x"), (lit("visitor_pass", "?x"),))
        )
        await tenants.tell(db, T, fact("employee", "bob"))  # now fine: bob has a pass

    run(tmp_path, scenario)


def test_a_rule_that_derives_a_violation_is_refused(tmp_path: Path) -> None:
    async def scenario(db: Any) -> None:
        for a, b in (("a", "b"), ("b", "a")):
            await tenants.tell(db, T, fact("parent", a, b))
            await tenants.tell(db, T, fact("person", a))
        await tenants.restrict(db, T, constraint(lit("ancestor", "?x", "?x")))
        await tenants.teach(
            db,
            T,
            TeachRule(
                lit("ancestor", "?x", "?y"),
                (lit("parent", "?x", "?y"), lit("person", "?x")),
            ),
        )
        with pytest.raises(Conflict) as refused:
            await tenants.teach(
                db,
                T,
                TeachRule(
                    lit("ancestor", "?x", "?z"),
                    (lit("parent", "?x", "?y"), lit("ancestor", "?y", "?z")),
                ),
            )
        assert {w["bindings"]["x"] for w in refused.value.details["witnesses"]} == {
            "a",
            "b",
        }
        assert len(await tenants.rules(db, T)) == 1

    run(tmp_path, scenario)


def test_comparisons_and_explicit_negation(tmp_path: Path) -> None:
    async def scenario(db: Any) -> None:
        await tenants.restrict(
            db, T, constraint(lit("age", "?p", "?n"), lit("<", "?n", 0))
        )
        await tenants.restrict(
            db, T, constraint(lit("paid", "?o"), lit("paid", "?o", negated=True))
        )
        await tenants.tell(db, T, fact("age", "ann", 30))
        with pytest.raises(Conflict):
            await tenants.tell(db, T, fact("age", "bob", -1))
        await tenants.tell(db, T, fact("paid", "o1"))
        with pytest.raises(Conflict):  # KEEP_BOTH would store both sides: refused
            await tenants.tell(
                db,
                T,
                TellFact("paid", ("o1",), negated=True, conflict_strategy="KEEP_BOTH"),
            )

    run(tmp_path, scenario)


def test_bulk_writes_and_scope_merges_are_checked(tmp_path: Path) -> None:
    async def scenario(db: Any) -> None:
        await tenants.restrict(db, T, constraint(lit("a", "?x"), lit("b", "?x")))
        with pytest.raises(Conflict):  # two facts of one bulk call together
            await tenants.tell_many(db, T, [fact("a", 1), fact("b", 1)], atomic=False)
        assert await tenants.match(db, T, "a", False, (Var("x"),), None) == []
        await tenants.tell(db, T, fact("a", 1))
        await tenants.tell(db, T, fact("b", 1, scope="side"))
        with pytest.raises(Conflict):
            await scopes.merge(db, T, "side", "main", "SOURCE_WINS")
        await scopes.fork(
            db, T, "main", "copy"
        )  # a copy of main holds nothing forbidden

    run(tmp_path, scenario)


def test_a_constraint_the_knowledge_already_breaks_is_refused(tmp_path: Path) -> None:
    async def scenario(db: Any) -> None:
        await tenants.tell(db, T, fact("a", 1))
        await tenants.tell(db, T, fact("b", 1, scope="s2"))
        await tenants.tell(db, T, fact("b", 1, scope="s2"))
        await tenants.tell(db, T, fact("a", 1, scope="s2"))
        with pytest.raises(Conflict, match="already violates it"):
            await tenants.restrict(db, T, constraint(lit("a", "?x"), lit("b", "?x")))
        assert await tenants.constraints(db, T) == []
        with pytest.raises(ValidationError, match="does not occur in a positive"):
            await tenants.restrict(
                db, T, constraint(lit("a", "?x"), lit("c", "?y", naf=True))
            )

    run(tmp_path, scenario)


def test_constraints_survive_restart_snapshot_and_go_with_their_tenant(
    tmp_path: Path,
) -> None:
    async def add(db: Any) -> str:
        outcome = await tenants.restrict(
            db, T, constraint(lit("a", "?x"), lit("b", "?x"))
        )
        await tenants.restrict(db, "globex", constraint(lit("z", "?x")))
        await tenants.tell(db, T, fact("a", 1))
        return outcome.record.id

    constraint_id = run(tmp_path, add, every=1)  # every write snapshots the tenant

    async def after_restart(db: Any) -> None:
        listed = await tenants.constraints(db, T)
        assert [c.id for c in listed] == [constraint_id]
        with pytest.raises(Conflict):
            await tenants.tell(db, T, fact("b", 1))
        await tenants.remove_constraint(db, T, constraint_id)
        await tenants.tell(db, T, fact("b", 1))
        with pytest.raises(NotFound):
            await tenants.remove_constraint(db, T, constraint_id)
        await tenants.delete_tenant(db, "globex")
        await tenants.tell(db, "globex", fact("z", 1))  # its constraint went with it

    run(tmp_path, after_restart)

    async def replayed(db: Any) -> None:
        assert await tenants.constraints(db, T) == []
        db.evict(T)
        assert await tenants.constraints(db, T) == []

    run(tmp_path, replayed)


def test_every_tenant_event_kind_is_known_to_the_constraint_check() -> None:
    # a new kind that tells, retracts or teaches registers a reader in CHANGE_READERS;
    # one that cannot make a constraint hold is listed in HARMLESS_KINDS
    tenant_kinds = set(APPLIERS)
    assert tenant_kinds == set(CHANGE_READERS) | HARMLESS_KINDS
    assert not set(CHANGE_READERS) & HARMLESS_KINDS
    assert tenant_kinds <= set(EVENT_TYPES) - {
        DatabaseCreated.kind,
        DatabaseDeleted.kind,
    }
