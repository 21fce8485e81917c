"""Context service internals (issue 6): the incremental ranking equals a naive one,
the salience formula and text formats behave as documented."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from nocturnus.service.context.window import (
    ContextConfig,
    WindowRequest,
    build_window,
)
from nocturnus.service.events import (
    Event,
    FactRetracted,
    FactsUsed,
    FactTold,
    PrioritySet,
)
from nocturnus.service.facts import FactKey
from nocturnus.service.formats import sentence
from nocturnus.service.projection import TenantState, apply
from nocturnus.service.queries import fact_order
from nocturnus.service.readmodels import TenantReadModel
from nocturnus.service.rulebook import Rulebook
from nocturnus.service.salience import score

T0 = 1_800_000_000_000
HALF_LIFE = 60_000

op = st.one_of(
    st.tuples(
        st.just("tell"),
        st.sampled_from("pq"),
        st.integers(0, 6),
        st.booleans(),
        st.sampled_from(["main", "s2"]),
        st.one_of(st.none(), st.integers(1, 30_000)),
    ),
    st.tuples(
        st.just("forget"),
        st.sampled_from("pq"),
        st.integers(0, 6),
        st.booleans(),
        st.sampled_from(["main", "s2"]),
    ),
    st.tuples(
        st.just("priority"),
        st.sampled_from("pq"),
        st.integers(0, 6),
        st.sampled_from([0.0, 0.3, 0.5, 0.9, 1.0]),
    ),
    st.tuples(st.just("use"), st.sampled_from("pq"), st.integers(0, 6)),
    st.tuples(st.just("tick"), st.integers(1, 40_000)),
    st.tuples(st.just("window"), st.sampled_from([None, "main", "s2"])),
)


def naive(state: TenantState, scope: str | None) -> list[tuple[float, str]]:
    """Score every visible fact from scratch with the documented formula."""
    visible = list(state.iter_visible(scope))
    everything = list(state.iter_visible())
    ref = max((r.created_at for r in everything), default=0)
    rows = []
    for record in visible:
        key = record.key
        uses, last_used = state.uses.get(key, (0, 0))
        touched = max(record.created_at, last_used)
        value = score(
            ref - touched,
            uses,
            state.priorities.get(key, 0.5),
            HALF_LIFE,
        )
        rows.append((-value, -record.created_at, fact_order(key), key))
    rows.sort()
    return [(-r[0], repr(r[3])) for r in rows]


@settings(max_examples=150, deadline=None)
@given(st.lists(op, max_size=60))
def test_incremental_ranking_equals_naive(ops: list[tuple[Any, ...]]) -> None:
    state = TenantState("t")
    model = TenantReadModel()
    cfg = ContextConfig(half_life_ms=HALF_LIFE)
    now = T0
    seq = 0

    def log(event: Event) -> None:
        nonlocal seq
        seq += 1
        apply(state, seq, event)

    for item in ops:
        kind = item[0]
        now += 7
        if kind == "tell":
            _, pred, arg, neg, scope, ttl = item
            key = FactKey(scope, pred, neg, (arg,))
            old = state.record(key)
            created = old.created_at if old is not None else now
            log(
                FactTold(
                    predicate=pred,
                    args=(arg,),
                    negated=neg,
                    scope=scope,
                    created_at=created,
                    valid_from=created,
                    ttl=ttl,
                )
            )
        elif kind == "forget":
            _, pred, arg, neg, scope = item
            if state.record(FactKey(scope, pred, neg, (arg,))) is not None:
                log(
                    FactRetracted(predicate=pred, args=(arg,), negated=neg, scope=scope)
                )
        elif kind == "priority":
            _, pred, arg, value = item
            if state.record(FactKey("main", pred, False, (arg,))) is not None:
                log(
                    PrioritySet(
                        predicate=pred,
                        args=(arg,),
                        negated=False,
                        scope="main",
                        priority=value,
                    )
                )
        elif kind == "use":  # logged uses (issue 16); one of a fact not stored is ignored
            log(FactsUsed(facts=(("main", item[1], False, (item[2],), 1, now),)))
        elif kind == "tick":
            now += item[1]
        state.refresh(now)
        if kind == "window" or kind == "tick":
            scope = item[1] if kind == "window" else None
            window = build_window(
                state,
                model,
                Rulebook(),
                WindowRequest(scope=scope, max_facts=100, auto_resolve=False),
                cfg,
            )
            got = [(e.salience, repr(e.key)) for e in window.entries]
            want = naive(state, scope)
            if scope is None:  # duplicates across scopes are dropped from the window
                seen, deduped = set(), []
                for salience, key in want:
                    ident = key.split(",", 1)[1]
                    if ident not in seen:
                        seen.add(ident)
                        deduped.append((salience, key))
                want = deduped
            assert got == want
            assert window.total_available == len(list(state.iter_visible(scope)))


def test_salience_formula() -> None:
    assert score(0, 0, 0.5, HALF_LIFE) == 0.7
    assert score(HALF_LIFE, 0, 0.5, HALF_LIFE) == 0.35
    assert score(0, 99, 0.5, HALF_LIFE) == 1.0
    assert score(10 * HALF_LIFE, 0, 1.0, HALF_LIFE) == 1.0
    assert score(0, 0, 0.0, HALF_LIFE) == 0.49
    assert 0.0 <= score(10**12, 0, 0.0, HALF_LIFE) <= score(10**12, 0, 0.5, HALF_LIFE)


def test_sentences() -> None:
    def say(pred: str, *args: Any, negated: bool = False) -> str:
        return sentence(FactKey("main", pred, negated, args), None, False)

    assert (
        say("customer_tier", "acme", "enterprise")
        == "The customer tier of acme is enterprise."
    )
    assert say("likes", "alice", "bob") == "Alice likes bob."
    assert say("human", "socrates") == "Socrates is human."
    assert say("human", "zeus", negated=True) == "Zeus is not human."
    assert say("raining") == "Raining holds."
    assert say("ships", "o1", "box", 3) == "Ships holds for o1, box and 3."
    assert say("seatCount", "acme", 250) == "The seat count of acme is 250."


def test_same_knowledge_gives_the_same_window_without_any_cache() -> None:
    """Two projections replayed from the same events build equal windows (same id)."""
    events: list[Event] = []
    for i in range(40):
        events.append(FactTold(predicate=f"p{i % 3}", args=(f"a{i}", i), negated=False,
                               scope="main" if i % 4 else "s2", created_at=T0 + i * 1000,
                               valid_from=T0 + i * 1000, confidence=0.5 if i % 5 == 0 else None))
    events.append(PrioritySet(predicate="p1", args=("a1", 1), negated=False, scope="main", priority=0.9))
    events.append(FactRetracted(predicate="p2", args=("a2", 2), negated=False, scope="s2"))
    windows = []
    for _ in range(2):
        state = TenantState("t")
        model = TenantReadModel()
        for seq, event in enumerate(events, start=1):
            apply(state, seq, event)
        state.refresh(T0 + 100_000)
        for fmt in ("predicate", "natural", "structured"):
            req = WindowRequest(max_facts=10, fmt=fmt, predicates=frozenset({"p0", "p1"}))
            windows.append(build_window(state, model, Rulebook(), req, ContextConfig()))
    assert windows[:3] == windows[3:]
    assert len({w.window_id for w in windows}) == 3
    assert windows[0].entries[0].key == FactKey("main", "p1", False, ("a1", 1))
