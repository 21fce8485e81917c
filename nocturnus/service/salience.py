"""Salience: how much a stored fact matters now, in [0, 1], and the ranking it gives.

The score (documented in the README, "Context for agents")::

    recency   = 0.5 ** (age_ms / half_life_ms)      age_ms = max(0, ref_ms - touched_ms)
    frequency = min(1, ln(1 + uses) / ln(100))
    base      = 0.7 * recency + 0.3 * frequency
    salience  = base ** (2 * (1 - priority))        priority defaults to 0.5

``ref_ms`` is the ``createdAt`` of the tenant's newest visible fact, not the wall clock,
and ``touched_ms`` is the later of the fact's ``createdAt`` and its last use. So the
score depends only on the knowledge, never on when the question is asked: two identical
requests give the same window byte for byte. A priority of 0.5 leaves ``base`` as it is,
1.0 pins the fact at salience 1 and 0 squares it.

Uses are counted in memory per tenant: an ``/ask`` uses the stored facts it answers with
and those its proofs rest on; a goal-driven window uses the facts of its goal proofs. A
window that merely lists a fact does not use it (else a fact shown once would outrank
every newer fact in every later window).
They are *pending* until the tenant's knowledge next changes (a write or an expiry);
only then are they folded into the counts the score reads. Within one knowledge
generation the ranking is therefore fixed, and it is computed once and cached.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from nocturnus.service.facts import FactKey, FactRecord
from nocturnus.service.queries import fact_order
from nocturnus.service.tenant import TenantState

DEFAULT_PRIORITY = 0.5
RECENCY_WEIGHT = 0.7
FREQUENCY_WEIGHT = 0.3
_LN_100 = math.log(100)
DIGITS = 4


def score(age_ms: int, uses: int, priority: float, half_life_ms: int) -> float:
    """The salience formula above, rounded to :data:`DIGITS` decimals."""
    recency = 0.5 ** (max(age_ms, 0) / half_life_ms)
    frequency = min(1.0, math.log1p(uses) / _LN_100)
    base = RECENCY_WEIGHT * recency + FREQUENCY_WEIGHT * frequency
    return round(min(1.0, base ** (2.0 * (1.0 - priority))), DIGITS)


@dataclass(slots=True)
class Usage:
    """Per-tenant use counts; pending uses count from the next knowledge change on."""

    counts: dict[FactKey, int] = field(default_factory=dict)
    last_used: dict[FactKey, int] = field(default_factory=dict)
    pending: dict[FactKey, int] = field(default_factory=dict)
    pending_last: dict[FactKey, int] = field(default_factory=dict)
    folded_at: Any = None
    epoch: int = 0

    def record(self, keys: Iterable[FactKey], now_ms: int) -> None:
        pending, last = self.pending, self.pending_last
        for key in keys:
            pending[key] = pending.get(key, 0) + 1
            last[key] = now_ms

    def settle(self, knowledge: Any, state: TenantState) -> None:
        """Fold pending uses in when the knowledge changed since the last fold."""
        if knowledge == self.folded_at:
            return
        self.folded_at = knowledge
        if not self.pending:
            return
        for key, n in self.pending.items():
            self.counts[key] = self.counts.get(key, 0) + n
        self.last_used.update(self.pending_last)
        self.pending.clear()
        self.pending_last.clear()
        self.epoch += 1
        if len(self.counts) > 2 * state.fact_count() + 1024:
            for key in [k for k in self.counts if state.record(k) is None]:
                del self.counts[key]
                self.last_used.pop(key, None)


@dataclass(frozen=True, slots=True)
class Ranked:
    """One visible fact with its salience; ties go to the newer fact, then to the
    predicate/args sort key, so the order is total and deterministic."""

    neg_salience: float
    order: tuple[Any, ...]
    record: FactRecord

    @property
    def salience(self) -> float:
        return -self.neg_salience

    def __lt__(self, other: Ranked) -> bool:
        return (self.neg_salience, self.order) < (other.neg_salience, other.order)


@dataclass(slots=True)
class Ranking:
    """Every visible fact of a tenant, per scope, most salient first.

    Built once per knowledge generation (see :func:`knowledge_key`); reading a window
    then walks the top of the lists instead of scoring every fact again.
    """

    key: Any
    ref_ms: int
    scopes: dict[str, list[Ranked]]
    salience: dict[FactKey, float]
    contradictions: dict[str, list[tuple[FactKey, FactKey]]]

    def iter(self, scope: str | None) -> Iterator[Ranked]:
        """Ranked facts of one scope, or of all scopes merged (still in rank order)."""
        if scope is not None:
            return iter(self.scopes.get(scope, ()))
        lists = [self.scopes[name] for name in sorted(self.scopes)]
        if len(lists) == 1:
            return iter(lists[0])
        return heapq.merge(*lists)

    def count(self, scope: str | None) -> int:
        if scope is not None:
            return len(self.scopes.get(scope, ()))
        return sum(len(v) for v in self.scopes.values())


def knowledge_key(state: TenantState) -> tuple[Any, ...]:
    """Changes whenever the tenant's visible knowledge may have changed.

    The log position covers every event (facts, rules, priorities); each scope index's
    version covers visibility changes without an event (TTL and validity expiry).
    """
    versions = tuple(sorted((name, view.index.version) for name, view in state.views.items()))
    return (state.last_seq, versions)


def rank(
    state: TenantState, usage: Usage, half_life_ms: int, orders: dict[FactKey, tuple[Any, ...]]
) -> tuple[int, dict[str, list[Ranked]], dict[FactKey, float]]:
    """Score every visible fact; ``orders`` caches tie-break keys across generations."""
    visible: dict[str, list[FactRecord]] = {}
    ref_ms = 0
    for scope in state.scopes():
        records = list(state.iter_visible(scope))
        if records:
            visible[scope] = records
            newest = max(r.created_at for r in records)
            ref_ms = max(ref_ms, newest)
    counts, last_used, priorities = usage.counts, usage.last_used, state.priorities
    pow_, log1p, digits = math.pow, math.log1p, DIGITS
    scopes: dict[str, list[Ranked]] = {}
    salience: dict[FactKey, float] = {}
    for scope, records in visible.items():
        ranked = []
        for record in records:
            key = record.key
            touched = record.created_at
            used = last_used.get(key)
            if used is not None and used > touched:
                touched = used
            age = ref_ms - touched
            recency = pow_(0.5, age / half_life_ms) if age > 0 else 1.0
            uses = counts.get(key, 0)
            frequency = min(1.0, log1p(uses) / _LN_100) if uses else 0.0
            base = RECENCY_WEIGHT * recency + FREQUENCY_WEIGHT * frequency
            priority = priorities.get(key, DEFAULT_PRIORITY)
            value = base if priority == DEFAULT_PRIORITY else pow_(base, 2.0 * (1.0 - priority))
            value = round(min(1.0, value), digits)
            order = orders.get(key)
            if order is None:
                order = orders[key] = fact_order(key)
            salience[key] = value
            ranked.append(Ranked(-value, (-record.created_at, order), record))
        ranked.sort(key=lambda r: (r.neg_salience, r.order))
        scopes[scope] = ranked
    return ref_ms, scopes, salience


def contradictions(state: TenantState) -> dict[str, list[tuple[FactKey, FactKey]]]:
    """Per scope, the (positive, negated) pairs of facts that are both visible."""
    found: dict[str, list[tuple[FactKey, FactKey]]] = {}
    for scope, view in state.views.items():
        index = view.index
        pairs = []
        for predicate, negated, arity, _count in index.relations():
            positive = index.relation((predicate, False, arity)) if negated else None
            if positive is None:
                continue
            rows = index.relation((predicate, True, arity)).rows  # type: ignore[union-attr]
            decode = index.interner.decode
            for row in rows:
                if row in positive.rows:
                    negative = FactKey(scope, predicate, True, decode(row))
                    pairs.append((negative.opposite(), negative))
        if pairs:
            pairs.sort(key=lambda p: fact_order(p[0]))
            found[scope] = pairs
    return found
