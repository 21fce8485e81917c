"""Fuzzing every route of ``/openapi.json`` over HTTP (issue 9), bounded in time.

For each documented operation, Hypothesis sends schema-valid bodies (generated from the
published schema), near misses (a wrong-typed, unknown or missing field), arbitrary JSON,
raw garbage, and good, bad or missing ``X-Tenant-ID`` / ``X-Database`` headers, to a real
server of its own. Properties: never a 5xx; every error is the JSON envelope with a known
code; every answer has an ``X-Request-ID``; and each operation accepts at least one
schema-valid request (so the document cannot describe a route the server refuses).
Examples are derandomized: a run is reproducible, and a failure prints the request.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nocturnus.api.app  # noqa: F401  (imports every blueprint: ENDPOINTS is complete)
from nocturnus.api.openapi import build_document
from tests.api.schema_strategy import JSON_VALUES, from_schema, near_miss
from tests.server import Server

# Kept small so the whole file stays well under a minute on 2 cores; for a deep run:
# NOCTURNUS_FUZZ_EXAMPLES=500 NOCTURNUS_FUZZ_SEED=random python -m pytest tests/api/test_fuzz.py
EXAMPLES_PER_OPERATION = int(os.environ.get("NOCTURNUS_FUZZ_EXAMPLES", "25"))
DERANDOMIZE = os.environ.get("NOCTURNUS_FUZZ_SEED", "fixed") != "random"
ERROR_CODES = {
    "VALIDATION_ERROR", "UNAUTHORIZED", "FORBIDDEN", "NOT_FOUND", "METHOD_NOT_ALLOWED",
    "CONFLICT", "PAYLOAD_TOO_LARGE", "RATE_LIMITED", "UNAVAILABLE",
}
FUZZ_DB = "fuzzdb"
TENANTS = ["fz_a", "fz_b"]
SEEDED_FACT = {"predicate": "par", "args": ["a", "b"]}
# What the DELETE routes may destroy, so that the other operations keep their contexts.
DOOMED_DB = "fz_doomed"
DOOMED_TENANT = "fz_doomed"
DOCUMENT = build_document()
OPERATIONS = [
    (method.upper(), path, operation)
    for path, operations in DOCUMENT["paths"].items()
    for method, operation in operations.items()
]


@dataclass(frozen=True)
class Context:
    """A database, a tenant and rule ids that exist together on the fuzz server."""

    database: str
    tenant: str
    rule_id: str
    database_rule_id: str


@dataclass
class Seeds:
    contexts: list[Context] = field(default_factory=list)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Seeds]]:
    server = Server(tmp_path_factory.mktemp("fuzz") / "data").start()
    seeds = Seeds()
    for name in (FUZZ_DB, DOOMED_DB):
        assert server.request("POST", "/databases", json={"name": name}).status_code == 201
    rule = {
        "head": {"predicate": "gp", "args": ["?x", "?z"]},
        "body": [{"predicate": "par", "args": ["?x", "?y"]}, {"predicate": "par", "args": ["?y", "?z"]}],
    }
    for database in ("default", FUZZ_DB):
        taught = server.request("POST", f"/admin/databases/{database}/rules", json=rule)
        database_rule_id = taught.json()["rule"]["id"]
        for tenant in TENANTS:
            told = server.request("POST", "/tell", tenant=tenant, database=database, json=SEEDED_FACT)
            assert told.status_code == 200
            taught = server.request("POST", "/teach", tenant=tenant, database=database,
                                    json={**rule, "scope": "s1"})
            assert taught.status_code == 200, taught.text
            seeds.contexts.append(Context(database, tenant, taught.json()["rule"]["id"], database_rule_id))
        told = server.request("POST", "/tell", tenant=DOOMED_TENANT, database=database, json=SEEDED_FACT)
        assert told.status_code == 200
    yield server, seeds
    assert server.stop() == 0


@dataclass
class Fuzzed:
    method: str
    url: str
    headers: dict[str, str]
    content: bytes | None
    valid: bool  # headers, path and body all valid per the document

    def __repr__(self) -> str:
        body = None if self.content is None else self.content[:300]
        return f"{self.method} {self.url} headers={self.headers} body={body!r} valid={self.valid}"


# Printable ASCII without surrounding blanks: what an HTTP client can send at all.
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40).map(str.strip)


def path_values(
    method: str, path: str, name: str, context: Context, well_formed: bool
) -> st.SearchStrategy[tuple[str, bool]]:
    """The context's value (True) or junk (False) for one path parameter."""
    if name == "db":
        known = DOOMED_DB if method == "DELETE" and path.endswith("{db}") else context.database
    elif name == "tenant":
        known = DOOMED_TENANT if method == "DELETE" and path.endswith("{tenant}") else context.tenant
    elif name == "rule_id":
        known = context.database_rule_id if path.startswith("/admin") else context.rule_id
    else:
        raise AssertionError(f"no known values for path parameter {name!r} of {path}")
    good = st.just((known, True))
    if well_formed:
        return good
    junk = st.text(min_size=1, max_size=20).map(lambda v: (v, False))
    return st.one_of(good, junk)


