"""The general semi-naive evaluation: the fallback of every component.

Round 0 runs the rules that read nothing of the component; the component's stored
rows then join the first delta, and each later round joins only the previous
round's new rows against the full relations until a round adds nothing. It accepts
any component (confidences, proof ranks, NAF, comparisons, any arity), so every
specialised strategy is only ever a faster way to the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from nocturnus.engine.plan import Component, Workspace

NAME = "seminaive"


@dataclass(frozen=True, slots=True)
class SemiNaive:
    """Evaluate ``component`` by general semi-naive rounds."""

    component: Component
    strategy: str = NAME

    def run(self, workspace: Workspace) -> None:
        delta = workspace.run_exits()
        if self.component.versions:
            workspace.run_rounds(delta)
