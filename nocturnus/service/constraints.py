"""RESTRICT constraints: conjunctions that must never hold in a tenant's knowledge.

A constraint (``RESTRICT ?x { employee(?x) AND NOT badge(?x) }``) is knowledge like a
rule: a ``constraint_added`` event creates it, ``constraint_removed`` drops it, both
go through the same ``apply`` at write time and at replay, and snapshots keep them.
It holds tenant-wide and is evaluated in each scope on its own, with that scope's facts
and rules (database rules included), as ``/ask`` would.

Enforcement happens when a tenant's events are committed (:func:`check_writes`, called
by ``Database.commit``), so every write path — REST, MCP, the text syntax, bulk calls,
scope merges — is checked the same way: the write is refused (409 ``CONFLICT``, nothing
stored) when, in a scope it touches, the knowledge after it satisfies a constraint with
an answer the knowledge before it did not have. Writes that leave a constraint's
relations alone cost one set lookup; the others cost one evaluation of the constraint
body (two when it has answers), over the scope's index changed in place for the
duration of the check and restored right after, with no ``await`` in between.

Not checked: database rules taught by an admin (they would need every tenant of the
database re-evaluated), and facts that become visible later on their own (``validFrom``
in the future): a check sees the knowledge visible at the write.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nocturnus.engine.analysis import ProgramError, check_rule
from nocturnus.engine.budget import Budget
from nocturnus.engine.evaluate import Program, Reasoner
from nocturnus.engine.index import FactIndex
from nocturnus.engine.rules import Literal, Rule, format_term
from nocturnus.engine.syntax import Atom, Restrict
from nocturnus.engine.syntax import text as syntax_text
from nocturnus.engine.terms import Const, Var, const_key
from nocturnus.errors import Conflict, NotFound, ValidationError
from nocturnus.service.codec import unnest
from nocturnus.service.events import (
    ConstraintAdded,
    ConstraintRemoved,
    Event,
    FactExpired,
    FactRetracted,
    FactsUsed,
    FactTold,
    PrioritySet,
    RuleRemoved,
    RuleTaught,
    ScopeDeleted,
    ScopeForked,
    ScopeMerged,
    TenantCreated,
    TenantDeleted,
    TransactionCommitted,
)
from nocturnus.service.facts import FactRecord
from nocturnus.service.rulebook import Rulebook, RuleRecord, literal_from_dict

if TYPE_CHECKING:  # projection.py imports this module for ConstraintRecord
    from nocturnus.service.projection import TenantState

MAX_WITNESSES = 10
_VIOLATION = (
    "\x00restrict "  # head of the rule that finds violations: no user writes it
)


@dataclass(frozen=True, slots=True)
class ConstraintRecord:
    """A stored constraint: its body as engine literals and as logged."""

    id: str
    body: tuple[dict[str, Any], ...]
    premises: tuple[Literal, ...]
    created_at: int

    @classmethod
    def from_event(cls, event: ConstraintAdded) -> ConstraintRecord:
        """The constraint a ``constraint_added`` event adds."""
        premises = tuple(literal_from_dict(b) for b in event.body)
        return cls(event.id, tuple(event.body), premises, event.created_at)

    @property
    def variables(self) -> tuple[Var, ...]:
        """The named variables of the positive literals, in order: a witness's."""
        seen: dict[Var, None] = {}
        for literal in self.premises:
            if not (literal.naf or literal.is_builtin):
                for var in literal.variables:
                    if not var.is_anonymous:
                        seen[var] = None
        return tuple(seen)

    def rule(self, head: str | None = None) -> Rule:
        """The rule deriving one row per violation (``head``: its name if not ours)."""
        name = head if head is not None else _VIOLATION + self.id
        return Rule(self.id, Literal(name, self.variables), self.premises)

    def text(self) -> str:
        """``RESTRICT { a(?x) AND NAF b(?x) }`` — reads back as this constraint."""
        atoms = tuple(
            Atom(b["predicate"], tuple(b["args"]), b["negated"], b["naf"])
            for b in self.body
        )
        return syntax_text.statement(Restrict(1, 1, atoms)).removesuffix(".")


@dataclass(frozen=True, slots=True)
class Witness:
    """A scope where a constraint holds, and the values of its variables there."""

    scope: str
    bindings: tuple[tuple[str, Const], ...]

    @property
    def identity(self) -> tuple[object, ...]:
        """Equal for the same answer only (500, 500.0 and "500" stay apart)."""
        return (self.scope, tuple((n, const_key(v)) for n, v in self.bindings))