def header_values(
    required: bool, known: str, well_formed: bool
) -> st.SearchStrategy[tuple[str | None, bool]]:
    good = st.just((known, True))
    if well_formed:
        return good
    absent = st.just((None, not required))
    junk = HEADER_TEXT.map(lambda v: (v, False))
    return st.one_of(good, absent, junk)


def body_values(
    schema: dict[str, Any] | None, required: bool, well_formed: bool
) -> st.SearchStrategy[tuple[bytes | None, bool]]:
    if schema is None:
        return st.one_of(st.just((None, True)), JSON_VALUES.map(lambda v: (json.dumps(v).encode(), True)))
    valid = from_schema(schema)
    encoded = valid.map(lambda v: (json.dumps(v).encode(), True))
    seeded = valid.map(about_the_seeded_fact).map(lambda v: (json.dumps(v).encode(), True))
    if well_formed:
        return st.one_of(encoded, seeded)
    return st.one_of(
        encoded,
        # Near misses may happen to be valid: counted as not, so they never prove acceptance.
        near_miss(schema).map(lambda v: (json.dumps(v).encode(), False)),
        st.binary(max_size=40).map(lambda v: (v, False)),
        st.just((None, not required)),
    )


def about_the_seeded_fact(body: Any) -> Any:
    """A valid body naming the fact every context holds, for routes that need one."""
    if not isinstance(body, dict) or "predicate" not in body or "args" not in body:
        return body
    body = {k: v for k, v in body.items() if k not in ("scope", "negated", "truthVal")}
    return {**body, **SEEDED_FACT}


def query_values(parameters: list[dict[str, Any]]) -> st.SearchStrategy[dict[str, str]]:
    entries = {
        p["name"]: st.one_of(from_schema(p["schema"]), HEADER_TEXT)
        for p in parameters if p["in"] == "query"
    }
    return st.fixed_dictionaries({}, optional=entries)


@st.composite
def requests(draw: st.DrawFn, method: str, path: str, operation: dict[str, Any], seeds: Seeds) -> Fuzzed:
    valid = True
    url = path
    context = draw(st.sampled_from(seeds.contexts))
    # Half the requests are well formed throughout (known names, valid body): those
    # must be accepted at least once; the other half mixes in junk anywhere.
    well_formed = draw(st.booleans())
    for name in re.findall(r"{([a-z_]+)}", path):
        value, ok = draw(path_values(method, path, name, context, well_formed))
        url = url.replace("{" + name + "}", quote(value, safe=""))
        valid &= ok
    headers: dict[str, str] = {"Content-Type": "application/json"}
    declared = {p["name"]: p for p in operation["parameters"] if p["in"] == "header"}
    for name, known in (("X-Tenant-ID", context.tenant), ("X-Database", context.database)):
        if name in declared:
            value, ok = draw(header_values(declared[name]["required"], known, well_formed))
        else:  # an undeclared header must be ignored
            value, ok = draw(st.one_of(st.none(), HEADER_TEXT)), True
        if value is not None:
            headers[name] = value
        valid &= ok
    request_body = operation.get("requestBody")
    schema = request_body["content"]["application/json"]["schema"] if request_body else None
    content, ok = draw(body_values(schema, bool(request_body and request_body["required"]), well_formed))
    valid &= ok
    query = {} if well_formed else draw(query_values(operation["parameters"]))
    if query:
        url += "?" + "&".join(f"{quote(k)}={quote(str(v), safe='')}" for k, v in query.items())
        valid = False  # junk query values are allowed to be refused
    return Fuzzed(method, url, headers, content, valid)


def check_answer(request: Fuzzed, response: httpx.Response) -> None:
    assert response.status_code < 500, f"{request!r} -> {response.status_code} {response.text[:500]}"
    assert response.headers.get("X-Request-ID"), request
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/json"), request
        error = response.json()
        assert isinstance(error, dict) and set(error) == {"code", "message", "details"}, error
        assert error["code"] in ERROR_CODES, error
        assert isinstance(error["message"], str) and error["message"], error
        assert error["details"] is None or isinstance(error["details"], dict), error


@pytest.mark.parametrize(
    ("method", "path", "operation"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS]
)
def test_fuzz_operation(
    fuzz_server: tuple[Server, Seeds], method: str, path: str, operation: dict[str, Any]
) -> None:
    server, seeds = fuzz_server
    for context in seeds.contexts:  # an earlier operation may have forgotten it
        told = server.request("POST", "/tell", tenant=context.tenant, database=context.database,
                              json=SEEDED_FACT)
        assert told.status_code == 200, told.text
    accepted: list[Fuzzed] = []

    @settings(
        max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=DERANDOMIZE, database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests(method, path, operation, seeds))
    def fuzz(request: Fuzzed) -> None:
        response = server.client.request(
            request.method, request.url, headers=request.headers, content=request.content
        )
        check_answer(request, response)
        if request.valid and response.status_code < 300:
            accepted.append(request)

    fuzz()
    assert accepted, f"{method} {path}: no schema-valid request was accepted"
