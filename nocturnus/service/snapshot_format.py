"""Tenant snapshots: a projection as versioned orjson, section by section (issue 3).

A snapshot is the state of one tenant as of a seq. Start-up loads the newest one and
replays only the events after it, so it must hold *everything* :func:`apply` builds —
and nothing derived (scope views, the visibility timeline: ``refresh`` rebuilds those).

The body is ``{"format": FORMAT, "v": VERSION, "sections": {name: [version, data]}}``.
Each part of the projection is one :class:`Section` with its own version, so a new kind
of state (scopes, priorities, ...) adds a section with :func:`register_section` instead
of changing the others; an old section version is upgraded in its ``decode``. A snapshot
with a section or version this code does not know raises :class:`SnapshotFormatError`
and the caller falls back to a full replay — never to a silently partial state.

Writing is split in two so a big tenant never stalls the event loop: ``capture`` runs
on the loop and only copies references (C-speed dict/list copies of immutable records),
``encode`` turns the copy into orjson-able data in a worker thread. No pickle, ever.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

import orjson

from nocturnus.engine.rules import Literal
from nocturnus.engine.terms import Var
from nocturnus.errors import NocturnusError
from nocturnus.service.constraints import ConstraintRecord
from nocturnus.service.events import ConstraintAdded, RuleTaught
from nocturnus.service.facts import DUMP_VERSION, FactKey, ScopeFacts
from nocturnus.service.projection import TenantState
from nocturnus.service.rulebook import RuleRecord

FORMAT = "nocturnus/tenant-snapshot"
VERSION = 1

DERIVED_FIELDS = frozenset(
    {
        "views",
        "_dirty",
        "_timeline",
        "_tickets",
        "_heirs",
        "changed",
        "incarnation",
        "reading",
    }
)
"""TenantState fields never stored: rebuilt by ``refresh`` after loading (views, the
timeline and its tie-break tickets), sharing bookkeeping of forked scopes (``_heirs``:
a restored scope owns its records, nothing is shared), kept only while a consumer runs
(``changed``), or telling read models apart in memory (``incarnation``: a loaded
projection is a new object, so its read model starts empty anyway), or counting the
evaluations reading it in worker threads (``reading``)."""


class SnapshotFormatError(NocturnusError):
    """A snapshot body this code cannot read (newer format, unknown section, damage)."""

    code = "SNAPSHOT_FORMAT"


@dataclass(frozen=True, slots=True)
class Section:
    """One part of the projection: how to copy, encode and restore it.

    ``fields`` names the TenantState fields the section covers; a census test checks
    that every non-derived field is covered by exactly one section.
    """

    name: str
    version: int
    fields: tuple[str, ...]
    capture: Callable[[TenantState], Any]
    encode: Callable[[Any], Any]
    decode: Callable[[TenantState, Any, int], None]


SECTIONS: dict[str, Section] = {}


def register_section(section: Section) -> Section:
    """Add a section to every snapshot written from now on (at import time)."""
    if section.name in SECTIONS:
        raise ValueError(f"duplicate snapshot section {section.name!r}")
    SECTIONS[section.name] = section
    return section


Capture = dict[str, Any]


def capture(state: TenantState) -> Capture:
    """Copy what the snapshot needs; cheap enough to run on the event loop."""
    return {name: s.capture(state) for name, s in SECTIONS.items()}


def encode_capture(captured: Capture) -> bytes:
    """Serialise a :func:`capture` (run it in a worker thread for big tenants)."""
    sections = {
        name: [SECTIONS[name].version, SECTIONS[name].encode(value)]
        for name, value in captured.items()
    }
    return orjson.dumps({"format": FORMAT, "v": VERSION, "sections": sections})


def encode(state: TenantState) -> bytes:
    """Serialise ``state`` in one go (tests, the offline CLI)."""
    return encode_capture(capture(state))


def decode(name: str, data: bytes) -> TenantState:
    """Rebuild the projection of tenant ``name`` from a snapshot body.

    The result still needs ``refresh(now)`` before reads, like a replayed state.

    :raises SnapshotFormatError: the body is not a snapshot this code can read.
    """
    try:
        body = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise SnapshotFormatError(
            f"snapshot of tenant {name!r} is not JSON: {e}"
        ) from e
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise SnapshotFormatError(f"snapshot of tenant {name!r} has no known format")
    if body.get("v") != VERSION:
        raise SnapshotFormatError(
            f"snapshot of tenant {name!r} has format version {body.get('v')!r}; "
            f"this server reads version {VERSION}"
        )
    sections = body.get("sections")
    if not isinstance(sections, dict):
        raise SnapshotFormatError(f"snapshot of tenant {name!r} has no sections")
    state = TenantState(name)
    for section_name, stored in sections.items():
        section = SECTIONS.get(section_name)
        if section is None:
            raise SnapshotFormatError(
                f"snapshot of tenant {name!r} has unknown section {section_name!r}"
            )
        version, value = stored
        if not isinstance(version, int) or version > section.version:
            raise SnapshotFormatError(
                f"snapshot section {section_name!r} of tenant {name!r} has version "
                f"{version!r}; this server reads up to {section.version}"
            )
        try:
            section.decode(state, value, version)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise SnapshotFormatError(
                f"snapshot section {section_name!r} of tenant {name!r} is malformed: {e!r}"
            ) from e
    return state


def covered_fields() -> Mapping[str, str]:
    """TenantState field -> the section storing it (for the census test)."""
    return {f: s.name for s in SECTIONS.values() for f in s.fields}


def stored_fields() -> set[str]:
    """Every TenantState field a snapshot must hold."""
    return {f.name for f in fields(TenantState)} - DERIVED_FIELDS


# -- sections -----------------------------------------------------------------------


def _capture_tenant(state: TenantState) -> list[Any]:
    return [state.last_seq, state.created_at]


def _decode_tenant(state: TenantState, value: Any, version: int) -> None:
    state.last_seq, state.created_at = value


register_section(
    Section(
        name="tenant",
        version=1,
        fields=("name", "last_seq", "created_at"),
        capture=_capture_tenant,
        encode=lambda value: value,
        decode=_decode_tenant,
    )
)


def _capture_facts(state: TenantState) -> list[ScopeFacts]:
    # A fork is O(#relations) and copy-on-write: the live scope clones a relation's
    # group (a C-speed dict copy) the first time it writes to it after the capture.
    return [scoped.fork(scope) for scope, scoped in state.facts.items()]


def _encode_facts(scopes: list[ScopeFacts]) -> list[str]:
    """The facts as JSON texts of about 4096 facts each (section version 3 and up:
    ``facts.DUMP_VERSION``).

    Each text is a list of relation runs, ``[scope, predicate, negated, plain_args,
    plain_created, records]``, as ``ScopeFacts.dump`` gives them (the plain facts as
    two columns, every other fact as a row ``[args, *attributes]``); a big relation is
    split over several texts. Runs load in bulk (``TenantState.tell_many``): issue 3's
    snapshot loads. Texts are encoded one at a time, so neither writing nor reading
    ever holds every fact as Python objects at once (issue 4). Version 2 was texts of
    flat rows, version 1 one flat array.
    """
    parts: list[str] = []
    batch: list[list[Any]] = []
    count = 0
    for scoped in scopes:
        for predicate, negated, plain_args, plain_created, records in scoped.dump(
            _FACTS_PER_PART
        ):
            size = len(plain_args) + len(records)
            if batch and count + size > _FACTS_PER_PART:
                parts.append(orjson.dumps(batch).decode())
                batch, count = [], 0
            batch.append(
                [scoped.scope, predicate, negated, plain_args, plain_created, records]
            )
            count += size
    if batch:
        parts.append(orjson.dumps(batch).decode())
    return parts


_FACTS_PER_PART = 4096


def _decode_facts(state: TenantState, value: Any, version: int) -> None:
    # Through TenantState.tell / tell_many, like a replayed event: the stored args
    # share their constants with the index, and the fact is marked for the next refresh.
    if version == 1:
        _put_rows(state, value)
        return
    for i, text in enumerate(value):
        value[i] = None  # the text goes as soon as its facts are in
        if version == 2:
            _put_rows(state, orjson.loads(text))
            continue
        tell_many = state.tell_many
        for scope, predicate, negated, plain_args, created, records in orjson.loads(text):
            tell_many(predicate, negated, scope, plain_args, created, records, version)


def _put_rows(state: TenantState, rows: Any) -> None:
    tell = state.tell
    # a row of versions 1 and 2: the key, then the six attributes of the time
    for scope, predicate, negated, args, created, since, until, ttl, conf, meta in rows:
        tell(scope, predicate, negated, args, created, since, until, ttl, conf, meta)


register_section(
    Section(
        name="facts",
        version=DUMP_VERSION,
        fields=("facts",),
        capture=_capture_facts,
        encode=_encode_facts,
        decode=_decode_facts,
    )
)


def literal_dict(literal: Literal) -> dict[str, Any]:
    """A rule literal in the form ``RuleTaught`` stores (variables as ``?name``)."""
    return {
        "predicate": literal.predicate,
        "args": [a.text() if isinstance(a, Var) else a for a in literal.args],
        "negated": literal.negated,
        "naf": literal.naf,
    }


def rule_event(record: RuleRecord) -> RuleTaught:
    """The ``RuleTaught`` event that rebuilds ``record`` through the replay path."""
    rule = record.rule
    return RuleTaught(
        id=rule.id,
        head=literal_dict(rule.head),
        body=tuple(literal_dict(b) for b in rule.body),
        created_at=record.created_at,
        scope=record.scope,
        confidence=rule.confidence,
    )


def _encode_rules(records: list[RuleRecord]) -> list[list[Any]]:
    rows = []
    for record in records:
        event = rule_event(record)
        rows.append(
            [
                event.id,
                event.head,
                list(event.body),
                event.created_at,
                event.scope,
                event.confidence,
            ]
        )
    return rows


def _decode_rules(state: TenantState, rows: Any, version: int) -> None:
    for rule_id, head, body, created_at, scope, confidence in rows:
        event = RuleTaught(rule_id, head, tuple(body), created_at, scope, confidence)
        state.rules.add(RuleRecord.from_event(event, level="tenant"))


register_section(
    Section(
        name="rules",
        version=1,
        fields=("rules",),
        capture=lambda state: list(state.rules),
        encode=_encode_rules,
        decode=_decode_rules,
    )
)


def _encode_priorities(priorities: dict[FactKey, float]) -> list[list[Any]]:
    return [
        [key.scope, key.predicate, key.negated, key.args, priority]
        for key, priority in priorities.items()
    ]


def _decode_priorities(state: TenantState, rows: Any, version: int) -> None:
    new_key = FactKey._make
    for scope, predicate, negated, args, priority in rows:
        state.priorities[new_key((scope, predicate, negated, tuple(args)))] = priority


register_section(
    Section(
        name="priorities",
        version=1,
        fields=("priorities",),
        capture=lambda state: dict(state.priorities),
        encode=_encode_priorities,
        decode=_decode_priorities,
    )
)


def _encode_uses(uses: dict[FactKey, tuple[int, int]]) -> list[list[Any]]:
    return [
        [key.scope, key.predicate, key.negated, key.args, count, last_ms]
        for key, (count, last_ms) in uses.items()
    ]


def _decode_uses(state: TenantState, rows: Any, version: int) -> None:
    new_key = FactKey._make
    for scope, predicate, negated, args, count, last_ms in rows:
        state.uses[new_key((scope, predicate, negated, tuple(args)))] = (count, last_ms)


register_section(
    Section(
        name="uses",
        version=1,
        fields=("uses",),
        capture=lambda state: dict(state.uses),
        encode=_encode_uses,
        decode=_decode_uses,
    )
)


def _encode_constraints(records: list[ConstraintRecord]) -> list[list[Any]]:
    return [[c.id, list(c.body), c.created_at] for c in records]


def _decode_constraints(state: TenantState, rows: Any, version: int) -> None:
    for constraint_id, body, created_at in rows:
        event = ConstraintAdded(constraint_id, tuple(body), created_at)
        state.constraints[constraint_id] = ConstraintRecord.from_event(event)


register_section(
    Section(
        name="constraints",
        version=1,
        fields=("constraints",),
        capture=lambda state: list(state.constraints.values()),
        encode=_encode_constraints,
        decode=_decode_constraints,
    )
)
