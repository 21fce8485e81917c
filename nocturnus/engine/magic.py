"""The magic-set (demand) rewrite that makes bottom-up evaluation goal-directed.

Plain bottom-up evaluation of ``anc(n0, ?y)`` computes the whole ``anc`` relation.
The rewrite adds, for each derived relation and pattern of bound arguments
("adornment") the query can reach, a *magic* relation holding the argument values
actually asked for, and guards each rule with it. Evaluating the rewritten rules
bottom-up then only derives facts some part of the query needs.

Relations the rewrite cannot restrict soundly are left to full evaluation and read as
complete relations instead: anything under negation as failure (its complement must
be complete before it is tested) and anything demanded with no bound argument (there
is nothing to restrict by).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from nocturnus.engine.ir import (
    ABSENT,
    POSITIVE,
    IRule,
    RelKey,
    Step,
    adorned_key,
    magic_key,
)
from nocturnus.engine.joins import order_body
from nocturnus.engine.terms import Var


@dataclass(slots=True)
class MagicProgram:
    """The rewritten rules for one goal relation and adornment.

    ``answer`` is the adorned relation holding the goal's answers once ``seed`` (the
    goal's magic relation) starts with the goal's bound values. ``complete`` lists
    the user relations that must be fully evaluated beforehand.
    """

    rules: list[IRule]
    answer: RelKey
    seed: RelKey
    complete: set[RelKey] = field(default_factory=set)


def rewrite(
    goal: tuple[str, bool, int],
    bound: tuple[int, ...],
    rules_by_head: Mapping[RelKey, list[IRule]],
    is_base: Callable[[RelKey], bool],
    has_stored: Callable[[RelKey], bool],
) -> MagicProgram:
    """Rewrite the rules reachable from ``goal`` with arguments ``bound`` bound.

    ``is_base(rel)`` says a relation needs no rewriting (it has no rules, or its
    complete extent is already known); ``has_stored(rel)`` says a derived relation also
    has stored facts, which must be copied into its demanded part.
    """
    program = MagicProgram([], adorned_key(goal, bound), magic_key(goal, bound))
    todo: list[tuple[tuple[str, bool, int], tuple[int, ...]]] = [(goal, bound)]
    seen = set(todo)
    while todo:
        rel, adornment = todo.pop()
        guard_key = magic_key(rel, adornment)
        target = adorned_key(rel, adornment)
        for rule in rules_by_head.get(rel, ()):
            head_bound = {
                rule.head_args[p] for p in adornment if isinstance(rule.head_args[p], Var)
            }
            guard = Step(POSITIVE, guard_key, tuple(rule.head_args[p] for p in adornment))
            body: list[Step] = [guard]
            known: set[Var] = set(head_bound)  # type: ignore[arg-type]
            for j in order_body(rule.body, None, lambda _rel: 0, known):
                step = rule.body[j]
                if step.kind == ABSENT and not is_base(step.rel):
                    program.complete.add(step.rel)
                if step.kind != POSITIVE or is_base(step.rel):
                    body.append(step)
                    known |= step.variables
                    continue
                demand = tuple(
                    p
                    for p, a in enumerate(step.args)
                    if not isinstance(a, Var) or a in known
                )
                if not demand:
                    program.complete.add(step.rel)
                    body.append(step)
                    known |= step.variables
                    continue
                callee: tuple[str, bool, int] = step.rel  # type: ignore[assignment]
                magic_head = tuple(step.args[p] for p in demand)
                if not (len(body) == 1 and magic_key(callee, demand) == guard_key
                        and magic_head == guard.args):
                    program.rules.append(
                        IRule(magic_key(callee, demand), magic_head, tuple(body), None, None)
                    )
                if (callee, demand) not in seen:
                    seen.add((callee, demand))
                    todo.append((callee, demand))
                body.append(
                    Step(POSITIVE, adorned_key(callee, demand), step.args, step.weight_order)
                )
                known |= step.variables
            program.rules.append(
                IRule(target, rule.head_args, tuple(body), rule.confidence, rule.origin)
            )
        if has_stored(rel):
            args = tuple(Var(f"a{i}") for i in range(rel[2]))
            guard = Step(POSITIVE, guard_key, tuple(args[p] for p in adornment))
            stored = Step(POSITIVE, rel, args, 0)
            program.rules.append(IRule(target, args, (guard, stored), None, None))
    return program
