"""The compiled schema checks answer exactly as the plain schema walker they replaced.

``reference_validate`` below is the walker ``api/schema.py`` used before schemas were
compiled to closures (issue 3's write path): for every endpoint's body schema and
values generated around it, valid or not, both accept the same values and reject the
others with the same message and field.
"""

from __future__ import annotations

import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

import nocturnus.api.app  # noqa: F401 - registers every endpoint
from nocturnus.api.endpoint import ENDPOINTS
from nocturnus.api.schema import _TYPE_WORDS, Schema, compile_schema, validate
from nocturnus.errors import ValidationError

# -- the walker, as it was ---------------------------------------------------------

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


def reference_validate(value: Any, schema: Schema, path: str = "") -> None:
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
    if "pattern" in schema and not re.compile(schema["pattern"]).fullmatch(value):
        raise ValidationError(
            f"{label}: {value[:80]!r} does not match {schema['pattern']}", field=label
        )


def _check_number(value: float, schema: Schema, label: str) -> None:
    if value != value or value in (float("inf"), float("-inf")):  # noqa: PLR0124
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
            reference_validate(item, items, f"{path}[{i}]" if path else f"[{i}]")


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
            reference_validate(item, properties[name], field)
        elif schema.get("additionalProperties") is False:
            raise ValidationError(f"{field}: unknown field", field=field)



# -- values around a schema ---------------------------------------------------------

JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.just([]),
    st.just({}),
)


def near(schema: Schema, depth: int = 0) -> st.SearchStrategy[Any]:
    """Values that mostly fit ``schema``, with every kind of near miss mixed in."""
    options: list[st.SearchStrategy[Any]] = [JUNK]
    types = schema.get("type")
    names = [types] if isinstance(types, str) else list(types or [])
    if "enum" in schema:
        options.append(st.sampled_from(list(schema["enum"])))
    if "string" in names or not names:
        low = schema.get("minLength", 0)
        high = schema.get("maxLength", low + 5)
        options.append(st.text(min_size=max(0, low - 1), max_size=min(high + 1, low + 8)))
        if "pattern" in schema:
            options.append(st.from_regex(schema["pattern"], fullmatch=True))
            options.append(st.sampled_from(["", "a b", "x" * 200, "ok_name", "?x"]))
    if "number" in names or "integer" in names:
        options.append(st.integers(-3, 70))
        if "number" in names:
            options.append(st.floats(-2, 2) | st.sampled_from([float("nan"), float("inf")]))
    if ("array" in names or "items" in schema) and depth < 4:
        item = near(schema.get("items", {}), depth + 1)
        options.append(st.lists(item, max_size=min(schema.get("maxItems", 4), 4) + 1))
    if ("object" in names or "properties" in schema) and depth < 4:
        properties = schema.get("properties", {})
        if properties:
            options.append(
                st.fixed_dictionaries(
                    {},
                    optional={name: near(sub, depth + 1) for name, sub in properties.items()}
                    | {"unknownField": JUNK},
                )
            )
        options.append(st.dictionaries(st.text(max_size=3), JUNK, max_size=3))
    return st.one_of(options)


def outcome(check: Any, value: Any, schema: Schema, path: str) -> tuple[str, str] | None:
    try:
        check(value, schema, path)
    except ValidationError as e:
        return e.message, str((e.details or {}).get("field"))
    return None


SCHEMAS = [spec.body for spec in ENDPOINTS if spec.body is not None] + [
    q for spec in ENDPOINTS for q in spec.query.values()
]


@settings(max_examples=400, deadline=None)
@given(data=st.data(), index=st.integers(0, len(SCHEMAS) - 1), path=st.sampled_from(["", "x"]))
def test_compiled_checks_answer_as_the_walker(data: st.DataObject, index: int, path: str) -> None:
    schema = SCHEMAS[index]
    value = data.draw(near(schema))
    assert outcome(validate, value, schema, path) == outcome(
        reference_validate, value, schema, path
    )


def test_every_type_word_is_known() -> None:
    for schema in SCHEMAS:
        compile_schema(schema)
    assert set(_TYPE_WORDS) >= {"string", "number", "integer", "boolean", "object", "array"}


# -- response headers ---------------------------------------------------------------


@given(st.text(alphabet=st.sampled_from(["a", "\r", "\n", "\x00", " ", "é", "\t", "\x7f"])))
def test_json_response_cleans_header_values_as_sanic_does(value: str) -> None:
    from sanic import HTTPResponse

    from nocturnus.api.endpoint import JsonResponse

    assert JsonResponse._sanitize_header_value(value) == HTTPResponse._sanitize_header_value(
        value
    )
