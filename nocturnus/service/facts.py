"""Stored facts and their visibility in time.

A fact is identified by ``FactKey`` (scope, predicate, negated, args); everything else is an
attribute that a repeated ``tell`` may replace.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from nocturnus.service.events import FactTold, Scalar


class FactKey(NamedTuple):
    scope: str
    predicate: str
    negated: bool
    args: tuple[Scalar, ...]

    def opposite(self) -> FactKey:
        return self._replace(negated=not self.negated)


@dataclass(frozen=True, slots=True)
class FactRecord:
    """One stored fact with its attributes, as told."""

    key: FactKey
    created_at: int
    valid_from: int
    valid_until: int | None = None
    ttl: int | None = None
    confidence: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_event(cls, event: FactTold) -> FactRecord:
        return new_record(
            _new_key((event.scope, event.predicate, event.negated, event.args)),
            event.created_at,
            event.valid_from,
            event.valid_until,
            event.ttl,
            event.confidence,
            event.metadata,
        )

    def to_event(self) -> FactTold:
        """The event that stores exactly this record."""
        key = self.key
        return FactTold(
            predicate=key.predicate,
            args=key.args,
            negated=key.negated,
            scope=key.scope,
            created_at=self.created_at,
            valid_from=self.valid_from,
            valid_until=self.valid_until,
            ttl=self.ttl,
            confidence=self.confidence,
            metadata=self.metadata,
        )

    @property
    def expires_at(self) -> int | None:
        """The first instant the fact stops being visible, if it ever does."""
        until, ttl = self.valid_until, self.ttl
        if ttl is None:
            return until
        end = self.created_at + ttl
        return end if until is None or end < until else until

    @property
    def _ttl_end(self) -> int | None:
        return None if self.ttl is None else self.created_at + self.ttl

    def is_visible(self, now_ms: int) -> bool:
        """``validFrom ≤ now < validUntil`` and ``now < createdAt + ttl``."""
        if now_ms < self.valid_from:
            return False
        expires = self.expires_at
        return expires is None or now_ms < expires

    def next_change(self, now_ms: int) -> int | None:
        """When visibility next flips after ``now_ms`` (None: never)."""
        if now_ms < self.valid_from:
            return self.valid_from
        expires = self.expires_at
        return expires if expires is not None and now_ms < expires else None


def new_record(
    key: FactKey,
    created_at: int,
    valid_from: int,
    valid_until: int | None,
    ttl: int | None,
    confidence: float | None,
    metadata: dict[str, Any],
) -> FactRecord:
    """Build a FactRecord about twice as fast as ``FactRecord(...)``: replay's hot path.

    Fills the slots directly, skipping the frozen dataclass's per-field
    ``object.__setattr__`` (as ``store.record.build_record`` does); the result is an
    ordinary, equal FactRecord.
    """
    record = _new(FactRecord)
    _set_key(record, key)
    _set_created(record, created_at)
    _set_from(record, valid_from)
    _set_until(record, valid_until)
    _set_ttl(record, ttl)
    _set_confidence(record, confidence)
    _set_metadata(record, metadata)
    return record  # type: ignore[no-any-return]


_new = object.__new__
_new_key = FactKey._make
(
    _set_key,
    _set_created,
    _set_from,
    _set_until,
    _set_ttl,
    _set_confidence,
    _set_metadata,
) = (
    getattr(FactRecord, name).__set__
    for name in (
        "key", "created_at", "valid_from", "valid_until", "ttl", "confidence", "metadata"
    )
)
