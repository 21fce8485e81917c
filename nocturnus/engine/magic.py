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
    COMPARE,
    POSITIVE,
    IRule,
    RelKey,
    Step,
    adorned_key,
    magic_key,
    stored_key,
)
from nocturnus.engine.joins import order_body
from nocturnus.engine.terms import Var


@dataclass(slots=True)
class MagicProgram:
    """The rewritten rules for one goal relation and adornment.

    ``answer`` is the adorned relation holding the goal's answers once ``seed`` (the
    goal's magic relation) starts with the goal's bound values (among answers to
    other subgoals, unless ``factored``). ``complete`` lists the user relations that
    must be fully evaluated beforehand.
    """

    rules: list[IRule]
    answer: RelKey
    seed: RelKey
    complete: set[RelKey] = field(default_factory=set)
    factored: bool = False
    propagated: bool = False


def rewrite(
    goal: tuple[str, bool, int],
    bound: tuple[int, ...],
    rules_by_head: Mapping[RelKey, list[IRule]],
    is_base: Callable[[RelKey], bool],
    has_stored: Callable[[RelKey], bool],
    factor_with: tuple[int, ...] | None = None,
    self_contained: bool = False,
    seed: tuple[int, ...] | None = None,
) -> MagicProgram:
    """Rewrite the rules reachable from ``goal`` with arguments ``bound`` bound.

    ``is_base(rel)`` says a relation needs no rewriting (it has no rules, or its
    complete extent is already known); ``has_stored(rel)`` says a derived relation also
    has stored facts, which must be copied into its demanded part.

    ``factor_with`` (the goal's bound values) allows *factoring* a right-linear goal
    relation (see :func:`is_right_linear`): its answer relation then holds only the
    goal's own answers, which is only sound when confidences are not tracked, since
    it forgets along which path an answer was reached.

    ``self_contained`` keeps every positively used derived relation inside the
    rewritten program (a call with nothing bound gets an empty adornment instead of
    a complete relation), so proofs can be rebuilt from this one evaluation; only
    relations under NAF are still read complete, and NAF steps are proof leaves.

    ``seed`` (the goal's bound values) lets the goal's demand guard be replaced by
    those constants when no rule feeds it (see :func:`_propagate_seed`).
    """
    program = MagicProgram([], adorned_key(goal, bound), magic_key(goal, bound))
    todo: list[tuple[tuple[str, bool, int], tuple[int, ...]]] = [(goal, bound)]
    seen = set(todo)
    factored = factor_with is not None and is_right_linear(
        goal, bound, rules_by_head, has_stored
    )
    program.factored = factored
    # Proofs (self-contained) pass bindings through derived literals first when the
    # choice is otherwise even: proving anc(n0, n19999) then demands anc(?z, n19999)
    # (the 812 ancestors, shared by every proof about n19999) instead of
    # anc(?z, n19999) for every ?z below n0 (20 000 rows per proof).
    def prefer(rel: RelKey) -> int:
        return 0 if not self_contained or rel in rules_by_head else 1

    while todo:
        rel, adornment = todo.pop()
        guard_key = magic_key(rel, adornment)
        target = adorned_key(rel, adornment)
        factoring = factored and rel == goal and adornment == bound
        for rule in rules_by_head.get(rel, ()):
            head_bound = {
                rule.head_args[p]
                for p in adornment
                if isinstance(rule.head_args[p], Var)
            }
            guard = Step(
                POSITIVE, guard_key, tuple(rule.head_args[p] for p in adornment)
            )
            body: list[Step] = [guard]
            known: set[Var] = set(head_bound)  # type: ignore[arg-type]  # the bound head args are Vars
            order = order_body(rule.body, None, prefer, known)
            if factoring:  # the recursive call goes last: all else guards the demand
                order.sort(key=lambda j: rule.body[j].rel == goal)
            for j in order:
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
                if not demand and not self_contained:
                    program.complete.add(step.rel)
                    body.append(step)
                    known |= step.variables
                    continue
                callee: tuple[str, bool, int] = step.rel  # type: ignore[assignment]  # a CALL step's rel is a user relation
                magic_head = tuple(step.args[p] for p in demand)
                if not (
                    len(body) == 1
                    and magic_key(callee, demand) == guard_key
                    and magic_head == guard.args
                ):
                    program.rules.append(
                        IRule(
                            magic_key(callee, demand),
                            magic_head,
                            tuple(body),
                            None,
                            None,
                        )
                    )
                if factoring and callee == goal:
                    break  # the recursive call only feeds demand; see is_right_linear
                if (callee, demand) not in seen:
                    seen.add((callee, demand))
                    todo.append((callee, demand))
                body.append(
                    Step(
                        POSITIVE,
                        adorned_key(callee, demand),
                        step.args,
                        step.weight_order,
                        step.position,
                    )
                )
                known |= step.variables
            else:
                head_args = rule.head_args
                if factoring:
                    values = dict(zip(adornment, factor_with or (), strict=True))
                    head_args = tuple(
                        values.get(p, a) for p, a in enumerate(rule.head_args)
                    )
                program.rules.append(
                    IRule(target, head_args, tuple(body), rule.confidence, rule.origin)
                )
        if has_stored(rel):
            args = tuple(Var(f"a{i}") for i in range(rel[2]))
            guard = Step(POSITIVE, guard_key, tuple(args[p] for p in adornment))
            stored = Step(POSITIVE, stored_key(rel), args, 0)
            program.rules.append(IRule(target, args, (guard, stored), None, None))
    if seed is not None:
        propagated = _propagate_seed(program.rules, program.seed, seed)
        program.propagated = propagated is not program.rules
        program.rules = propagated
    return program


