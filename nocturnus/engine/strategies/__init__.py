"""Fixpoint strategies: specialised ways to evaluate one component, tried in order.

Each strategy is a module with one entry point, ``plan(component) -> Plan | None``,
whose docstring states exactly which components it accepts; it declines everything
else. :func:`choose` asks them in the order of :data:`STRATEGIES` and falls back to
the general semi-naive rounds (:class:`~.seminaive.SemiNaive`), which accept any
component. A strategy is only ever a faster way to the rows the general rounds
would derive: the differential tests hold every one of them to the naive oracle
and assert that random programs reach each (issue 13).

Order matters only where preconditions overlap: every closure is also a chain, and
the closure's direct algorithm is the faster of the two.
"""

from __future__ import annotations

from collections.abc import Callable

from nocturnus.engine.plan import Component, Plan
from nocturnus.engine.strategies import chains, closure, reach, seminaive, twins

Strategy = Callable[[Component], Plan | None]

STRATEGIES: tuple[tuple[str, Strategy], ...] = (
    (closure.NAME, closure.plan),
    (reach.NAME, reach.plan),
    (twins.NAME, twins.plan),
    (chains.NAME, chains.plan),
)
"""(name, plan) of every specialised strategy, in the order they are asked."""

FALLBACK = seminaive.NAME
"""The name of the general strategy's plans."""


def choose(component: Component) -> Plan:
    """The first strategy's plan for ``component``, else the general rounds."""
    for _, strategy in STRATEGIES:
        found = strategy(component)
        if found is not None:
            return found
    return seminaive.SemiNaive(component)
