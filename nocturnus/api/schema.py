"""Request bodies described once, as JSON Schema, and checked against that same schema.

The schemas published in ``/openapi.json`` are the ones requests are validated with, so the
documentation cannot drift from the behaviour. The validator covers the subset we use:
``type`` (one or a list), ``properties``, ``required``, ``additionalProperties: false``,
``items``, ``minItems``/``maxItems``, ``minLength``/``maxLength``, ``pattern``,
``minimum``/``maximum``, ``enum``, ``minProperties``/``maxProperties``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from typing import Any

from nocturnus.errors import ValidationError

Schema = dict[str, Any]

DATABASE_NAME = r"^[A-Za-z0-9_-]{1,64}$"
TENANT_NAME = r"^[A-Za-z0-9_-]{1,128}$"
SCOPE_NAME = r"^[A-Za-z0-9_.:-]{1,128}$"

_TYPE_WORDS = {
    "string": "a string",
    "number": "a number",
    "integer": "an integer",
    "boolean": "a boolean",
    "object": "an object",
    "array": "an array",
    "null": "null",
}


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _matches_type(value: Any, name: str) -> bool:
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    return value is None


# The exact Python types that certainly match a JSON type name (what a JSON parser
# produces); anything else (a subclass, a bool for "integer") takes _matches_type.
_EXACT_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "number": (int, float),
    "object": (dict,),
    "array": (list,),
    "null": (type(None),),
}

Check = Callable[[Any], None]
"""A compiled schema: returns, or raises :class:`_Invalid` for the first problem."""


class _Invalid(Exception):
    """A compiled check failed: ``message`` follows the label; ``trail`` holds the
    keys and indexes from the failing value up to the root (innermost first).

    ``of_field`` marks a missing or unknown field: its label is the field's path as
    it is (the failing value's own label falls back to "body" when empty).
    """

    def __init__(self, message: str, of_field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.trail: list[str | int] = [] if of_field is None else [of_field]
        self.of_field = of_field is not None


def validate(value: Any, schema: Schema, path: str = "") -> None:
    """Check ``value`` against ``schema``.

    :raises ValidationError: naming the first offending field, e.g. ``args[2]``.
    """
    try:
        compiled(schema)(value)
    except _Invalid as e:
        label = path
        for step in reversed(e.trail):
            if isinstance(step, int):
                label = f"{label}[{step}]" if label else f"[{step}]"
            else:
                label = f"{label}.{step}" if label else step
        if not e.of_field:
            label = label or "body"
        raise ValidationError(f"{label}: {e.message}", field=label) from None


_COMPILED: dict[int, tuple[Schema, Check]] = {}
_COMPILED_MAX = 1024


def compiled(schema: Schema) -> Check:
    """The check for ``schema``, compiled on first use and kept while it is cached.

    Keyed by identity: the cache holds the schema itself, so its id cannot be reused
    by another dict while the entry lives. Schemas built per call (rare) are compiled
    each time they are met once the cache is full.
    """
    found = _COMPILED.get(id(schema))
    if found is not None and found[0] is schema:
        return found[1]
    check = compile_schema(schema)
    if len(_COMPILED) >= _COMPILED_MAX:
        _COMPILED.clear()
    _COMPILED[id(schema)] = (schema, check)
    return check


def compile_schema(schema: Schema) -> Check:
    """Turn ``schema`` into one closure doing exactly its checks, in the walker's order.

    Type, then ``enum``, then by the value's own type: strings (length, pattern),
    numbers (finite, bounds), arrays (size, then each item), objects (size, required,
    then each field in the body's order, unknown ones rejected when closed). The
    schema's keywords are read once here instead of on every request.
    """
    types = schema.get("type")
    names = None if types is None else [types] if isinstance(types, str) else list(types)
    exact = frozenset(t for n in names or () for t in _EXACT_TYPES.get(n, ()))
    type_message = (
        "" if names is None else "must be " + " or ".join(_TYPE_WORDS.get(n, n) for n in names)
    )
    has_enum = "enum" in schema
    enum = schema.get("enum")
    listed = ", ".join(str(v) for v in enum or () if v is not None)
    enum_message = "must be one of " + listed if has_enum else ""
    check_string = _string_check(schema)
    check_number = _number_check(schema)
    check_array = _array_check(schema)
    check_object = _object_check(schema)

    def check(value: Any) -> None:
        kind = type(value)
        if (
            names is not None
            and kind not in exact
            and not any(_matches_type(value, n) for n in names)
        ):
            raise _Invalid(type_message)
        if has_enum and value not in enum:  # type: ignore[operator]  # has_enum: a list
            raise _Invalid(enum_message)
        if kind is str or isinstance(value, str):
            check_string(value)
        elif (kind is int or kind is float) or (
            isinstance(value, (int, float)) and not isinstance(value, bool)
        ):
            check_number(value)
        elif kind is list or isinstance(value, list):
            check_array(value)
        elif kind is dict or isinstance(value, dict):
            check_object(value)

    return check


def _nothing(value: Any) -> None:
    """The check of a schema that has nothing to say about this kind of value."""


def _string_check(schema: Schema) -> Check:
    min_length = schema.get("minLength", 0)
    max_length = schema.get("maxLength")
    pattern = schema.get("pattern")
    if not min_length and max_length is None and pattern is None:
        return _nothing
    regex = None if pattern is None else _regex(pattern)
    short = (
        "must not be empty"
        if min_length == 1
        else f"must be at least {min_length} characters"
    )

    def check(value: str) -> None:
        if len(value) < min_length:
            raise _Invalid(short)
        if max_length is not None and len(value) > max_length:
            raise _Invalid(f"must be at most {max_length} characters")
        if regex is not None and not regex.fullmatch(value):
            raise _Invalid(f"{value[:80]!r} does not match {pattern}")

    return check


def _number_check(schema: Schema) -> Check:
    has_min, has_max = "minimum" in schema, "maximum" in schema
    minimum, maximum = schema.get("minimum"), schema.get("maximum")
    infinities = (float("inf"), float("-inf"))

    def check(value: float) -> None:
        if value != value or value in infinities:  # noqa: PLR0124 - NaN test
            raise _Invalid("must be a finite number")
        if has_min and value < minimum:  # type: ignore[operator]  # has_min: a number
            raise _Invalid(f"must be ≥ {minimum}")
        if has_max and value > maximum:  # type: ignore[operator]  # has_max: a number
            raise _Invalid(f"must be ≤ {maximum}")

    return check


def _array_check(schema: Schema) -> Check:
    min_items = schema.get("minItems", 0)
    max_items = schema.get("maxItems")
    items = schema.get("items")
    if not min_items and max_items is None and items is None:
        return _nothing
    check_item = None if items is None else compiled(items)

    def check(value: list[Any]) -> None:
        if len(value) < min_items:
            raise _Invalid(f"must have at least {min_items} item(s)")
        if max_items is not None and len(value) > max_items:
            raise _Invalid(f"must have at most {max_items} items")
        if check_item is not None:
            i = 0
            try:
                for item in value:
                    check_item(item)
                    i += 1
            except _Invalid as e:
                e.trail.append(i)
                raise

    return check


def _object_check(schema: Schema) -> Check:
    properties: dict[str, Schema] = schema.get("properties", {})
    min_properties = schema.get("minProperties", 0)
    max_properties = schema.get("maxProperties")
    required = tuple(schema.get("required", ()))
    closed = schema.get("additionalProperties") is False
    if (
        not min_properties
        and max_properties is None
        and not required
        and not properties
        and not closed
    ):
        return _nothing
    checks = {name: compiled(item) for name, item in properties.items()}

    def check(value: dict[str, Any]) -> None:
        if len(value) < min_properties:
            raise _Invalid(f"must have at least {min_properties} key(s)")
        if max_properties is not None and len(value) > max_properties:
            raise _Invalid(f"must have at most {max_properties} keys")
        for name in required:
            if name not in value:
                raise _Invalid("is required", of_field=name)
        for name, item in value.items():
            field_check = checks.get(name)
            if field_check is not None:
                try:
                    field_check(item)
                except _Invalid as e:
                    e.trail.append(name)
                    raise
            elif closed:
                raise _Invalid("unknown field", of_field=name)

    return check


# -- shared pieces ------------------------------------------------------------------

def nullable(schema: Schema) -> Schema:
    """``schema`` that also accepts JSON ``null`` (meaning: not given)."""
    types = schema.get("type")
    names = [types] if isinstance(types, str) else list(types or [])
    widened = {**schema, "type": [*names, "null"]}
    if "enum" in schema:  # JSON Schema checks enum on null too
        widened["enum"] = [*schema["enum"], None]
    return widened


PREDICATE: Schema = {"type": "string", "minLength": 1, "maxLength": 255}
TERM: Schema = {"type": ["string", "number"], "maxLength": 10_000}
ARGS: Schema = {"type": "array", "items": TERM, "maxItems": 64}
SCOPE: Schema = nullable({"type": "string", "pattern": SCOPE_NAME})
CONFIDENCE: Schema = nullable({"type": "number", "minimum": 0, "maximum": 1})
TIMESTAMP: Schema = nullable({"type": "integer", "minimum": 0})
METADATA: Schema = nullable({"type": "object", "maxProperties": 32})
CONFLICT_STRATEGY: Schema = nullable(
    {"type": "string", "enum": ["REJECT", "NEWEST_WINS", "CONFIDENCE", "KEEP_BOTH"]}
)


def obj(required: list[str], **properties: Schema) -> Schema:
    """A closed object schema: unknown fields are rejected."""
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema
