"""``/openapi.json`` describes exactly the routes Sanic serves (census), and our request
validator gives the same verdict as the ``jsonschema`` reference on the published schemas
(the validator is our own code, so it is checked against the reference)."""

from __future__ import annotations

import functools
import re
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, validators

from nocturnus.api.app import create_app
from nocturnus.api.endpoint import ENDPOINTS
from nocturnus.api.openapi import build_document
from nocturnus.api.schema import validate
from nocturnus.errors import ValidationError
from nocturnus.settings import Settings
from tests.api.schema_strategy import end_anchored, from_schema, near_miss
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


# JSON Schema counts 1.0 as an integer; we do not (a float must not reach code that
# indexes or counts with it), so the oracle is told the same, explicitly.
_INTEGER = Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
)
Oracle = validators.extend(Draft202012Validator, type_checker=_INTEGER)


def ours_accept(body: Any, schema: dict[str, Any]) -> bool:
    try:
        validate(body, schema)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("name", sorted(BODIES))
def test_our_validator_agrees_with_the_reference_validator(name: str) -> None:
    """Same verdict as ``jsonschema`` on valid and near-valid bodies of every schema."""
    schema = BODIES[name]
    oracle = Oracle(end_anchored(schema))
    valid_seen: list[bool] = []

    @settings(
        max_examples=150, deadline=None, derandomize=True, database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.one_of(from_schema(schema), near_miss(schema)))
    def check(body: Any) -> None:
        expected = oracle.is_valid(body)
        assert ours_accept(body, schema) == expected, (body, list(oracle.iter_errors(body))[:1])
        valid_seen.append(expected)

    check()
    assert any(valid_seen) and not all(valid_seen)  # both kinds were exercised


@pytest.mark.parametrize("name", sorted(BODIES))
def test_generated_bodies_are_valid_for_the_reference_validator(name: str) -> None:
    schema = BODIES[name]
    oracle = Oracle(end_anchored(schema))

    @settings(
        max_examples=30, deadline=None, derandomize=True, database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(from_schema(schema))
    def check(body: Any) -> None:
        assert oracle.is_valid(body), list(oracle.iter_errors(body))[:1]

    check()
