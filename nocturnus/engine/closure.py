"""Transitive closure recognised and computed over the condensation graph.

Left-, right- and non-linear recursion over one edge relation all define the same
relation, the transitive closure ``t = e+``. Semi-naive evaluation still needs one
round per path length (800 rounds on a 20 000-node random tree) and touches every
(source, round) pair in Python. Computed directly instead, each node's reachable set
is the union of its successors' sets, visited in reverse topological order of the
strongly connected components: Python work per node and edge, and the millions of
reachable pairs are produced by C-level set unions.

The recogniser is deliberately narrow (see :func:`closure_of`); anything else goes
to the general evaluator, and results are identical either way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from nocturnus.engine.analysis import strongly_connected_components
from nocturnus.engine.ir import POSITIVE, IRule, RelKey
from nocturnus.engine.terms import Var


@dataclass(frozen=True, slots=True)
class Closure:
    """``target`` is the transitive closure of ``edges`` (read reversed if not forward)."""

    target: RelKey
    edges: RelKey
    forward: bool


def closure_of(target: RelKey, rules: list[IRule]) -> Closure | None:
    """Recognise rules making ``target`` the transitive closure of one relation.

    Accepted: exactly one exit rule ``t(?a, ?b) :- e(?a, ?b)`` (or ``e(?b, ?a)``, the
    reversed orientation) and recursive rules whose two body literals are ``t`` or
    ``e`` (in the exit rule's orientation) chaining ``?a`` to ``?b``:
    ``t(?a, ?b) :- t(?a, ?z), e(?z, ?b)``, ``... :- e(?a, ?z), t(?z, ?b)``,
    ``... :- t(?a, ?z), t(?z, ?b)``. Every such program has the least model ``e+``.
    """
    exits = [r for r in rules if all(s.rel != target for s in r.body)]
    if len(exits) != 1 or len(exits[0].body) != 1:
        return None
    exit_rule = exits[0]
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
    for rule in rules:
        if rule is exit_rule:
            continue
        if not _is_chain_step(rule, target, edges, forward):
            return None
    return Closure(target, edges, forward)


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


def transitive_closure(successors: Mapping[int, set[int]]) -> dict[int, set[int]]:
    """Return, for every node with successors, the set of nodes it reaches.

    Components are visited dependencies first, so each successor's set is final
    when it is folded in; members of one component share one (read-only) set.
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
    return reach
