"""Write commands and the decisions that turn them into events.

A decision reads the tenant projection (already refreshed to ``now_ms``) and returns the
events to log plus the outcome to report. It runs synchronously right before the append,
so decisions happen in the database's write order and every logged event applies cleanly.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from nocturnus.engine.analysis import ProgramError, check_rule
from nocturnus.engine.evaluate import Program
from nocturnus.errors import Conflict, NotFound, ValidationError
from nocturnus.service.events import (
    Event,
    FactRetracted,
    FactTold,
    PrioritySet,
    RuleRemoved,
    RuleTaught,
)
from nocturnus.service.facts import FactKey, FactRecord, new_record
from nocturnus.service.formats import fact_text
from nocturnus.service.projection import TenantState
from nocturnus.service.rulebook import Rulebook, RuleRecord

MAIN_SCOPE = "main"
CONFLICT_STRATEGIES = ("REJECT", "NEWEST_WINS", "CONFIDENCE", "KEEP_BOTH")


@dataclass(frozen=True, slots=True)
class TellFact:
    """A ``POST /tell``: the fact and how to resolve a contradiction."""

    predicate: str
    args: tuple[Any, ...]
    negated: bool = False
    scope: str = MAIN_SCOPE
    confidence: float | None = None
    ttl: int | None = None
    valid_from: int | None = None
    valid_until: int | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    conflict_strategy: str | None = None

    @property
    def key(self) -> FactKey:
        """The key of the fact told."""
        return FactKey(self.scope, self.predicate, self.negated, self.args)


@dataclass(frozen=True, slots=True)
class TellOutcome:
    """What a tell did: stored or not, the record held, a message, what it replaced."""

    stored: bool
    record: FactRecord
    message: str
    replaced: tuple[FactRecord, ...] = ()


@dataclass(frozen=True, slots=True)
class RetractOutcome:
    """The stored records a retraction removed."""

    records: tuple[FactRecord, ...]


@dataclass(frozen=True, slots=True)
class TeachRule:
    """A ``POST /teach``: a rule's head and body literals (``rule_taught``'s form)."""

    head: dict[str, Any]
    body: tuple[dict[str, Any], ...]
    scope: str | None = None
    confidence: float | None = None


@dataclass(frozen=True, slots=True)
class TeachOutcome:
    """What a teach did: stored or not (an identical rule exists), and the rule."""

    stored: bool
    record: RuleRecord


class FactView(Protocol):
    """What a tell decision reads: a tenant projection, or one with staged changes."""

    def record(self, key: FactKey) -> FactRecord | None:
        """The stored record of ``key``, visible or not."""

    def visible(self, key: FactKey) -> FactRecord | None:
        """The stored record of ``key`` if it is visible now."""


class StagedFacts:
    """A tenant's facts plus the not-yet-committed effects of earlier decisions.

    Bulk writes decide item after item against this view, so a later item sees what an
    earlier one told, yet nothing reaches the projection unless the batch is committed.
    """

    def __init__(self, state: TenantState, now_ms: int) -> None:
        self._state = state
        self._now_ms = now_ms
        self._pending: dict[FactKey, FactRecord | None] = {}

    def record(self, key: FactKey) -> FactRecord | None:
        """The record of ``key`` as the staged decisions leave it."""
        if key in self._pending:
            return self._pending[key]
        return self._state.record(key)

    def visible(self, key: FactKey) -> FactRecord | None:
        """The record of ``key`` if visible, as the staged decisions leave it."""
        if key in self._pending:
            record = self._pending[key]
            return record if record is not None and record.is_visible(self._now_ms) else None
        return self._state.visible(key)

    def stage(self, events: Sequence[Event]) -> None:
        """Take the facts these decided events tell or retract into the view."""
        for event in events:
            if isinstance(event, FactTold):
                record = FactRecord.from_event(event)
                self._pending[record.key] = record
            elif isinstance(event, FactRetracted):
                key = FactKey(event.scope, event.predicate, event.negated, event.args)
                self._pending[key] = None


def _retracted(key: FactKey) -> FactRetracted:
    return FactRetracted(
        predicate=key.predicate, args=key.args, negated=key.negated, scope=key.scope
    )


def decide_tell(
    state: FactView, cmd: TellFact, now_ms: int, default_strategy: str
) -> tuple[list[Event], TellOutcome]:
    """Store a fact, resolving a contradiction with the requested or default strategy.

    :raises Conflict: under ``REJECT`` when the opposite fact is visible in the scope.
    """
    key = cmd.key
    existing = state.record(key)
    created_at = existing.created_at if existing is not None else now_ms
    valid_from = cmd.valid_from if cmd.valid_from is not None else created_at
    if cmd.valid_until is not None and cmd.valid_until <= valid_from:
        raise ValidationError("validUntil must be later than validFrom", field="validUntil")
    record: FactRecord = new_record(
        key,
        created_at,
        valid_from,
        valid_until=cmd.valid_until,
        ttl=cmd.ttl,
        confidence=cmd.confidence,
        metadata=cmd.metadata,
    )
    events: list[Event] = []
    replaced: tuple[FactRecord, ...] = ()
    opposite = state.visible(key.opposite())
    if opposite is not None:
        strategy = cmd.conflict_strategy or default_strategy
        if strategy == "REJECT":
            raise Conflict(
                f"Contradiction: cannot store {fact_text(key)} because "
                f"{fact_text(opposite.key)} exists in scope {key.scope}",
                {"existing": fact_text(opposite.key), "strategy": strategy},
            )
        if strategy == "CONFIDENCE" and _conf(opposite) > _conf(record):
            message = (
                f"Kept existing: {fact_text(opposite.key)} (confidence "
                f"{_conf(opposite)} > {_conf(record)})"
            )
            return [], TellOutcome(stored=False, record=opposite, message=message)
        if strategy in ("NEWEST_WINS", "CONFIDENCE"):
            events.append(_retracted(opposite.key))
            replaced = (opposite,)
    if existing == record:
        return events, TellOutcome(False, existing, f"Already known: {fact_text(key)}")
    events.append(record.to_event())
    message = ("Stored: " if existing is None else "Updated: ") + fact_text(key)
    return events, TellOutcome(existing is None, record, message, replaced)


def _conf(record: FactRecord) -> float:
    return 1.0 if record.confidence is None else record.confidence


def decide_forget(state: TenantState, key: FactKey) -> tuple[list[Event], RetractOutcome]:
    """Remove one stored fact (visible or not); nothing to remove is not an error."""
    record = state.record(key)
    if record is None:
        return [], RetractOutcome(())
    return [_retracted(key)], RetractOutcome((record,))


def decide_retract_all(
    state: TenantState, records: Sequence[FactRecord]
) -> tuple[list[Event], RetractOutcome]:
    """Remove the given records (already matched by the caller) in one append."""
    return [_retracted(r.key) for r in records], RetractOutcome(tuple(records))


def decide_teach(
    rules: Rulebook,
    cmd: TeachRule,
    now_ms: int,
    level: str,
    other_rules: Rulebook | None = None,
) -> tuple[list[Event], TeachOutcome]:
    """Check a rule (range restriction, stratification with the rules it joins) and add it.

    ``other_rules`` are the rules sharing a program with these (the database rules for a
    tenant rule). Teaching a rule identical to an existing one changes nothing.

    :raises ValidationError: the rule is unsafe or makes the program unstratifiable.
    """
    event = RuleTaught(
        id="r_" + secrets.token_hex(6),
        head=cmd.head,
        body=cmd.body,
        created_at=now_ms,
        scope=cmd.scope,
        confidence=cmd.confidence,
    )
    record = RuleRecord.from_event(event, level=level)
    for known in rules:
        if (known.rule.head, known.rule.body, known.scope, known.rule.confidence) == (
            record.rule.head,
            record.rule.body,
            record.scope,
            record.rule.confidence,
        ):
            return [], TeachOutcome(False, known)
    try:
        check_rule(record.rule)
        program_rules = [r.rule for r in rules if _shares_scope(r, record)]
        if other_rules is not None:
            program_rules += [r.rule for r in other_rules if _shares_scope(r, record)]
        Program([*program_rules, record.rule])
    except ProgramError as e:
        raise ValidationError(f"invalid rule: {e}", field="body") from e
    return [event], TeachOutcome(True, record)


def _shares_scope(a: RuleRecord, b: RuleRecord) -> bool:
    return a.scope is None or b.scope is None or a.scope == b.scope


def decide_remove_rule(rules: Rulebook, rule_id: str) -> list[Event]:
    """:raises NotFound: no such rule at this level."""
    if rule_id not in rules.records:
        raise NotFound(f"Rule '{rule_id}' not found")
    return [RuleRemoved(id=rule_id)]


@dataclass(frozen=True, slots=True)
class PriorityOutcome:
    """What setting a priority did: the fact, its priority, whether it changed."""

    record: FactRecord
    priority: float
    changed: bool


def decide_priority(
    state: TenantState, key: FactKey, priority: float
) -> tuple[list[Event], PriorityOutcome]:
    """Set a stored fact's explicit salience priority (0..1; issue 6).

    Setting the priority it already has logs nothing.

    :raises NotFound: no such stored fact in that scope.
    """
    record = state.record(key)
    if record is None:
        raise NotFound(
            f"Fact not found: {fact_text(key)} in scope {key.scope}",
            {"predicate": key.predicate, "args": list(key.args), "scope": key.scope},
        )
    if state.priorities.get(key) == priority:
        return [], PriorityOutcome(record, priority, False)
    event = PrioritySet(
        predicate=key.predicate,
        args=key.args,
        negated=key.negated,
        scope=key.scope,
        priority=priority,
    )
    return [event], PriorityOutcome(record, priority, True)