def _substitute(
    args: tuple[Var | int, ...], binding: dict[Var, int]
) -> tuple[Var | int, ...]:
    """Replace bound variables by their constants."""
    return tuple(binding.get(a, a) if isinstance(a, Var) else a for a in args)


def _propagate_seed(
    rules: list[IRule], guard: RelKey, seed: tuple[int, ...]
) -> list[IRule]:
    """Replace the goal's demand guard by its constants when nothing else feeds it.

    If no rule derives into the goal's magic relation (say ``anc(n0, ?y)`` with
    left recursion, whose only demand is n0 itself), the guard ``m(?x)`` can only
    match the seed: substituting ``?x = n0`` drops a join from every round and
    leaves plain rules (``anc(n0, ?y) :- anc(n0, ?z), parent(?z, ?y)``) that the
    set-at-a-time kernels recognise. Rules whose guard cannot match are dropped.
    """
    if any(rule.head == guard for rule in rules):
        return rules
    result: list[IRule] = []
    for rule in rules:
        steps = [s for s in rule.body if s.rel == guard]
        if not steps:
            result.append(rule)
            continue
        binding: dict[Var, int] = {}
        alive = True
        for step in steps:
            for arg, value in zip(step.args, seed, strict=True):
                if isinstance(arg, Var):
                    if binding.setdefault(arg, value) != value:
                        alive = False
                elif arg != value:
                    alive = False
        if not alive:
            continue

        body = tuple(
            Step(
                s.kind, s.rel, _substitute(s.args, binding), s.weight_order, s.position
            )
            for s in rule.body
            if s.rel != guard
        )
        head_args = _substitute(rule.head_args, binding)
        result.append(IRule(rule.head, head_args, body, rule.confidence, rule.origin))
    return result


def is_right_linear(
    rel: tuple[str, bool, int],
    bound: tuple[int, ...],
    rules_by_head: Mapping[RelKey, list[IRule]],
    has_stored: Callable[[RelKey], bool],
) -> bool:
    """Tell whether ``rel`` queried with ``bound`` positions can be factored.

    True when every rule of ``rel`` is either an exit rule (nothing in its body
    depends on ``rel``) or right-linear: exactly one body literal calls ``rel``, every
    other literal is independent of ``rel``, and the call passes the head's free
    arguments through unchanged (same variables, used nowhere else), with its bound
    positions bound by the rest of the body. Then an answer of ``rel(b, ?y)`` is
    exactly an exit answer of some ``rel(c, ?y)`` with ``c`` in the demand set
    reachable from ``b`` (Naughton et al., argument reduction by factoring), so the
    query needs the demand set plus exit rules, never the per-``c`` answer sets. For
    ``anc(n0, ?y)`` with ``anc(?x, ?y) :- parent(?x, ?z), anc(?z, ?y)`` this is the
    difference between the descendants of n0 and the whole transitive closure.
    """
    if has_stored(rel) or not bound:
        return False
    rules = rules_by_head.get(rel, ())
    reaching = _reaching(rel, rules_by_head)
    free = [p for p in range(rel[2]) if p not in bound]
    for rule in rules:
        calls = [s for s in rule.body if s.kind == POSITIVE and s.rel == rel]
        others = [s for s in rule.body if not (s.kind == POSITIVE and s.rel == rel)]
        if any(s.rel in reaching for s in others if s.kind != COMPARE):
            return False
        if not calls:
            continue
        if len(calls) != 1:
            return False
        (call,) = calls
        passed = [rule.head_args[p] for p in free]
        if not all(isinstance(a, Var) for a in passed) or len(set(passed)) != len(
            passed
        ):
            return False
        if [call.args[p] for p in free] != passed:
            return False
        elsewhere: set[Var] = set()
        for step in others:
            elsewhere |= step.variables
        for p in bound:
            if isinstance(rule.head_args[p], Var):
                elsewhere.add(rule.head_args[p])  # type: ignore[arg-type]  # checked isinstance Var just above
            if isinstance(call.args[p], Var):
                elsewhere.add(call.args[p])  # type: ignore[arg-type]  # a call arg at a bound position is a Var here
        if elsewhere & set(passed):
            return False
        known = {rule.head_args[p] for p in bound if isinstance(rule.head_args[p], Var)}
        for step in others:
            if step.kind == POSITIVE:
                known |= step.variables
        if not all(
            not isinstance(call.args[p], Var) or call.args[p] in known for p in bound
        ):
            return False
    return True


def _reaching(rel: RelKey, rules_by_head: Mapping[RelKey, list[IRule]]) -> set[RelKey]:
    """The relations whose rules can reach ``rel`` (``rel`` included)."""
    reaching: set[RelKey] = {rel}
    changed = True
    while changed:
        changed = False
        for head, rules in rules_by_head.items():
            if head in reaching:
                continue
            if any(
                s.rel in reaching for r in rules for s in r.body if s.kind != COMPARE
            ):
                reaching.add(head)
                changed = True
    return reaching
