"""Transactions' service parts (issue 18): the buffer store (shared, issue 16), the staged copy, run_now, and
the transaction_committed event replayed like a live commit."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from nocturnus.errors import Forbidden, NotFound, RateLimited, ValidationError
from nocturnus.service import tenants
from nocturnus.service.codec import CODEC, nest, unnest
from nocturnus.service.commands import TellFact
from nocturnus.service.database import Database, DatabaseState
from nocturnus.service.databases import Databases
from nocturnus.service.events import (
    FactRetracted,
    FactTold,
    TransactionCommitted,
)
from nocturnus.service.facts import FactKey
from nocturnus.service.projection import TenantState, apply
from nocturnus.service.transactions import (
    SharedTransactions,
    Step,
    decode_steps,
    encode_steps,
    run_now,
)
from tests.service.stores import run_with_tenant

Db = Database[DatabaseState]


def told(*args: Any, scope: str = "main", at: int = 1) -> FactTold:
    return FactTold(predicate="p", args=args, negated=False, scope=scope, created_at=at,
                    valid_from=at)


def visible(state: TenantState, scope: str = "main") -> list[tuple[Any, ...]]:
    state.refresh(10**12)
    return sorted(r.key.args for r in state.iter_visible(scope))


def run(tmp_path: Path, scenario: Callable[[Databases, Db], Awaitable[None]]) -> None:
    run_with_tenant(tmp_path, "t", scenario)


def test_transactions_are_bounded_per_key_end_once_and_expire(tmp_path: Path) -> None:
    async def scenario(dbs: Databases, db: Db) -> None:
        store = SharedTransactions(lambda: dbs.shared, timeout_ms=60_000, per_key=2)
        first = await store.open(db, "t", "key:a")
        await store.open(db, "t", "key:a")
        with pytest.raises(RateLimited):
            await store.open(db, "t", "key:a")
        await store.open(db, "t", "key:b")  # another key has its own allowance
        found = await store.find(db, "t", "key:a", first.id)
        assert (found.id, found.steps, found.version) == (first.id, [], first.version)
        with pytest.raises(Forbidden):
            await store.find(db, "t", "key:b", first.id)
        with pytest.raises(ValidationError):
            await store.find(db, "u", "key:a", first.id)
        assert (await store.close(db, "t", "key:a", first.id)).id == first.id
        for end in (store.find, store.close):
            with pytest.raises(NotFound):
                await end(db, "t", "key:a", first.id)
        await store.open(db, "t", "key:a")  # the ended one no longer counts
        for junk in ("tx_nope", "x" * 200, "tx_\x1f"):
            for end in (store.find, store.close):
                with pytest.raises(NotFound):
                    await end(db, "t", "key:a", junk)

        brief = SharedTransactions(lambda: dbs.shared, timeout_ms=50, per_key=2)
        gone = await brief.open(db, "t", "key:c")
        await asyncio.sleep(0.1)  # past its deadline
        with pytest.raises(NotFound):
            await brief.find(db, "t", "key:c", gone.id)

    run(tmp_path, scenario)


def test_a_step_is_kept_only_on_the_steps_it_was_decided_on(tmp_path: Path) -> None:
    """Two requests of one transaction on two processes: the second to store finds
    the steps changed and is decided again; an end stops every later step."""

    async def scenario(dbs: Databases, db: Db) -> None:
        here = SharedTransactions(lambda: dbs.shared, timeout_ms=60_000, per_key=4)
        there = SharedTransactions(lambda: dbs.shared, timeout_ms=60_000, per_key=4)
        tx = await here.open(db, "t", "key:a")
        mine = await here.find(db, "t", "key:a", tx.id)
        theirs = await there.find(db, "t", "key:a", tx.id)
        mine.steps.append(Step("POST", "/tell", {"predicate": "p", "args": [1]}, {}))
        theirs.steps.append(Step("POST", "/tell", {"predicate": "p", "args": [2]}, {}))
        assert await there.keep(db, theirs) is True
        assert await here.keep(db, mine) is False  # decided on steps no longer current
        again = await here.find(db, "t", "key:a", tx.id)
        assert [s.body["args"] for s in again.steps] == [[2]]
        again.steps.append(mine.steps[-1])
        assert await here.keep(db, again) is True
        late = await there.find(db, "t", "key:a", tx.id)
        ended = await here.close(db, "t", "key:a", tx.id)
        assert [s.body["args"] for s in ended.steps] == [[2], [1]]
        late.steps.append(Step("POST", "/tell", {"predicate": "p", "args": [3]}, {}))
        assert await there.keep(db, late) is False  # after the end: never kept

    run(tmp_path, scenario)


def test_a_deleted_tenants_transactions_are_gone(tmp_path: Path) -> None:
    async def scenario(dbs: Databases, db: Db) -> None:
        store = SharedTransactions(lambda: dbs.shared, timeout_ms=60_000, per_key=4)
        tx = await store.open(db, "t", "key:a")
        await tenants.delete_tenant(db, "t")
        await tenants.tell_many(db, "t", [TellFact("p", ("b",))], atomic=True)
        with pytest.raises(NotFound):
            await store.find(db, "t", "key:a", tx.id)

    run(tmp_path, scenario)


json_values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1), st.text(max_size=8),
        st.floats(allow_nan=False, allow_infinity=False),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
steps = st.builds(
    Step,
    st.sampled_from(["POST", "DELETE"]),
    st.sampled_from(["/tell", "/forget", "/scope/<name>"]),
    st.dictionaries(st.text(max_size=8), json_values, max_size=4),
    st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=2),
)


@given(st.lists(steps, max_size=5), st.booleans())
def test_steps_round_trip(kept: list[Step], ended: bool) -> None:
    assert decode_steps(encode_steps(kept, ended)) == (ended, kept)
    with pytest.raises(ValueError):
        decode_steps(b"[2, false, []]")


def test_run_now_refuses_a_coroutine_that_suspends() -> None:
    async def decides() -> int:
        return 7

    async def waits() -> int:
        await asyncio.sleep(0)
        return 7

    assert run_now(decides()) == 7
    with pytest.raises(RuntimeError, match="suspended"):
        run_now(waits())


def test_a_staged_copy_and_its_original_do_not_see_each_others_writes() -> None:
    state = TenantState("t")
    for seq, arg in enumerate(("a", "b", "c"), 1):
        apply(state, seq, told(arg))
    copy = state.staged_copy()
    apply(copy, copy.last_seq, told("d"))
    apply(copy, copy.last_seq, FactRetracted(predicate="p", args=("a",), negated=False,
                                             scope="main"))
    apply(state, 4, told("e"))
    assert visible(copy) == [("b",), ("c",), ("d",)]
    assert visible(state) == [("a",), ("b",), ("c",), ("e",)]


def test_a_committed_transaction_replays_as_its_events_applied_in_order() -> None:
    inner = [told("a"), told("b", scope="h"),
             FactRetracted(predicate="p", args=("a",), negated=False, scope="main")]
    event = TransactionCommitted(id="tx_1", events=nest(inner))
    assert [type(e) for e in unnest(event.events)] == [FactTold, FactTold, FactRetracted]
    assert unnest(event.events) == inner
    logged = CODEC.decode(event.kind, CODEC.encode(event))  # through the log's encoding
    assert logged == event
    live, replayed, one_by_one = TenantState("t"), TenantState("t"), TenantState("t")
    apply(live, 1, event)
    apply(replayed, 1, logged)
    for e in inner:
        apply(one_by_one, 1, e)
    for scope in ("main", "h"):
        assert visible(live, scope) == visible(replayed, scope) == visible(one_by_one, scope)
    assert visible(live, "h") == [("b",)] and visible(live) == []
    assert live.record(FactKey("h", "p", False, ("b",))) is not None


def test_staged_copy_knows_every_field_of_the_projection() -> None:
    """A census: a new TenantState field must be copied (or left out on purpose) by
    ``staged_copy``, or a transaction's view silently lacks it (as it once lacked the
    tenant's constraints)."""
    handled = {
        "name", "last_seq", "created_at", "facts", "rules", "views", "priorities",
        "uses", "constraints", "incarnation", "_dirty", "_timeline", "_tickets", "_heirs",
        "changed",  # a consumer's journal of the live state: a copy starts without one
        "reading",  # the live views' readers: the copy's views are new, none reads them
    }
    assert {f.name for f in dataclasses.fields(TenantState)} == handled
