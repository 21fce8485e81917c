"""Read-side questions over a tenant projection: ask, match, predicates, aggregates.

Every function expects ``state.refresh(now)`` to have run, never writes, and returns results
in a deterministic order so that the same knowledge always gives the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from nocturnus.engine.proofs import Proof
from nocturnus.engine.rules import Literal
from nocturnus.engine.terms import Const, Var, numeric_value, sort_key
from nocturnus.errors import ValidationError
from nocturnus.service.facts import FactKey, FactRecord
from nocturnus.service.rulebook import Rulebook
from nocturnus.service.tenant import TenantState

AGGREGATE_OPERATIONS = ("COUNT", "SUM", "MIN", "MAX", "AVG")


@dataclass(frozen=True, slots=True)
class Answer:
    """One answer to a goal in one scope; ``record`` is set when it is a stored fact."""

    key: FactKey
    confidence: float | None
    record: FactRecord | None
    proof: Proof | None = None


def fact_order(key: FactKey) -> tuple[Any, ...]:
    return (key.predicate, key.negated, tuple(sort_key(a) for a in key.args), key.scope)


def answer_order(answer: Answer) -> tuple[Any, ...]:
    return (tuple(sort_key(a) for a in answer.key.args), answer.key.scope)


def _scopes(state: TenantState, scope: str | None) -> list[str]:
    return [scope] if scope is not None else state.scopes()


def ask(
    state: TenantState,
    database_rules: Rulebook,
    goal: Literal,
    scope: str | None,
    *,
    min_confidence: float | None = None,
    limit: int | None = None,
    with_proof: bool = False,
) -> list[Answer]:
    """Answer ``goal`` by inference, per scope; no scope means the union over all scopes.

    Inference never joins facts of two scopes: each scope is evaluated alone with its
    scoped and unscoped rules.
    """
    answers: list[Answer] = []
    answered = 0  # scopes with answers: one scope's are sorted already
    arity = len(goal.args)
    for name in _scopes(state, scope):
        view = state.views.get(name)
        if view is None:
            continue
        program = state.program_for(name, database_rules)
        found = view.reasoner.solve(
            program, goal, min_confidence=min_confidence, limit=limit
        )
        answered += bool(found)
        # Answers of a relation with no stored facts are all derived: no lookups.
        stored = view.index.relation((goal.predicate, goal.negated is True, arity))
        predicate, negated = goal.predicate, goal.negated
        for one in found:
            key = FactKey(name, predicate, negated, one.args)
            record = None if stored is None else state.visible(key)
            answers.append(Answer(key, one.confidence, record))
    if answered > 1:
        answers.sort(key=answer_order)
    if limit is not None:
        answers = answers[:limit]
    if with_proof:
        answers = _with_proofs(state, database_rules, answers)
    return answers


def _with_proofs(
    state: TenantState, database_rules: Rulebook, answers: list[Answer]
) -> list[Answer]:
    """The answers with their proofs: one evaluation per scope proves them all."""
    by_scope: dict[str, list[Answer]] = {}
    for answer in answers:
        by_scope.setdefault(answer.key.scope, []).append(answer)
    proofs: dict[FactKey, Proof | None] = {}
    for name, found in by_scope.items():
        view = state.views[name]
        program = state.program_for(name, database_rules)
        goals = [Literal(a.key.predicate, a.key.args, a.key.negated) for a in found]
        for answer, proof in zip(
            found, view.reasoner.explain_all(program, goals), strict=True
        ):
            proofs[answer.key] = proof
    return [Answer(a.key, a.confidence, a.record, proofs[a.key]) for a in answers]


def match(
    state: TenantState,
    predicate: str,
    negated: bool,
    pattern: tuple[Var | Const, ...],
    scope: str | None,
) -> list[FactRecord]:
    """Stored, visible facts matching ``pattern`` — no rules."""
    found: list[FactRecord] = []
    for name in _scopes(state, scope):
        view = state.views.get(name)
        if view is None:
            continue
        for args in view.index.match(predicate, negated, pattern):
            record = state.record(FactKey(name, predicate, negated, args))
            if record is not None:
                found.append(record)
    found.sort(key=lambda r: fact_order(r.key))
    return found


@dataclass(frozen=True, slots=True)
class PredicateStats:
    predicate: str
    arity: int
    fact_count: int
    rule_count: int


def predicates(
    state: TenantState, database_rules: Rulebook, scope: str | None
) -> list[PredicateStats]:
    """Visible fact counts and rule counts per (predicate, arity), sorted by name."""
    facts: dict[tuple[str, int], int] = {}
    for name in _scopes(state, scope):
        view = state.views.get(name)
        if view is None:
            continue
        for predicate, _negated, arity, count in view.index.relations():
            facts[(predicate, arity)] = facts.get((predicate, arity), 0) + count
    rules: dict[tuple[str, int], int] = {}
    for record in _rules_in(state, database_rules, scope):
        head = record.rule.head
        rules[(head.predicate, len(head.args))] = rules.get((head.predicate, len(head.args)), 0) + 1
    return [
        PredicateStats(p, arity, facts.get((p, arity), 0), rules.get((p, arity), 0))
        for p, arity in sorted(set(facts) | set(rules))
    ]


def _rules_in(state: TenantState, database_rules: Rulebook, scope: str | None) -> Iterable[Any]:
    for book in (database_rules, state.rules):
        for record in book:
            if scope is None or record.applies_to(scope):
                yield record


@dataclass(frozen=True, slots=True)
class AggregateResult:
    operation: str
    result: int | float | None
    matched: int


def aggregate(answers: list[Answer], operation: str, arg_index: int) -> AggregateResult:
    """COUNT counts answers; SUM/MIN/MAX/AVG use the numeric values at ``arg_index``.

    Non-numeric values are skipped; MIN/MAX/AVG of nothing is ``None``, SUM of nothing 0.
    """
    if answers and not 0 <= arg_index < len(answers[0].key.args):
        raise ValidationError(
            f"argIndex {arg_index} is out of range for arity {len(answers[0].key.args)}",
            field="argIndex",
        )
    if operation == "COUNT":
        return AggregateResult(operation, len(answers), len(answers))
    values = [
        v for a in answers if (v := _number(a.key.args[arg_index])) is not None
    ]
    result: int | float | None
    if operation == "SUM":
        result = sum(values)
    elif not values:
        result = None
    elif operation == "MIN":
        result = min(values)
    elif operation == "MAX":
        result = max(values)
    else:
        result = sum(values) / len(values)
    return AggregateResult(operation, result, len(answers))


def _number(value: Const) -> int | float | None:
    if isinstance(value, (int, float)):
        return value
    number = numeric_value(value)
    if number is not None and number.is_integer() and "." not in value and "e" not in value.lower():
        return int(number)
    return number
