"""The event codec (issue 20): its fast paths read exactly what the plain reading does,
and decline every body the plain reading must handle."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest

from nocturnus.service.codec import CODEC, EventCodec
from nocturnus.service.events import (
    EVENT_TYPES,
    Event,
    FactRetracted,
    FactTold,
    RuleTaught,
    ScopeForked,
    ScopeMerged,
    TenantDeleted,
)

SAMPLES: list[Event] = [
    FactTold("p", ("x", 1, 2.5), True, "main", 1, 2, 3, 4, 0.5, {"k": [1]}),
    FactRetracted("p", ("x",), False, "a"),
    ScopeForked("a", "b", 5),
    TenantDeleted(1, 2),
    RuleTaught("r1", {"predicate": "q"}, ({"predicate": "p"},), 7, None, 0.5),
    ScopeMerged("a", "b", "SOURCE_WINS", ({"predicate": "p"},), ()),
]


def field_values(event: Event) -> tuple[Any, ...]:
    return tuple(getattr(event, f.name) for f in dataclasses.fields(event))


def tupled(values: Any) -> tuple[Any, ...]:
    return tuple(tuple(v) if isinstance(v, list) else v for v in values)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.kind)
def test_the_readings_of_a_body_agree(event: Event) -> None:
    body = CODEC.encode(event)
    decoded = CODEC.decode(event.kind, body)
    assert decoded == event and type(decoded) is type(event)
    assert tupled(CODEC.fields(event.kind, body)) == field_values(event)
    assert CODEC.fields_of(event) == field_values(event)
    assert CODEC.build(type(event), CODEC.fields(event.kind, body)) == event


def test_the_fast_reader_declines_what_decode_must_handle() -> None:
    told = CODEC.encode(FactTold("p", ("x",), False, "main", 1, 1))
    fields = orjson.loads(told)
    reader = EventCodec()._plan_for("fact_told").read  # the private fast path
    declined = [
        {k: v for k, v in fields.items() if k != "_v"},  # no version: decode's default
        {**fields, "_v": 2},  # another version: decode upcasts (or reads it as is)
        {k: v for k, v in fields.items() if k != "metadata"},  # a default to apply
    ]
    for changed in declined:
        body = orjson.dumps(changed)
        assert reader(body) is None
        assert tupled(CODEC.fields("fact_told", body)) == field_values(
            CODEC.decode("fact_told", body)
        )
    unknown_field = orjson.dumps({**fields, "extra": 1})
    assert reader(unknown_field) is None
    with pytest.raises(TypeError):
        CODEC.fields("fact_told", unknown_field)


def test_encode_writes_the_field_dict() -> None:
    # every registered event kind, built from its fields' own defaults where it has
    # them: the body must be {field: value, ..., "_v": version}, in field order
    for kind, cls in EVENT_TYPES.items():
        names = [f.name for f in dataclasses.fields(cls)]
        values = {name: f"v-{name}" for name in names}
        event = cls(**values)
        assert CODEC.encode(event) == orjson.dumps({**values, "_v": cls.version}), kind


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(KeyError):
        CODEC.decode("from_a_newer_server", b"{}")


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: e.kind)
def test_a_reader_gives_the_fields_in_the_order_it_names(event: Event) -> None:
    # what the projection's appliers read bodies with: fields by name, in any order
    names = [f.name for f in dataclasses.fields(event)]
    order = names[::-1]
    read = CODEC.reader(event.kind, order)
    assert CODEC.reader(event.kind, order) is read  # made once per order
    body = CODEC.encode(event)
    assert tupled(read(body)) == tuple(getattr(event, n) for n in order)
    # a body the fast path declines (no version) is read the plain way, same order
    plain = orjson.dumps({k: v for k, v in orjson.loads(body).items() if k != "_v"})
    decoded = CODEC.decode(event.kind, plain)
    assert tupled(read(plain)) == tuple(getattr(decoded, n) for n in order)


def test_a_reader_order_must_name_every_field_once() -> None:
    names = [f.name for f in dataclasses.fields(FactRetracted)]
    for order in (names[:-1], [*names, names[0]], [*names[:-1], "elsewhere"]):
        with pytest.raises(ValueError, match="does not name each"):
            CODEC.reader("fact_retracted", order)


def test_the_fast_reader_reads_every_number_and_string_the_encoder_writes() -> None:
    # the fast path parses with msgspec, the plain one with orjson: on every value the
    # encoder can write (64-bit integers at both ends, floats down to the subnormal,
    # escapes, non-ASCII) they read the same values of the same types
    args = (2**64 - 1, -(2**63), 0, -0.0, 5e-324, 1.7976931348623157e308, 0.1, True,
            None, "é ✓ 😀", 'quote " back \\ slash\n', "")
    event = FactTold("p", args, False, "main", 1, 1, confidence=0.25,
                     metadata={"nested": [1, {"k": -1.5}], "": None})
    body = CODEC.encode(event)
    fast = EventCodec()._plan_for("fact_told").read(body)
    assert fast is not None
    plain = orjson.loads(body)
    plain.pop("_v")
    assert list(fast) == list(plain.values())
    assert [type(v) for v in fast[1]] == [type(v) for v in plain["args"]]
    assert repr(fast) == repr(tuple(plain.values()))  # -0.0 stays -0.0


def test_the_fast_reader_declines_an_odd_version_or_shape() -> None:
    told = orjson.loads(CODEC.encode(FactTold("p", ("x",), False, "main", 1, 1)))
    reader = EventCodec()._plan_for("fact_told").read
    for changed in ({**told, "_v": "1"}, {**told, "_v": 1.5}, {**told, "_v": None},
                    {**told, "args": None, "predicate": None} | {"_v": 2}):
        assert reader(orjson.dumps(changed)) is None, changed
    for body in (b"[1, 2]", b'"text"', b"null", b"{", b'{"_v": 1}'):
        assert reader(body) is None, body
