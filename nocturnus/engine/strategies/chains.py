"""Binary chain recursion, set-at-a-time over relations grouped by one column.

Tuple-at-a-time joins cost a Python loop iteration, a tuple and two hash probes per
derived row; the full closure of a 20 000-node tree has 8 million rows. Most recursive
rules people write are binary *chains*, ``p(?x, ?y) :- d(?x, ?z), e(?z, ?y)`` in
some orientation: one variable is joined, one passes from the delta straight into the
head, one comes from the other literal. For those, a relation kept grouped by one
column (value -> set of partner values) turns the innermost loop into one C-level
set difference and one set union per (join value, output value) pair:

    for each join value j with new partners P in the delta:
        for each q that e relates to j:
            new = P - full[q];  next[q] |= new

That loop pays off when delta groups are large. Which grouping makes them large
depends on the data: in a tree, nodes have one parent and many descendants, so the
rows new in a round are many per ancestor and one per descendant. So each version can
also run grouped by the *passed* variable instead (``by_passed``), taking the union of
the partners of all its join values in C:

    for each passed value p with new join values J in the delta:
        new = union(e[j] for j in J) - full[p];  next[p] |= new

and the plan picks, per version, the grouping whose first delta has fewer keys.
Every row is still derived by the same semi-naive rounds; only the representation
changes, so the results are identical to the general joins.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat

from nocturnus.engine.grouped import NOTHING, GroupedTable, column, regroup
from nocturnus.engine.ir import POSITIVE, RelKey
from nocturnus.engine.plan import Component, Version, Workspace
from nocturnus.engine.terms import Var

NAME = "chains"


@dataclass(frozen=True, slots=True)
class Chain:
    """A rule version of chain shape, with the positions the kernel needs.

    The delta literal ``delta_rel`` joins on ``delta_join`` and passes its other
    column into the head at ``passed_at``; ``other_rel`` joins on ``other_join`` and
    supplies the head's other column, at head position ``group``.
    """

    delta_rel: RelKey
    delta_join: int
    other_rel: RelKey
    other_join: int
    head: RelKey
    group: int
    passed_at: int


@dataclass(frozen=True, slots=True)
class ChainsPlan:
    """Run the exit rules, then every :class:`Chain` version set-at-a-time."""

    members: frozenset[RelKey]
    chains: tuple[Chain, ...]
    strategy: str = NAME

    def run(self, workspace: Workspace) -> None:
        workspace.run_exits()
        members, chains = self.members, self.chains
        delta: dict[RelKey, _GroupedDelta] = {}
        for rel in members:
            rows = workspace.tables[rel].rows
            delta[rel] = _GroupedDelta({p: column(rows, p) for p in (0, 1)})
        # Per version: group by the join variable or by the passed one, whichever
        # makes the first delta's groups larger (fewer keys).
        by_join: list[bool] = []
        for chain in chains:
            first = delta[chain.delta_rel]
            joins = len(first.by(chain.delta_join))
            passes = len(first.by(1 - chain.delta_join))
            by_join.append(joins <= passes)
        keep: dict[RelKey, set[int]] = {rel: set() for rel in members}
        for chain, joined in zip(chains, by_join, strict=True):
            keep[chain.head].add(chain.group if joined else chain.passed_at)
            if chain.other_rel in members:
                keep[chain.other_rel].add(chain.other_join)
        tables: dict[RelKey, GroupedTable] = {}
        for rel in members:
            table = GroupedTable(keep[rel] or {0})
            table.add_rows(workspace.tables[rel].rows)
            tables[rel] = table
        partners: dict[tuple[RelKey, int], dict[int, set[int]]] = {}
        for chain in chains:
            key = (chain.other_rel, chain.other_join)
            if chain.other_rel in members or key in partners:
                continue
            partners[key] = workspace.column(chain.other_rel, chain.other_join)
        while True:
            out: dict[RelKey, dict[int, dict[int, set[int]]]] = {}
            for chain, joined in zip(chains, by_join, strict=True):
                side = chain.delta_join if joined else 1 - chain.delta_join
                new = delta[chain.delta_rel].by(side)
                if not new:
                    continue
                if chain.other_rel in members:
                    partner = tables[chain.other_rel].by[chain.other_join]
                else:
                    partner = partners[(chain.other_rel, chain.other_join)]
                position = chain.group if joined else chain.passed_at
                target = out.setdefault(chain.head, {}).setdefault(position, {})
                full = tables[chain.head].by[position]
                if joined:
                    _step(new, partner, full, target)
                else:
                    _step_by_passed(new, partner, full, target)
            if not any(g for groups in out.values() for g in groups.values()):
                break
            for rel, groups in out.items():
                for at, grouping in groups.items():
                    workspace.charge(tables[rel].merge(at, grouping))
            delta = {rel: _GroupedDelta(out.get(rel, {})) for rel in members}
        workspace.tables.update(tables)


def plan(component: Component) -> ChainsPlan | None:
    """Accept binary recursion whose every recursive rule is a chain.

    Preconditions, all required:

    - no confidence and no proof ranks are tracked; every rule of the component
      (exit rules included) has a binary head; at least one recursive rule;
    - every recursive version is ``h(..) :- d(..), o(..)``: exactly two positive,
      binary body literals, all arguments variables, two distinct variables in
      each literal, exactly one variable shared between them (the join); the head
      holds the delta literal's other variable (passed) and the other literal's
      other variable (output), two distinct variables in either order.

    Exit rules are otherwise free: they run through the general joins first.
    """
    if not component.plain:
        return None
    if not all(len(rule.head_args) == 2 for rule in component.rules):
        return None
    versions = component.versions
    if not versions:
        return None
    chains = []
    for version in versions:
        chain = chain_of(version)
        if chain is None:
            return None
        chains.append(chain)
    return ChainsPlan(component.members, tuple(chains))


def chain_of(version: Version) -> Chain | None:
    """Return the chain view of ``version``, if it has one."""
    rule = version.rule
    if len(rule.body) != 2 or len(rule.head_args) != 2:
        return None
    if any(step.kind != POSITIVE or len(step.args) != 2 for step in rule.body):
        return None
    args = [a for step in rule.body for a in step.args] + list(rule.head_args)
    if not all(isinstance(a, Var) for a in args):
        return None
    delta = rule.body[version.delta_at]
    other = rule.body[1 - version.delta_at]
    if len(set(delta.args)) != 2 or len(set(other.args)) != 2:
        return None
    shared = set(delta.args) & set(other.args)
    if len(shared) != 1:
        return None
    (join,) = shared
    passed = delta.args[1 - delta.args.index(join)]
    out = other.args[1 - other.args.index(join)]
    if set(rule.head_args) != {passed, out} or rule.head_args[0] == rule.head_args[1]:
        return None
    return Chain(
        delta_rel=delta.rel,
        delta_join=delta.args.index(join),
        other_rel=other.rel,
        other_join=other.args.index(join),
        head=rule.head,
        group=rule.head_args.index(out),
        passed_at=rule.head_args.index(passed),
    )


def _step(
    delta: dict[int, set[int]],
    partners_of: dict[int, set[int]],
    full: dict[int, set[int]],
    out: dict[int, set[int]],
) -> None:
    """One chain version for one round: the kernel from the module docstring.

    ``delta`` maps join values to new passed values; ``partners_of`` maps join values
    to output values; ``full`` and ``out`` are the head grouped by output value
    (before this round, and this round's new rows).
    """
    get_partners = partners_of.get
    get_full = full.get
    get_out = out.get
    for join, passed in delta.items():
        outputs = get_partners(join)
        if not outputs:
            continue
        for value in outputs:
            have = get_full(value)
            new = passed - have if have else passed
            if not new:
                continue
            pending = get_out(value)
            if pending is None:
                out[value] = new if new is not passed else set(passed)
            else:
                pending |= new


def _step_by_passed(
    delta: dict[int, set[int]],
    partners_of: dict[int, set[int]],
    full: dict[int, set[int]],
    out: dict[int, set[int]],
) -> None:
    """One chain version for one round, grouped by the passed variable.

    ``delta`` maps passed values to new join values; ``partners_of`` maps join values
    to output values; ``full`` and ``out`` are the head grouped by passed value.
    """
    get_partners = partners_of.get
    get_full = full.get
    get_out = out.get
    union = set[int]().union  # returns a new mutable set: ``out`` grows in place
    outputs: set[int] | None
    for passed, joins in delta.items():
        if len(joins) == 1:
            (join,) = joins
            outputs = get_partners(join)
            if not outputs:
                continue
        else:
            outputs = union(*map(get_partners, joins, repeat(NOTHING)))
            if not outputs:
                continue
        have = get_full(passed)
        new = outputs - have if have else set(outputs)
        if not new:
            continue
        pending = get_out(passed)
        if pending is None:
            out[passed] = new
        else:
            pending |= new


class _GroupedDelta:
    """One round's new rows of a grouped relation, regrouped on demand.

    Versions grouping the same head differently leave its new rows in several
    groupings; every view of the delta holds all of them (issue 13: a view that
    held only its own grouping's rows lost derivations of mutual chains).
    """

    __slots__ = ("groups", "views")

    def __init__(self, groups: dict[int, dict[int, set[int]]]) -> None:
        self.groups = {p: g for p, g in groups.items() if g}
        self.views: dict[int, dict[int, set[int]]] = {}

    def by(self, position: int) -> dict[int, set[int]]:
        """Every new row, grouped by ``position``."""
        found = self.views.get(position)
        if found is not None:
            return found
        own = self.groups.get(position)
        if own is not None and len(self.groups) == 1:
            return own
        merged: dict[int, set[int]] = {k: set(v) for k, v in (own or {}).items()}
        for at, other in self.groups.items():
            if at == position:
                continue
            for key, partners in regroup(other).items():
                existing = merged.get(key)
                if existing is None:
                    merged[key] = partners
                else:
                    existing |= partners
        self.views[position] = merged
        return merged
