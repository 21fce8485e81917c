"""``/openapi.json`` describes exactly the routes Sanic serves (census), and the published
schemas accept what JSON Schema says is valid (the validator is ours, so check it)."""

from __future__ import annotations

import copy
import functools
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis_jsonschema import from_schema

from nocturnus.api.app import create_app
from nocturnus.api.endpoint import ENDPOINTS
from nocturnus.api.openapi import build_document
from nocturnus.api.schema import validate
from nocturnus.settings import Settings
from tests.server import Server


@functools.cache
def sanic_routes() -> frozenset[tuple[str, str]]:
    app = create_app(Settings(), name="census")
    found = set()
    for route in app.router.routes:
        path = "/" + re.sub(r"<([a-z_]+)(:[^>]*)?>", r"{\1}", route.path.lstrip("/"))
        found.update((method, path) for method in route.methods)
    return frozenset(found)


def documented_routes(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method in operations
    }


def test_every_registered_route_is_documented_with_its_method() -> None:
    assert sanic_routes() == documented_routes(build_document())


def test_served_document_is_the_generated_one(server: Server) -> None:
    served = server.request("GET", "/openapi.json").json()
    assert documented_routes(served) == sanic_routes()
    assert served == build_document()


def test_operations_describe_headers_bodies_and_responses() -> None:
    document = build_document()
    for spec in ENDPOINTS:
        for path in spec.paths:
            openapi_path = re.sub(r"<([a-z_]+)>", r"{\1}", path)
            operation = document["paths"][openapi_path][spec.method.lower()]
            headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
            assert ("X-Tenant-ID" in headers) == spec.tenant, path
            assert ("X-Database" in headers) == spec.database, path
            path_params = {p["name"] for p in operation["parameters"] if p["in"] == "path"}
            assert path_params == set(re.findall(r"<([a-z_]+)>", path)), path
            assert ("requestBody" in operation) == (spec.body is not None), path
            success = operation["responses"][str(spec.status)]["content"]
            assert list(success) == [spec.response_type.split(";")[0]], path
            if spec.body is not None:
                schema = operation["requestBody"]["content"]["application/json"]["schema"]
                assert schema == spec.body and schema.get("additionalProperties") is False


def generation_schema(schema: Any) -> Any:
    """The schema with ``$``-anchored patterns made end-only (``\\Z``).

    JSON Schema patterns are ECMA-262, where ``$`` matches only at the end; in Python's
    ``re`` it also matches before a final newline, so a generator would produce
    ``"name\\n"``, which JSON Schema (and our validator) rightly reject.
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


def distinct_bodies() -> dict[str, dict[str, Any]]:
    """One entry per distinct body schema (``/teach`` and database rules share one)."""
    found: dict[str, dict[str, Any]] = {}
    seen: list[dict[str, Any]] = []
    for spec in ENDPOINTS:
        if spec.body is not None and spec.body not in seen:
            seen.append(spec.body)
            found[f"{spec.method} {spec.paths[0]}"] = spec.body
    return found


BODIES = distinct_bodies()


@pytest.mark.parametrize("name", sorted(BODIES))
def test_our_validator_accepts_every_schema_valid_body(name: str) -> None:
    schema = BODIES[name]

    @settings(
        max_examples=40, deadline=None, derandomize=True, database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(from_schema(generation_schema(schema)))
    def check(body: Any) -> None:
        validate(body, schema)

    check()
