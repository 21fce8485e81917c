"""Stored facts: plain facts kept compactly read back as the records told (issue 4)."""

from __future__ import annotations

import pytest

from nocturnus.service import snapshot_format
from nocturnus.service.codec import CODEC
from nocturnus.service.events import FactRetracted, FactTold
from nocturnus.service.facts import FactKey, FactRecord, ScopeFacts, is_plain
from nocturnus.service.projection import TenantState, apply

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
    assert scoped.retract(KEY) == record
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
        apply(state, seq, CODEC.decode(FactTold.kind, CODEC.encode(told)))
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


def test_equal_ints_and_floats_are_distinct_facts() -> None:
    """1 == 1.0 and 0.0 == -0.0 in Python; as constants they are four facts (#20)."""
    state = TenantState("t")
    told = [(1,), (1.0,), (0.0,), (-0.0,)]
    for seq, args in enumerate(told, start=1):
        apply(state, seq, FactTold("p", args, False, "main", seq, seq, confidence=0.5))
    apply(state, 5, FactTold("p", (1,), False, "main", 5, 5))  # replaces p(1) only
    state.refresh(10)
    scoped = state.facts["main"]
    assert len(scoped) == 4
    assert [r.key.args for r in sorted(scoped.values(), key=lambda r: r.created_at)] == [
        (1.0,),
        (0.0,),
        (-0.0,),
        (1,),
    ]
    assert repr(sorted(repr(r.key.args) for r in state.iter_visible())) == repr(
        sorted(repr(a) for a in told)
    )
    apply(state, 6, FactRetracted("p", (1.0,), False, "main"))
    apply(state, 7, FactRetracted("p", (-0.0,), False, "main"))
    state.refresh(10)
    kept = {repr(r.key.args): r.created_at for r in state.iter_visible()}
    assert kept == {"(1,)": 5, "(0.0,)": 3}
    assert state.record(FactKey("main", "p", False, (1.0,))) is None
    assert state.record(FactKey("main", "p", False, (1,))) is not None
    restored = snapshot_format.decode("t", snapshot_format.encode(state))
    restored.refresh(10)
    assert {repr(r.key.args): r.created_at for r in restored.iter_visible()} == kept
