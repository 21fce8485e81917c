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

Each component is evaluated by the plan of the first strategy that accepts it
(:mod:`nocturnus.engine.strategies`: transitive closure, reachability,
same-generation, binary chains), else by the general rounds, which this module
runs. A plan reaches the evaluation only through the
:class:`~nocturnus.engine.plan.Workspace` interface this class implements.

The components, their plans and their compiled joins form a
:mod:`~nocturnus.engine.schedule`; :meth:`Evaluation.run` makes one for its rules,
:meth:`Evaluation.run_planned` runs one made earlier (a prepared plan's), filling
the placeholders of its constants with the question's values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from nocturnus.engine.budget import CHECK_EVERY, Budget
from nocturnus.engine.collector import collector_paused
from nocturnus.engine.grouped import GroupedTable, column
from nocturnus.engine.index import Relation
from nocturnus.engine.ir import IRule, RelKey
from nocturnus.engine.joins import (
    CompiledRule,
    Param,
    comparison,
    compile_version,
    exists_with_repeats,
    order_body,
)
from nocturnus.engine.plan import Component
from nocturnus.engine.schedule import Stage, schedule
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


class RowLimitExceeded(Exception):
    """An evaluation derived more rows than its ``max_rows``."""


class Evaluation:
    """One bottom-up run over a rule list, reading other relations through ``resolve``.

    With ``ranks`` given, it also records for every derived row the round in which its
    final confidence was reached; proofs use that to pick premises derived strictly
    earlier, which keeps proof trees finite under recursion.

    ``max_rows`` bounds the rows every plan may derive (``derived`` counts them):
    past it, :class:`RowLimitExceeded` is raised and the evaluation is unusable. A
    caller with a cheaper plan B uses it to stop a plan A that turns out dearer.
    ``budget`` is the request's (:mod:`~nocturnus.engine.budget`): every row charged
    here is charged there too, and the joins check it as they run; past it,
    :class:`~nocturnus.engine.budget.BudgetExceeded` is raised and the evaluation is
    unusable. ``observe``, if given, is told the strategy of every component's plan.
    ``filled`` maps the placeholders of a prepared plan's constants to the values
    they stand for (:meth:`constant`); ``compiled`` counts the join functions this
    evaluation had to compile (none when a prepared plan already held them).
    """

    def __init__(
        self,
        resolve: Callable[[RelKey], Source],
        interner: Interner,
        weighted: bool,
        ranks: dict[RelKey, dict[Row, int]] | None = None,
        *,
        max_rows: int | None = None,
        budget: Budget | None = None,
        observe: Callable[[str], None] | None = None,
        filled: Mapping[int, int] | None = None,
    ) -> None:
        self.resolve = resolve
        self.observe = observe
        self.interner = interner
        self.weighted = weighted
        self.ranks = ranks
        self.max_rows = max_rows
        self.budget = budget
        self.filled: Mapping[int, int] = filled or {}
        self.compiled = 0
        self.derived = 0
        self.tables: dict[RelKey, Table] = {}
        self.round = 0
        self._comparisons: dict[str, Callable[[int, int], bool]] = {}
        # Keyed by id(version): the stage's ``joins`` keep its versions alive, so
        # no id is reused while its entry stands.
        self._prepared: dict[int, tuple[list[Any], int, RelKey, int]] = {}
        self._stage = Stage(Component(frozenset(), ()), None, (), ())
        self._initial: Mapping[RelKey, Mapping[Row, Any]] = {}
        self._fresh: dict[RelKey, dict[Row, Any]] = {}  # the round in progress

    def source(self, rel: RelKey) -> Source:
        """The relation as this evaluation currently sees it."""
        table = self.tables.get(rel)
        return table if table is not None else self.resolve(rel)

    def run(
        self, rules: Iterable[IRule], initial: Mapping[RelKey, Mapping[Row, Any]]
    ) -> None:
        """Evaluate ``rules`` to fixpoint, heads starting from ``initial`` rows."""
        stages = schedule(
            rules, initial, weighted=self.weighted, ranked=self.ranks is not None
        )
        self.run_planned(stages, initial)

    def run_planned(
        self, stages: Iterable[Stage], initial: Mapping[RelKey, Mapping[Row, Any]]
    ) -> None:
        """Evaluate a schedule made earlier, heads starting from ``initial`` rows.

        The stages must have been scheduled for the same ``weighted`` and ranks as
        this evaluation, from initial rows that look the same to the strategies
        (:func:`~nocturnus.engine.schedule.schedule`); their compiled joins are
        reused and added to.
        """
        with collector_paused():
            self._initial = initial
            for stage in stages:
                self._evaluate(stage)

    def _evaluate(self, stage: Stage) -> None:
        """Seed the members' tables, then run the stage's plan."""
        self._prepared.clear()
        self._stage = stage
        for rel in stage.component.members:
            rows = dict(self._initial.get(rel, {}))
            self.tables[rel] = Table(rows)
            if self.ranks is not None:
                self.ranks[rel] = dict.fromkeys(rows, 0)
        plan = stage.plan
        if plan is None:
            return
        if self.observe is not None:
            self.observe(plan.strategy)
        plan.run(self)

    # -- the Workspace a plan runs against ----------------------------------------

    def column(self, rel: RelKey, position: int) -> dict[int, set[int]]:
        """A binary relation grouped by ``position`` (stored relations cache it)."""
        source = self.source(rel)
        if isinstance(source, GroupedTable):
            return source.ensure(position)
        if isinstance(source, Relation):
            return source.column(position)
        return column(source.rows, position)

    def constant(self, value: int) -> int:
        """The question's value of a plan's constant (a placeholder is filled)."""
        return self.filled.get(value, value)

    def run_exits(self) -> dict[RelKey, dict[Row, Any]]:
        """Round 0: the rules that read nothing of the component, general joins."""
        exits = [
            self._compile(slot, rule, None)
            for slot, rule in enumerate(self._stage.exits)
        ]
        return self._round(exits, self._stage.component.members, {})

    def run_rounds(self, delta: dict[RelKey, dict[Row, Any]]) -> None:
        """Semi-naive rounds after round 0; stored rows join the first delta.

        So recursive rules only ever run in their delta versions (an all-full
        version would re-derive everything and force indexes on relations that are
        only ever scanned).
        """
        stage = self._stage
        first = len(stage.exits)
        recursive = [
            self._compile(first + n, version.rule, version.delta_at)
            for n, version in enumerate(stage.versions)
        ]
        component = stage.component
        for rel in component.members:
            stored = self._initial.get(rel)
            if stored:
                delta[rel] = {**stored, **delta.get(rel, {})}
        while recursive and any(delta.values()):
            delta = self._round(recursive, component.members, delta)

    def charge(self, rows: int) -> None:
        """Count rows a plan derived; past ``max_rows`` or the budget it stops."""
        self.derived += rows
        if self.max_rows is not None and self.derived > self.max_rows:
            raise RowLimitExceeded(self.derived)
        if self.budget is not None:
            self.budget.charge(rows)

    def _tick(self) -> int:
        """The joins' budget check, counting the rows of the round in progress;
        returns the iterations until the next (``Budget.tick``)."""
        if self.budget is None:
            return CHECK_EVERY
        return self.budget.tick(sum(map(len, self._fresh.values())))

    def _compile(self, slot: int, rule: IRule, delta_at: int | None) -> CompiledRule:
        """The stage's compiled code of a rule version, in the order the data calls for.

        The order is chosen again per evaluation (it follows relation sizes); code
        is generated only for an order the stage has not compiled yet.
        """
        order = order_body(rule.body, delta_at, self._size)
        key = (slot, tuple(order))
        joins = self._stage.joins
        found = joins.get(key)
        if found is None:
            found = compile_version(rule, order, delta_at, self.weighted)
            joins[key] = found
            self.compiled += 1
        return found

    def _size(self, rel: RelKey) -> int:
        """Join planning's size estimate: members are as large as can be."""
        if rel in self._stage.component.members:
            return 1 << 40
        return len(self.source(rel))

    def _round(
        self,
        versions: list[CompiledRule],
        members: frozenset[RelKey],
        delta: dict[RelKey, dict[Row, Any]],
    ) -> dict[RelKey, dict[Row, Any]]:
        fresh: dict[RelKey, dict[Row, Any]] = {rel: {} for rel in members}
        self._fresh = fresh
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
                self.charge(len(rows))
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
            if kind == "const":
                arguments.append(self.constant(param.value))
            elif kind == "rule_confidence":
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
            elif kind == "tick":
                arguments.append(self._tick)
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
