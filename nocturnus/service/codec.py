"""Events to log bodies and back: the one place that knows the body format.

A body is the orjson object of an event's fields in declaration order plus its version,
``{field: value, ..., "_v": version}``; a tuple field is a JSON array. Reading upgrades
an old version through the upcasters of ``events.py`` and applies the defaults of the
fields a body lacks.

:class:`EventCodec` has two readings of a body: the event (:meth:`EventCodec.decode`),
and its field values (:meth:`EventCodec.fields`, in declaration order, or in any order
the consumer names: :meth:`EventCodec.reader`), which is what the projection's door
takes (``projection.apply_fields``, each kind's fields in the order its applier names
them): replay folds millions of bodies, and reading the values straight from the parsed
body skips building an event per body.
Every shortcut that makes these fast is private to this module, each checked against
the plain reading by ``tests/service/test_codec.py``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any, Literal, TypeVar

import msgspec
import orjson

from nocturnus.frozen import slot_builder
from nocturnus.service.events import EVENT_TYPES, Event, upcast

R = TypeVar("R")

Fields = Sequence[Any]
"""An event's field values in declaration order; a tuple field may be a list (JSON)."""


class _Plan:
    """How one event class is written and read (built once per class, on first use)."""

    __slots__ = (
        "build", "checked", "cls", "direct", "fields", "getter", "names", "read", "readers",
        "tuples",
    )

    def __init__(self, cls: type[Event], slow: Callable[[bytes], Fields]) -> None:
        fields = dataclasses.fields(cls)
        self.cls = cls
        self.names = tuple(f.name for f in fields)
        # positions of the tuple fields: JSON gives lists, an event holds tuples
        self.tuples = tuple(
            i for i, f in enumerate(fields) if str(f.type).startswith("tuple")
        )
        # orjson writes the dataclass itself, in C, as exactly the fields' object
        self.direct = bool(fields) and not any(n.startswith("_") for n in self.names)
        checked = self.checked = hasattr(cls, "__post_init__") or not fields
        self.build: Callable[..., Event] | None = None if checked else slot_builder(cls)
        self.read: Callable[[bytes], Fields | None] = (
            _never if checked else _reader(self.names, cls.version, _never)
        )
        self.getter = _getter(self.names)
        # read, or else ``slow`` (decode, then the fields): the reading replay calls
        self.fields: Callable[[bytes], Fields] = (
            slow if checked else _reader(self.names, cls.version, slow)
        )
        # the same reading with the fields in another order, by that order
        self.readers: dict[tuple[str, ...], Callable[[bytes], Fields]] = {
            self.names: self.fields
        }


def _never(data: bytes) -> None:
    """The reader of a class that checks its fields: every body takes the slow path."""


def _reader(
    names: tuple[str, ...], version: int, slow: Callable[[bytes], R]
) -> Callable[[bytes], Fields | R]:
    """A body straight to its field values, when it is of ``version`` with exactly
    every field; otherwise ``slow(body)`` (:func:`_never`: None, for a caller that
    decodes it the slow way itself).

    msgspec reads the body into a struct of exactly those fields (any JSON value each,
    read as orjson reads it) and ``_v`` equal to ``version``, without building the
    dict: about 8 k instead of 14 k instructions per ``fact_told`` body (replay's
    hottest step after the store). A body that is not such an object (no ``_v``,
    another version, a missing or unknown field, a number msgspec will not read)
    raises, and takes ``slow``: the plain reading, with orjson.
    """
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = [(name, Any) for name in names]
    fields.append((_VERSION, Literal.__getitem__(version), msgspec.field(name="_v")))
    struct = msgspec.defstruct("Body", fields, forbid_unknown_fields=True)
    decode = msgspec.json.Decoder(struct).decode
    astuple = msgspec.structs.astuple
    declined = msgspec.MsgspecError

    def read(data: bytes) -> Fields | R:
        try:
            values = astuple(decode(data))
        except declined:
            values = None
        if values is None:
            return slow(data)
        return values[:-1]

    return read


_VERSION = "version_of_the_body_"
"""The struct attribute of ``_v`` (no event field is named so)."""


def _getter(names: tuple[str, ...]) -> Callable[[Event], tuple[Any, ...]]:
    if len(names) == 1:
        get_one = attrgetter(names[0])
        return lambda event: (get_one(event),)
    if not names:
        return lambda event: ()
    return attrgetter(*names)


