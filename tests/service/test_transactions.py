"""Transactions' service parts (issue 18): the buffer store, the staged copy, run_now, and
the transaction_committed event replayed like a live commit."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from nocturnus.errors import NotFound, RateLimited
from nocturnus.service.codec import CODEC, nest, unnest
from nocturnus.service.events import (
    FactRetracted,
    FactTold,
    TransactionCommitted,
)
from nocturnus.service.facts import FactKey
from nocturnus.service.projection import TenantState, apply
from nocturnus.service.transactions import LocalTransactions, run_now


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def told(*args: Any, scope: str = "main", at: int = 1) -> FactTold:
    return FactTold(predicate="p", args=args, negated=False, scope=scope, created_at=at,
                    valid_from=at)


def visible(state: TenantState, scope: str = "main") -> list[tuple[Any, ...]]:
    state.refresh(10**12)
    return sorted(r.key.args for r in state.iter_visible(scope))


def test_transactions_expire_are_bounded_per_key_and_end_once() -> None:
    clock = Clock()
    store = LocalTransactions(timeout_ms=1000, per_key=2, clock=clock)
    first = store.open("db", "t", "key:a")
    store.open("db", "t", "key:a")
    with pytest.raises(RateLimited):
        store.open("db", "t", "key:a")
    store.open("db", "t", "key:b")  # another key has its own allowance
    assert store.find(first.id) is first and len(store) == 3
    clock.now += 1.0  # the deadline is exclusive
    with pytest.raises(NotFound):
        store.find(first.id)
    assert len(store) == 0
    again = store.open("db", "t", "key:a")
    assert store.close(again.id) is again
    with pytest.raises(NotFound):
        store.close(again.id)


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
