"""What a fixpoint strategy sees (a component) and gives back (a plan).

The fixpoint evaluates one strongly connected component of relations at a time
(:mod:`nocturnus.engine.fixpoint`). For each, the strategies of
:mod:`nocturnus.engine.strategies` are asked in turn for a :class:`Plan`; the first
that accepts runs it, and the general semi-naive rounds are the fallback. A plan
runs against a :class:`Workspace`: the evaluation's tables, the general rounds (a
plan may run exit rules through them), the question's constants and the request's
budget.

Keeping the component a plain value lets every strategy be tested on its own: a
program it must accept, and near-misses it must decline.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from nocturnus.engine.ir import POSITIVE, IRule, RelKey
from nocturnus.engine.table import Row


@dataclass(frozen=True, slots=True)
class Version:
    """A recursive rule read with its delta at body position ``delta_at``."""

    rule: IRule
    delta_at: int


@dataclass(frozen=True, slots=True)
class Component:
    """One strongly connected group of relations and the rules deriving them.

    ``initial`` holds the rows members start from (stored facts, or the seed of a
    magic-set rewrite). ``weighted`` says confidences are tracked (max-product),
    ``ranked`` that proof ranks are recorded: set-at-a-time kernels can carry
    neither, so strategies other than the general rounds decline both.
    """

    members: frozenset[RelKey]
    rules: tuple[IRule, ...]
    initial: Mapping[RelKey, Mapping[Row, float | None]] = field(default_factory=dict)
    weighted: bool = False
    ranked: bool = False

    @property
    def exits(self) -> tuple[IRule, ...]:
        """Rules whose body reads no member (evaluated once, before any recursion)."""
        return tuple(rule for rule in self.rules if not _reads(rule, self.members))

    @property
    def versions(self) -> tuple[Version, ...]:
        """Every recursive rule once per body literal reading a member."""
        return tuple(
            Version(rule, j)
            for rule in self.rules
            for j, step in enumerate(rule.body)
            if step.kind == POSITIVE and step.rel in self.members
        )

    @property
    def plain(self) -> bool:
        """Neither confidences nor ranks tracked: sets of rows are enough."""
        return not self.weighted and not self.ranked


def _reads(rule: IRule, members: frozenset[RelKey]) -> bool:
    return any(s.kind == POSITIVE and s.rel in members for s in rule.body)


class Workspace(Protocol):
    """What a plan may use of the evaluation running it.

    ``tables`` maps each member (and every relation finished earlier) to its rows;
    a plan replaces members' entries with its results. Every plan reports the rows
    it derives through :meth:`charge`, so no strategy outruns the limits.
    """

    tables: dict[RelKey, Any]

    def source(self, rel: RelKey) -> Any:
        """The relation as the evaluation currently sees it (member or not)."""

    def constant(self, value: int) -> int:
        """The question's value of a constant a plan took from the rules.

        A plan may be prepared once for many questions (:mod:`~nocturnus.engine.
        schedule`): the rules it was chosen for hold placeholders where the goal's
        bound values go. A plan reading a constant from its rules at run time (to
        compare it with rows, or to build rows) reads it through here.
        """

    def column(self, rel: RelKey, position: int) -> dict[int, set[int]]:
        """A binary relation outside the component, grouped by ``position``."""

    def run_exits(self) -> dict[RelKey, dict[Row, Any]]:
        """Run the component's exit rules once (general joins); return their rows."""

    def run_rounds(self, delta: dict[RelKey, dict[Row, Any]]) -> None:
        """Run general semi-naive rounds of the recursive rules from ``delta``."""

    def charge(self, rows: int) -> None:
        """Count ``rows`` new rows a plan derived against the evaluation's limit.

        :raises RowLimitExceeded: past the evaluation's ``max_rows``.
        """


class Plan(Protocol):
    """A way to evaluate one component, chosen by a strategy.

    ``strategy`` names the strategy that made it (the differential tests count
    them). ``run`` leaves every member's final rows in ``workspace.tables``.
    """

    @property
    def strategy(self) -> str:
        """The name of the strategy that chose this plan."""

    def run(self, workspace: Workspace) -> None:
        """Evaluate the component."""