class EventCodec:
    """Encodes events to log bodies and decodes them back (see the module docstring).

    Stateless apart from a cache of per-class plans, made on first use, so event
    kinds registered after the codec was made are read like the others.
    """

    def __init__(self) -> None:
        self._by_kind: dict[str, _Plan] = {}
        self._by_class: dict[type[Event], _Plan] = {}

    def encode(self, event: Event) -> bytes:
        """The event's body: ``{field: value, ..., "_v": version}`` in field order."""
        cls = type(event)
        plan = self._by_class.get(cls) or self._plan_of(cls)
        if plan.direct:  # the splice builds a new bytes of its own size (see below)
            return orjson.dumps(event)[:-1] + b',"_v":%d}' % cls.version
        body = dict(zip(plan.names, plan.getter(event), strict=True))
        body["_v"] = cls.version
        # orjson's result keeps a buffer of about 4 KiB however short the JSON; a bulk
        # write holds 10 000 of them until the writer commits, so copy it to its size
        # (issue 4: that slack stayed in the server's RSS).
        return bytes(memoryview(orjson.dumps(body)))

    def decode(self, kind: str, data: bytes) -> Event:
        """The event a body holds, upcast to the current version of its kind.

        :raises KeyError: an unknown kind (a log written by a newer server).
        :raises TypeError: a body missing a field without a default, or with an
            unknown one.
        """
        plan = self._by_kind.get(kind) or self._plan_for(kind)
        values = plan.read(data)
        if values is not None:
            return self._build(plan, values)
        body = orjson.loads(data)
        body = upcast(kind, body.pop("_v", 1), body)
        for i in plan.tuples:
            name = plan.names[i]
            if body.get(name) is not None:
                body[name] = tuple(body[name])
        return plan.cls(**body)

    def fields(self, kind: str, data: bytes) -> Fields:
        """The field values of the event a body holds, in declaration order.

        Exactly ``fields_of(decode(kind, data))``, except that a tuple field may come
        as a list: the projection's appliers take either.

        :raises KeyError: an unknown kind.
        :raises TypeError: as :meth:`decode`.
        """
        return (self._by_kind.get(kind) or self._plan_for(kind)).fields(data)

    def reader(
        self, kind: str, order: Sequence[str] | None = None
    ) -> Callable[[bytes], Fields]:
        """:meth:`fields` of one kind, as a function of the body: a reader of many
        bodies looks it up once per kind.

        ``order`` names every field once, in the order the values are wanted (None:
        declaration order): what a consumer that takes the fields by name, such as
        the projection's appliers, reads bodies with at no extra cost.

        :raises KeyError: an unknown kind.
        :raises ValueError: ``order`` does not name each field exactly once.
        """
        plan = self._by_kind.get(kind) or self._plan_for(kind)
        names = plan.names if order is None else tuple(order)
        found = plan.readers.get(names)
        if found is None:
            if sorted(names) != sorted(plan.names):
                raise ValueError(f"{kind}: {names} does not name each of {plan.names} once")
            getter = _getter(names)

            def slow(data: bytes) -> Fields:
                return getter(self.decode(kind, data))

            found = slow if plan.checked else _reader(names, plan.cls.version, slow)
            plan.readers[names] = found
        return found

    def build(self, cls: type[Event], fields: Fields) -> Event:
        """The event of class ``cls`` with these field values (as :meth:`fields` gives
        them: a tuple field may be a list)."""
        return self._build(self._by_class.get(cls) or self._plan_of(cls), fields)

    def fields_of(self, event: Event) -> tuple[Any, ...]:
        """An event's field values in declaration order."""
        cls = type(event)
        plan = self._by_class.get(cls) or self._plan_of(cls)
        return plan.getter(event)

    @staticmethod
    def _build(plan: _Plan, fields: Fields) -> Event:
        if plan.tuples:
            values = list(fields)
            for i in plan.tuples:
                if values[i] is not None:
                    values[i] = tuple(values[i])
            fields = values
        if plan.build is None:  # the class checks its fields: its own __init__
            return plan.cls(*fields)
        return plan.build(*fields)

    def _plan_for(self, kind: str) -> _Plan:
        return self._plan_of(EVENT_TYPES[kind])

    def _plan_of(self, cls: type[Event]) -> _Plan:
        if EVENT_TYPES.get(cls.kind) is not cls:
            raise KeyError(f"{cls.__name__} is not a registered event kind")
        kind = cls.kind

        def slow(data: bytes) -> Fields:
            return plan.getter(self.decode(kind, data))

        plan = _Plan(cls, slow)
        self._by_class[cls] = self._by_kind[cls.kind] = plan
        return plan


CODEC = EventCodec()
"""The codec every reader and writer of the log uses (it holds no configuration)."""


def nest(events: Sequence[Event]) -> tuple[dict[str, Any], ...]:
    """``events`` as a ``transaction_committed`` event holds them (issue 18): each one's
    kind and logged body, so each is upcast on its own when its kind gets a version."""
    return tuple({"kind": e.kind, "body": orjson.loads(CODEC.encode(e))} for e in events)


def unnest(nested: Sequence[dict[str, Any]]) -> list[Event]:
    """The events :func:`nest` made, decoded (and upcast) as the log's are."""
    return [CODEC.decode(item["kind"], orjson.dumps(item["body"])) for item in nested]
