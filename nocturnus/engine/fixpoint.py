"""The fixpoint of one rule list: semi-naive rounds, component by component.

:class:`Evaluation` runs rules (a user program, or its magic-set rewrite) bottom-up.
Components (strongly connected groups of relations) are evaluated dependencies
first, which also respects NAF strata. Within a component each round joins only the
previous round's new rows (the delta) against full relations, so every derivation is
made once, and recursion of any shape ends when a round adds nothing.

Confidence is a max-product semiring: a derived row's confidence is the product of
its rule's and premises' confidences, best over all derivations. ``None`` means "no
confidence anywhere along the best proof" and acts as 1.0 that wins ties. A row
re-enters the delta only when its confidence strictly improves; products of values
<= 1 cannot keep improving around a cycle, so this terminates.

When no confidence or proof rank is tracked, components of a recognised shape skip
the general joins: transitive closures (:mod:`~nocturnus.engine.closure`), binary
chain recursion, unary reachability and same-generation recursion
(:mod:`~nocturnus.engine.grouped`). Their results are identical; the property tests
hold them to the same oracle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from types import MappingProxyType
from typing import Any, ClassVar

from nocturnus.engine.analysis import strongly_connected_components
from nocturnus.engine.closure import Closure, closure_of, transitive_closure
from nocturnus.engine.collector import collector_paused
from nocturnus.engine.grouped import (
    Chain,
    GroupedTable,
    Reach,
    Twin,
    chain_of,
    column,
    image,
    reach_of,
    regroup,
    step_by_passed,
    twin_of,
    twin_step,
)
from nocturnus.engine.grouped import (
    step as grouped_step,
)
from nocturnus.engine.index import Relation
from nocturnus.engine.ir import COMPARE, POSITIVE, IRule, RelKey, Step
from nocturnus.engine.joins import (
    CompiledRule,
    Param,
    comparison,
    compile_version,
    exists_with_repeats,
    order_body,
)
from nocturnus.engine.table import Row, Table
from nocturnus.engine.terms import Interner, Var


class Empty:
    """A relation with no rows, for relations nobody has told or derived."""

    rows: ClassVar[Mapping[Row, float | None]] = MappingProxyType({})

    def index(self, positions: tuple[int, ...]) -> dict[Any, list[Row]]:
        return {}

    def __len__(self) -> int:
        return 0


EMPTY = Empty()
_NONE: frozenset[int] = frozenset()
Source = Table | Relation | GroupedTable | Empty


class RowLimitExceeded(Exception):
    """An evaluation derived more rows than its ``max_rows``."""


class Evaluation:
    """One bottom-up run over a rule list, reading other relations through ``resolve``.

    With ``ranks`` given, it also records for every derived row the round in which its
    final confidence was reached; proofs use that to pick premises derived strictly
    earlier, which keeps proof trees finite under recursion.

    ``max_rows`` bounds the rows the general rounds may derive (``derived`` counts
    them): past it, :class:`RowLimitExceeded` is raised and the evaluation is
    unusable. A caller with a cheaper plan B uses it to stop a plan A that turns
    out dearer.
    """

    def __init__(
        self,
        resolve: Callable[[RelKey], Source],
        interner: Interner,
        weighted: bool,
        ranks: dict[RelKey, dict[Row, int]] | None = None,
        *,
        max_rows: int | None = None,
    ) -> None:
        self.resolve = resolve
        self.interner = interner
        self.weighted = weighted
        self.ranks = ranks
        self.max_rows = max_rows
        self.derived = 0
        self.tables: dict[RelKey, Table] = {}
        self.round = 0
        self._comparisons: dict[str, Callable[[int, int], bool]] = {}
        self._prepared: dict[int, tuple[list[Any], int, RelKey, int]] = {}

    def source(self, rel: RelKey) -> Source:
        """The relation as this evaluation currently sees it."""
        table = self.tables.get(rel)
        return table if table is not None else self.resolve(rel)

    def run(
        self, rules: Iterable[IRule], initial: dict[RelKey, dict[Row, Any]]
    ) -> None:
        """Evaluate ``rules`` to fixpoint, heads starting from ``initial`` rows."""
        with collector_paused():
            self._run(rules, initial)

    def _run(
        self, rules: Iterable[IRule], initial: dict[RelKey, dict[Row, Any]]
    ) -> None:
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
        for component in strongly_connected_components(graph):
            members = set(component)
            group = [r for rel in component for r in by_head[rel]]
            self._component(members, group, initial)

    def _component(
        self,
        members: set[RelKey],
        rules: list[IRule],
        initial: dict[RelKey, dict[Row, Any]],
    ) -> None:
        self._prepared.clear()  # ids of finished components' versions may be reused
        for rel in members:
            rows = dict(initial.get(rel, {}))
            self.tables[rel] = Table(rows)
            if self.ranks is not None:
                self.ranks[rel] = dict.fromkeys(rows, 0)
        if not rules:
            return

        def size_of(rel: RelKey) -> int:
            return 1 << 40 if rel in members else len(self.source(rel))

        # Round 0 runs only the rules that read nothing of this component; the
        # component's stored rows then join the first delta, so recursive rules only
        # ever run in their delta versions (an all-full version would re-derive
        # everything and force indexes on relations that are only ever scanned).
        exits: list[CompiledRule] = []
        recursive: list[CompiledRule] = []
        for rule in rules:
            reads = [
                j
                for j, step in enumerate(rule.body)
                if step.kind == POSITIVE and step.rel in members
            ]
            if not reads:
                order = order_body(rule.body, None, size_of)
                exits.append(compile_version(rule, order, None, self.weighted))
            for j in reads:
                order = order_body(rule.body, j, size_of)
                recursive.append(compile_version(rule, order, j, self.weighted))
        if not self.weighted and self.ranks is None and len(members) == 1:
            (target,) = members
            shape = None if initial.get(target) else closure_of(target, rules)
            if shape is not None:
                self._closure(shape)
                return
        if not self.weighted and self.ranks is None and recursive:
            reaches = [
                reach_of(version.rule, version.delta_at)  # type: ignore[arg-type]
                for version in recursive
            ]
            if all(reach is not None for reach in reaches):
                delta = self._round(exits, members, {})
                if self._reach(members, reaches):  # type: ignore[arg-type]
                    return
                self._run_rounds(members, recursive, delta, initial)
                return
        if not self.weighted and self.ranks is None and recursive and len(members) == 1:
            twins = [
                twin_of(version.rule, version.delta_at)  # type: ignore[arg-type]
                for version in recursive
            ]
            if all(twin is not None for twin in twins):
                self._round(exits, members, {})
                self._twins(members, twins)  # type: ignore[arg-type]
                return
        chains = [
            chain_of(version.rule, version.delta_at)  # type: ignore[arg-type]
            for version in recursive
        ]
        if (
            not self.weighted
            and self.ranks is None
            and all(len(rule.head_args) == 2 for rule in rules)
            and all(chain is not None for chain in chains)
        ):
            self._round(exits, members, {})
            self._grouped(members, chains)  # type: ignore[arg-type]
            return
        delta = self._round(exits, members, {})
        self._run_rounds(members, recursive, delta, initial)

    def _run_rounds(
        self,
        members: set[RelKey],
        recursive: list[CompiledRule],
        delta: dict[RelKey, dict[Row, Any]],
        initial: dict[RelKey, dict[Row, Any]],
    ) -> None:
        """Semi-naive rounds after round 0; stored rows join the first delta."""
        for rel in members:
            stored = initial.get(rel)
            if stored:
                delta[rel] = {**stored, **delta[rel]}
        while recursive and any(delta.values()):
            delta = self._round(recursive, members, delta)

    def _reach(self, members: set[RelKey], reaches: list[Reach]) -> bool:
        """Run unary chain recursion (reachability) a whole delta set at a time.

        Returns False, having changed nothing, when some stored or exit row does
        not fit its relation's constant layout; the general joins then take over.
        """
        layouts: dict[RelKey, tuple[int | None, ...]] = {}
        for reach in reaches:
            for rel in (reach.head, reach.delta_rel):
                if layouts.setdefault(rel, reach.layout) != reach.layout:
                    return False
        full: dict[RelKey, set[int]] = {}
        for rel in members:
            layout = layouts.get(rel)
            if layout is None:
                return False
            at = layout.index(None)
            values: set[int] = set()
            for row in self.tables[rel].rows:
                if any(c is not None and c != v for c, v in zip(layout, row)):
                    return False
                values.add(row[at])
            full[rel] = values
        delta = {rel: set(values) for rel, values in full.items()}
        partners: dict[tuple[RelKey, int], dict[int, set[int]]] = {}
        for reach in reaches:
            key = (reach.other_rel, reach.other_join)
            if key not in partners:
                partners[key] = self._column(reach.other_rel, reach.other_join)
        if len(reaches) == 1 and len(members) == 1:
            # One relation stepping along one edge (a demand chain up a tree: one
            # new value per round, hundreds of rounds): a lean loop.
            ((rel, seen),) = full.items()
            (edges,) = partners.values()
            get = edges.get
            new: AbstractSet[int] = delta[rel]
            while new:
                if len(new) == 1:
                    (value,) = new
                    new = get(value, _NONE) - seen
                else:
                    new = image(new, edges) - seen  # type: ignore[arg-type]
                seen |= new
                self.round += 1
            delta = {}
        while any(delta.values()):
            fresh: dict[RelKey, set[int]] = {rel: set() for rel in members}
            for reach in reaches:
                values = delta[reach.delta_rel]
                if values:
                    found = image(values, partners[(reach.other_rel, reach.other_join)])
                    fresh[reach.head] |= found - full[reach.head]
            self.round += 1
            for rel, values in fresh.items():
                full[rel] |= values
            delta = fresh
        for rel in members:
            layout = layouts[rel]
            at = layout.index(None)
            before: tuple[int, ...] = layout[:at]  # type: ignore[assignment]
            after: tuple[int, ...] = layout[at + 1 :]  # type: ignore[assignment]
            self.tables[rel] = Table({(*before, v, *after): None for v in full[rel]})
        return True

    def _column(self, rel: RelKey, position: int) -> dict[int, set[int]]:
        """A binary relation grouped by ``position`` (stored relations cache it)."""
        source = self.source(rel)
        if isinstance(source, GroupedTable):
            return source.ensure(position)
        if isinstance(source, Relation):
            return source.column(position)
        return column(source.rows, position)

    def _closure(self, shape: Closure) -> None:
        """Compute a recognised transitive closure directly (see closure.py)."""
        successors = self._column(shape.edges, 0 if shape.forward else 1)
        table = GroupedTable({0})
        table.by[0] = transitive_closure(successors)
        self.tables[shape.target] = table  # type: ignore[assignment]
        self.round += 1

    def _grouped(self, members: set[RelKey], chains: list[Chain]) -> None:
        """Run the recursive rounds of a binary chain component set-at-a-time.

        See :mod:`nocturnus.engine.grouped`. The tables start from the stored rows
        and the exit rules' results, all of which form the first delta.
        """
        delta: dict[RelKey, _GroupedDelta] = {}
        for rel in members:
            rows = self.tables[rel].rows
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
            table.add_rows(self.tables[rel].rows)
            tables[rel] = table
        partners: dict[tuple[RelKey, int], dict[int, set[int]]] = {}
        for chain in chains:
            key = (chain.other_rel, chain.other_join)
            if chain.other_rel in members or key in partners:
                continue
            partners[key] = self._column(chain.other_rel, chain.other_join)
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
                    grouped_step(new, partner, full, target)
                else:
                    step_by_passed(new, partner, full, target)
            self.round += 1
            if not any(g for groups in out.values() for g in groups.values()):
                break
            for rel, groups in out.items():
                for at, grouping in groups.items():
                    tables[rel].merge(at, grouping)
            delta = {rel: _GroupedDelta(out.get(rel, {})) for rel in members}
        self.tables.update(tables)  # type: ignore[arg-type]

    def _twins(self, members: set[RelKey], twins: list[Twin]) -> None:
        """Run same-generation recursion set-at-a-time (see :class:`Twin`).

        The head stays grouped by its first column; the stored rows and the exit
        rules' results form the first delta.
        """
        (rel,) = members
        full = column(self.tables[rel].rows, 0)
        delta = {x: set(ys) for x, ys in full.items()}
        kernels = []
        for twin in twins:
            x_in = self._allowed(twin.x_guards, twin.rule.head_args[0])  # type: ignore[arg-type]
            if x_in is None:
                a_of = self._column(twin.a_rel, twin.a_from)
            else:
                # Few ?x pass a guard (a demand guard: one path up a tree): keep the
                # ?px -> ?x edges that reach them, found from the ?x side.
                a_of = {}
                parents = self._column(twin.a_rel, 1 - twin.a_from)
                for x in x_in:
                    for px in parents.get(x, ()):
                        found = a_of.get(px)
                        if found is None:
                            a_of[px] = {x}
                        else:
                            found.add(x)
            y_in = self._allowed(twin.y_guards, twin.rule.head_args[1])  # type: ignore[arg-type]
            kernels.append((a_of, self._column(twin.b_rel, twin.b_from), y_in))
        order = _downstream_order(full, [a_of for a_of, _, _ in kernels])
        if order is not None:
            # No ?x depends on itself: each group is final once its ?px groups are,
            # so one pass in that order derives every row once (as tabling would).
            for px in order:
                pys = full.get(px)
                if not pys:
                    continue
                for a_of, b_of, y_in in kernels:
                    xs = a_of.get(px)
                    if not xs:
                        continue
                    ys = image(pys, b_of)
                    if y_in is not None:
                        ys &= y_in
                    if not ys:
                        continue
                    for x in xs:
                        have = full.get(x)
                        if have is None:
                            full[x] = set(ys)
                        else:
                            have |= ys
            self.round += 1
            delta = {}
        while delta:
            out: dict[int, set[int]] = {}
            for a_of, b_of, y_in in kernels:
                twin_step(delta, a_of, b_of, y_in, full, out)
            self.round += 1
            for x, ys in out.items():
                have = full.get(x)
                if have is None:
                    full[x] = set(ys)
                else:
                    have |= ys
            delta = out
        table = GroupedTable({0})
        table.by[0] = full
        self.tables[rel] = table  # type: ignore[assignment]

    def _allowed(self, steps: tuple[Step, ...], var: Var) -> set[int] | None:
        """The values of ``var`` its guard literals allow (None: no guard).

        Each guard's relation is complete here (it is outside the component), so
        the allowed values are those its rows hold where the literal has ``var``,
        among rows matching the literal's constants and repeats.
        """
        allowed: set[int] | None = None
        for step in steps:
            rows = self.source(step.rel).rows
            if step.args == (var,):  # the usual guard, a demand relation: no checks
                values = {row[0] for row in rows}
                allowed = values if allowed is None else allowed & values
                continue
            where = [p for p, a in enumerate(step.args) if isinstance(a, Var)]
            fixed = [(p, a) for p, a in enumerate(step.args) if not isinstance(a, Var)]
            first = where[0]
            values = {
                row[first]
                for row in rows
                if all(row[p] == row[first] for p in where)
                and all(row[p] == a for p, a in fixed)
            }
            allowed = values if allowed is None else allowed & values
        return allowed

    def _round(
        self,
        versions: list[CompiledRule],
        members: set[RelKey],
        delta: dict[RelKey, dict[Row, Any]],
    ) -> dict[RelKey, dict[Row, Any]]:
        fresh: dict[RelKey, dict[Row, Any]] = {rel: {} for rel in members}
        for version in versions:
            prepared = self._prepared.get(id(version))
            if prepared is None:
                prepared = self._prepare(version)
            template, delta_slot, delta_rel, next_slot = prepared
            arguments = template.copy()
            if delta_slot >= 0:
                rows = delta.get(delta_rel)
                if not rows:
                    continue
                arguments[delta_slot] = rows
            arguments[next_slot] = fresh[version.rule.head]
            version.run(*arguments)
        self.round += 1
        for rel, rows in fresh.items():
            if rows:
                self.derived += len(rows)
                if self.max_rows is not None and self.derived > self.max_rows:
                    raise RowLimitExceeded(self.derived)
                self.tables[rel].merge(rows)
                if self.ranks is not None:
                    ranks = self.ranks[rel]
                    for row in rows:
                        ranks[row] = self.round
        return fresh

    def _prepare(self, version: CompiledRule) -> tuple[list[Any], int, RelKey, int]:
        """Resolve a version's arguments once per component.

        Every relation a version reads is the same object for the whole component
        (tables grow in place), so only the delta and the output change per round:
        the template records their slots.
        """
        arguments: list[Any] = []
        delta_slot, delta_rel, next_slot = -1, None, -1
        for slot, param in enumerate(version.params):
            kind = param.kind
            if kind == "const" or kind == "rule_confidence":
                arguments.append(param.value)
            elif kind == "rows":
                arguments.append(self.source(param.rel).rows)
            elif kind == "index":
                arguments.append(self.source(param.rel).index(param.positions))
            elif kind == "delta":
                delta_slot, delta_rel = slot, param.rel
                arguments.append(None)
            elif kind == "full":
                arguments.append(self.tables[param.rel].rows)
            elif kind == "next":
                next_slot = slot
                arguments.append(None)
            elif kind == "exists":
                arguments.append(exists_with_repeats(param.value))
            else:
                arguments.append(self._comparison(param))
        prepared = (arguments, delta_slot, delta_rel, next_slot)
        self._prepared[id(version)] = prepared
        return prepared

    def _comparison(self, param: Param) -> Callable[[int, int], bool]:
        found = self._comparisons.get(param.value)
        if found is None:
            found = comparison(param.value, self.interner)
            self._comparisons[param.value] = found
        return found


def _downstream_order(
    start: Mapping[int, object], edges: list[dict[int, set[int]]]
) -> list[int] | None:
    """Values reachable from ``start`` along ``edges``, each after its predecessors.

    None when a cycle makes such an order impossible (Kahn's algorithm).
    """
    reached = set(start)
    pending = list(reached)
    while pending:
        value = pending.pop()
        for successors in edges:
            for nxt in successors.get(value, ()):
                if nxt not in reached:
                    reached.add(nxt)
                    pending.append(nxt)
    waiting = dict.fromkeys(reached, 0)
    for value in reached:
        for successors in edges:
            for nxt in successors.get(value, ()):
                waiting[nxt] += 1
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
    return order if len(order) == len(reached) else None


class _GroupedDelta:
    """One round's new rows of a grouped relation, regrouped on demand."""

    __slots__ = ("groups",)

    def __init__(self, groups: dict[int, dict[int, set[int]]]) -> None:
        self.groups = {p: g for p, g in groups.items() if g}

    def by(self, position: int) -> dict[int, set[int]]:
        found = self.groups.get(position)
        if found is not None or not self.groups:
            return found or {}
        merged: dict[int, set[int]] = {}
        for other in self.groups.values():
            for key, partners in regroup(other).items():
                existing = merged.get(key)
                if existing is None:
                    merged[key] = partners
                else:
                    existing |= partners
        self.groups[position] = merged
        return merged
