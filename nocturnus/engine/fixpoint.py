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
chain recursion and unary reachability (:mod:`~nocturnus.engine.grouped`). Their
results are identical; the property tests hold them to the same oracle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from nocturnus.engine.analysis import strongly_connected_components
from nocturnus.engine.closure import Closure, closure_of, transitive_closure
from nocturnus.engine.collector import collector_paused
from nocturnus.engine.grouped import (
    Chain,
    GroupedTable,
    Reach,
    chain_of,
    column,
    image,
    reach_of,
    regroup,
    step_by_passed,
)
from nocturnus.engine.grouped import (
    step as grouped_step,
)
from nocturnus.engine.index import Relation
from nocturnus.engine.ir import COMPARE, POSITIVE, IRule, RelKey
from nocturnus.engine.joins import (
    CompiledRule,
    Param,
    comparison,
    compile_version,
    exists_with_repeats,
    order_body,
)
from nocturnus.engine.table import Row, Table
from nocturnus.engine.terms import Interner


class Empty:
    """A relation with no rows, for relations nobody has told or derived."""

    rows: ClassVar[Mapping[Row, float | None]] = MappingProxyType({})

    def index(self, positions: tuple[int, ...]) -> dict[Any, list[Row]]:
        return {}

    def __len__(self) -> int:
        return 0


EMPTY = Empty()
Source = Table | Relation | GroupedTable | Empty


class Evaluation:
    """One bottom-up run over a rule list, reading other relations through ``resolve``.

    With ``ranks`` given, it also records for every derived row the round in which its
    final confidence was reached; proofs use that to pick premises derived strictly
    earlier, which keeps proof trees finite under recursion.
    """

    def __init__(
        self,
        resolve: Callable[[RelKey], Source],
        interner: Interner,
        weighted: bool,
        ranks: dict[RelKey, dict[Row, int]] | None = None,
    ) -> None:
        self.resolve = resolve
        self.interner = interner
        self.weighted = weighted
        self.ranks = ranks
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
