"""Request bodies described once, as JSON Schema, and checked against that same schema.

The schemas published in ``/openapi.json`` are the ones requests are validated with, so the
documentation cannot drift from the behaviour. The validator covers the subset we use:
``type`` (one or a list), ``properties``, ``required``, ``additionalProperties: false``,
``items``, ``minItems``/``maxItems``, ``minLength``/``maxLength``, ``pattern``,
``minimum``/``maximum``, ``enum``, ``minProperties``/``maxProperties``.
"""

from __future__ import annotations

import re
from functools import lru_cache
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


@lru_cache(maxsize=None)
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


def validate(value: Any, schema: Schema, path: str = "") -> None:
    """Check ``value`` against ``schema``.

    :raises ValidationError: naming the first offending field, e.g. ``args[2]``.
    """
    label = path or "body"
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else list(types)
        if not any(_matches_type(value, n) for n in names):
            words = " or ".join(_TYPE_WORDS[n] for n in names)
            raise ValidationError(f"{label}: must be {words}", field=label)
    if "enum" in schema and value not in schema["enum"]:
        allowed = ", ".join(str(v) for v in schema["enum"] if v is not None)
        raise ValidationError(f"{label}: must be one of {allowed}", field=label)
    if isinstance(value, str):
        _check_string(value, schema, label)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_number(value, schema, label)
    elif isinstance(value, list):
        _check_array(value, schema, path, label)
    elif isinstance(value, dict):
        _check_object(value, schema, path, label)


def _check_string(value: str, schema: Schema, label: str) -> None:
    if len(value) < schema.get("minLength", 0):
        message = "must not be empty" if schema.get("minLength") == 1 else (
            f"must be at least {schema['minLength']} characters"
        )
        raise ValidationError(f"{label}: {message}", field=label)
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        raise ValidationError(
            f"{label}: must be at most {schema['maxLength']} characters", field=label
        )
    if "pattern" in schema and not _regex(schema["pattern"]).fullmatch(value):
        raise ValidationError(
            f"{label}: {value[:80]!r} does not match {schema['pattern']}", field=label
        )


def _check_number(value: float, schema: Schema, label: str) -> None:
    if value != value or value in (float("inf"), float("-inf")):
        raise ValidationError(f"{label}: must be a finite number", field=label)
    if "minimum" in schema and value < schema["minimum"]:
        raise ValidationError(f"{label}: must be ≥ {schema['minimum']}", field=label)
    if "maximum" in schema and value > schema["maximum"]:
        raise ValidationError(f"{label}: must be ≤ {schema['maximum']}", field=label)


def _check_array(value: list[Any], schema: Schema, path: str, label: str) -> None:
    if len(value) < schema.get("minItems", 0):
        raise ValidationError(
            f"{label}: must have at least {schema['minItems']} item(s)", field=label
        )
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        raise ValidationError(
            f"{label}: must have at most {schema['maxItems']} items", field=label
        )
    items = schema.get("items")
    if items is not None:
        for i, item in enumerate(value):
            validate(item, items, f"{path}[{i}]" if path else f"[{i}]")


def _check_object(value: dict[str, Any], schema: Schema, path: str, label: str) -> None:
    properties: dict[str, Schema] = schema.get("properties", {})
    if len(value) < schema.get("minProperties", 0):
        raise ValidationError(
            f"{label}: must have at least {schema['minProperties']} key(s)", field=label
        )
    if "maxProperties" in schema and len(value) > schema["maxProperties"]:
        raise ValidationError(
            f"{label}: must have at most {schema['maxProperties']} keys", field=label
        )
    for name in schema.get("required", ()):
        if name not in value:
            field = f"{path}.{name}" if path else name
            raise ValidationError(f"{field}: is required", field=field)
    for name, item in value.items():
        field = f"{path}.{name}" if path else name
        if name in properties:
            validate(item, properties[name], field)
        elif schema.get("additionalProperties") is False:
            raise ValidationError(f"{field}: unknown field", field=field)


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
