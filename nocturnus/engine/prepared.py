"""Prepared plans: what answering a goal needs that only the rules decide, kept.

A question's facts change with every write, its rules seldom. What depends on the
rules alone is prepared once and kept across writes:

- the program's rules lowered to interned form (``lowered``), which a fact index's
  evaluation cache would otherwise rebuild after every write;
- for a bound goal, per goal relation and adornment, a :class:`PreparedGoal`: the
  magic-set rewrite with the bound values left as placeholders (:func:`placeholders`)
  and its :mod:`~nocturnus.engine.schedule` (the components in order, the strategy
  chosen for each, and the general joins' compiled code). A question fills the
  placeholders with its values as it runs the schedule, so ``anc(n1, ?y)`` and
  ``anc(n2, ?y)`` share one plan and compile nothing.

Each plan is keyed by the program's content (:attr:`Program.key
<nocturnus.engine.evaluate.Program.key>`), so it is reused exactly while the rule set
is the same one: teaching, removing, forking or deleting rules gives another key and
the old plans are never served again (they age out of the cache). The rewrite also
reads a few facts about the data (whether a derived relation has stored facts,
which relations are complete, whether confidences are tracked); those are part of the
key too. What is decided per evaluation, as without a plan: each join's order (it
follows relation sizes; the plan compiles each order once) and the budget the
evaluation runs under.

Plans live in a :class:`PlanCache`, bounded in total and per owner (a tenant), least
recently used first out.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any

from nocturnus.engine.ir import IRule
from nocturnus.engine.magic import MagicProgram
from nocturnus.engine.schedule import Stage
from nocturnus.engine.table import Row
from nocturnus.engine.terms import Interner


class PlanCache:
    """Prepared plans of many owners, bounded in total and per owner (LRU).

    ``hits`` and ``misses`` count lookups, ``compilations`` the join functions
    compiled for plans held here, for tests and metrics. Thread-safe: the service
    evaluates questions of several tenants at once in worker threads, and an LRU
    reorders itself on every lookup.
    """

    def __init__(self, max_plans: int = 4096, max_per_owner: int = 256) -> None:
        if max_plans < 1 or max_per_owner < 1:
            raise ValueError("a plan cache holds at least one plan")
        self.max_plans = max_plans
        self.max_per_owner = max_per_owner
        self._plans: OrderedDict[tuple[Hashable, Hashable], Any] = OrderedDict()
        self._owned: dict[Hashable, OrderedDict[Hashable, None]] = {}
        self.hits = 0
        self.misses = 0
        self.compilations = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._plans)

    def owned(self, owner: Hashable) -> int:
        """How many plans ``owner`` holds."""
        return len(self._owned.get(owner, ()))

    def of(self, owner: Hashable) -> Plans:
        """The view of this cache one owner's questions use."""
        return Plans(self, owner)

    def get(self, owner: Hashable, key: Hashable) -> Any:
        with self._lock:
            found = self._plans.get((owner, key))
            if found is None:
                self.misses += 1
                return None
            self.hits += 1
            self._plans.move_to_end((owner, key))
            self._owned[owner].move_to_end(key)
            return found

    def put(self, owner: Hashable, key: Hashable, plan: Any) -> None:
        """Keep ``plan``; the owner's, then everyone's, least recently used go first."""
        with self._lock:
            self._put(owner, key, plan)

    def _put(self, owner: Hashable, key: Hashable, plan: Any) -> None:
        owned = self._owned.setdefault(owner, OrderedDict())
        self._plans[(owner, key)] = plan
        self._plans.move_to_end((owner, key))
        owned[key] = None
        owned.move_to_end(key)
        while len(owned) > self.max_per_owner:
            oldest, _ = owned.popitem(last=False)
            del self._plans[(owner, oldest)]
        while len(self._plans) > self.max_plans:
            (evicted_owner, evicted), _ = self._plans.popitem(last=False)
            held = self._owned[evicted_owner]
            del held[evicted]
            if not held:
                del self._owned[evicted_owner]

    def count_compilations(self, count: int) -> None:
        """Add ``count`` join functions compiled for plans held here."""
        with self._lock:
            self.compilations += count

    def drop(self, owner: Hashable) -> None:
        """Forget every plan of ``owner`` (a deleted tenant)."""
        with self._lock:
            for key in self._owned.pop(owner, {}):
                del self._plans[(owner, key)]


@dataclass(frozen=True, slots=True)
class Plans:
    """One owner's plans in a :class:`PlanCache` (what a reasoner is handed)."""

    cache: PlanCache
    owner: Hashable

    def get(self, key: Hashable) -> Any:
        return self.cache.get(self.owner, key)

    def put(self, key: Hashable, plan: Any) -> None:
        self.cache.put(self.owner, key, plan)

    def compiled(self, count: int) -> None:
        """Record ``count`` join functions compiled for this owner's plans."""
        if count:
            self.cache.count_compilations(count)


@dataclass(frozen=True, slots=True)
class PreparedGoal:
    """The plan of a goal relation and adornment, for any of the goal's values.

    ``program`` is the rewrite with placeholders where the values go; ``stages``
    its schedule, made with the seed row of placeholders (``shape``). Made over one
    interner, since the rules' constants are its ids.
    """

    interner: Interner
    program: MagicProgram
    shape: Row
    stages: tuple[Stage, ...]

    def filled(self, values: Row) -> dict[int, int]:
        """Each placeholder of the plan mapped to the question's value."""
        return {p: v for p, v in zip(self.shape, values, strict=True) if p < 0}


def placeholders(values: Row, constants: frozenset[int]) -> Row:
    """The bound values as a rewrite template sees them.

    A value equal to a constant of the rules stays itself (the rewrite may keep or
    drop rules by comparing them); any other becomes a placeholder, a negative
    number no interned id can be, the same one for equal values.
    """
    shape: list[int] = []
    for value in values:
        if value in constants:
            shape.append(value)
        else:
            shape.append(-1 - values.index(value))
    return tuple(shape)


def rule_constants(rules: Mapping[Any, list[IRule]]) -> frozenset[int]:
    """Every constant id the lowered rules mention."""
    found: set[int] = set()
    for group in rules.values():
        for rule in group:
            found.update(a for a in rule.head_args if type(a) is int)
            for step in rule.body:
                found.update(a for a in step.args if type(a) is int)
    return frozenset(found)
