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

Uses: an ``/ask`` uses the stored facts it answers with and those its proofs rest on;
a goal-driven window uses the facts of its goal proofs; a salient query uses the facts
it returns. A window that merely lists a fact does not use it (else a fact shown once
would outrank every newer fact in every later window). A process notes its uses and
logs them as ``facts_used`` events (``uses.py``: with the tenant's next write, after
``uses_flush_ms``, or at shutdown); the counts the score reads are the projection's
(``TenantState.uses``), those of the log up to the tenant's position. So every process,
and a restarted one, ranks the same knowledge the same way, and within one log position
the ranking is fixed: it is computed once and cached.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Iterable, Iterator
from typing import Any, cast

from nocturnus.engine.proofs import Proof
from nocturnus.service.events import Scalar
from nocturnus.service.facts import FactKey, FactRecord
from nocturnus.service.projection import TenantState
from nocturnus.service.queries import fact_order

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
    salience: float = base ** (2.0 * (1.0 - priority))  # base > 0: a real power
    return round(min(1.0, salience), DIGITS)


def proof_facts(proof: Proof, scope: str) -> list[FactKey]:
    """The stored facts a proof rests on (its ``fact`` leaves): an ``/ask`` uses them."""
    found = []
    stack = [proof]
    while stack:
        node = stack.pop()
        if node.type == "fact":
            goal = node.goal
            # a fact leaf's goal is ground: its args are constants, a FactKey's args
            args = cast(tuple[Scalar, ...], goal.args)
            found.append(FactKey(scope, goal.predicate, goal.negated, args))
        stack.extend(node.children)
    return found


RankedRow = tuple[float, int, tuple[Any, ...], FactKey]
"""A ranked fact: (-salience, -createdAt, predicate/args sort key, key); rows sort
most salient first, ties to the newer fact, then by the sort key — a total order."""


def knowledge_key(state: TenantState) -> tuple[Any, ...]:
    """Changes whenever the tenant's visible knowledge or its ranking may have changed.

    The log position covers every event (facts, rules, priorities, uses); each scope
    index's version covers visibility changes without an event (TTL and validity
    expiry).
    """
    versions = tuple(
        sorted((name, view.index.version) for name, view in state.views.items())
    )
    return (state.last_seq, versions)


