"""Replay's fast path builds exactly the state the per-event path builds (issue 3).

``replay.fold`` feeds every event to the projection's door as the field values the
codec reads straight from the logged bytes, and a never-settled scope gets its view
built from its stored groups in one pass. Here random logs are folded both ways — the
fast fold refreshed once at the end (as start-up does), and ``apply(state, seq,
CODEC.decode(kind, body))`` event by event, refreshed after most of them (as live
writes are) — and every observable part of the two states must be equal.
"""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from nocturnus.service import snapshot_format
from nocturnus.service.codec import CODEC
from nocturnus.service.events import (
    Event,
    FactRetracted,
    FactsUsed,
    FactTold,
    PrioritySet,
    RuleTaught,
    ScopeDeleted,
    ScopeForked,
    TenantCreated,
    TenantDeleted,
)
from nocturnus.service.projection import TenantState, apply
from nocturnus.service.replay import fold
from nocturnus.store.record import LogRecord

NOW = 1_700_000_000_000
SCOPES = ["main", "a", "b"]
ARGS = st.lists(st.sampled_from(["x", "y", "500", 1, 2.5, -0.0]), min_size=1, max_size=2)

told = st.builds(
    FactTold,
    predicate=st.sampled_from(["p", "q"]),
    args=ARGS.map(tuple),
    negated=st.booleans(),
    scope=st.sampled_from(SCOPES),
    created_at=st.integers(NOW - 100, NOW + 100),
    valid_from=st.integers(NOW - 100, NOW + 100),
    # mostly plain facts (visible from valid_from on), some with a window or a TTL
    valid_until=st.one_of(st.none(), st.none(), st.integers(NOW - 50, NOW + 200)),
    ttl=st.one_of(st.none(), st.none(), st.integers(1, 200)),
    confidence=st.none() | st.sampled_from([0.0, 0.5, 1.0]),
    metadata=st.sampled_from([{}, {"source": "t", "n": [1, 2]}]),
)
retracted = st.builds(
    FactRetracted,
    predicate=st.sampled_from(["p", "q"]),
    args=ARGS.map(tuple),
    negated=st.booleans(),
    scope=st.sampled_from(SCOPES),
)
events = st.one_of(
    told,
    told,
    told,
    retracted,
    st.builds(
        PrioritySet,
        predicate=st.just("p"),
        args=ARGS.map(tuple),
        negated=st.just(False),
        scope=st.sampled_from(SCOPES),
        priority=st.sampled_from([0.0, 0.5]),
    ),
    st.builds(
        ScopeForked,
        source=st.sampled_from(SCOPES),
        target=st.sampled_from(SCOPES),
        created_at=st.just(NOW),
    ),
    st.builds(ScopeDeleted, scope=st.sampled_from(SCOPES), facts=st.just(0), rules=st.just(0)),
    st.builds(
        RuleTaught,
        id=st.sampled_from(["r1", "r2"]),
        head=st.just({"predicate": "r", "args": ["?x"], "negated": False, "naf": False}),
        body=st.just(({"predicate": "p", "args": ["?x"], "negated": False, "naf": False},)),
        created_at=st.just(NOW),
    ),
    st.builds(  # uses of stored facts and of facts not stored (ignored)
        FactsUsed,
        facts=st.lists(
            st.tuples(
                st.sampled_from(SCOPES),
                st.sampled_from(["p", "q"]),
                st.booleans(),
                ARGS.map(tuple),
                st.integers(1, 3),
                st.integers(NOW - 100, NOW + 300),
            ),
            min_size=1,
            max_size=3,
        ).map(tuple),
    ),
    st.builds(TenantCreated, created_at=st.just(NOW)),
    st.builds(TenantDeleted, facts=st.just(0), rules=st.just(0)),
)


def possible(history: list[tuple[Event, bool]]) -> list[tuple[Event, bool]]:
    """The history without what no decision would log: a fork into a scope holding
    facts or scoped rules, or into itself (the fork decision refuses these)."""
    state = TenantState("t")
    kept = []
    for event, versionless in history:
        if isinstance(event, ScopeForked) and (
            event.source == event.target
            or state.facts.get(event.target)
            or any(r.scope == event.target for r in state.rules)
        ):
            continue
        apply(state, len(kept) + 1, event)
        kept.append((event, versionless))
    return kept


def logged(history: list[tuple[Event, bool]]) -> list[LogRecord]:
    """The events as the log returns them; some bodies without ``_v`` (an old writer)."""
    records = []
    for seq, (event, versionless) in enumerate(possible(history), start=1):
        body = CODEC.encode(event)
        if versionless:
            fields = orjson.loads(body)
            del fields["_v"]
            body = orjson.dumps(fields)
        records.append(LogRecord(seq, NOW, "t", event.kind, body))
    return records


def observe(state: TenantState, now: int) -> tuple[Any, ...]:
    state.refresh(now)
    visible = sorted(repr(r) for r in state.iter_visible())
    indexed = sorted(
        (scope, sorted(map(repr, view.index.facts()))) for scope, view in state.views.items()
    )
    return (
        snapshot_format.encode(state),
        visible,
        indexed,
        sorted(repr(p) for p in state.priorities.items()),
        sorted(repr(u) for u in state.uses.items()),
        state.last_seq,
        state.created_at,
    )


@settings(max_examples=200, deadline=None)
@given(
    history=st.lists(st.tuples(events, st.booleans()), min_size=4, max_size=40),
    skipped=st.sets(st.integers(0, 40), max_size=20),
    later=st.integers(0, 300),
)
def test_fast_fold_equals_applying_each_event(
    history: list[tuple[Event, bool]], skipped: set[int], later: int
) -> None:
    records = logged(history)

    fast = TenantState("t")
    count, shredded, seq = fold(records, lambda _: fast)
    assert (count, shredded, seq) == (len(records), 0, len(records))

    slow = TenantState("t")
    for record in records:
        assert record.body is not None
        apply(slow, record.seq, CODEC.decode(record.kind, record.body))
        # a live server settles before every decision: one key at a time, mostly
        if record.seq not in skipped:
            slow.refresh(NOW + record.seq)

    for now in (NOW + 50, NOW + 50 + later):
        assert observe(fast, now) == observe(slow, now)
