"""Set-at-a-time evaluation of binary chain recursion (transitive-closure shapes).

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

and the evaluator picks, per version, the grouping whose first delta has fewer keys.
Same-generation recursion (``sg(?x, ?y) :- parent(?px, ?x), sg(?px, ?py),
parent(?py, ?y)``, see :class:`Twin`) gets the same treatment: one union per group
of the delta instead of a join per row.

Every row is still derived by the same semi-naive rounds; only the representation
changes, so the results are identical to the general joins. Used only when no
confidence or proof ranks are tracked (sets cannot carry them).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from itertools import repeat
from typing import Any

from nocturnus.engine.ir import POSITIVE, IRule, RelKey, Step
from nocturnus.engine.terms import Var

Row = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Chain:
    """A rule version of chain shape, with the positions the kernel needs.

    The delta literal ``delta_rel`` joins on ``delta_join`` and passes its other
    column into the head at ``passed_at``; ``other_rel`` joins on ``other_join`` and
    supplies the head's other column, at head position ``group``.
    """

    rule: IRule
    delta_rel: RelKey
    delta_join: int
    other_rel: RelKey
    other_join: int
    head: RelKey
    group: int
    passed_at: int


def chain_of(rule: IRule, delta_at: int) -> Chain | None:
    """Return the chain view of ``rule`` with the delta at ``delta_at``, if it has one."""
    if len(rule.body) != 2 or len(rule.head_args) != 2:
        return None
    if any(step.kind != POSITIVE or len(step.args) != 2 for step in rule.body):
        return None
    args = [a for step in rule.body for a in step.args] + list(rule.head_args)
    if not all(isinstance(a, Var) for a in args):
        return None
    delta, other = rule.body[delta_at], rule.body[1 - delta_at]
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
        rule=rule,
        delta_rel=delta.rel,
        delta_join=delta.args.index(join),
        other_rel=other.rel,
        other_join=other.args.index(join),
        head=rule.head,
        group=rule.head_args.index(out),
        passed_at=rule.head_args.index(passed),
    )


class GroupedTable:
    """A binary derived relation kept as ``by[position][value] -> set of partners``.

    It also answers the ``rows``/``index`` protocol of other relations, building the
    tuple form lazily once, so later strata and answers can read it unchanged.
    """

    __slots__ = ("_indexes", "_rows", "by")

    def __init__(self, positions: set[int]) -> None:
        self.by: dict[int, dict[int, set[int]]] = {p: {} for p in positions}
        self._rows: dict[Row, None] | None = None
        self._indexes: dict[tuple[int, ...], Any] = {}

    def __len__(self) -> int:
        position = next(iter(self.by))
        return sum(len(partners) for partners in self.by[position].values())

    def add_rows(self, rows: Iterator[Row] | Mapping[Row, Any]) -> None:
        """Add tuple rows (used for stored rows and exit-rule results)."""
        for position, groups in self.by.items():
            other = 1 - position
            for row in rows:
                key = row[position]
                partners = groups.get(key)
                if partners is None:
                    groups[key] = {row[other]}
                else:
                    partners.add(row[other])

    def ensure(self, position: int) -> dict[int, set[int]]:
        """Return the grouping by ``position``, deriving it from another if needed."""
        found = self.by.get(position)
        if found is not None:
            return found
        source = next(iter(self.by.values()))
        groups: dict[int, set[int]] = {}
        for key, partners in source.items():
            for partner in partners:
                existing = groups.get(partner)
                if existing is None:
                    groups[partner] = {key}
                else:
                    existing.add(key)
        self.by[position] = groups
        return groups

    def merge(self, position: int, new: dict[int, set[int]]) -> None:
        """Fold rows grouped by ``position`` into every grouping kept."""
        for kept, groups in self.by.items():
            if kept == position:
                for key, partners in new.items():
                    existing = groups.get(key)
                    if existing is None:
                        groups[key] = set(partners)
                    else:
                        existing |= partners
            else:
                _regroup_into(groups, new)

    @property
    def rows(self) -> dict[Row, None]:
        """The rows as tuples (built on first use, after evaluation is done)."""
        if self._rows is None:
            position, groups = next(iter(self.by.items()))
            rows: dict[Row, None]
            if position == 0:
                rows = {(k, p): None for k, ps in groups.items() for p in ps}
            else:
                rows = {(p, k): None for k, ps in groups.items() for p in ps}
            self._rows = rows
            return rows
        return self._rows

    def index(self, positions: tuple[int, ...]) -> Any:
        """Return a ``key -> rows`` index on ``positions`` (a view on a grouping)."""
        found = self._indexes.get(positions)
        if found is None:
            if len(positions) == 1:
                found = _Bucket(self.ensure(positions[0]), positions[0])
            else:
                found = {row: [row] for row in self.rows}
            self._indexes[positions] = found
        return found


class _Bucket:
    """An index view: rows whose ``position`` holds a key, made from a grouping."""

    __slots__ = ("groups", "position")

    def __init__(self, groups: dict[int, set[int]], position: int) -> None:
        self.groups = groups
        self.position = position

    def __contains__(self, key: object) -> bool:
        return key in self.groups

    def get(self, key: int, default: Any = None) -> Any:
        partners = self.groups.get(key)
        if partners is None:
            return default
        if self.position == 0:
            return [(key, p) for p in partners]
        return [(p, key) for p in partners]


def _regroup_into(groups: dict[int, set[int]], new: dict[int, set[int]]) -> None:
    """Add rows grouped one way to a grouping the other way round."""
    for key, partners in new.items():
        for partner in partners:
            existing = groups.get(partner)
            if existing is None:
                groups[partner] = {key}
            else:
                existing.add(key)


def regroup(new: dict[int, set[int]]) -> dict[int, set[int]]:
    """Return rows grouped by the other position."""
    groups: dict[int, set[int]] = {}
    _regroup_into(groups, new)
    return groups


def column(rows: Mapping[Row, Any], position: int) -> dict[int, set[int]]:
    """Group a binary relation's tuple rows by ``position``."""
    groups: dict[int, set[int]] = {}
    other = 1 - position
    for row in rows:
        key = row[position]
        partners = groups.get(key)
        if partners is None:
            groups[key] = {row[other]}
        else:
            partners.add(row[other])
    return groups


