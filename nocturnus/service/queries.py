"""Read-side questions over a tenant projection: ask, match, predicates, aggregates.

Every function expects ``state.refresh(now)`` to have run, never writes, and returns results
in a deterministic order so that the same knowledge always gives the same bytes.

Inference comes in three steps so that its costly middle can run in a worker thread
(``service/evaluation.py``): :func:`scope_questions` (on the event loop: the scopes'
views and programs), :func:`evaluate` and :func:`prove` (the engine, on nothing but
the views and programs, under a budget), :func:`collect` (on the loop again: stored
records, scopes merged). :func:`answer_set` and :func:`with_proofs` run them in a row.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nocturnus.engine.budget import Budget
from nocturnus.engine.evaluate import Matches, Program, Reasoner
from nocturnus.engine.order import sort_rows
from nocturnus.engine.prepared import Plans
from nocturnus.engine.proofs import Proof
from nocturnus.engine.rules import Literal
from nocturnus.engine.table import Row
from nocturnus.engine.terms import Const, Var, numeric_value, sort_key
from nocturnus.errors import ValidationError
from nocturnus.service.answers import Answer, AnswerSet, ScopeAnswers, merge
from nocturnus.service.facts import FactKey, FactRecord, RelationKey, Stored
from nocturnus.service.projection import ScopeView, TenantState
from nocturnus.service.rulebook import Rulebook

AGGREGATE_OPERATIONS = ("COUNT", "SUM", "MIN", "MAX", "AVG")


def fact_order(key: FactKey) -> tuple[Any, ...]:
    """A total order of facts: predicate, sign, args (``sort_key``), then scope."""
    return (key.predicate, key.negated, tuple(sort_key(a) for a in key.args), key.scope)


def _scopes(state: TenantState, scope: str | None) -> list[str]:
    return [scope] if scope is not None else state.scopes()


@dataclass(frozen=True, slots=True)
class ScopeQuestion:
    """What inference over one scope reads: its view and its checked program."""

    scope: str
    view: ScopeView
    program: Program


def scope_questions(
    state: TenantState, database_rules: Rulebook, scope: str | None
) -> list[ScopeQuestion]:
    """The scopes a question reads (no scope: all of them), with their programs.

    The rules' constants are interned here, so the evaluation, wherever it runs,
    only ever reads the interner.
    """
    found = []
    for name in _scopes(state, scope):
        view = state.views.get(name)
        if view is None:
            continue
        program = state.program_for(name, database_rules)
        if view.interned is not program:
            intern = view.index.interner.intern
            for rule in program.rules:
                for literal in (rule.head, *rule.body):
                    for arg in literal.args:
                        if not isinstance(arg, Var):
                            intern(arg)
            view.interned = program
        found.append(ScopeQuestion(name, view, program))
    return found


def evaluate(
    questions: Sequence[ScopeQuestion],
    goal: Literal,
    *,
    min_confidence: float | None = None,
    plans: Plans | None = None,
    budget: Budget | None = None,
) -> list[Matches]:
    """Every answer to ``goal`` in each scope, as the engine's rows.

    Inference never joins facts of two scopes: each scope is evaluated alone with its
    scoped and unscoped rules. ``plans`` keeps the tenant's prepared plans.

    :raises BudgetExceeded: past ``budget``, over all scopes together.
    """
    return [
        _reasoner(q.view, budget).matches(
            q.program, goal, min_confidence=min_confidence, plans=plans
        )
        for q in questions
    ]


def _reasoner(view: ScopeView, budget: Budget | None) -> Reasoner:
    """The view's reasoner under ``budget`` (a reasoner is cheap: its caches are the
    index's), keeping the view's observer (the differential tests count strategies)."""
    return Reasoner(view.index, view.reasoner.observe, budget)


def collect(
    state: TenantState,
    goal: Literal,
    questions: Sequence[ScopeQuestion],
    found: Sequence[Matches],
) -> AnswerSet:
    """The answers :func:`evaluate` found, with the stored facts among them."""
    arity = len(goal.args)
    relation = (goal.predicate, goal.negated is True, arity)
    parts = []
    for question, matches in zip(questions, found, strict=True):
        if not matches.rows:
            continue
        index = question.view.index
        values = index.interner.values
        # Answers of a relation with no stored facts are all derived: no lookups.
        visible = index.relation(relation)
        stored = None
        if visible is not None:
            stored = _stored(
                state, question.scope, relation, matches.rows, visible.rows, values
            )
        parts.append(
            ScopeAnswers(question.scope, matches.rows, values, matches.confidences, stored)
        )
    return merge(goal.predicate, goal.negated, arity, parts)


def answer_set(
    state: TenantState,
    database_rules: Rulebook,
    goal: Literal,
    scope: str | None,
    *,
    min_confidence: float | None = None,
    plans: Plans | None = None,
    budget: Budget | None = None,
) -> AnswerSet:
    """Every answer to ``goal`` by inference, in bulk; no scope means all scopes.

    :func:`scope_questions`, :func:`evaluate` and :func:`collect` in a row.

    :raises BudgetExceeded: past ``budget``.
    """
    questions = scope_questions(state, database_rules, scope)
    found = evaluate(
        questions, goal, min_confidence=min_confidence, plans=plans, budget=budget
    )
    return collect(state, goal, questions, found)


def _stored(
    state: TenantState,
    scope: str,
    relation: RelationKey,
    rows: Sequence[Row],
    visible: Mapping[Row, Any],
    values: Sequence[Const],
) -> list[Stored | None] | None:
    """Per row, what ``scope`` stores for it when it is a visible stored fact.

    None when no row is one (every answer derived).
    """
    scoped = state.facts.get(scope)
    if scoped is None or relation not in scoped.relations():
        return None
    found: list[Stored | None] = []
    anything = False
    peek = scoped.peek
    for row in rows:
        if row not in visible:
            found.append(None)
            continue
        stored = peek(relation, tuple([values[i] for i in row]))
        anything = anything or stored is not None
        found.append(stored)
    return found if anything else None


def ask(
    state: TenantState,
    database_rules: Rulebook,
    goal: Literal,
    scope: str | None,
    *,
    min_confidence: float | None = None,
    limit: int | None = None,
    with_proof: bool = False,
    budget: Budget | None = None,
) -> list[Answer]:
    """:func:`answer_set` as one object per answer, the first ``limit`` of them.

    :raises BudgetExceeded: past ``budget``.
    """
    found = answer_set(
        state, database_rules, goal, scope, min_confidence=min_confidence, budget=budget
    )
    if limit is not None:
        found = found.page(0, limit)
    answers = found.answers()
    if with_proof:
        answers = with_proofs(state, database_rules, answers, budget)
    return answers


def with_proofs(
    state: TenantState,
    database_rules: Rulebook,
    answers: list[Answer],
    budget: Budget | None = None,
) -> list[Answer]:
    """The answers with their proofs: one evaluation per scope proves them all.

    :raises BudgetExceeded: past ``budget``.
    """
    scopes = sorted({a.key.scope for a in answers})
    questions = [q for name in scopes for q in scope_questions(state, database_rules, name)]
    return prove(questions, answers, budget)


def prove(
    questions: Sequence[ScopeQuestion],
    answers: list[Answer],
    budget: Budget | None = None,
) -> list[Answer]:
    """:func:`with_proofs` over the scope questions of the answers' scopes.

    :raises BudgetExceeded: past ``budget``.
    """
    by_scope: dict[str, list[Answer]] = {}
    for answer in answers:
        by_scope.setdefault(answer.key.scope, []).append(answer)
    proofs: dict[FactKey, Proof | None] = {}
    for question in questions:
        found = by_scope.get(question.scope, [])
        goals = [Literal(a.key.predicate, a.key.args, a.key.negated) for a in found]
        reasoner = _reasoner(question.view, budget)
        for answer, proof in zip(
            found, reasoner.explain_all(question.program, goals), strict=True
        ):
            proofs[answer.key] = proof
    return [Answer(a.key, a.confidence, a.record, proofs[a.key]) for a in answers]


def match_set(
    state: TenantState,
    predicate: str,
    negated: bool,
    pattern: tuple[Var | Const, ...],
    scope: str | None,
) -> AnswerSet:
    """Stored, visible facts matching ``pattern``, in bulk — no rules."""
    arity = len(pattern)
    relation = (predicate, negated is True, arity)
    parts = []
    for name in _scopes(state, scope):
        view = state.views.get(name)
        visible = None if view is None else view.index.relation(relation)
        if view is None or visible is None:
            continue
        rows = view.index.match_rows(visible, pattern)
        if not rows:
            continue
        interner = view.index.interner
        ordered = sort_rows(rows, arity, interner)
        stored = _stored(state, name, relation, ordered, visible.rows, interner.values)
        if stored is None:
            continue
        confidences = visible.rows if visible.annotated else None
        parts.append(ScopeAnswers(name, ordered, interner.values, confidences, stored))
    return merge(predicate, negated, arity, parts)


def match(
    state: TenantState,
    predicate: str,
    negated: bool,
    pattern: tuple[Var | Const, ...],
    scope: str | None,
) -> list[FactRecord]:
    """:func:`match_set` as records, in answer order."""
    found = match_set(state, predicate, negated, pattern, scope)
    return [a.record for a in found.answers() if a.record is not None]


@dataclass(frozen=True, slots=True)
class PredicateStats:
    """A predicate of ``GET /predicates``: arity, stored facts, rules concluding it."""

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
    """A ``POST /aggregate``: the operation, its result, how many answers it read."""

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
