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
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import nocturnus.api.app  # noqa: F401  (imports every blueprint: ENDPOINTS is complete)
from nocturnus.api.errors import _SANIC_CODES as SANIC_CODES
from nocturnus.api.openapi import build_document
from nocturnus.errors import NocturnusError
from tests.api.schema_strategy import JSON_VALUES, from_schema, near_miss
from tests.server import Server

# Kept small so the whole file stays well under a minute on 2 cores; for a deep run:
# NOCTURNUS_FUZZ_EXAMPLES=500 NOCTURNUS_FUZZ_SEED=random python -m pytest tests/api/test_fuzz.py
EXAMPLES_PER_OPERATION = int(os.environ.get("NOCTURNUS_FUZZ_EXAMPLES", "25"))
DERANDOMIZE = os.environ.get("NOCTURNUS_FUZZ_SEED", "fixed") != "random"
FUZZ_DB = "fuzzdb"
TENANTS = ["fz_a", "fz_b"]
SEEDED_FACT = {"predicate": "par", "args": ["a", "b"]}
# What the DELETE routes may destroy, so that the other operations keep their contexts.
DOOMED_DB = "fz_doomed"
DOOMED_TENANT = "fz_doomed"
DOOMED_SCOPE = "fz_doomed"
ADMIN_KEY = secrets.token_hex(32)
DOCUMENT = build_document()
# Long-lived event streams: covered by the MCP tests, not by a request/answer fuzzer.
STREAMS = {
    ("GET", "/mcp"),
    ("GET", "/mcp/sse"),
    ("GET", "/memory/events"),  # the live feed: covered by tests/api/test_feed.py
    ("GET", "/memory/stream"),
}
# Accepted once in a server's life (the first admin key, while none exists): fuzzed for
# its errors here, accepted in tests/api/test_bootstrap.py.
ONCE = {("POST", "/auth/bootstrap")}
OPERATIONS = [
    (method.upper(), path, operation)
    for path, operations in DOCUMENT["paths"].items()
    for method, operation in operations.items()
    if (method.upper(), path) not in STREAMS
]


def declared_error_codes() -> set[str]:
    """Every code the server can put in an envelope: its error classes and api/errors."""
    codes = set(SANIC_CODES.values())
    stack: list[type[NocturnusError]] = [NocturnusError]
    while stack:
        cls = stack.pop()
        codes.add(cls.code)
        stack.extend(cls.__subclasses__())
    codes.discard("INTERNAL_ERROR")  # a 500, never allowed here
    return codes


ERROR_CODES = declared_error_codes()


@dataclass(frozen=True)
class Context:
    """Names that exist together on the fuzz server: a database, a tenant, rule ids."""

    database: str
    tenant: str
    rule_id: str
    database_rule_id: str
    key_id: str
    doomed_key_id: str
    constraint_id: str


@dataclass
class Seeds:
    contexts: list[Context] = field(default_factory=list)
    # an open transaction per (database, tenant), begun afresh for each operation that
    # names one in its path (a commit or rollback ends it)
    transactions: dict[tuple[str, str], str] = field(default_factory=dict)


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Seeds]]:
    """Auth on (so the key routes work too), no lockout or rate limit (fuzzing is fast)."""
    env = {
        "NOCTURNUS_AUTH": "on", "NOCTURNUS_ADMIN_KEY": ADMIN_KEY,
        "NOCTURNUS_AUTH_FAILURES_PER_MINUTE": "0", "NOCTURNUS_RATE_LIMIT_ADMIN_RPM": "0",
        "NOCTURNUS_TRANSACTIONS_PER_KEY": "10000",  # /tx/begin is fuzzed too
    }
    server = Server(tmp_path_factory.mktemp("fuzz") / "data", env=env).start()
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}

    def seed(method: str, path: str, body: Any, **where: str) -> Any:
        response = server.request(method, path, json=body, headers=admin, **where)
        assert response.status_code in (200, 201), response.text
        return response.json()

    seeds = Seeds()
    for name in (FUZZ_DB, DOOMED_DB):
        seed("POST", "/databases", {"name": name})
    key_id, doomed_key_id = (
        seed("POST", "/auth/keys", {"role": "reader", "description": name})["id"]
        for name in ("kept", "doomed")
    )
    rule = {
        "head": {"predicate": "gp", "args": ["?x", "?z"]},
        "body": [{"predicate": "par", "args": ["?x", "?y"]}, {"predicate": "par", "args": ["?y", "?z"]}],
    }
    for database in ("default", FUZZ_DB):
        database_rule_id = seed("POST", f"/admin/databases/{database}/rules", rule)["rule"]["id"]
        for tenant in TENANTS:
            seed("POST", "/tell", SEEDED_FACT, tenant=tenant, database=database)
            seed("POST", "/tell", {**SEEDED_FACT, "scope": DOOMED_SCOPE}, tenant=tenant, database=database)
            rule_id = seed("POST", "/teach", {**rule, "scope": "s1"}, tenant=tenant, database=database)["rule"]["id"]
            restrict = {"command": "RESTRICT { fz_never(?x) }."}
            answer = seed("POST", "/execute", restrict, tenant=tenant, database=database)
            constraint_id = answer["statements"][0]["constraint"]["id"]
            seeds.contexts.append(
                Context(database, tenant, rule_id, database_rule_id, key_id, doomed_key_id,
                        constraint_id)
            )
        seed("POST", "/tell", SEEDED_FACT, tenant=DOOMED_TENANT, database=database)
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
    method: str, path: str, name: str, context: Context, well_formed: bool,
    transactions: dict[tuple[str, str], str],
) -> st.SearchStrategy[tuple[str, bool]]:
    """The context's value (True) or junk (False) for one path parameter."""
    deleting = method == "DELETE" and path.endswith("{" + name + "}")
    known = {
        "db": DOOMED_DB if deleting else context.database,
        "tenant": DOOMED_TENANT if deleting else context.tenant,
        "rule_id": context.database_rule_id if path.startswith("/admin") else context.rule_id,
        "key_id": context.doomed_key_id if deleting else context.key_id,
        "name": DOOMED_SCOPE,
        "constraint_id": context.constraint_id,
        "module": "app.js",  # the web console's script modules (issue 21)
        "tx_id": transactions.get((context.database, context.tenant)),  # issue 18
    }.get(name)
    if known is None:
        raise AssertionError(f"no known values for path parameter {name!r} of {path}")
    good = st.just((known, True))
    if well_formed:
        return good
    junk = st.text(min_size=1, max_size=20).map(lambda v: (v, False))
    return st.one_of(good, junk)


