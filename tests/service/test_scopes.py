"""Scope operations over a real event log: events, rules, strategies, replay (issue 5)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from nocturnus.engine.rules import Literal
from nocturnus.engine.terms import Var
from nocturnus.errors import Conflict, ValidationError
from nocturnus.service import scopes, tenants
from nocturnus.service.commands import TeachRule, TellFact
from nocturnus.service.database import Database, DatabaseState
from nocturnus.service.databases import Databases
from nocturnus.service.facts import FactKey
from nocturnus.store.crypto import MasterKey

MASTER = MasterKey(bytes(range(32)))
Db = Database[DatabaseState]


def lit(predicate: str, *args: object, **flags: bool) -> dict[str, Any]:
    return {
        "predicate": predicate,
        "args": list(args),
        "negated": False,
        "naf": False,
        **flags,
    }


def run(tmp_path: Path, scenario: Callable[[Databases, Db], Awaitable[None]]) -> None:
    async def main() -> None:
        databases = Databases(tmp_path, MASTER)
        await databases.open()
        try:
            await scenario(databases, databases.get("default"))
        finally:
            await databases.close()

    asyncio.run(main())


async def facts_of(
    db: Db, tenant: str, scope: str
) -> list[tuple[str, bool, tuple[Any, ...]]]:
    found = []
    for predicate in ("plan", "seat", "parent", "promo", "open"):
        for negated in (False, True):
            for arity in (1, 2):
                pattern = tuple(Var(f"v{i}") for i in range(arity))
                found += [
                    (r.key.predicate, r.key.negated, r.key.args)
                    for r in await tenants.match(
                        db, tenant, predicate, negated, pattern, scope
                    )
                ]
    return sorted(found, key=repr)


async def ask_args(
    db: Db, tenant: str, goal: Literal, scope: str | None
) -> list[tuple[str, tuple[Any, ...]]]:
    return [
        (a.key.scope, a.key.args) for a in await tenants.ask(db, tenant, goal, scope)
    ]


def test_each_operation_is_one_event_and_fork_carries_only_names(
    tmp_path: Path,
) -> None:
    async def scenario(databases: Databases, db: Db) -> None:
        for i in range(50):
            await tenants.tell(db, "acme", TellFact("seat", (f"s{i}",)))
        head = db.head
        forked = await scopes.fork(db, "acme", "main", "h1")
        assert (forked.copied, db.head) == (50, head + 1)
        records = await db.writer.run(lambda log: list(log.read(tenant="acme")))
        assert records[-1].kind == "scope_forked"
        assert len(records[-1].body or b"") < 100  # names, not 50 facts
        await tenants.tell(db, "acme", TellFact("seat", ("extra",), scope="h1"))
        head = db.head
        merged = await scopes.merge(db, "acme", "h1", "main", "SOURCE_WINS")
        assert (merged.merged, db.head) == (1, head + 1)
        deleted = await scopes.delete(db, "acme", "h1")
        assert (deleted.facts, db.head) == (51, head + 2)
        assert (await scopes.delete(db, "acme", "h1")).facts == 0
        assert db.head == head + 2  # deleting nothing logs nothing

    run(tmp_path, scenario)


def test_fork_isolation_both_ways(tmp_path: Path) -> None:
    async def scenario(databases: Databases, db: Db) -> None:
        await tenants.tell(db, "acme", TellFact("plan", ("enterprise",)))
        await tenants.tell(db, "acme", TellFact("seat", ("alice",)))
        await scopes.fork(db, "acme", "main", "what-if")
        await tenants.tell(db, "acme", TellFact("plan", ("free",), scope="what-if"))
        await tenants.forget(db, "acme", FactKey("what-if", "seat", False, ("alice",)))
        await tenants.tell(db, "acme", TellFact("seat", ("bob",)))
        await tenants.forget(
            db, "acme", FactKey("main", "plan", False, ("enterprise",))
        )
        assert await facts_of(db, "acme", "main") == [
            ("seat", False, ("alice",)),
            ("seat", False, ("bob",)),
        ]
        assert await facts_of(db, "acme", "what-if") == [
            ("plan", False, ("enterprise",)),
            ("plan", False, ("free",)),
        ]

    run(tmp_path, scenario)


def test_fork_copies_scoped_rules_under_derived_ids(tmp_path: Path) -> None:
    async def scenario(databases: Databases, db: Db) -> None:
        await tenants.tell(db, "acme", TellFact("parent", ("a", "b")))
        await tenants.tell(db, "acme", TellFact("parent", ("b", "c")))
        gp = TeachRule(
            lit("gp", "?x", "?z"),
            (lit("parent", "?x", "?y"), lit("parent", "?y", "?z")),
            scope="main",
        )
        kid = TeachRule(
            lit("kid", "?y"), (lit("parent", "?x", "?y"),)
        )  # unscoped: every scope
        other = TeachRule(
            lit("other", "?x"), (lit("parent", "?x", "?y"),), scope="elsewhere"
        )
        for rule in (gp, kid, other):
            await tenants.teach(db, "acme", rule)
        forked = await scopes.fork(db, "acme", "main", "h")
        assert forked.rules == 1
        copies = [r for r in await tenants.rules(db, "acme") if r.scope == "h"]
        assert [r.rule.text() for r in copies] == [
            "gp(?x, ?z) :- parent(?x, ?y), parent(?y, ?z)"
        ]
        goal = Literal("gp", (Var("x"), Var("z")))
        assert await ask_args(db, "acme", goal, None) == [
            ("h", ("a", "c")),
            ("main", ("a", "c")),
        ]
        assert await ask_args(db, "acme", Literal("kid", (Var("y"),)), "h") == [
            ("h", ("b",)),
            ("h", ("c",)),
        ]
        assert await ask_args(db, "acme", Literal("other", (Var("x"),)), "h") == []
        await tenants.remove_rule(db, "acme", copies[0].rule.id)
        assert await ask_args(db, "acme", goal, None) == [("main", ("a", "c"))]
        with pytest.raises(Conflict):  # h holds facts
            await scopes.fork(db, "acme", "main", "h")
        await tenants.teach(db, "acme", TeachRule(gp.head, gp.body, scope="only-rules"))
        with pytest.raises(Conflict):  # a scope holding only a rule is not empty either
            await scopes.fork(db, "acme", "main", "only-rules")
        with pytest.raises(ValidationError):
            await scopes.fork(db, "acme", "main", "main")
        deleted = await scopes.delete(db, "acme", "only-rules")
        assert (deleted.facts, deleted.rules) == (0, 1)
        assert (await scopes.fork(db, "acme", "main", "only-rules")).rules == 1

    run(tmp_path, scenario)


def test_fork_refuses_rules_that_would_break_stratification(tmp_path: Path) -> None:
    async def scenario(databases: Databases, db: Db) -> None:
        await tenants.teach(
            db,
            "acme",
            TeachRule(
                lit("p", "?x"), (lit("q", "?x"), lit("r", "?x", naf=True)), scope="main"
            ),
        )
        await tenants.teach_database_rule(
            db,
            TeachRule(
                lit("r", "?x"), (lit("q", "?x"), lit("p", "?x", naf=True)), scope="h"
            ),
        )
        with pytest.raises(ValidationError, match="cannot join"):
            await scopes.fork(db, "acme", "main", "h")

    run(tmp_path, scenario)


def test_inference_never_joins_facts_of_two_scopes(tmp_path: Path) -> None:
    async def scenario(databases: Databases, db: Db) -> None:
        await tenants.teach(
            db,
            "acme",
            TeachRule(
                lit("gp", "?x", "?z"),
                (lit("parent", "?x", "?y"), lit("parent", "?y", "?z")),
            ),
        )
        await tenants.tell(db, "acme", TellFact("parent", ("a", "b"), scope="s1"))
        await tenants.tell(db, "acme", TellFact("parent", ("b", "c"), scope="s2"))
        goal = Literal("gp", (Var("x"), Var("z")))
        for scope in (None, "s1", "s2", "main"):
            assert await ask_args(db, "acme", goal, scope) == []
        await scopes.merge(db, "acme", "s1", "s2", "SOURCE_WINS")
        assert await ask_args(db, "acme", goal, None) == [("s2", ("a", "c"))]
        parent = Literal("parent", (Var("x"), Var("y")))
        assert await ask_args(db, "acme", parent, None) == [
            ("s1", ("a", "b")),
            ("s2", ("a", "b")),
            ("s2", ("b", "c")),
        ]

    run(tmp_path, scenario)


async def conflicting_scopes(db: Db) -> None:
    """main: plan(a), plan(b), NOT open(x), seat(m); h: plan(a), NOT plan(b), open(x), seat(h)."""
    await tenants.tell(db, "acme", TellFact("plan", ("a",)))
    await tenants.tell(db, "acme", TellFact("plan", ("b",)))
    await tenants.tell(db, "acme", TellFact("open", ("x",), negated=True))
    await scopes.fork(db, "acme", "main", "h")
    await tenants.tell(
        db,
        "acme",
        TellFact(
            "plan", ("b",), negated=True, scope="h", conflict_strategy="NEWEST_WINS"
        ),
    )
    await tenants.tell(
        db, "acme", TellFact("open", ("x",), scope="h", conflict_strategy="NEWEST_WINS")
    )
    await tenants.tell(db, "acme", TellFact("seat", ("m",)))
    await tenants.tell(db, "acme", TellFact("seat", ("h",), scope="h"))


def test_diff_reports_each_kind_in_a_stable_order(tmp_path: Path) -> None:
    async def scenario(databases: Databases, db: Db) -> None:
        await conflicting_scopes(db)
        found = await scopes.diff(db, "acme", "h", "main")
        assert [r.key for r in found.only_in_source] == [
            FactKey("h", "seat", False, ("h",))
        ]
        assert [r.key for r in found.only_in_target] == [
            FactKey("main", "seat", False, ("m",))
        ]
        assert [(s.key, t.key) for s, t in found.conflicts] == [
            (
                FactKey("h", "open", False, ("x",)),
                FactKey("main", "open", True, ("x",)),
            ),
            (
                FactKey("h", "plan", True, ("b",)),
                FactKey("main", "plan", False, ("b",)),
            ),
        ]
        assert found.same == 1
        assert await scopes.diff(db, "acme", "h", "main") == found
        mirrored = await scopes.diff(db, "acme", "main", "h")
        assert [(s.key, t.key) for s, t in mirrored.conflicts] == [
            (
                FactKey("main", "open", True, ("x",)),
                FactKey("h", "open", False, ("x",)),
            ),
            (
                FactKey("main", "plan", False, ("b",)),
                FactKey("h", "plan", True, ("b",)),
            ),
        ]
        # a scope holding both sides (KEEP_BOTH) has nothing to contradict: only-in, not conflict
        await tenants.tell(
            db,
            "acme",
            TellFact("plan", ("b",), scope="h", conflict_strategy="KEEP_BOTH"),
        )
        both = await scopes.diff(db, "acme", "h", "main")
        assert [(s.key.predicate, s.key.args) for s, _ in both.conflicts] == [
            ("open", ("x",))
        ]
        assert FactKey("h", "plan", True, ("b",)) in [
            r.key for r in both.only_in_source
        ]
        assert both.same == 2

    run(tmp_path, scenario)


MAIN_AFTER = {
    "SOURCE_WINS": [
        ("open", False, ("x",)),
        ("plan", False, ("a",)),
        ("plan", True, ("b",)),
        ("seat", False, ("h",)),
        ("seat", False, ("m",)),
    ],
    "TARGET_WINS": [
        ("open", True, ("x",)),
        ("plan", False, ("a",)),
        ("plan", False, ("b",)),
        ("seat", False, ("h",)),
        ("seat", False, ("m",)),
    ],
    "KEEP_BOTH": [
        ("open", False, ("x",)),
        ("open", True, ("x",)),
        ("plan", False, ("a",)),
        ("plan", False, ("b",)),
        ("plan", True, ("b",)),
        ("seat", False, ("h",)),
        ("seat", False, ("m",)),
    ],
}


@pytest.mark.parametrize(
    ("strategy", "merged"), [("SOURCE_WINS", 3), ("TARGET_WINS", 1), ("KEEP_BOTH", 3)]
)
def test_merge_strategies(tmp_path: Path, strategy: str, merged: int) -> None:
    async def scenario(databases: Databases, db: Db) -> None:
        await conflicting_scopes(db)
        source_before = await facts_of(db, "acme", "h")
        outcome = await scopes.merge(db, "acme", "h", "main", strategy)
        assert (outcome.merged, outcome.conflicts) == (merged, 2)
        after = await facts_of(db, "acme", "main")
        assert sorted(after, key=repr) == sorted(MAIN_AFTER[strategy], key=repr)
        assert await facts_of(db, "acme", "h") == source_before

    run(tmp_path, scenario)


def test_reject_merge_changes_nothing(tmp_path: Path) -> None:
    async def scenario(databases: Databases, db: Db) -> None:
        await conflicting_scopes(db)
        before, head = await facts_of(db, "acme", "main"), db.head
        with pytest.raises(scopes.MergeRejected) as rejected:
            await scopes.merge(db, "acme", "h", "main", "REJECT")
        assert len(rejected.value.diff.conflicts) == 2
        assert (await facts_of(db, "acme", "main"), db.head) == (before, head)
        await tenants.forget(db, "acme", FactKey("h", "plan", True, ("b",)))
        await tenants.forget(db, "acme", FactKey("h", "open", False, ("x",)))
        outcome = await scopes.merge(db, "acme", "h", "main", "REJECT")
        assert (outcome.merged, outcome.conflicts) == (1, 0)

    run(tmp_path, scenario)


def snapshot_state(databases: Databases, tenant: str) -> tuple[Any, ...]:
    state = databases.get("default")._tenants[tenant]
    facts = sorted(
        (repr(k), r.confidence, r.created_at, r.valid_from, r.ttl)
        for scoped in state.facts.values()
        for k, r in scoped.items()
    )
    rules = sorted(
        (r.rule.id, r.scope, r.rule.text(), r.created_at) for r in state.rules
    )
    return (
        facts,
        rules,
        state.last_seq,
        [(s.name, s.facts, s.rules) for s in scopes.list_scopes(state)],
    )


def test_replay_rebuilds_forks_merges_and_deletes(tmp_path: Path) -> None:
    goal = Literal("gp", (Var("x"), Var("z")))
    seen: dict[str, Any] = {}

    async def live(databases: Databases, db: Db) -> None:
        await tenants.teach(
            db,
            "acme",
            TeachRule(
                lit("gp", "?x", "?z"),
                (lit("parent", "?x", "?y"), lit("parent", "?y", "?z")),
                scope="main",
            ),
        )
        for i in range(30):
            await tenants.tell(
                db, "acme", TellFact("parent", (f"n{i}", f"n{i + 1}"), confidence=0.9)
            )
        await tenants.tell(db, "acme", TellFact("promo", ("soon",), ttl=3_600_000))
        await scopes.fork(db, "acme", "main", "h1")
        await tenants.forget(db, "acme", FactKey("h1", "parent", False, ("n3", "n4")))
        await scopes.fork(db, "acme", "h1", "h2")
        await tenants.tell(db, "acme", TellFact("parent", ("x", "y"), scope="h2"))
        await scopes.merge(db, "acme", "h2", "main", "KEEP_BOTH")
        await scopes.delete(db, "acme", "h1")
        await scopes.fork(db, "acme", "h2", "h1")
        seen["state"] = snapshot_state(databases, "acme")
        seen["answers"] = await ask_args(db, "acme", goal, None)
        seen["diff"] = await scopes.diff(db, "acme", "h1", "main")

    async def replayed(databases: Databases, db: Db) -> None:
        await db.tenant("acme")
        assert snapshot_state(databases, "acme") == seen["state"]
        assert await ask_args(db, "acme", goal, None) == seen["answers"]
        assert await scopes.diff(db, "acme", "h1", "main") == seen["diff"]

    run(tmp_path, live)
    run(tmp_path, replayed)
