"""Hypothesis strategies for the JSON Schema subset our endpoint schemas use.

``from_schema`` draws values valid under standard JSON Schema semantics for that subset
(the one ``nocturnus.api.schema`` validates: type, enum, properties, required,
additionalProperties, items, min/maxItems, min/maxLength, pattern, minimum/maximum,
min/maxProperties); ``near_miss`` draws values that are usually invalid. The tests check
both against the ``jsonschema`` reference validator, so this module needs no trust.
Sizes are kept small: the point is coverage of shapes, not big payloads.
"""

from __future__ import annotations

import copy
from typing import Any

from hypothesis import strategies as st

MAX_TEXT = 24
MAX_ITEMS = 4

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=8,
)


def end_anchored(schema: Any) -> Any:
    """The schema with ``$``-anchored patterns made end-only (``\\Z``).

    JSON Schema patterns are ECMA-262, where ``$`` matches only at the end; in Python's
    ``re`` it also matches before a final newline. With ``\\Z``, Python-based generators
    and validators agree with ECMA-262 (and with our validator's ``fullmatch``).
    """
    schema = copy.deepcopy(schema)
    stack = [schema]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            pattern = node.get("pattern")
            if isinstance(pattern, str) and pattern.endswith("$") and not pattern.endswith("\\$"):
                node["pattern"] = pattern[:-1] + r"\Z"
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return schema


def from_schema(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values valid under ``schema`` (patterns are taken as anchored at both ends)."""
    if "enum" in schema:
        types = _types(schema)
        return st.sampled_from([v for v in schema["enum"] if _has_type(v, types)])
    return st.one_of(*(_of_type(name, schema) for name in _types(schema)))


def near_miss(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values close to valid: one property replaced, an unknown one added, a required one
    dropped, one item of an array replaced; or any JSON value at all."""
    if schema.get("type") != "object" or "properties" not in schema:
        return JSON_VALUES
    valid = from_schema(schema)
    properties = list(schema["properties"])
    replaced = st.tuples(valid, st.sampled_from(properties), JSON_VALUES).map(
        lambda t: {**t[0], t[1]: t[2]}
    )
    unknown = st.tuples(valid, st.text(min_size=1, max_size=8), JSON_VALUES).map(
        lambda t: {**t[0], "zz_" + t[1]: t[2]}
    )
    required = schema.get("required", [])
    dropped = (
        st.tuples(valid, st.sampled_from(required)).map(
            lambda t: {k: v for k, v in t[0].items() if k != t[1]}
        )
        if required
        else st.nothing()
    )
    nested = st.tuples(valid, st.sampled_from(properties)).flatmap(
        lambda t: _nested_miss(t[0], t[1], schema["properties"][t[1]])
    )
    edges = [(name, value) for name, sub in schema["properties"].items() for value in _just_outside(sub)]
    outside = (
        st.tuples(valid, st.sampled_from(edges)).map(lambda t: {**t[0], t[1][0]: t[1][1]})
        if edges
        else st.nothing()
    )
    return st.one_of(replaced, unknown, dropped, nested, outside, JSON_VALUES)


def _just_outside(schema: dict[str, Any]) -> list[Any]:
    """Values of a type ``schema`` does not allow, or one step past one of its bounds."""
    types = _types(schema)
    values: list[Any] = [v for v in (None, True, 7, 0.5, "s", [], {}) if not _has_type(v, types)]
    if "maxLength" in schema:
        values.append("x" * (schema["maxLength"] + 1))
    if schema.get("minLength", 0) > 0:
        values.append("")
    if "maximum" in schema:
        values.append(schema["maximum"] + 1)
    if "minimum" in schema:
        values.append(schema["minimum"] - 1)
    if "maxItems" in schema and schema["maxItems"] <= 100:
        item = "x" if "items" not in schema else None
        values.append([item] * (schema["maxItems"] + 1))
    if schema.get("minItems", 0) > 0:
        values.append([])
    return values


def _nested_miss(body: dict[str, Any], name: str, schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """``body`` with a near miss one level down (an array item or a nested object)."""
    if "items" in schema:
        items = schema["items"]
        inner = near_miss(items).map(lambda bad: [bad])
        return inner.map(lambda value: {**body, name: value})
    if schema.get("type") == "object" or "object" in schema.get("type", []):
        return near_miss(schema).map(lambda value: {**body, name: value})
    return JSON_VALUES.map(lambda value: {**body, name: value})


def _types(schema: dict[str, Any]) -> list[str]:
    types = schema.get("type", ["null", "boolean", "integer", "number", "string", "array", "object"])
    return [types] if isinstance(types, str) else list(types)


def _has_type(value: Any, types: list[str]) -> bool:
    checks = {
        "null": value is None,
        "boolean": isinstance(value, bool),
        "integer": isinstance(value, int) and not isinstance(value, bool),
        "number": isinstance(value, (int, float)) and not isinstance(value, bool),
        "string": isinstance(value, str),
        "array": isinstance(value, list),
        "object": isinstance(value, dict),
    }
    return any(checks[t] for t in types)


def _of_type(name: str, schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    low, high = schema.get("minimum"), schema.get("maximum")
    if name == "null":
        return st.none()
    if name == "boolean":
        return st.booleans()
    if name == "integer":
        return st.integers(min_value=_int_bound(low, up=True), max_value=_int_bound(high, up=False))
    if name == "number":
        floats = st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False)
        return st.one_of(_of_type("integer", schema), floats)
    if name == "string":
        return _string(schema)
    if name == "array":
        items = from_schema(schema["items"]) if "items" in schema else JSON_VALUES
        min_size = schema.get("minItems", 0)
        max_size = min(schema.get("maxItems", MAX_ITEMS), max(MAX_ITEMS, min_size))
        return st.lists(items, min_size=min_size, max_size=max_size)
    return _object(schema)


def _int_bound(bound: float | None, *, up: bool) -> int | None:
    if bound is None:
        return None
    whole = int(bound)
    if up and whole < bound:
        whole += 1
    if not up and whole > bound:
        whole -= 1
    return whole


def _string(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    min_size = schema.get("minLength", 0)
    max_size = schema.get("maxLength")
    if "pattern" in schema:
        pattern = end_anchored({"pattern": schema["pattern"]})["pattern"]
        text = st.from_regex(pattern, fullmatch=True)
        return text.filter(lambda s: min_size <= len(s) <= (max_size if max_size is not None else len(s)))
    cap = MAX_TEXT if max_size is None else min(max_size, max(MAX_TEXT, min_size))
    return st.text(min_size=min_size, max_size=cap)


def _object(schema: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    properties: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", ()))
    low = schema.get("minProperties", 0)
    high = schema.get("maxProperties")
    if properties:
        value = st.fixed_dictionaries(
            {k: from_schema(s) for k, s in properties.items() if k in required},
            optional={k: from_schema(s) for k, s in properties.items() if k not in required},
        )
    else:  # free-form (metadata): any JSON object
        cap = MAX_ITEMS if high is None else min(high, MAX_ITEMS)
        value = st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=cap)
    return value.filter(lambda d: low <= len(d) <= (high if high is not None else len(d)))