def auth_values(well_formed: bool) -> st.SearchStrategy[tuple[dict[str, str], bool]]:
    good = st.just(({"Authorization": f"Bearer {ADMIN_KEY}"}, True))
    if well_formed:
        return good
    return st.one_of(
        good,
        st.just(({"X-API-Key": ADMIN_KEY}, True)),
        st.just(({}, False)),
        HEADER_TEXT.map(lambda v: ({"Authorization": f"Bearer {v}".strip()}, False)),
    )


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
    seeded = valid.map(with_known_names).map(lambda v: (json.dumps(v).encode(), True))
    if well_formed:
        return st.one_of(encoded, seeded)
    return st.one_of(
        encoded,
        # Near misses may happen to be valid: counted as not, so they never prove acceptance.
        near_miss(schema).map(lambda v: (json.dumps(v).encode(), False)),
        st.binary(max_size=40).map(lambda v: (v, False)),
        st.just((None, not required)),
    )


SCOPE_ALIASES = {"source": "source", "sourceScope": "source", "scopeA": "source",
                 "target": "target", "targetScope": "target", "scopeB": "target"}


def with_known_names(body: Any) -> Any:
    """A valid body naming things that exist: the seeded fact, one source scope.

    Some routes need more than their schema can say: an existing fact
    (``/memory/priority``), exactly one of several aliases naming a scope (the
    ``/scope/*`` bodies: ``source``/``sourceScope``/``scopeA`` must agree and one is
    required), a script that parses (``/execute``) or every role of a template
    (``/assert/template``). Without these, random valid bodies are refused for good
    reasons.
    """
    if not isinstance(body, dict):
        return body
    if isinstance(body.get("command"), str):  # /execute: a script of the text syntax
        body = {**body, "command": "par(a, b).\n?- par(?x, ?y)."}
    if isinstance(body.get("predicates"), dict) and "type" in body:  # /assert/template
        roles = {"P", "Q", "R", "S", "CAUSE", "EFFECT", "FEATURE", "CATEGORY", "CONCLUSION",
                 "EVIDENCE", "EXCEPTION", "EVALUATION", "CRITERIA"}
        body = {**body, "predicates": {role: f"fz_{role.lower()}" for role in roles}}
    if "predicate" in body and "args" in body:
        body = {k: v for k, v in body.items() if k not in ("scope", "negated", "truthVal")}
        body = {**body, **SEEDED_FACT}
    if any(k in SCOPE_ALIASES for k in body):
        target = next((v for k, v in body.items() if SCOPE_ALIASES.get(k) == "target" and v), None)
        body = {k: v for k, v in body.items() if k not in SCOPE_ALIASES}
        body = {**body, "source": DOOMED_SCOPE, "target": target or "fz_new"}
    return body


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
        value, ok = draw(
            path_values(method, path, name, context, well_formed, seeds.transactions)
        )
        url = url.replace("{" + name + "}", quote(value, safe=""))
        valid &= ok
    credentials, ok = draw(auth_values(well_formed))
    valid &= ok
    headers: dict[str, str] = {"Content-Type": "application/json", **credentials}
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
    if response.status_code < 400:
        return
    assert response.headers["content-type"].startswith("application/json"), request
    error = response.json()
    if request.url.startswith("/mcp") and "jsonrpc" in error:  # MCP's own errors
        assert error["jsonrpc"] == "2.0" and isinstance(error["error"]["code"], int), error
        assert isinstance(error["error"]["message"], str), error
        return
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
                              json=SEEDED_FACT, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
        assert told.status_code == 200, told.text
        if "{tx_id}" in path:
            begun = server.request("POST", "/tx/begin", tenant=context.tenant,
                                   database=context.database,
                                   headers={"Authorization": f"Bearer {ADMIN_KEY}"})
            assert begun.status_code == 200, begun.text
            seeds.transactions[(context.database, context.tenant)] = begun.json()[
                "transactionId"]
    accepted: list[Fuzzed] = []
    client = httpx.Client(base_url=server.url, timeout=30)  # no default headers

    @settings(
        max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=DERANDOMIZE, database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(requests(method, path, operation, seeds))
    def fuzz(request: Fuzzed) -> None:
        response = client.request(
            request.method, request.url, headers=request.headers, content=request.content
        )
        check_answer(request, response)
        if request.valid and response.status_code < 300:
            accepted.append(request)

    with client:
        fuzz()
    # JSON-RPC bodies are not described by the document
    if operation["tags"] != ["mcp"] and (method, path) not in ONCE:
        assert accepted, f"{method} {path}: no schema-valid request was accepted"