class Ranking:
    """Every visible fact of a tenant, per scope, in salience order, kept incrementally.

    Facts without logged uses and without an explicit priority ("plain" facts) score
    ``0.7 * recency``, which only depends on ``createdAt``: their order never changes
    when the reference time moves, so they stay in one sorted list per scope, patched
    for the keys the projection reports as changed (``TenantState.changed``). Only the
    few facts with uses or a priority are re-scored when the knowledge changes. A
    window then merges the two and scores just the facts it emits, so its cost does not
    grow with the tenant's size.
    """

    def __init__(self, half_life_ms: int) -> None:
        self.half_life_ms = half_life_ms
        self.generation: Any = None
        self.ref_ms = 0
        self._plain: dict[str, list[tuple[int, tuple[Any, ...], FactKey]]] = {}
        self._placed: dict[FactKey, tuple[int, tuple[Any, ...], FactKey]] = {}
        self._special: dict[FactKey, FactRecord] = {}
        self._scored: dict[str, list[RankedRow]] = {}
        self._counts: dict[str, dict[str, int]] = {}
        self._versions: dict[str, int] = {}
        self._conflicts: dict[str, set[FactKey]] = {}
        self._orders: dict[FactKey, tuple[Any, ...]] = {}

    # -- keeping up with the projection --------------------------------------------

    def sync(self, state: TenantState) -> None:
        """Bring the ranking in line with ``state`` (refreshed), uses included."""
        changed = state.changed
        state.changed = set()
        if changed is None or len(changed) > max(4096, state.fact_count() // 2):
            self._rebuild_all(state)
        else:
            keys = changed
            per_scope: dict[str, int] = {}
            for key in keys:
                per_scope[key.scope] = per_scope.get(key.scope, 0) + 1
            stale = []
            for name, view in state.views.items():
                known = self._versions.get(name)
                # every index change passes through _settle_scope (one journal entry each);
                # anything else (e.g. a scope copied wholesale) means: rebuild the scope
                if known is None or view.index.version - known > per_scope.get(name, 0):
                    stale.append(name)
            for name in [n for n in self._versions if n not in state.views]:
                self._drop_scope(name)
            for name in stale:
                self._drop_scope(name)
            stale_set = set(stale)
            for key in keys:
                if key.scope not in stale_set:
                    self._remove(key)
                    self._place(state, key)
            for name in stale:
                self._build_scope(state, name)
            for name, view in state.views.items():
                self._versions[name] = view.index.version
        self._score_special(state)

    def _rebuild_all(self, state: TenantState) -> None:
        for name in list(self._versions):
            self._drop_scope(name)
        if len(self._orders) > 2 * state.fact_count() + 1024:
            self._orders.clear()
        for name in state.views:
            self._build_scope(state, name)

    def _drop_scope(self, name: str) -> None:
        for row in self._plain.pop(name, ()):
            del self._placed[row[2]]
        for key in [k for k in self._special if k.scope == name]:
            del self._special[key]
        self._counts.pop(name, None)
        self._conflicts.pop(name, None)
        self._versions.pop(name, None)

    def _build_scope(self, state: TenantState, name: str) -> None:
        view = state.views.get(name)
        if view is None:
            return
        rows = []
        counts: dict[str, int] = {}
        special = self._special
        counted, priorities = state.uses, state.priorities
        for record in state.iter_visible(name):
            key = record.key
            counts[key.predicate] = counts.get(key.predicate, 0) + 1
            if key in counted or key in priorities:
                special[key] = record
                continue
            row = (-record.created_at, self._order(key), key)
            rows.append(row)
            self._placed[key] = row
        rows.sort()
        self._plain[name] = rows
        self._counts[name] = counts
        self._conflicts[name] = {
            pos for pos, _neg in _contradictions_in(name, view.index)
        }
        self._versions[name] = view.index.version

    def _order(self, key: FactKey) -> tuple[Any, ...]:
        order = self._orders.get(key)
        if order is None:
            order = self._orders[key] = fact_order(key)
        return order

    def _remove(self, key: FactKey) -> None:
        row = self._placed.pop(key, None)
        if row is not None:
            rows = self._plain[key.scope]
            del rows[bisect.bisect_left(rows, row)]
        elif self._special.pop(key, None) is None:
            return
        counts = self._counts[key.scope]
        counts[key.predicate] -= 1
        if not counts[key.predicate]:
            del counts[key.predicate]

    def _place(self, state: TenantState, key: FactKey) -> None:
        positive = key._replace(negated=False)
        conflicts = self._conflicts.setdefault(key.scope, set())
        if (
            state.visible(positive) is not None
            and state.visible(positive.opposite()) is not None
        ):
            conflicts.add(positive)
        else:
            conflicts.discard(positive)
        record = state.visible(key)
        if record is None:
            return
        counts = self._counts.setdefault(key.scope, {})
        counts[key.predicate] = counts.get(key.predicate, 0) + 1
        if key in state.uses or key in state.priorities:
            self._special[key] = record
            return
        row = (-record.created_at, self._order(key), key)
        bisect.insort(self._plain.setdefault(key.scope, []), row)
        self._placed[key] = row

    def _score_special(self, state: TenantState) -> None:
        ref = 0
        for rows in self._plain.values():
            if rows:
                ref = max(ref, -rows[0][0])
        for record in self._special.values():
            ref = max(ref, record.created_at)
        self.ref_ms = ref
        scored: dict[str, list[RankedRow]] = {}
        for key, record in self._special.items():
            value = self.score(key, record, state)
            scored.setdefault(key.scope, []).append(
                (-value, -record.created_at, self._order(key), key)
            )
        for special_rows in scored.values():
            special_rows.sort()
        self._scored = scored

    # -- reading ---------------------------------------------------------------------

    def score(self, key: FactKey, record: FactRecord, state: TenantState) -> float:
        """The salience of one visible fact of ``state`` now (module docstring)."""
        touched = record.created_at
        uses, used = state.uses.get(key, (0, 0))
        touched = max(touched, used)
        priority = state.priorities.get(key, DEFAULT_PRIORITY)
        return score(self.ref_ms - touched, uses, priority, self.half_life_ms)

    def _plain_rows(self, name: str) -> Iterator[RankedRow]:
        ref, half = self.ref_ms, self.half_life_ms
        weight, digits = RECENCY_WEIGHT, DIGITS
        for neg_created, order, key in self._plain.get(name, ()):
            age = ref + neg_created
            value = round(weight * 0.5 ** (age / half), digits) if age > 0 else weight
            yield (-value, neg_created, order, key)

    def rows(self, scope: str | None) -> Iterator[RankedRow]:
        """Visible facts of one scope, or of all scopes merged, most salient first."""
        names = [scope] if scope is not None else sorted(self._counts)
        streams: list[Iterable[RankedRow]] = []
        for name in names:
            if self._plain.get(name):
                streams.append(self._plain_rows(name))
            if self._scored.get(name):
                streams.append(self._scored[name])
        if len(streams) == 1:
            return iter(streams[0])
        return heapq.merge(*streams)

    def count(self, scope: str | None, predicates: frozenset[str] | None = None) -> int:
        """Visible facts of a scope (None: all), of ``predicates`` if given."""
        names = [scope] if scope is not None else list(self._counts)
        total = 0
        for name in names:
            counts = self._counts.get(name, {})
            if predicates is None:
                total += sum(counts.values())
            else:
                total += sum(counts.get(p, 0) for p in predicates)
        return total

    def predicate_counts(self, scope: str | None) -> dict[str, int]:
        """Visible facts per predicate, in one scope or all."""
        names = [scope] if scope is not None else list(self._counts)
        merged: dict[str, int] = {}
        for name in names:
            for predicate, n in self._counts.get(name, {}).items():
                merged[predicate] = merged.get(predicate, 0) + n
        return merged

    def contradictions(self, scope: str | None) -> list[FactKey]:
        """Positive keys whose negation is visible in the same scope, sorted."""
        names = [scope] if scope is not None else sorted(self._conflicts)
        found = [k for name in names for k in self._conflicts.get(name, ())]
        found.sort(key=self._order)
        return found


def _contradictions_in(scope: str, index: Any) -> list[tuple[FactKey, FactKey]]:
    """The (positive, negated) pairs of one scope index that are both present."""
    pairs = []
    decode = index.interner.decode
    for predicate, negated, arity, _count in index.relations():
        if not negated:
            continue
        positive = index.relation((predicate, False, arity))
        if positive is None:
            continue
        for row in index.relation((predicate, True, arity)).rows:
            if row in positive.rows:
                negative = FactKey(scope, predicate, True, decode(row))
                pairs.append((negative.opposite(), negative))
    return pairs
