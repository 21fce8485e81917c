"""Stored facts: plain facts kept compactly read back as the records told (issue 4)."""

from __future__ import annotations

import pytest

from nocturnus.service.events import FactTold, decode, encode
from nocturnus.service.facts import FactKey, FactRecord, ScopeFacts, is_plain
from nocturnus.service.tenant import TenantState, apply

KEY = FactKey("main", "edge", False, ("a", "b"))


@pytest.mark.parametrize(
    ("record", "plain"),
    [
        (FactRecord(KEY, 100, 100), True),
        (FactRecord(KEY, 100, 150), False),
        (FactRecord(KEY, 100, 100, valid_until=200), False),
        (FactRecord(KEY, 100, 100, ttl=5), False),
        (FactRecord(KEY, 100, 100, confidence=1.0), False),
        (FactRecord(KEY, 100, 100, metadata={"source": "crm"}), False),
    ],
)
def test_every_record_reads_back_equal(record: FactRecord, plain: bool) -> None:
    assert is_plain(record) is plain
    scoped = ScopeFacts("main")
    scoped.put(record)
    assert scoped[KEY] == record
    assert list(scoped.records()) == [record]
    assert dict(scoped.items()) == {KEY: record}
    forked = scoped.fork("what-if")
    moved = FactKey("what-if", *KEY[1:])
    assert forked[moved] == FactRecord(moved, *_attributes(record))
    assert scoped.pop(KEY) == record
    assert KEY not in scoped and len(scoped) == 0


def _attributes(record: FactRecord) -> tuple[object, ...]:
    return (
        record.created_at,
        record.valid_from,
        record.valid_until,
        record.ttl,
        record.confidence,
        record.metadata,
    )


def test_a_plain_record_read_back_is_a_fresh_object() -> None:
    """Callers may hold or change what they read: nothing is shared with the store."""
    scoped = ScopeFacts("main")
    scoped.put(FactRecord(KEY, 100, 100))
    first, second = scoped[KEY], scoped[KEY]
    assert first == second and first.metadata is not second.metadata


def test_replayed_facts_share_their_constants() -> None:
    """Each decoded event has its own strings; the projection keeps one of each."""
    state = TenantState("acme")
    for seq, args in enumerate([("a", "b"), ("b", "c"), ("c", "a")], start=1):
        told = FactTold("edge", args, False, "main", created_at=7, valid_from=7)
        apply(state, seq, decode(FactTold.kind, encode(told)))
    state.refresh(10)
    names = {}
    for record in state.facts["main"].records():
        for name in record.key.args:
            assert names.setdefault(name, name) is name
    assert sorted(r.key.args for r in state.iter_visible("main")) == [
        ("a", "b"),
        ("b", "c"),
        ("c", "a"),
    ]
