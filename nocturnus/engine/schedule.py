"""How a rule list is evaluated: its components in order, each with its plan.

Everything here is decided by the rules and the shape of the rows the evaluation
starts from, never by the data the rules read: the strongly connected components of
the rules' dependency graph, dependencies first (which also respects NAF strata);
for each, the plan of the first strategy that accepts it
(:func:`~nocturnus.engine.strategies.choose`); and the general joins' compiled code,
kept per rule version and join order as evaluations ask for them. So a schedule made
once can serve every later evaluation of the same rules: a prepared plan
(:mod:`nocturnus.engine.prepared`) keeps one per goal relation and adornment.

Join orders are the exception: they follow the sizes of the relations a rule reads,
so each evaluation chooses them again (:func:`~nocturnus.engine.joins.order_body`),
and a :class:`Stage` compiles each order once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from nocturnus.engine.analysis import strongly_connected_components
from nocturnus.engine.ir import COMPARE, IRule, RelKey
from nocturnus.engine.joins import CompiledRule
from nocturnus.engine.plan import Component, Plan, Version
from nocturnus.engine.strategies import choose
from nocturnus.engine.table import Row


@dataclass(slots=True)
class Stage:
    """One component of a schedule, its plan, and the join code compiled for it.

    ``plan`` is None for a component without rules (its members keep their initial
    rows). ``exits`` and ``versions`` are the component's, computed once. ``joins`` maps
    (slot, join order) to compiled code, where a slot numbers the exit rules, then
    the recursive versions; it only grows, and only with code for this component's
    rules, so concurrent evaluations may share a stage.
    """

    component: Component
    plan: Plan | None
    exits: tuple[IRule, ...]
    versions: tuple[Version, ...]
    joins: dict[tuple[int, tuple[int, ...]], CompiledRule] = field(default_factory=dict)


def schedule(
    rules: Iterable[IRule],
    initial: Mapping[RelKey, Mapping[Row, Any]],
    *,
    weighted: bool,
    ranked: bool,
) -> tuple[Stage, ...]:
    """The stages evaluating ``rules`` with heads starting from ``initial`` rows.

    A strategy may read the initial rows to accept a component (stored facts of a
    closure's relation, a seed's constants), so a schedule serves later evaluations
    whose initial rows look the same to the strategies: the rows of a magic-set seed
    with the goal's values as placeholders do (:func:`prepared.placeholders
    <nocturnus.engine.prepared.placeholders>`).
    """
    by_head: dict[RelKey, list[IRule]] = {}
    for rule in rules:
        by_head.setdefault(rule.head, []).append(rule)
    for rel in initial:
        by_head.setdefault(rel, [])
    graph = {
        head: [
            s.rel
            for r in group
            for s in r.body
            if s.rel in by_head and s.kind != COMPARE
        ]
        for head, group in by_head.items()
    }
    stages: list[Stage] = []
    for members in strongly_connected_components(graph):
        component = Component(
            frozenset(members),
            tuple(r for rel in members for r in by_head[rel]),
            {rel: initial[rel] for rel in members if rel in initial},
            weighted,
            ranked,
        )
        plan = choose(component) if component.rules else None
        stages.append(Stage(component, plan, component.exits, component.versions))
    return tuple(stages)
