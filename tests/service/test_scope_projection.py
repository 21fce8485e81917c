"""The tenant projection under forks, merges and deletes, against a naive model (issue 5).

Random sequences of tells, retracts, forks, merges, deletes and clock ticks run on a
``TenantState`` (live: refreshed before every decision, as the service does) and on a
plain dict-of-dicts model. After every step each scope's stored facts and visible index
must match the model; at the end a replay of the same events (no refresh in between,
as at start-up) must give the same state. This is what keeps the copy-on-write sharing
honest: a write on one side of a fork must never show on the other.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from nocturnus.service.codec import CODEC
from nocturnus.service.events import (
    Event,
    FactRetracted,
    FactTold,
    ScopeDeleted,
    ScopeForked,
)
from nocturnus.service.facts import FactKey
from nocturnus.service.projection import TenantState, apply
from nocturnus.service.scopes import decide_merge

SCOPES = ["main", "a", "b"]
Slot = tuple[str, bool, tuple[Any, ...]]  # predicate, negated, args
Attrs = tuple[
    int, int, int | None, int | None, float | None
]  # created, from, until, ttl, conf

slots = st.tuples(
    st.sampled_from(["p", "q"]),
    st.booleans(),
    st.tuples(st.sampled_from(["x", "y", "z", 1])),
)


def tells_in(scopes: list[str]) -> st.SearchStrategy[tuple[Any, ...]]:
    return st.tuples(
        st.just("tell"),
        st.sampled_from(scopes),
        slots,
        st.integers(0, 5),  # validFrom delay
        st.one_of(st.none(), st.integers(1, 8)),  # ttl
        st.one_of(st.none(), st.sampled_from([0.5, 0.9])),
    )


tells = tells_in(SCOPES)
ops = st.one_of(
    tells,
    tells,
    st.tuples(st.just("forget"), st.sampled_from(SCOPES), slots),
    st.tuples(
        st.just("fork"), st.sampled_from(SCOPES), st.sampled_from(SCOPES), st.booleans()
    ),
    st.tuples(
        st.just("fork"), st.just("main"), st.sampled_from(["a", "b"]), st.booleans()
    ),
    st.tuples(
        st.just("merge"),
        st.sampled_from(SCOPES),
        st.sampled_from(SCOPES),
        st.sampled_from(["SOURCE_WINS", "TARGET_WINS", "KEEP_BOTH"]),
    ),
    st.tuples(st.just("delete"), st.sampled_from(SCOPES)),
    st.tuples(st.just("tick"), st.integers(1, 6)),
)


def visible(attrs: Attrs, now: int) -> bool:
    created, valid_from, until, ttl, _ = attrs
    ends = [t for t in (until, None if ttl is None else created + ttl) if t is not None]
    return valid_from <= now and (not ends or now < min(ends))


class Model:
    def __init__(self) -> None:
        self.scopes: dict[str, dict[Slot, Attrs]] = {}

    def visible(self, scope: str, now: int) -> set[Slot]:
        return {s for s, a in self.scopes.get(scope, {}).items() if visible(a, now)}

    def merge(self, source: str, target: str, strategy: str, now: int) -> int:
        src, tgt = self.visible(source, now), self.visible(target, now)
        told, dropped = [], []
        for slot in src - tgt:
            opposite = (slot[0], not slot[1], slot[2])
            if opposite in tgt and opposite not in src:
                if strategy == "SOURCE_WINS":
                    told.append(slot)
                    dropped.append(opposite)
                elif strategy == "KEEP_BOTH":
                    told.append(slot)
            else:
                told.append(slot)
        into = self.scopes.setdefault(target, {})
        for slot in dropped:
            del into[slot]
        for slot in told:
            into[slot] = self.scopes[source][slot]
        return len(told)


def observed(
    state: TenantState,
) -> tuple[dict[str, dict[Slot, Attrs]], dict[str, set[Slot]]]:
    stored = {
        scope: {
            (k.predicate, k.negated, k.args): (
                r.created_at,
                r.valid_from,
                r.valid_until,
                r.ttl,
                r.confidence,
            )
            for k, r in facts.items()
        }
        for scope, facts in state.facts.items()
    }
    for scope, facts in state.facts.items():
        assert all(r.key.scope == scope and k.scope == scope for k, r in facts.items())
        assert len(facts) == len(stored[scope])
    indexed = {
        scope: {(p, n, args) for p, n, args, _ in view.index.facts()}
        for scope, view in state.views.items()
    }
    return stored, {s: f for s, f in indexed.items() if f}


def expected(
    model: Model, now: int
) -> tuple[dict[str, dict[Slot, Attrs]], dict[str, set[Slot]]]:
    stored = {s: dict(f) for s, f in model.scopes.items() if f}
    shown = {s: model.visible(s, now) for s in stored}
    return stored, {s: f for s, f in shown.items() if f}


@settings(max_examples=200, deadline=None)
@given(
    st.lists(tells_in(["main"]), min_size=1, max_size=8),
    st.booleans(),
    st.lists(ops, min_size=1, max_size=30),
)
def test_projection_matches_model_and_replays(
    setup: list[tuple[Any, ...]], settle_first: bool, more: list[tuple[Any, ...]]
) -> None:
    steps = [*setup, ("fork", "main", "a", settle_first), *more]
    state, model, log = TenantState("t"), Model(), []
    now = 100

    def commit(events: list[Event]) -> None:
        for event in events:
            event = CODEC.decode(event.kind, CODEC.encode(event))  # what replay reads
            log.append(event)
            apply(state, len(log), event)

    for step in steps:
        kind = step[0]
        if kind == "tick":
            now += step[1]
        elif kind == "tell":
            _, scope, (pred, neg, args), delay, ttl, conf = step
            attrs: Attrs = (now, now + delay, None, ttl, conf)
            commit(
                [FactTold(pred, args, neg, scope, now, now + delay, None, ttl, conf)]
            )
            model.scopes.setdefault(scope, {})[(pred, neg, args)] = attrs
        elif kind == "forget":
            _, scope, (pred, neg, args) = step
            if model.scopes.get(scope, {}).pop((pred, neg, args), None) is not None:
                commit([FactRetracted(pred, args, neg, scope)])
        elif kind == "fork":
            _, source, target, settle_first = step
            if source == target or model.scopes.get(target):
                continue
            if settle_first:
                state.refresh(now)
            commit([ScopeForked(source, target, now)])
            model.scopes[target] = dict(model.scopes.get(source, {}))
        elif kind == "merge":
            _, source, target, strategy = step
            if source == target:
                continue
            state.refresh(now)
            events, outcome = decide_merge(state, source, target, strategy, now)
            commit(events)
            assert outcome.merged == model.merge(source, target, strategy, now)
        elif kind == "delete":
            _, scope = step
            if model.scopes.pop(scope, None):
                commit([ScopeDeleted(scope, 0, 0)])
        state.refresh(now)
        assert observed(state) == expected(model, now)

    replayed = TenantState("t")
    for seq, event in enumerate(log, 1):
        apply(replayed, seq, event)
    for later in (now, now + 20):
        replayed.refresh(later)
        state.refresh(later)
        assert observed(replayed) == observed(state) == expected(model, later)


def test_fork_shares_until_written_and_never_leaks() -> None:
    state = TenantState("t")
    for i in range(1000):
        apply(state, i + 1, FactTold("edge", (i, i + 1), False, "main", 0, 0))
    state.refresh(1)
    apply(state, 1001, ScopeForked("main", "fork", 1))
    main, fork = state.facts["main"], state.facts["fork"]
    assert main.shares(("edge", False, 2), fork)
    assert state.views["main"].index.relation(("edge", False, 2)) is state.views[
        "fork"
    ].index.relation(("edge", False, 2))
    assert state.record(FactKey("fork", "edge", False, (5, 6))).key.scope == "fork"

    apply(state, 1002, FactRetracted("edge", (5, 6), False, "fork"))
    apply(state, 1003, FactTold("edge", (9, 9), False, "main", 2, 2))
    state.refresh(2)
    assert FactKey("main", "edge", False, (5, 6)) in state.facts["main"]
    assert FactKey("fork", "edge", False, (5, 6)) not in state.facts["fork"]
    assert FactKey("fork", "edge", False, (9, 9)) not in state.facts["fork"]
    assert len(state.facts["main"]) == 1001 and len(state.facts["fork"]) == 999
    assert state.views["fork"].index.contains("edge", False, (9, 9)) is False
    assert state.views["main"].index.contains("edge", False, (5, 6)) is True


def test_a_timed_fact_changes_in_both_scopes_after_a_fork() -> None:
    state = TenantState("t")
    apply(
        state, 1, FactTold("promo", ("x",), False, "main", 0, 10, None, 20)
    )  # visible 10..20
    state.refresh(5)  # settled: the timeline holds main's entry for t=10
    apply(state, 2, ScopeForked("main", "h", 5))
    apply(state, 3, ScopeForked("h", "h2", 5))
    for now, shown in ((9, False), (10, True), (19, True), (20, False)):
        state.refresh(now)
        for scope in ("main", "h", "h2"):
            found = state.visible(FactKey(scope, "promo", False, ("x",)))
            assert (found is not None) == shown, (scope, now)


def test_visibility_changes_at_the_same_instant_for_args_of_mixed_types() -> None:
    # regression (found by the model test above, issue 5): the timeline compared the
    # FactKeys of two changes due at the same ms, and ("x",) < (1,) raises TypeError
    state = TenantState("t")
    apply(state, 1, FactTold("q", ("x",), False, "main", 0, 10))
    apply(state, 2, FactTold("q", (1,), False, "main", 0, 10))
    state.refresh(0)
    state.refresh(10)
    assert len(state.views["main"].index) == 2