@dataclass(frozen=True, slots=True)
class AddConstraint:
    """The command: ``body`` holds ``{predicate, args, negated, naf}`` literals."""

    body: tuple[dict[str, Any], ...]


@dataclass(frozen=True, slots=True)
class RestrictOutcome:
    """What adding a constraint did: stored or not (an identical one exists), and it."""

    stored: bool
    record: ConstraintRecord


def decide_restrict(
    state: TenantState,
    database_rules: Rulebook,
    cmd: AddConstraint,
    now_ms: int,
    budget: Budget | None = None,
) -> tuple[list[Event], RestrictOutcome]:
    """Add a constraint the knowledge satisfies now; an identical one changes nothing.

    ``budget`` bounds the evaluations finding the witnesses (issue 13).

    :raises ValidationError: a variable of a NAF literal or comparison occurs in no
        positive literal, so the constraint could not be decided.
    :raises Conflict: the knowledge already violates it (the witnesses are listed).
    :raises BudgetExceeded: past ``budget``.
    """
    event = ConstraintAdded(
        id="c_" + secrets.token_hex(6), body=cmd.body, created_at=now_ms
    )
    record = ConstraintRecord.from_event(event)
    for known in state.constraints.values():
        if known.premises == record.premises:
            return [], RestrictOutcome(False, known)
    try:
        check_rule(record.rule(head="RESTRICT"))
    except ProgramError as e:
        raise ValidationError(f"invalid constraint: {e}", field="body") from e
    witnesses = [
        witness
        for scope in state.scopes()
        for witness in _violations(state, database_rules, scope, record, budget)
    ]
    if witnesses:
        raise _violated(record, witnesses, "the knowledge already violates it")
    return [event], RestrictOutcome(True, record)


def decide_unrestrict(state: TenantState, constraint_id: str) -> list[Event]:
    """:raises NotFound: the tenant has no such constraint."""
    if constraint_id not in state.constraints:
        raise NotFound(f"Constraint '{constraint_id}' not found")
    return [ConstraintRemoved(id=constraint_id)]


def listed(state: TenantState) -> list[ConstraintRecord]:
    """The tenant's constraints in the order they were added."""
    return sorted(state.constraints.values(), key=lambda c: (c.created_at, c.id))


# -- enforcement ----------------------------------------------------------------------


@dataclass(slots=True)
class _Changes:
    """What a batch of events does to one scope's visible facts (last event wins)."""

    facts: dict[tuple[str, bool, tuple[Const, ...]], float | None | _Removed]
    rules: bool = False


class _Removed:
    """Marks a fact the batch makes invisible."""


REMOVED = _Removed()
ChangeReader = Callable[[Event, int, dict[str, _Changes]], None]


def _scope_changes(changes: dict[str, _Changes], scope: str) -> _Changes:
    found = changes.get(scope)
    if found is None:
        found = changes[scope] = _Changes({})
    return found


def _told(event: FactTold, now_ms: int, changes: dict[str, _Changes]) -> None:
    _tell_into(changes, event.scope, event, now_ms)


def _tell_into(
    changes: dict[str, _Changes], scope: str, event: FactTold, now_ms: int
) -> None:
    record = FactRecord.from_event(event)
    key = (event.predicate, event.negated, tuple(event.args))
    facts = _scope_changes(changes, scope).facts
    facts[key] = record.confidence if record.is_visible(now_ms) else REMOVED


def _retracted(event: FactRetracted, now_ms: int, changes: dict[str, _Changes]) -> None:
    key = (event.predicate, event.negated, tuple(event.args))
    _scope_changes(changes, event.scope).facts[key] = REMOVED


def _merged(event: ScopeMerged, now_ms: int, changes: dict[str, _Changes]) -> None:
    facts = _scope_changes(changes, event.target).facts
    for fact in event.retracted:
        facts[(fact["predicate"], fact["negated"], tuple(fact["args"]))] = REMOVED
    for fact in event.facts:
        told = FactTold(**{**fact, "args": tuple(fact["args"]), "scope": event.target})
        _tell_into(changes, event.target, told, now_ms)


def _rule_changed(event: Event, now_ms: int, changes: dict[str, _Changes]) -> None:
    changes.setdefault("", _Changes({})).rules = True  # "" stands for every scope


