"""Rules as stored in events, turned into engine rules, and the rule set each scope sees."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from nocturnus.engine.rules import Literal, Rule
from nocturnus.engine.terms import parse_term
from nocturnus.service.events import RuleTaught
from nocturnus.service.stamps import next_stamp


def literal_from_dict(data: Mapping[str, Any]) -> Literal:
    """Build an engine literal from the ``{predicate, args, negated, naf}`` event form."""
    return Literal(
        predicate=data["predicate"],
        args=tuple(parse_term(a) for a in data["args"]),
        negated=bool(data.get("negated", False)),
        naf=bool(data.get("naf", False)),
    )


@dataclass(frozen=True, slots=True)
class RuleRecord:
    """A taught rule: the engine rule plus where it applies and when it was taught."""

    rule: Rule
    scope: str | None
    created_at: int
    level: str  # "tenant" | "database"

    @classmethod
    def from_event(cls, event: RuleTaught, level: str) -> RuleRecord:
        """The rule a ``rule_taught`` event adds, at ``level`` (tenant or database)."""
        rule = Rule(
            id=event.id,
            head=literal_from_dict(event.head),
            body=tuple(literal_from_dict(b) for b in event.body),
            confidence=event.confidence,
        )
        return cls(rule=rule, scope=event.scope, created_at=event.created_at, level=level)

    def applies_to(self, scope: str) -> bool:
        """Whether the rule takes part in programs over ``scope``."""
        return self.scope is None or self.scope == scope

    def forked(self, target: str, created_at: int) -> RuleRecord:
        """This rule copied into scope ``target`` by a fork, under a derived id.

        The id is a function of the original id and the target, so replay derives the
        same one; it is unique because a fork's target holds no scoped rules.
        """
        digest = hashlib.sha256(f"{self.rule.id}>{target}".encode()).hexdigest()
        rule = dataclasses.replace(self.rule, id="r_" + digest[:12])
        return RuleRecord(rule=rule, scope=target, created_at=created_at, level=self.level)


class Rulebook:
    """An ordered set of rules with a version that changes on every edit (a stamp
    never given to another edit, see :mod:`nocturnus.service.stamps`)."""

    def __init__(self) -> None:
        self.records: dict[str, RuleRecord] = {}
        self.version = 0

    def add(self, record: RuleRecord) -> None:
        """Add (or replace) a rule; programs built from the book are stale from now."""
        self.records[record.rule.id] = record
        self.version = next_stamp()

    def remove(self, rule_id: str) -> RuleRecord | None:
        """Remove a rule; the record, or None when unknown."""
        record = self.records.pop(rule_id, None)
        if record is not None:
            self.version = next_stamp()
        return record

    def copy(self) -> Rulebook:
        """An independent rulebook holding the same rules, at the same version."""
        twin = Rulebook()
        twin.records = dict(self.records)
        twin.version = self.version
        return twin

    def clear(self) -> None:
        """Remove every rule."""
        self.records.clear()
        self.version = next_stamp()

    def for_scope(self, scope: str) -> list[Rule]:
        """The rules taking part in programs over ``scope``."""
        return [r.rule for r in self.records.values() if r.applies_to(scope)]

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[RuleRecord]:
        return iter(self.records.values())
