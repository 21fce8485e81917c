"""Transitive closure, computed over the condensation graph of its edge relation.

Left-, right- and non-linear recursion over one edge relation all define the same
relation, the transitive closure ``t = e+``. Semi-naive evaluation still needs one
round per path length (800 rounds on a 20 000-node random tree) and touches every
(source, round) pair in Python. Computed directly instead, each node's reachable set
is the union of its successors' sets, visited in reverse topological order of the
strongly connected components: Python work per node and edge, and the millions of
reachable pairs are produced by C-level set unions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from nocturnus.engine.analysis import strongly_connected_components
from nocturnus.engine.grouped import GroupedTable
from nocturnus.engine.ir import POSITIVE, IRule, RelKey
from nocturnus.engine.plan import Component, Workspace
from nocturnus.engine.terms import Var

NAME = "closure"


@dataclass(frozen=True, slots=True)
class ClosurePlan:
    """``target`` is the transitive closure of ``edges`` (read reversed if not forward)."""

    target: RelKey
    edges: RelKey
    forward: bool
    strategy: str = NAME

    def run(self, workspace: Workspace) -> None:
        successors = workspace.column(self.edges, 0 if self.forward else 1)
        table = GroupedTable({0})
        table.by[0] = transitive_closure(successors, workspace.charge)
        workspace.tables[self.target] = table


def plan(component: Component) -> ClosurePlan | None:
    """Accept a component whose one relation is the transitive closure of another.

    Preconditions, all required:

    - no confidence and no proof ranks are tracked, the component has exactly one
      member ``t``, and ``t`` starts with no rows (no stored ``t`` facts, no seed);
    - exactly one exit rule, ``t(?a, ?b) :- e(?a, ?b)`` or the reversed
      ``t(?a, ?b) :- e(?b, ?a)``: one positive body literal, two distinct
      variables, no constants;
    - **at least one** recursive rule, and every recursive rule has exactly two
      positive body literals, each ``t`` or ``e`` (in the exit rule's orientation),
      chaining ``?a`` through a third variable to ``?b``:
      ``t(?a, ?b) :- t(?a, ?z), e(?z, ?b)``, ``... :- e(?a, ?z), t(?z, ?b)``,
      ``... :- t(?a, ?z), t(?z, ?b)`` (literals in either order).

    Every such program has the least model ``e+``. Without a recursive rule the
    exit rule alone is a copy of ``e``, not its closure (issue 13).
    """
    if not component.plain or len(component.members) != 1:
        return None
    (target,) = component.members
    if component.initial.get(target):
        return None
    exits = component.exits
    recursive = [rule for rule in component.rules if rule not in exits]
    if len(exits) != 1 or not recursive:
        return None
    (exit_rule,) = exits
    if len(exit_rule.body) != 1:
        return None
    (step,) = exit_rule.body
    head = exit_rule.head_args
    if step.kind != POSITIVE or len(step.args) != 2 or len(head) != 2:
        return None
    if not all(isinstance(a, Var) for a in (*head, *step.args)) or head[0] == head[1]:
        return None
    if step.args == head:
        forward = True
    elif step.args == (head[1], head[0]):
        forward = False
    else:
        return None
    edges = step.rel
    if not all(_is_chain_step(r, target, edges, forward) for r in recursive):
        return None
    return ClosurePlan(target, edges, forward)


def _is_chain_step(rule: IRule, target: RelKey, edges: RelKey, forward: bool) -> bool:
    """Whether ``rule`` is ``t(a, b) :- x(a, z), y(z, b)`` with x, y in {t, e}."""
    head = rule.head_args
    if len(rule.body) != 2 or len(head) != 2 or head[0] == head[1]:
        return False
    arcs = []
    for step in rule.body:
        if step.kind != POSITIVE or len(step.args) != 2:
            return False
        if not all(isinstance(a, Var) for a in step.args):
            return False
        if step.rel == target or (step.rel == edges and forward):
            arcs.append(step.args)
        elif step.rel == edges:
            arcs.append((step.args[1], step.args[0]))
        else:
            return False
    (a1, z1), (z2, b2) = arcs
    if (a1, b2) != head or z1 != z2:
        (z2, b2), (a1, z1) = arcs
        if (a1, b2) != head or z1 != z2:
            return False
    return len({head[0], head[1], z1}) == 3


def transitive_closure(
    successors: Mapping[int, set[int]], charge: Callable[[int], None]
) -> dict[int, set[int]]:
    """Return, for every node with successors, the set of nodes it reaches.

    Components are visited dependencies first, so each successor's set is final
    when it is folded in; members of one component share one (read-only) set.
    ``charge`` is told how many pairs each component adds, as it adds them.
    """
    reach: dict[int, set[int]] = {}
    for component in strongly_connected_components(successors):
        reached: set[int] = set()
        members = set(component) if len(component) > 1 else None
        for node in component:
            targets = successors.get(node)
            if not targets:
                continue
            reached |= targets
            for target in targets:
                if members is not None and target in members:
                    continue
                further = reach.get(target)
                if further is not None and further is not reached:
                    reached |= further
        if reached:
            for node in component:
                reach[node] = reached
            charge(len(reached) * len(component))
    return reach
