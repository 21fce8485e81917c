"""Memory upkeep (issue 18): consolidate, decay and salient queries, as the original has them.

* **Consolidate** (``/memory/consolidate``, ``/memory/compress``): in each scope, every
  first argument that at least ``min_count`` visible facts of one predicate share gets a
  summary fact ``<predicate>_consolidated(<first>, "<count>")`` in that scope, marked
  ``metadata.source = "consolidation"``; a summary whose count changed is replaced, one
  whose group fell below ``min_count`` is retracted; the originals stay.
* **Decay** (``/memory/decay``, ``/memory/cleanup``): every stored fact that can never be
  visible again (``validUntil`` or ``createdAt + ttl`` passed) is removed
  (``fact_expired``); then, only while the tenant holds more than ``capacity`` facts,
  the least salient visible facts below ``threshold`` are removed (``fact_retracted``),
  at most the overflow, least salient first.
* **Salient query** (``/memory/query/salient``): the visible facts matching a pattern,
  most salient first, each counted as a use (as an ``/ask`` answer is).

Each change is an event decided by a pure function of the tenant's state, the request
and the ``now`` passed in (never the clock), so replay rebuilds exactly the same state.
Decay's eviction reads salience, which counts the uses logged up to the tenant's
position; what it decided is logged too, so replay rebuilds the same state.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from nocturnus.engine.terms import Const, Var
from nocturnus.service import queries
from nocturnus.service.context.window import ContextConfig, ranking_of
from nocturnus.service.database import Database, DatabaseState
from nocturnus.service.events import Event, FactExpired, FactRetracted, Scalar
from nocturnus.service.facts import FactKey, FactRecord, new_record
from nocturnus.service.projection import TenantState
from nocturnus.service.queries import fact_order
from nocturnus.service.retry import retried

Db = Database[DatabaseState]

SUMMARY_SUFFIX = "_consolidated"
SUMMARY_SOURCE = {"source": "consolidation"}
DEFAULT_MIN_COUNT = 5
DEFAULT_THRESHOLD = 0.05


@dataclass(frozen=True, slots=True)
class Consolidation:
    """What a consolidation told and retracted, and the instant it decided at."""
    told: tuple[FactRecord, ...]
    """New or updated summary facts."""
    retracted: tuple[FactRecord, ...]
    """Summaries whose group no longer qualifies."""
    now: int


def _is_summary(record: FactRecord) -> bool:
    return record.key.predicate.endswith(SUMMARY_SUFFIX) and (
        record.metadata.get("source") == SUMMARY_SOURCE["source"]
    )


def decide_consolidate(
    state: TenantState, scope: str | None, min_count: int, now: int
) -> tuple[list[Event], Consolidation]:
    """Summaries for the groups of ``scope`` (every scope when None); see the module.

    ``state`` is refreshed to ``now``. Summaries are told with ``createdAt = now``.
    """
    groups: dict[tuple[str, str], Counter[Scalar]] = {}
    existing: dict[tuple[str, str, Scalar], FactRecord] = {}
    for record in state.iter_visible(scope):
        key = record.key
        if _is_summary(record) and len(key.args) == 2:
            base = key.predicate.removesuffix(SUMMARY_SUFFIX)
            existing[(key.scope, base, key.args[0])] = record
            continue
        if key.negated or not key.args or key.predicate.endswith(SUMMARY_SUFFIX):
            continue
        groups.setdefault((key.scope, key.predicate), Counter())[key.args[0]] += 1
    told: list[FactRecord] = []
    events: list[Event] = []
    for (name, predicate), counts in groups.items():
        for first, count in counts.items():
            if count < min_count:
                continue
            old = existing.pop((name, predicate, first), None)
            if old is not None and old.key.args[1] == str(count):
                continue
            if old is not None:
                events.append(_retraction(old.key))
            # the count as a string: the original's SDK types every argument so
            key = FactKey(name, predicate + SUMMARY_SUFFIX, False, (first, str(count)))
            told.append(new_record(key, now, now, None, None, None, dict(SUMMARY_SOURCE)))
    stale = sorted(existing.values(), key=lambda r: fact_order(r.key))
    events.extend(_retraction(r.key) for r in stale)
    told.sort(key=lambda r: fact_order(r.key))
    events.extend(r.to_event() for r in told)
    return events, Consolidation(tuple(told), tuple(stale), now)


def _retraction(key: FactKey) -> FactRetracted:
    return FactRetracted(
        predicate=key.predicate, args=key.args, negated=key.negated, scope=key.scope
    )


@retried
async def consolidate(db: Db, tenant: str, scope: str | None, min_count: int) -> Consolidation:
    """Consolidate ``scope`` (every scope when None) now: one append, see the module."""
    state, now = await db.current(tenant)
    events, outcome = decide_consolidate(state, scope, min_count, now)
    await db.commit(tenant, events, now)
    return outcome


@dataclass(frozen=True, slots=True)
class Decay:
    """What a decay removed (expired, then evicted) and the instant it decided at."""
    expired: tuple[FactRecord, ...]
    evicted: tuple[FactRecord, ...]
    now: int


def decide_decay(
    state: TenantState,
    scope: str | None,
    ranking: list[tuple[float, FactKey]],
    capacity: int,
    threshold: float,
    now: int,
) -> tuple[list[Event], Decay]:
    """Expired facts of ``scope`` (every scope when None), then evictions; see the module.

    ``ranking`` is ``(salience, key)`` of the visible facts, most salient first (the
    context ranking's order, ties included); ``capacity`` counts the whole tenant.
    """
    names = state.scopes() if scope is None else [scope]
    expired: list[FactRecord] = []
    for name in names:
        for record in state.facts.get(name, {}).values():
            ends = record.expires_at
            if ends is not None and ends <= now:
                expired.append(record)
    expired.sort(key=lambda r: fact_order(r.key))
    overflow = state.fact_count() - len(expired) - capacity
    evicted: list[FactRecord] = []
    if overflow > 0:
        for salience, key in reversed(ranking):
            if len(evicted) >= overflow or salience >= threshold:
                break
            if scope is not None and key.scope != scope:
                continue
            victim = state.record(key)
            if victim is not None:
                evicted.append(victim)
    events: list[Event] = [
        FactExpired(predicate=k.predicate, args=k.args, negated=k.negated, scope=k.scope)
        for k in (r.key for r in expired)
    ]
    events.extend(_retraction(r.key) for r in evicted)
    return events, Decay(tuple(expired), tuple(evicted), now)


@retried
async def decay(
    db: Db,
    tenant: str,
    scope: str | None,
    capacity: int,
    threshold: float,
    cfg: ContextConfig,
) -> Decay:
    """Decay the tenant now (``scope``'s expired facts; evictions over ``capacity``)."""
    state, now = await db.current(tenant)
    ranking: list[tuple[float, FactKey]] = []
    if state.fact_count() > capacity:
        rows = ranking_of(state, db.read_models.of(state), cfg).rows(scope)
        ranking = [(-row[0], row[3]) for row in rows]
    events, outcome = decide_decay(state, scope, ranking, capacity, threshold, now)
    await db.commit(tenant, events, now)
    return outcome


async def salient(
    db: Db,
    tenant: str,
    predicate: str,
    negated: bool,
    pattern: tuple[Var | Const, ...],
    scope: str | None,
    *,
    limit: int,
    min_salience: float,
    cfg: ContextConfig,
) -> list[tuple[FactRecord, float]]:
    """Visible facts matching the pattern with their salience, most salient first.

    Ties go to the newer fact, then to the predicate/arguments order (the context
    window's order). The facts returned count as used (once logged: ``uses.py``).
    """
    state, now = await db.current(tenant)
    records = queries.match(state, predicate, negated, pattern, scope)
    ranking = ranking_of(state, db.read_models.of(state), cfg)
    scored = [(r, ranking.score(r.key, r, state)) for r in records]
    kept = [(r, s) for r, s in scored if s >= min_salience]
    kept.sort(key=lambda rs: (-rs[1], -rs[0].created_at, fact_order(rs[0].key)))
    kept = kept[:limit]
    db.record_uses(tenant, [r.key for r, _ in kept], now)
    return kept
