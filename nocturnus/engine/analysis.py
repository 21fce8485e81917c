"""Static checks that run before evaluation: range restriction and stratification.

A rule set that passes these checks has a unique, finite meaning (the stratified
model) that bottom-up evaluation computes without any depth limit. A rule set that
fails them is rejected up front with a message a user can act on; the API layer turns
:class:`ProgramError` into a 400.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import TypeVar

from nocturnus.engine.rules import Rule
from nocturnus.engine.terms import Var

Node = TypeVar("Node", bound=Hashable)


class ProgramError(ValueError):
    """A rule, a rule set or a goal the engine refuses, with a human explanation."""


def relation_name(predicate: str, negated: bool) -> str:
    """Name a relation for messages: ``p`` or ``NOT p``."""
    return f"NOT {predicate}" if negated else predicate


def check_rule(rule: Rule) -> None:
    """Check one rule on its own: head form, built-in arity and range restriction.

    Range restriction makes every derived atom ground and every NAF or comparison
    test decidable: each head variable and each variable of a ``naf`` or built-in
    literal must occur in a positive (non-naf, non-built-in) body literal. Anonymous
    variables are allowed inside a ``naf`` literal, where they mean "any value"
    (``NAF owns(?x, ?_)``: ?x owns nothing).

    :raises ProgramError: naming the rule, the literal and the variable at fault.
    """
    head = rule.head
    where = f"rule {rule.text()}"  # not its id: a rule being taught has none yet
    if not head.predicate:
        raise ProgramError(f"{where}: the head has an empty predicate")
    if head.is_builtin:
        raise ProgramError(
            f"{where}: the head {head.predicate!r} is a built-in comparison; "
            "built-ins can only be tested in a rule body"
        )
    if head.naf:
        raise ProgramError(
            f"{where}: the head cannot use negation as failure; "
            "use negated for an explicitly negative conclusion"
        )
    bound: set[Var] = set()
    for literal in rule.body:
        if not literal.predicate:
            raise ProgramError(f"{where}: a body literal has an empty predicate")
        if literal.is_builtin:
            if len(literal.args) != 2:
                raise ProgramError(
                    f"{where}: built-in {literal.predicate!r} takes 2 arguments, "
                    f"got {len(literal.args)}"
                )
            if literal.negated or literal.naf:
                raise ProgramError(
                    f"{where}: built-in {literal.predicate!r} cannot be negated; "
                    "use the opposite comparison instead"
                )
        elif not literal.naf:
            bound.update(literal.variables)
    for var in head.variables:
        if var.is_anonymous:
            raise ProgramError(
                f"{where}: the head uses an anonymous variable; "
                "every head argument must be a constant or a named variable"
            )
        if var not in bound:
            raise ProgramError(
                f"{where}: head variable {var.text()} does not occur in a positive "
                "body literal, so the rule could derive non-ground facts"
            )
    for literal in rule.body:
        if not (literal.is_builtin or literal.naf):
            continue
        for var in literal.variables:
            if var in bound:
                continue
            if literal.naf and var.is_anonymous:
                continue
            kind = "built-in" if literal.is_builtin else "negation-as-failure"
            raise ProgramError(
                f"{where}: variable {var.text()} of {kind} literal {literal.text()} "
                "does not occur in a positive body literal, so the test cannot be "
                "decided"
            )


def dependency_graph(
    rules: Iterable[Rule],
) -> dict[tuple[str, bool], dict[tuple[str, bool], bool]]:
    """Map each relation to the relations it depends on, marking NAF dependencies.

    Keys are ``(predicate, negated)``: ``p`` and ``NOT p`` are separate relations.
    The value for a dependency is True when it goes through negation as failure.
    """
    graph: dict[tuple[str, bool], dict[tuple[str, bool], bool]] = {}
    for rule in rules:
        head = (rule.head.predicate, rule.head.negated)
        deps = graph.setdefault(head, {})
        for literal in rule.body:
            if literal.is_builtin:
                continue
            dep = (literal.predicate, literal.negated)
            graph.setdefault(dep, {})
            deps[dep] = deps.get(dep, False) or literal.naf
    return graph


def check_program(rules: Sequence[Rule]) -> None:
    """Check a whole rule set is stratified: no recursion through negation as failure.

    Without this, ``p :- NAF q`` with ``q :- NAF p`` has no single meaning.

    :raises ProgramError: naming the relations on a cycle that contains a NAF edge.
    """
    for rule in rules:
        check_rule(rule)
    graph = dependency_graph(rules)
    successors = {node: list(deps) for node, deps in graph.items()}
    for component in strongly_connected_components(successors):
        members = set(component)
        for node in component:
            for dep, through_naf in graph[node].items():
                if through_naf and dep in members:
                    names = ", ".join(sorted(relation_name(p, n) for p, n in component))
                    raise ProgramError(
                        "the rules are not stratified: "
                        f"{relation_name(*node)} depends on "
                        f"NAF {relation_name(*dep)} through a recursive cycle "
                        f"involving {names}; negation as failure cannot be part of "
                        "a recursion"
                    )


def strongly_connected_components(
    successors: Mapping[Node, Iterable[Node]],
) -> list[list[Node]]:
    """Return the strongly connected components, dependencies before dependents.

    Iterative Tarjan, so deep rule chains cannot hit Python's recursion limit. With
    edges pointing from a relation to what it depends on, the output order is a valid
    evaluation order: every component comes after the components it reads.
    """
    index_of: dict[Node, int] = {}
    low: dict[Node, int] = {}
    on_stack: set[Node] = set()
    stack: list[Node] = []
    result: list[list[Node]] = []
    counter = 0
    for root in successors:
        if root in index_of:
            continue
        work: list[tuple[Node, Iterable[Node]]] = [(root, iter(successors[root]))]
        index_of[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index_of:
                    index_of[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(successors.get(child, ()))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index_of[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index_of[node]:
                component: list[Node] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                result.append(component)
    return result
