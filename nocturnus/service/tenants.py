"""Tenant-level operations: what every surface (REST, MCP, CLI) calls.

Each write loads the tenant, brings it to the current time, decides, and commits — with no
``await`` between the decision and the commit, so decisions follow the write order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from nocturnus.engine.prepared import Plans
from nocturnus.engine.rules import Literal
from nocturnus.engine.terms import Const, Var
from nocturnus.errors import NocturnusError, ValidationError
from nocturnus.service import answers, queries
from nocturnus.service.commands import (
    PriorityOutcome,
    RetractOutcome,
    StagedFacts,
    TeachOutcome,
    TeachRule,
    TellFact,
    TellOutcome,
    decide_forget,
    decide_priority,
    decide_remove_rule,
    decide_retract_all,
    decide_teach,
    decide_tell,
)
from nocturnus.service.constraints import (
    AddConstraint,
    ConstraintRecord,
    RestrictOutcome,
    decide_restrict,
    decide_unrestrict,
    listed,
)
from nocturnus.service.database import DATABASE_LEVEL, Database, DatabaseState, now_ms
from nocturnus.service.evaluation import pinned
from nocturnus.service.events import Event, TenantCreated, TenantDeleted
from nocturnus.service.facts import FactKey, FactRecord
from nocturnus.service.projection import TenantState
from nocturnus.service.retry import retried
from nocturnus.service.rulebook import Rulebook, RuleRecord
from nocturnus.service.salience import proof_facts

Db = Database[DatabaseState]


@retried
async def tell(db: Db, tenant: str, cmd: TellFact) -> TellOutcome:
    """Store a fact (``POST /tell``), resolving a contradiction by strategy.

    :raises Conflict: ``REJECT`` and the opposite fact is visible.
    :raises ValidationError: ``validUntil`` not after ``validFrom``.
    """
    state, now = await db.current(tenant)
    events, outcome = decide_tell(state, cmd, now, db.default_conflict_strategy)
    await db.commit(tenant, events, now)
    return outcome


@dataclass(frozen=True, slots=True)
class BulkError:
    """A fact of a bulk tell that was not stored, and why."""

    index: int
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class BulkOutcome:
    """What a bulk tell stored, and the facts it refused."""

    asserted: int
    errors: tuple[BulkError, ...]


@retried
async def tell_many(db: Db, tenant: str, cmds: Sequence[TellFact], atomic: bool) -> BulkOutcome:
    """Tell facts in one append; ``atomic`` means any failure stores nothing.

    :raises ValidationError: atomic mode with at least one failing item (details list them).
    """
    state, now = await db.current(tenant)
    decided = _decide_each(StagedFacts(state, now), cmds, now, db, skip_visible=False)
    errors = decided.errors
    if atomic and errors:
        first = errors[0]
        raise _AtomicBulkFailed(
            f"atomic bulk rejected: facts[{first.index}]: {first.message}",
            {"errors": [{"index": e.index, "code": e.code, "message": e.message} for e in errors]},
        )
    await db.commit(tenant, decided.events, now)
    return BulkOutcome(len(cmds) - len(errors), tuple(errors))


@dataclass(frozen=True, slots=True)
class NewFacts:
    """What :func:`tell_new` did with each command, by index into its list."""

    stored: tuple[int, ...]
    known: tuple[int, ...]
    errors: tuple[BulkError, ...]


@retried
async def tell_new(db: Db, tenant: str, cmds: Sequence[TellFact], *, dry: bool) -> NewFacts:
    """Tell, in one append, the facts that are not visible yet (issue 19's extraction).

    A fact already visible is left as it is (its first source stays its provenance),
    so telling the same facts twice stores nothing the second time. The others follow
    the tenant's conflict strategy; a refused one is listed in ``errors``. ``dry``
    decides everything and stores nothing.
    """
    state, now = await db.current(tenant)
    decided = _decide_each(StagedFacts(state, now), cmds, now, db, skip_visible=True)
    if not dry:
        await db.commit(tenant, decided.events, now)
    return NewFacts(decided.stored, decided.known, decided.errors)


@dataclass(frozen=True, slots=True)
class _Decided:
    events: list[Event]
    stored: tuple[int, ...]
    known: tuple[int, ...]
    errors: tuple[BulkError, ...]


def _decide_each(
    staged: StagedFacts, cmds: Sequence[TellFact], now: int, db: Db, *, skip_visible: bool
) -> _Decided:
    """Decide each tell against the facts as the earlier ones leave them."""
    events: list[Event] = []
    stored: list[int] = []
    known: list[int] = []
    errors: list[BulkError] = []
    for index, cmd in enumerate(cmds):
        if skip_visible and staged.visible(cmd.key) is not None:
            known.append(index)
            continue
        try:
            decided, outcome = decide_tell(staged, cmd, now, db.default_conflict_strategy)
        except NocturnusError as e:
            errors.append(BulkError(index, e.code, e.message))
            continue
        if not decided:
            if skip_visible and outcome.record.key != cmd.key:  # CONFIDENCE kept the opposite
                errors.append(BulkError(index, "CONFLICT", outcome.message))
            else:  # already known (bulk tells count it as asserted, as before)
                known.append(index)
            continue
        staged.stage(decided)
        events.extend(decided)
        stored.append(index)
    return _Decided(events, tuple(stored), tuple(known), tuple(errors))


class _AtomicBulkFailed(ValidationError):
    def __init__(self, message: str, details: dict[str, object]) -> None:
        super().__init__(message, details=details)


@retried
async def forget(db: Db, tenant: str, key: FactKey) -> RetractOutcome:
    """Remove one stored fact, visible or not (``POST /forget``); none is no error."""
    state, now = await db.current(tenant)
    events, outcome = decide_forget(state, key)
    await db.commit(tenant, events, now)
    return outcome


@retried
async def retract_pattern(
    db: Db,
    tenant: str,
    predicate: str,
    negated: bool,
    pattern: tuple[Var | Const, ...],
    scope: str,
) -> RetractOutcome:
    """Retract every visible fact of ``scope`` matching the pattern."""
    state, now = await db.current(tenant)
    matched = queries.match(state, predicate, negated, pattern, scope)
    events, outcome = decide_retract_all(state, matched)
    await db.commit(tenant, events, now)
    return outcome


@retried
async def teach(db: Db, tenant: str, cmd: TeachRule) -> TeachOutcome:
    """Teach the tenant a rule (``POST /teach``).

    :raises ValidationError: unsafe, or the program would not stratify.
    """
    state, now = await db.current(tenant)
    events, outcome = decide_teach(state.rules, cmd, now, "tenant", db.root.rules)
    await db.commit(tenant, events, now)
    return outcome


@retried
async def teach_many(db: Db, tenant: str, cmds: Sequence[TeachRule]) -> list[TeachOutcome]:
    """Teach rules in one append: each is checked with the ones before it, all or none.

    :raises ValidationError: a rule is unsafe or the rules together are not stratified.
    """
    state, now = await db.current(tenant)
    staged = Rulebook()
    for record in state.rules:
        staged.add(record)
    events: list[Event] = []
    outcomes = []
    for cmd in cmds:
        decided, outcome = decide_teach(staged, cmd, now, "tenant", db.root.rules)
        if outcome.stored:
            staged.add(outcome.record)
        events.extend(decided)
        outcomes.append(outcome)
    await db.commit(tenant, events, now)
    return outcomes


@retried
async def remove_rule(db: Db, tenant: str, rule_id: str) -> None:
    """Remove one of the tenant's rules (``DELETE /rules/<id>``).

    :raises NotFound: no such tenant rule.
    """
    state, now = await db.current(tenant)
    await db.commit(tenant, decide_remove_rule(state.rules, rule_id), now)


@retried
async def teach_database_rule(db: Db, cmd: TeachRule) -> TeachOutcome:
    """A rule every tenant of the database uses (checked alone: tenants may add more)."""
    await db.fresh()
    now = now_ms()
    events, outcome = decide_teach(db.root.rules, cmd, now, "database")
    await db.commit(DATABASE_LEVEL, events, now)
    return outcome


@retried
async def remove_database_rule(db: Db, rule_id: str) -> None:
    """Remove a database-wide rule (``DELETE /admin/databases/<db>/rules/<id>``).

    :raises NotFound: no such database rule.
    """
    await db.fresh()
    now = now_ms()
    await db.commit(DATABASE_LEVEL, decide_remove_rule(db.root.rules, rule_id), now)


def database_rules(db: Db) -> list[RuleRecord]:
    """The database-wide rules, in teaching order."""
    return sorted(db.root.rules, key=lambda r: (r.created_at, r.rule.id))


async def rules(db: Db, tenant: str) -> list[RuleRecord]:
    """The database's rules, then the tenant's own, each in teaching order."""
    state = await db.tenant(tenant)
    own = sorted(state.rules, key=lambda r: (r.created_at, r.rule.id))
    return database_rules(db) + own


@retried
async def restrict(db: Db, tenant: str, cmd: AddConstraint) -> RestrictOutcome:
    """Add a RESTRICT constraint; later writes that would make it hold are refused."""
    state, now = await db.current(tenant)
    rules = db.root.rules
    events, outcome = db.evaluator.bounded(
        lambda budget: decide_restrict(state, rules, cmd, now, budget)
    )
    await db.commit(tenant, events, now)
    return outcome


@retried
async def remove_constraint(db: Db, tenant: str, constraint_id: str) -> None:
    """Remove one of the tenant's RESTRICT constraints.

    :raises NotFound: no such constraint.
    """
    state, now = await db.current(tenant)
    await db.commit(tenant, decide_unrestrict(state, constraint_id), now)


async def constraints(db: Db, tenant: str) -> list[ConstraintRecord]:
    """The tenant's RESTRICT constraints."""
    return listed(await db.tenant(tenant))


def plans_of(db: Db, tenant: str) -> Plans:
    """The tenant's prepared plans (the cache is shared by every database)."""
    return db.plans.of((db.name, tenant))


@dataclass(frozen=True, slots=True)
class Asked:
    """A page of a goal's answers; ``proved`` holds its answers with proofs if asked."""

    page: answers.Page
    proved: list[answers.Answer] | None = None


def question(kind: str, goal: Literal, scope: str | None, *extra: object) -> str:
    """The fingerprint a cursor of this question carries (see ``answers.page``)."""
    pattern = [a.text() if isinstance(a, Var) else a for a in goal.args]
    return answers.fingerprint(kind, goal.predicate, goal.negated, pattern, scope, *extra)


async def ask(
    db: Db,
    tenant: str,
    goal: Literal,
    scope: str | None,
    *,
    min_confidence: float | None = None,
    limit: int | None = None,
    with_proof: bool = False,
) -> list[answers.Answer]:
    """The first ``limit`` answers to ``goal`` (all without a limit), one object each."""
    asked = await ask_page(
        db,
        tenant,
        goal,
        scope,
        min_confidence=min_confidence,
        limit=limit,
        with_proof=with_proof,
    )
    return asked.page.answers.answers() if asked.proved is None else asked.proved


async def ask_page(
    db: Db,
    tenant: str,
    goal: Literal,
    scope: str | None,
    *,
    min_confidence: float | None = None,
    limit: int | None = None,
    cursor: str | None = None,
    with_proof: bool = False,
) -> Asked:
    """A page of the answers to ``goal`` by inference (all of them without a limit).

    The stored facts among the answers, and the premises of their proofs, count as
    used (salience). Evaluation runs in a worker under the request's budget
    (``service/evaluation.py``).

    :raises ValidationError: a cursor of another question, or not a cursor at all.
    :raises QueryBudgetExceeded: past the budget, or a page of more answers than
        one response may carry.
    """
    evaluator = db.evaluator
    async with evaluator.turn((db.name, tenant)):
        state, now = await db.current(tenant)
        questions = queries.scope_questions(state, db.root.rules, scope)
        views = [q.view for q in questions]
        with pinned(state, views):  # the proofs are of the answers' state
            everything = await _answer_set(db, tenant, state, questions, goal, min_confidence)
            asked = question("ask", goal, scope, min_confidence)
            selected = answers.page(everything, asked, limit, cursor)
            evaluator.check_answers(len(selected.answers))
            used = selected.answers.stored_keys()
            proved = None
            if with_proof:
                page = selected.answers.answers()
                proved = await evaluator.run(
                    state, views, lambda budget: queries.prove(questions, page, budget)
                )
    if proved is not None:
        for a in proved:
            if a.proof is not None and a.proof.type != "fact":
                used.extend(proof_facts(a.proof, a.key.scope))
    # salience: answers and proof premises count as uses
    db.record_uses(tenant, used, now)
    return Asked(selected, proved)


async def count_answers(
    db: Db,
    tenant: str,
    goal: Literal,
    scope: str | None,
    *,
    min_confidence: float | None = None,
) -> int:
    """How many answers ``goal`` has by inference (no answer is returned or used).

    :raises QueryBudgetExceeded: past the budget (``ask_page``).
    """
    async with db.evaluator.turn((db.name, tenant)):
        state, _ = await db.current(tenant)
        questions = queries.scope_questions(state, db.root.rules, scope)
        found = await _answer_set(db, tenant, state, questions, goal, min_confidence)
        return len(found)


async def proved_answers(
    db: Db, tenant: str, state: TenantState, goal: Literal, scope: str | None, limit: int
) -> list[answers.Answer]:
    """The first ``limit`` answers to ``goal``, with their proofs, evaluated in a
    worker under the budget (a context window's goals; taking the tenant's turn is
    the caller's). Nothing counts as used: the window decides that.

    :raises QueryBudgetExceeded: past the budget.
    """
    questions = queries.scope_questions(state, db.root.rules, scope)
    views = [q.view for q in questions]
    with pinned(state, views):  # the proofs are of the answers' state
        found = await _answer_set(db, tenant, state, questions, goal, None)
        page = found.page(0, limit).answers()
        return await db.evaluator.run(
            state, views, lambda budget: queries.prove(questions, page, budget)
        )


async def _answer_set(
    db: Db,
    tenant: str,
    state: TenantState,
    questions: list[queries.ScopeQuestion],
    goal: Literal,
    min_confidence: float | None,
) -> answers.AnswerSet:
    """Every answer to ``goal`` over ``questions``, evaluated in a worker (taking the
    tenant's turn is the caller's).

    :raises QueryBudgetExceeded: past the budget.
    """
    plans = plans_of(db, tenant)
    found = await db.evaluator.run(
        state,
        [q.view for q in questions],
        lambda budget: queries.evaluate(
            questions, goal, min_confidence=min_confidence, plans=plans, budget=budget
        ),
    )
    return queries.collect(state, goal, questions, found)


async def match(
    db: Db,
    tenant: str,
    predicate: str,
    negated: bool,
    pattern: tuple[Var | Const, ...],
    scope: str | None,
) -> list[FactRecord]:
    """Every stored, visible fact matching ``pattern``, in answer order."""
    page = await match_page(db, tenant, predicate, negated, pattern, scope)
    return [a.record for a in page.answers.answers() if a.record is not None]


async def match_page(
    db: Db,
    tenant: str,
    predicate: str,
    negated: bool,
    pattern: tuple[Var | Const, ...],
    scope: str | None,
    *,
    limit: int | None = None,
    cursor: str | None = None,
) -> answers.Page:
    """A page of the stored facts matching ``pattern`` (all of them without a limit).

    :raises ValidationError: a cursor of another question, or not a cursor at all.
    """
    state, _ = await db.current(tenant)
    found = queries.match_set(state, predicate, negated, pattern, scope)
    asked = question("query", Literal(predicate, pattern, negated), scope)
    return answers.page(found, asked, limit, cursor)


@dataclass(frozen=True, slots=True)
class FactPage:
    """A page of a tenant's facts (``GET /admin/databases/{db}/facts``)."""

    facts: list[FactRecord]
    total: int
    next_offset: int | None


async def list_facts(
    db: Db, tenant: str, scope: str | None, *, offset: int, limit: int
) -> FactPage:
    """The tenant's stored facts visible now (of ``scope``, or of every scope), in a
    stable order, ``limit`` of them from ``offset``: what an admin or a migration script
    reads to see a whole tenant without knowing its predicates."""
    state, _ = await db.current(tenant)
    now = now_ms()
    records = [
        r
        for name, scoped in state.facts.items()
        if scope is None or name == scope
        for r in scoped.records()
        if r.is_visible(now)
    ]
    records.sort(key=lambda r: queries.fact_order(r.key))
    end = offset + limit
    return FactPage(records[offset:end], len(records), end if end < len(records) else None)


async def predicates(db: Db, tenant: str, scope: str | None) -> list[queries.PredicateStats]:
    """Per predicate: arity, stored facts and rules (``GET /predicates``)."""
    state, _ = await db.current(tenant)
    return queries.predicates(state, db.root.rules, scope)


@dataclass(frozen=True, slots=True)
class TenantInfo:
    """A tenant of a database: when it was created, how many facts and rules it has."""

    name: str
    created_at: int
    facts: int
    rules: int


async def list_tenants(db: Db) -> list[TenantInfo]:
    """Every live tenant of the database, by name (loads each)."""
    infos = []
    for name, created in sorted(db.tenant_names.items()):
        state = await db.tenant(name)
        infos.append(
            TenantInfo(
                name, state.created_at or created, state.fact_count(), len(state.rules)
            )
        )
    return infos


@retried
async def create_tenant(db: Db, tenant: str) -> bool:
    """Register a tenant explicitly; False when it already exists."""
    _, now = await db.current(tenant)
    if tenant in db.tenant_names:
        return False
    await db.commit(tenant, [TenantCreated(created_at=now)], now)
    return True


@retried
async def delete_tenant(db: Db, tenant: str) -> TenantInfo | None:
    """Delete all of a tenant's data (its key is destroyed with the event); None if unknown."""
    state, now = await db.current(tenant)
    if tenant not in db.tenant_names:
        return None
    info = TenantInfo(tenant, state.created_at or now, state.fact_count(), len(state.rules))
    await db.commit(tenant, [TenantDeleted(facts=info.facts, rules=info.rules)], now)
    db.plans.drop((db.name, tenant))
    return info


@retried
async def set_priority(
    db: Db, tenant: str, key: FactKey, priority: float
) -> PriorityOutcome:
    """Set a stored fact's explicit salience priority (``POST /memory/priority``).

    :raises NotFound: no such stored fact in that scope.
    """
    state, now = await db.current(tenant)
    events, outcome = decide_priority(state, key, priority)
    await db.commit(tenant, events, now)
    return outcome