def _expired(event: FactExpired, now_ms: int, changes: dict[str, _Changes]) -> None:
    key = (event.predicate, event.negated, tuple(event.args))
    _scope_changes(changes, event.scope).facts[key] = REMOVED


def _flat(events: Sequence[Event]) -> list[Event]:
    """``events`` with each ``transaction_committed`` replaced by the events it holds."""
    flat: list[Event] = []
    for event in events:
        if isinstance(event, TransactionCommitted):
            flat.extend(_flat(unnest(event.events)))
        else:
            flat.append(event)
    return flat


# By kind, so each reader gets its own event class: narrower than ChangeReader's Event.
CHANGE_READERS: dict[str, ChangeReader] = {
    FactTold.kind: _told,  # type: ignore[dict-item]  # keyed by FactTold.kind
    FactRetracted.kind: _retracted,  # type: ignore[dict-item]  # by its kind
    FactExpired.kind: _expired,  # type: ignore[dict-item]  # by its kind
    ScopeMerged.kind: _merged,  # type: ignore[dict-item]  # by its kind
    RuleTaught.kind: _rule_changed,
    RuleRemoved.kind: _rule_changed,
}
"""How each event kind changes what a constraint sees; a new kind that tells, retracts
or teaches registers its reader here (a census test lists every applied kind)."""

HARMLESS_KINDS = frozenset(
    {
        PrioritySet.kind,  # salience only
        FactsUsed.kind,  # salience only
        ScopeForked.kind,  # a copy of a scope that satisfies the constraints
        ScopeDeleted.kind,  # a scope without facts satisfies every constraint
        TenantCreated.kind,
        TenantDeleted.kind,
        ConstraintAdded.kind,  # checked by its own decision
        ConstraintRemoved.kind,
        TransactionCommitted.kind,  # read as the events it holds (_flat)
    }
)
"""Event kinds that can never make a constraint hold."""


def check_writes(
    state: TenantState,
    database_rules: Rulebook,
    events: Sequence[Event],
    now_ms: int,
    budget: Budget | None = None,
) -> None:
    """Refuse ``events`` if they would make one of the tenant's constraints hold.

    Call it right before the events are applied, with the state refreshed to
    ``now_ms``. Does nothing when the tenant has no constraints. ``budget`` spans
    every evaluation of the check (issue 13: a constraint over a heavy rule must not
    hold the write, and the event loop, unbounded); a check stopped by it changes
    nothing (the index is restored).

    :raises Conflict: naming the constraint and up to 10 witnesses.
    :raises BudgetExceeded: past ``budget``.
    """
    if not state.constraints:
        return
    events = _flat(events)  # a transaction's events count one by one (issue 18)
    changes: dict[str, _Changes] = {}
    for event in events:
        reader = CHANGE_READERS.get(event.kind)
        if reader is not None:
            reader(event, now_ms, changes)
        elif event.kind not in HARMLESS_KINDS:
            raise AssertionError(f"constraints: unknown event kind {event.kind!r}")
    if not changes:
        return
    every_scope = changes.pop("", None)
    rules_after = _rules_after(state.rules, events) if every_scope else None
    scopes = set(changes) | (set(state.scopes()) if every_scope else set())
    for scope in sorted(scopes):
        scoped = changes.get(scope, _Changes({}))
        for record in listed(state):
            if rules_after is None and not _touches(
                state, database_rules, scope, record, scoped
            ):
                continue
            _check_scope(
                state, database_rules, scope, record, scoped, rules_after, budget
            )


def _touches(
    state: TenantState,
    database_rules: Rulebook,
    scope: str,
    record: ConstraintRecord,
    changes: _Changes,
) -> bool:
    """Whether a changed fact's relation can reach the constraint through the rules."""
    program = state.program_for(scope, database_rules)
    needed = _relations_used(program.rules, record.premises)
    return any(
        (predicate, negated) in needed for predicate, negated, _ in changes.facts
    )


