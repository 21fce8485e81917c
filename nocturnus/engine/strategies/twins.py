"""Same-generation recursion, one C-level union per group of the delta.

``sg(?x, ?y) :- parent(?px, ?x), sg(?px, ?py), parent(?py, ?y)``: each side of the
head moves one edge away from the matching side of the recursive call. With the
head grouped by its first column, a round is, per ``?px`` of the delta: the ``?x``
values ``a`` reaches (guarded), and one union of the ``b`` partners of all the new
``?py`` values, shared by every such ``?x`` — instead of a join per row. When no
``?x`` depends on itself, one pass in dependency order derives every row once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from nocturnus.engine.grouped import NOTHING, GroupedTable, column, image
from nocturnus.engine.ir import POSITIVE, RelKey, Step
from nocturnus.engine.plan import Component, Version, Workspace
from nocturnus.engine.terms import Var

NAME = "twins"

Groups = dict[int, set[int]]
"""A binary relation grouped by one column: value -> set of partner values."""

Kernel = tuple[Groups, Groups, set[int] | None]


@dataclass(frozen=True, slots=True)
class Twin:
    """A recursive version of same-generation shape, delta on the recursive call.

    ``h(?x, ?y) :- a(?px, ?x), h(?px, ?py), b(?py, ?y)`` (``a`` and ``b`` in either
    orientation, read from position ``a_from``/``b_from``), plus guards: positive
    literals whose only variable is ``?x`` (``x_guards``) or ``?y`` (``y_guards``);
    the demand guard ``magic(?x)`` of a bound goal is one.
    """

    x: Var
    y: Var
    a_rel: RelKey
    a_from: int
    b_rel: RelKey
    b_from: int
    x_guards: tuple[Step, ...]
    y_guards: tuple[Step, ...]


@dataclass(frozen=True, slots=True)
class TwinsPlan:
    """Run the exit rules, then every :class:`Twin` version set-at-a-time."""

    target: RelKey
    twins: tuple[Twin, ...]
    strategy: str = NAME

    def run(self, workspace: Workspace) -> None:
        workspace.run_exits()
        full = column(workspace.tables[self.target].rows, 0)
        kernels = [_kernel(twin, workspace) for twin in self.twins]
        order = _downstream_order(full, [a_of for a_of, _, _ in kernels])
        if order is not None:
            _in_order(order, kernels, full, workspace)
        else:
            _in_rounds(kernels, full, workspace)
        table = GroupedTable({0})
        table.by[0] = full
        workspace.tables[self.target] = table


def _in_order(
    order: list[int], kernels: list[Kernel], full: Groups, workspace: Workspace
) -> None:
    """One pass, each group once its ``?px`` groups are final (no ``?x`` depends on
    itself), as tabling would: every row is derived once.

    A group's new values are a fresh set (an image); when they go to one group
    only, a group smaller than them takes the set over, merging itself in, instead
    of copying it into itself (a demanded same-generation chain: ``{x}`` against a
    whole generation, level after level). Shared by several groups, it is copied.
    """
    get_full = full.get
    for px in order:
        pys = get_full(px)
        if not pys:
            continue
        added = 0
        for a_of, b_of, y_in in kernels:
            xs = a_of.get(px)
            if not xs:
                continue
            ys = image(pys, b_of)
            if y_in is not None:
                ys &= y_in
            if not ys:
                continue
            if len(xs) == 1:
                (x,) = xs
                have = get_full(x)
                if have is None or len(have) < len(ys):
                    if have is not None:
                        added -= len(have)
                        ys |= have
                    full[x] = ys
                    added += len(ys)
                    continue
            for x in xs:
                have = get_full(x)
                if have is None:
                    full[x] = set(ys)
                    added += len(ys)
                else:
                    added -= len(have)
                    have |= ys
                    added += len(have)
        if added:
            workspace.charge(added)


def _in_rounds(kernels: list[Kernel], full: Groups, workspace: Workspace) -> None:
    """Semi-naive rounds, one C-level union per group of the delta."""
    delta = {x: set(ys) for x, ys in full.items()}
    while delta:
        out: Groups = {}
        for a_of, b_of, y_in in kernels:
            _step(delta, a_of, b_of, y_in, full, out)
        for x, ys in out.items():
            have = full.get(x)
            if have is None:
                full[x] = set(ys)
            else:
                have |= ys
        workspace.charge(sum(map(len, out.values())))
        delta = out


def plan(component: Component) -> TwinsPlan | None:
    """Accept same-generation recursion over one relation.

    Preconditions, all required:

    - no confidence and no proof ranks are tracked; the component has exactly one
      member ``h`` and at least one recursive rule;
    - every recursive rule reads ``h`` once, as ``h(?px, ?py)``, and has the head
      ``h(?x, ?y)`` with ``?x``, ``?y``, ``?px``, ``?py`` four distinct variables;
    - its other body literals are all positive and outside the component: exactly
      one binary literal over ``{?px, ?x}`` (``a``), exactly one over
      ``{?py, ?y}`` (``b``), and any number of guards whose only variable is
      ``?x``, or only ``?y`` (constants and a repeated variable allowed there);
      no NAF, no comparison, no other literal.

    Exit rules are free: they run through the general joins first.
    """
    if not component.plain or len(component.members) != 1:
        return None
    (target,) = component.members
    versions = component.versions
    if not versions:
        return None
    twins = []
    for version in versions:
        twin = twin_of(version)
        if twin is None:
            return None
        twins.append(twin)
    return TwinsPlan(target, tuple(twins))


def twin_of(version: Version) -> Twin | None:
    """Return the same-generation view of ``version``, if it has one."""
    rule = version.rule
    head = rule.head_args
    if len(head) != 2 or not all(isinstance(a, Var) for a in head):
        return None
    x, y = head
    assert isinstance(x, Var) and isinstance(y, Var)
    call = rule.body[version.delta_at]
    if call.rel != rule.head or call.kind != POSITIVE or len(call.args) != 2:
        return None
    px, py = call.args
    names = {x, y, px, py}
    if len(names) != 4 or not all(isinstance(a, Var) for a in names):
        return None
    edges: dict[Any, tuple[RelKey, int]] = {}
    x_guards: list[Step] = []
    y_guards: list[Step] = []
    for j, step in enumerate(rule.body):
        if j == version.delta_at:
            continue
        if step.kind != POSITIVE or step.rel == rule.head:
            return None
        variables = step.variables
        if variables == {x} or variables == {y}:
            (x_guards if variables == {x} else y_guards).append(step)
            continue
        if len(step.args) != 2 or len(variables) != 2:
            return None
        for near, far in ((px, x), (py, y)):
            if variables == {near, far} and near not in edges:
                edges[near] = (step.rel, step.args.index(near))
                break
        else:
            return None
    if len(edges) != 2:
        return None
    (a_rel, a_from), (b_rel, b_from) = edges[px], edges[py]
    return Twin(x, y, a_rel, a_from, b_rel, b_from, tuple(x_guards), tuple(y_guards))


def _kernel(twin: Twin, workspace: Workspace) -> Kernel:
    """``?px -> ?x`` edges (guarded), ``?py -> ?y`` edges and the allowed ``?y``."""
    x_in = _allowed(twin.x_guards, twin.x, workspace)
    a_of: dict[int, set[int]]
    if x_in is None:
        a_of = workspace.column(twin.a_rel, twin.a_from)
    else:
        # Few ?x pass a guard (a demand guard: one path up a tree): keep the
        # ?px -> ?x edges that reach them, found from the ?x side.
        a_of = {}
        parents = workspace.column(twin.a_rel, 1 - twin.a_from)
        for x in x_in:
            for px in parents.get(x, ()):
                found = a_of.get(px)
                if found is None:
                    a_of[px] = {x}
                else:
                    found.add(x)
    y_in = _allowed(twin.y_guards, twin.y, workspace)
    return a_of, workspace.column(twin.b_rel, twin.b_from), y_in


def _allowed(
    steps: tuple[Step, ...], var: Var, workspace: Workspace
) -> set[int] | None:
    """The values of ``var`` its guard literals allow (None: no guard).

    Each guard's relation is complete here (it is outside the component), so the
    allowed values are those its rows hold where the literal has ``var``, among
    rows matching the literal's constants and repeats.
    """
    allowed: set[int] | None = None
    for step in steps:
        rows = workspace.source(step.rel).rows
        if step.args == (var,):  # the usual guard, a demand relation: no checks
            values = {row[0] for row in rows}
            allowed = values if allowed is None else allowed & values
            continue
        where = [p for p, a in enumerate(step.args) if isinstance(a, Var)]
        fixed = [
            (p, workspace.constant(a))
            for p, a in enumerate(step.args)
            if not isinstance(a, Var)
        ]
        first = where[0]
        values = {
            row[first]
            for row in rows
            if all(row[p] == row[first] for p in where)
            and all(row[p] == a for p, a in fixed)
        }
        allowed = values if allowed is None else allowed & values
    return allowed


def _step(
    delta: dict[int, set[int]],
    a_of: dict[int, set[int]],
    b_of: dict[int, set[int]],
    y_in: set[int] | None,
    full: dict[int, set[int]],
    out: dict[int, set[int]],
) -> None:
    """One round of one :class:`Twin` version; relations grouped by first column.

    ``delta`` maps ``?px`` to new ``?py`` values; ``a_of``/``b_of`` map ``?px`` to
    the ``?x`` values the guards allow and ``?py`` to ``?y``; ``y_in`` holds the
    ``?y`` values the guards allow (None: no guard); ``full`` and ``out`` are the
    head grouped by ``?x``.
    """
    get_a = a_of.get
    get_b = b_of.get
    get_full = full.get
    get_out = out.get
    union = set[int]().union
    for px, pys in delta.items():
        xs = get_a(px)
        if not xs:
            continue
        if len(pys) == 1:
            (py,) = pys
            ys = get_b(py)
            if not ys:
                continue
        else:
            ys = union(*map(get_b, pys, repeat(NOTHING)))
        if y_in is not None:
            ys = ys & y_in
        if not ys:
            continue
        for x in xs:
            have = get_full(x)
            new = ys - have if have else set(ys)
            if not new:
                continue
            pending = get_out(x)
            if pending is None:
                out[x] = new
            else:
                pending |= new


def _downstream_order(
    start: Mapping[int, object], edges: list[dict[int, set[int]]]
) -> list[int] | None:
    """Values reachable from ``start`` along ``edges``, each after its predecessors.

    None when a cycle makes such an order impossible (Kahn's algorithm). Each value
    is expanded once, counting its successors' predecessors as it goes.
    """
    waiting = dict.fromkeys(start, 0)
    pending = list(waiting)
    while pending:
        value = pending.pop()
        for successors in edges:
            for nxt in successors.get(value, ()):
                count = waiting.get(nxt)
                if count is None:
                    waiting[nxt] = 1
                    pending.append(nxt)
                else:
                    waiting[nxt] = count + 1
    ready = [value for value, count in waiting.items() if not count]
    order: list[int] = []
    while ready:
        value = ready.pop()
        order.append(value)
        for successors in edges:
            for nxt in successors.get(value, ()):
                waiting[nxt] -= 1
                if not waiting[nxt]:
                    ready.append(nxt)
    return order if len(order) == len(waiting) else None
