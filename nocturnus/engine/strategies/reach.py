"""Unary chain recursion (reachability), a whole delta set at a time.

``r(?y) :- r(?x), e(?x, ?y)``: with the delta on ``r``, a round's new rows are the
image of the delta set under ``e``, which one C-level union computes instead of a
join per row. The relations may carry the same constants around their one variable
(``anc(n0, ?y) :- anc(n0, ?z), parent(?z, ?y)`` once the magic-set rewrite has
propagated a goal's constant), so each member has a *layout*: its argument tuple
with ``None`` at the variable position.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from nocturnus.engine.grouped import NOTHING, image
from nocturnus.engine.ir import POSITIVE, IRule, RelKey
from nocturnus.engine.plan import Component, Version, Workspace
from nocturnus.engine.table import Row, Table
from nocturnus.engine.terms import Var

NAME = "reach"

Layout = tuple[int | None, ...]


@dataclass(frozen=True, slots=True)
class Reach:
    """One version ``p(..?y..) :- q(..?x..), e(?x, ?y)`` (``e`` either way round).

    ``delta_rel`` is ``q``; ``other_rel`` is ``e``, joined on ``other_join``.
    """

    delta_rel: RelKey
    other_rel: RelKey
    other_join: int
    head: RelKey
    layout: Layout


@dataclass(frozen=True, slots=True)
class ReachPlan:
    """Run the exit rules, then every :class:`Reach` version set-at-a-time."""

    members: frozenset[RelKey]
    reaches: tuple[Reach, ...]
    layouts: Mapping[RelKey, Layout]
    strategy: str = NAME

    def run(self, workspace: Workspace) -> None:
        workspace.run_exits()
        tables = workspace.tables
        full: dict[RelKey, set[int]] = {}
        for rel in self.members:
            at = self.layouts[rel].index(None)
            full[rel] = {row[at] for row in tables[rel].rows}
        delta = {rel: set(values) for rel, values in full.items()}
        partners: dict[tuple[RelKey, int], dict[int, set[int]]] = {}
        for reach in self.reaches:
            key = (reach.other_rel, reach.other_join)
            if key not in partners:
                partners[key] = workspace.column(reach.other_rel, reach.other_join)
        if len(self.reaches) == 1 and len(self.members) == 1:
            # One relation stepping along one edge (a demand chain up a tree: one
            # new value per round, hundreds of rounds): a lean loop.
            ((rel, seen),) = full.items()
            (edges,) = partners.values()
            get = edges.get
            new: AbstractSet[int] = delta[rel]
            while new:
                if len(new) == 1:
                    (value,) = new
                    new = get(value, NOTHING) - seen
                else:
                    new = image(new, edges) - seen  # type: ignore[arg-type]  # a set of ids is what image() reads
                seen |= new
                workspace.charge(len(new))
            delta = {}
        while any(delta.values()):
            fresh: dict[RelKey, set[int]] = {rel: set() for rel in self.members}
            for reach in self.reaches:
                values = delta[reach.delta_rel]
                if values:
                    found = image(values, partners[(reach.other_rel, reach.other_join)])
                    fresh[reach.head] |= found - full[reach.head]
            for rel, values in fresh.items():
                full[rel] |= values
            workspace.charge(sum(map(len, fresh.values())))
            delta = fresh
        for rel in self.members:
            layout = self.layouts[rel]
            at = layout.index(None)
            before = _constants(layout[:at], workspace)
            after = _constants(layout[at + 1 :], workspace)
            tables[rel] = Table({(*before, v, *after): None for v in full[rel]})


def plan(component: Component) -> ReachPlan | None:
    """Accept unary chain recursion, possibly with constants around the variable.

    Preconditions, all required:

    - no confidence and no proof ranks are tracked; at least one recursive rule;
    - every recursive version is ``p(L) :- q(L'), e(?x, ?y)`` (body literals in
      either order, ``e`` in either orientation) where the delta literal ``q(L')``
      and the head ``p(L)`` have exactly one variable each (``?x`` and ``?y``,
      distinct), at the same position, and the same constants everywhere else;
      ``e`` is outside the component, positive, binary, and has exactly the
      arguments ``?x`` and ``?y``;
    - that argument layout (constants, and the variable's position) is the same
      for every version mentioning a relation, and every member has one;
    - every exit rule's head has the member's constant at each constant position
      of its layout, and so does every row the member starts with.

    Exit rules are otherwise free: they run through the general joins first.
    """
    if not component.plain:
        return None
    versions = component.versions
    if not versions:
        return None
    reaches: list[Reach] = []
    layouts: dict[RelKey, Layout] = {}
    for version in versions:
        reach = reach_of(version, component.members)
        if reach is None:
            return None
        for rel in (reach.head, reach.delta_rel):
            if layouts.setdefault(rel, reach.layout) != reach.layout:
                return None
        reaches.append(reach)
    if set(layouts) != set(component.members):
        return None
    for rule in component.exits:
        if not _fits(rule.head_args, layouts[rule.head]):
            return None
    for rel, rows in component.initial.items():
        if any(not _fits(row, layouts[rel]) for row in rows):
            return None
    return ReachPlan(component.members, tuple(reaches), layouts)


def reach_of(version: Version, members: frozenset[RelKey]) -> Reach | None:
    """Return the unary chain view of ``version``, if it has one."""
    rule: IRule = version.rule
    if len(rule.body) != 2:
        return None
    delta, other = rule.body[version.delta_at], rule.body[1 - version.delta_at]
    if delta.kind != POSITIVE or other.kind != POSITIVE or len(other.args) != 2:
        return None
    if other.rel in members:
        return None
    head_layout = _layout(rule.head_args)
    delta_layout = _layout(delta.args)
    if head_layout is None or head_layout != delta_layout:
        return None
    at = head_layout.index(None)
    source, target = delta.args[at], rule.head_args[at]
    if source == target or set(other.args) != {source, target}:
        return None
    return Reach(delta.rel, other.rel, other.args.index(source), rule.head, head_layout)


def _layout(args: tuple[Var | int, ...]) -> Layout | None:
    """Constants in place and None for the single variable, or None if not so."""
    variables = [a for a in args if isinstance(a, Var)]
    if len(variables) != 1:
        return None
    return tuple(None if isinstance(a, Var) else a for a in args)


def _constants(layout: Layout, workspace: Workspace) -> Row:
    """The question's values of a layout's constants (its variable slot cut out)."""
    return tuple(workspace.constant(c) for c in layout if c is not None)


def _fits(args: tuple[Var | int, ...], layout: Layout) -> bool:
    """Whether ``args`` hold the layout's constant at each of its constant positions."""
    return len(args) == len(layout) and all(
        want is None or (not isinstance(arg, Var) and arg == want)
        for arg, want in zip(args, layout, strict=True)
    )