def step(
    delta: dict[int, set[int]],
    partners_of: dict[int, set[int]],
    full: dict[int, set[int]],
    out: dict[int, set[int]],
) -> None:
    """One chain rule version for one round: the kernel from the module docstring.

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


_NOTHING: frozenset[int] = frozenset()


def step_by_passed(
    delta: dict[int, set[int]],
    partners_of: dict[int, set[int]],
    full: dict[int, set[int]],
    out: dict[int, set[int]],
) -> None:
    """One chain rule version for one round, grouped by the passed variable.

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
            outputs = union(*map(get_partners, joins, repeat(_NOTHING)))
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


@dataclass(frozen=True, slots=True)
class Reach:
    """A unary chain version ``p(?y) :- q(?x), e(?x, ?y)`` (e in either orientation).

    With the delta on ``q``, the round's new rows are the image of the delta set
    under ``e``, which one C-level union computes. ``p`` and ``q`` may carry the same
    constants around the one variable position ``at`` (``anc(n0, ?y) :- anc(n0,
    ?z), parent(?z, ?y)`` once a goal's constant is propagated): ``layout`` is the
    full argument tuple with ``None`` at ``at``.
    """

    rule: IRule
    delta_rel: RelKey
    other_rel: RelKey
    other_join: int
    head: RelKey
    layout: tuple[int | None, ...]


def reach_of(rule: IRule, delta_at: int) -> Reach | None:
    """Return the unary chain view of ``rule`` with the delta at ``delta_at``, if any."""
    if len(rule.body) != 2:
        return None
    delta, other = rule.body[delta_at], rule.body[1 - delta_at]
    if delta.kind != POSITIVE or other.kind != POSITIVE or len(other.args) != 2:
        return None
    head_layout = _layout(rule.head_args)
    delta_layout = _layout(delta.args)
    if head_layout is None or head_layout != delta_layout:
        return None
    at = head_layout.index(None)
    source, target = delta.args[at], rule.head_args[at]
    if source == target or set(other.args) != {source, target}:
        return None
    return Reach(
        rule, delta.rel, other.rel, other.args.index(source), rule.head, head_layout
    )


def _layout(args: tuple[Var | int, ...]) -> tuple[int | None, ...] | None:
    """Constants in place and None for the single variable, or None if not so."""
    variables = [a for a in args if isinstance(a, Var)]
    if len(variables) != 1:
        return None
    return tuple(None if isinstance(a, Var) else a for a in args)


def image(values: set[int], partners_of: dict[int, set[int]]) -> set[int]:
    """Return every partner of every value (the relation's image of the set)."""
    return set[int]().union(*map(partners_of.get, values, repeat(_NOTHING)))


@dataclass(frozen=True, slots=True)
class Twin:
    """A recursive version of same-generation shape, delta on the recursive call.

    ``h(?x, ?y) :- a(?px, ?x), h(?px, ?py), b(?py, ?y)`` (``a`` and ``b`` in either
    orientation), plus guards: positive literals whose only variable is ``?x``, or
    only ``?y`` (the demand guard ``magic(?x)`` of a bound goal is one). Each side of
    the head moves one edge away from the matching side of the recursive call, so
    with the delta grouped by ``?px`` a round is, per ``?px``: the ``?x`` values
    ``a`` reaches (guarded), and one C-level union of the ``b`` partners of all the
    new ``?py`` values, shared by every such ``?x``.
    """

    rule: IRule
    a_rel: RelKey
    a_from: int
    b_rel: RelKey
    b_from: int
    x_guards: tuple[Step, ...]
    y_guards: tuple[Step, ...]


def twin_of(rule: IRule, delta_at: int) -> Twin | None:
    """Return the same-generation view of ``rule`` with the delta at ``delta_at``."""
    head = rule.head_args
    if len(head) != 2 or not all(isinstance(a, Var) for a in head):
        return None
    x, y = head
    call = rule.body[delta_at]
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
        if j == delta_at:
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
    return Twin(rule, a_rel, a_from, b_rel, b_from, tuple(x_guards), tuple(y_guards))


def twin_step(
    delta: dict[int, set[int]],
    a_of: dict[int, set[int]],
    b_of: dict[int, set[int]],
    y_in: set[int] | None,
    full: dict[int, set[int]],
    out: dict[int, set[int]],
) -> None:
    """One round of a :class:`Twin` version; relations grouped by their first column.

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
            ys = union(*map(get_b, pys, repeat(_NOTHING)))
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
