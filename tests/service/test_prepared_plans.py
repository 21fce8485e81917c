"""Prepared plans over a real event log: reused across writes, invalidated by every
kind of rule change, bounded per tenant and in total (issue 17)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nocturnus.engine.prepared import PlanCache
from nocturnus.engine.rules import Literal
from nocturnus.engine.terms import Var
from nocturnus.service import scopes, tenants
from nocturnus.service.commands import TeachRule, TellFact
from nocturnus.service.databases import Databases
from nocturnus.store.crypto import MasterKey

MASTER = MasterKey(bytes(range(32)))
Y = Var("y")


def lit(predicate: str, *args: object) -> dict:
    return {"predicate": predicate, "args": list(args), "negated": False, "naf": False}


STEP = TeachRule(lit("path", "?x", "?y"), (lit("edge", "?x", "?y"),))
MORE = TeachRule(
    lit("path", "?x", "?y"), (lit("edge", "?x", "?z"), lit("path", "?z", "?y"))
)


async def reach(db, scope: str = "main", node: str = "a") -> list[str]:  # type: ignore[no-untyped-def]
    answers = await tenants.ask(db, "acme", Literal("path", (node, Y)), scope)
    return [str(a.key.args[1]) for a in answers]


def test_plans_are_reused_across_writes_and_replaced_on_every_rule_change(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        databases = Databases(tmp_path, MASTER, plans=PlanCache(64, 32))
        await databases.open()
        db = databases.get("default")
        plans = db.plans
        for a, b in ("ab", "bc", "cd"):
            await tenants.tell(db, "acme", TellFact("edge", (a, b)))
        step = await tenants.teach(db, "acme", STEP)
        assert await reach(db) == ["b"]
        prepared = len(plans)

        # A write keeps the plans; another constant shares the plan and its code.
        await tenants.tell(db, "acme", TellFact("noise", ("x",)))
        misses, compilations = plans.misses, plans.compilations
        assert await reach(db) == ["b"] and await reach(db, node="b") == ["c"]
        assert plans.misses == misses and len(plans) == prepared
        assert plans.compilations == compilations

        # teach: another rule set, another plan, compiled anew
        more = await tenants.teach(db, "acme", MORE)
        assert await reach(db) == ["b", "c", "d"]
        assert plans.misses > misses and plans.compilations > compilations

        # remove a tenant rule
        await tenants.remove_rule(db, "acme", more.record.rule.id)
        assert await reach(db) == ["b"]

        # database rules, added then removed
        await tenants.tell(db, "acme", TellFact("link", ("a", "z")))
        linked = await tenants.teach_database_rule(
            db, TeachRule(lit("path", "?x", "?y"), (lit("link", "?x", "?y"),))
        )
        assert await reach(db) == ["b", "z"]
        await tenants.remove_database_rule(db, linked.record.rule.id)
        assert await reach(db) == ["b"]

        # a scoped rule, copied by a fork, gone with its scope
        await tenants.tell(db, "acme", TellFact("edge", ("a", "b"), scope="s1"))
        await tenants.tell(db, "acme", TellFact("hop", ("a", "h"), scope="s1"))
        await tenants.teach(
            db,
            "acme",
            TeachRule(lit("path", "?x", "?y"), (lit("hop", "?x", "?y"),), scope="s1"),
        )
        assert await reach(db, "s1") == ["b", "h"]
        assert await reach(db) == ["b"]  # main does not see s1's rule
        await scopes.fork(db, "acme", "s1", "s2")
        assert await reach(db, "s2") == ["b", "h"]
        await scopes.delete(db, "acme", "s1")
        await tenants.tell(db, "acme", TellFact("edge", ("a", "b"), scope="s1"))
        await tenants.tell(db, "acme", TellFact("hop", ("a", "h"), scope="s1"))
        assert await reach(db, "s1") == ["b"]  # the scoped rule went with s1
        assert await reach(db, "s2") == ["b", "h"]  # the fork's copy stays

        # the step rule removed: no rule derives path at all
        await tenants.remove_rule(db, "acme", step.record.rule.id)
        assert await reach(db) == []
        assert plans.owned(("default", "acme")) <= 32
        await tenants.delete_tenant(db, "acme")
        assert plans.owned(("default", "acme")) == 0
        await databases.close()

    asyncio.run(scenario())


def test_plans_are_bounded_per_tenant_and_in_total(tmp_path: Path) -> None:
    async def scenario() -> None:
        databases = Databases(tmp_path, MASTER, plans=PlanCache(10, 4))
        await databases.open()
        db = databases.get("default")
        for tenant in ("t1", "t2", "t3", "t4"):
            for a, b in ("ab", "bc"):
                await tenants.tell(db, tenant, TellFact("edge", (a, b)))
            await tenants.teach(db, tenant, STEP)
            # each head predicate and pattern of bound arguments is a plan of its own
            for n in range(6):
                await tenants.teach(
                    db,
                    tenant,
                    TeachRule(lit(f"p{n}", "?x", "?y"), (lit("path", "?x", "?y"),)),
                )
                for args in (("a", Y), (Var("x"), "b"), ("a", "b")):
                    await tenants.ask(db, tenant, Literal(f"p{n}", args), None)
            assert db.plans.owned(("default", tenant)) <= 4
        assert len(db.plans) <= 10
        await databases.close()

    asyncio.run(scenario())