def _relations_used(
    rules: Iterable[Rule], premises: Iterable[Literal]
) -> set[tuple[str, bool]]:
    """The relations the premises read, directly or through the rules deriving them."""
    by_head: dict[tuple[str, bool], list[Rule]] = {}
    for rule in rules:
        by_head.setdefault((rule.head.predicate, rule.head.negated), []).append(rule)
    needed: set[tuple[str, bool]] = set()
    pending = [(p.predicate, p.negated) for p in premises if not p.is_builtin]
    while pending:
        relation = pending.pop()
        if relation in needed:
            continue
        needed.add(relation)
        for rule in by_head.get(relation, ()):
            pending.extend(
                (b.predicate, b.negated) for b in rule.body if not b.is_builtin
            )
    return needed


def _rules_after(rules: Rulebook, events: Sequence[Event]) -> Rulebook:
    """The tenant's rules once ``events`` are applied (a copy; state untouched)."""
    book = Rulebook()
    for record in rules:
        book.add(record)
    for event in events:
        if isinstance(event, RuleTaught):
            book.add(RuleRecord.from_event(event, level="tenant"))
        elif isinstance(event, RuleRemoved):
            book.remove(event.id)
    return book


def _check_scope(
    state: TenantState,
    database_rules: Rulebook,
    scope: str,
    record: ConstraintRecord,
    changes: _Changes,
    rules_after: Rulebook | None,
    budget: Budget | None,
) -> None:
    view = state.views.get(scope)
    index = view.index if view is not None else FactIndex()
    rules = (
        database_rules.for_scope(scope) + rules_after.for_scope(scope)
        if rules_after is not None
        else list(state.program_for(scope, database_rules).rules)
    )
    with _changed_in_place(index, changes):
        after = _solve(index, rules, record, scope, budget)
    if not after:
        return
    before = {
        w.identity for w in _violations(state, database_rules, scope, record, budget)
    }
    new = [w for w in after if w.identity not in before]
    if new:
        raise _violated(record, new, "this write would make it hold")


class _changed_in_place:
    """Apply ``changes`` to ``index`` for the duration of a ``with`` block, then undo.

    Synchronous on the event loop: nothing else reads the index meanwhile.
    """

    def __init__(self, index: FactIndex, changes: _Changes) -> None:
        self._index = index
        self._changes = changes
        self._undo: list[
            tuple[str, bool, tuple[Const, ...], float | None | _Removed]
        ] = []

    def __enter__(self) -> None:
        index = self._index
        for (predicate, negated, args), change in self._changes.facts.items():
            present = index.contains(predicate, negated, args)
            before = index.confidence(predicate, negated, args) if present else REMOVED
            if isinstance(change, _Removed):
                if present:
                    index.remove(predicate, negated, args)
                    self._undo.append((predicate, negated, args, before))
            else:
                index.add(predicate, negated, args, change)
                self._undo.append((predicate, negated, args, before))

    def __exit__(self, *exc: object) -> None:
        index = self._index
        for predicate, negated, args, before in reversed(self._undo):
            if isinstance(before, _Removed):
                index.remove(predicate, negated, args)
            else:
                index.add(predicate, negated, args, before)


def _violations(
    state: TenantState,
    database_rules: Rulebook,
    scope: str,
    record: ConstraintRecord,
    budget: Budget | None,
) -> Iterator[Witness]:
    view = state.views.get(scope)
    if view is None:
        return iter(())
    rules = state.program_for(scope, database_rules).rules
    return iter(_solve(view.index, rules, record, scope, budget))


def _solve(
    index: FactIndex,
    rules: Sequence[Rule],
    record: ConstraintRecord,
    scope: str,
    budget: Budget | None,
) -> list[Witness]:
    violation = record.rule()
    program = Program([*rules, violation])
    names = [v.name for v in violation.head.args if isinstance(v, Var)]
    answers = Reasoner(index, budget=budget).solve(
        program, violation.head, limit=MAX_WITNESSES
    )
    return [Witness(scope, tuple(zip(names, a.args, strict=True))) for a in answers]


def _violated(record: ConstraintRecord, witnesses: list[Witness], why: str) -> Conflict:
    shown = witnesses[:MAX_WITNESSES]
    where = "; ".join(
        (
            ", ".join(f"?{name} = {format_term(value)}" for name, value in w.bindings)
            or "it holds"
        )
        + f" in scope {w.scope}"
        for w in shown
    )
    return Conflict(
        f"Constraint {record.id} {record.text()} is violated: {why} ({where})",
        {
            "constraint": record.id,
            "text": record.text(),
            "witnesses": [
                {"scope": w.scope, "bindings": dict(w.bindings)} for w in shown
            ],
        },
    )
