"""Census and role matrix: every route the app registers has an auth rule, and the rule
holds for every role, in and out of scope (issue 7, API.md §8)."""

from __future__ import annotations

import functools
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from nocturnus.api import permissions
from nocturnus.api.app import create_app
from nocturnus.api.endpoint import ENDPOINTS
from nocturnus.settings import Settings
from tests.conftest import ADMIN_KEY
from tests.server import Server

# Public on purpose (API.md §8); anything else public is a census failure.
PUBLIC = {
    ("GET", "/health"),
    ("GET", "/health/live"),
    ("GET", "/health/ready"),
    ("GET", "/openapi.json"),
    ("GET", "/auth/status"),
    # The web console serves only its static page, stylesheet and scripts: no data, so
    # no key. Every call the page then makes goes to the API with the user's key.
    ("GET", "/console"),
    ("GET", "/console/console.css"),
    ("GET", "/console/js/<>"),
    # issue 18: the first admin key while none exists (its password proves the caller),
    # and what agents read to learn the server (no data)
    ("POST", "/auth/bootstrap"),
    ("GET", "/llm.txt"),
    ("GET", "/.well-known/agent.json"),
}
CONFIGURABLY_PUBLIC = {("GET", "/metrics")}

# The least role each route needs, as API.md §8 states it: reader (read, ask, context),
# writer (+ tell, teach, forget, scopes), admin (databases, tenants, keys, backups, audit).
LEAST_ROLE = {
    "/tell": "writer", "/assert/fact": "writer", "/assert/facts": "writer",
    "/forget": "writer", "/retract": "writer", "/retract/pattern": "writer",
    "/teach": "writer", "/assert/rule": "writer", "DELETE /rules/<>": "writer",
    "GET /rules": "reader", "/ask": "reader", "/infer": "reader", "/query": "reader",
    "GET /predicates": "reader", "/aggregate": "reader",
    "GET /scopes": "reader", "/scope/diff": "reader", "/scope/fork": "writer",
    "/scope/merge": "writer", "DELETE /scope/<>": "writer",
    "/context/optimize": "reader", "/memory/context": "reader", "/context/diff": "reader",
    "/context/summary": "reader", "/context/session/clear": "reader",
    "/memory/recall": "reader", "/memory/query/temporal": "reader", "/memory/priority": "writer",
    "GET /auth/whoami": "reader",
    # the text syntax (issue 18): each statement is checked again like its REST twin
    "/execute": "reader", "/test": "reader", "/assert/template": "writer",
    "GET /constraints": "reader", "DELETE /constraints/<>": "writer",
    # issue 18: transactions, memory upkeep, the live feed
    "/tx/begin": "writer", "/tx/commit/<>": "writer", "/tx/rollback/<>": "writer",
    "/memory/prioritize": "writer", "/memory/consolidate": "writer",
    "/memory/compress": "writer", "/memory/decay": "writer", "/memory/cleanup": "writer",
    "/memory/query/salient": "reader", "GET /memory/events": "reader",
    "GET /memory/stream": "reader",
    # the original's admin listing of a tenant's facts: a read like /query
    "GET /admin/databases/<>/facts": "reader",
}
ROLES = ("reader", "writer", "admin")


@functools.lru_cache(maxsize=1)
def app_routes() -> list[tuple[str, str]]:
    """Every (method, path template) the app registers, from Sanic's router."""
    app = create_app(Settings(), name=f"census_{uuid.uuid4().hex}")
    found = set()
    for route in app.router.routes:
        for method in route.methods:
            found.add((method, route.uri))
    return sorted(found)


def least_role(method: str, template: str) -> str:
    key = permissions.template_key(template)
    for name in (f"{method} {key}", key if method == "POST" else None):
        if name in LEAST_ROLE:
            return LEAST_ROLE[name]
    if key.startswith(("/mcp",)):
        return "reader"
    return "admin"


# -- census -------------------------------------------------------------------------------

def test_every_registered_route_has_a_rule_and_none_is_public_by_accident() -> None:
    missing, public = [], []
    for method, uri in app_routes():
        rule = permissions.rule_for(method, uri)
        if rule is permissions.DENY:
            missing.append(f"{method} {uri}")
            continue
        key = (method, permissions.template_key(uri))
        if rule.permission is None and key not in PUBLIC:
            public.append(f"{method} {uri}")
        if rule.public_if is not None and key not in CONFIGURABLY_PUBLIC:
            public.append(f"{method} {uri} (configurable)")
        if rule.permission is not None:
            assert rule.permission in permissions.PERMISSIONS or rule.permission == "connect"
    assert missing == [], "routes without a permission rule"
    assert public == [], "routes public by accident"


def test_every_public_route_is_registered() -> None:
    registered = {(m, permissions.template_key(u)) for m, u in app_routes()}
    assert PUBLIC <= registered


def test_rules_read_the_scope_from_where_the_route_carries_it() -> None:
    for spec in ENDPOINTS:
        for path in spec.paths:
            rule = permissions.rule_for(spec.method, path)
            params = set(re.findall(r"<([a-z_]+)>", path))
            if spec.tenant:
                database = ("header",) if spec.database else ("path:db",)
                assert rule.database == database and rule.tenant == ("header",), path
            for source in (*rule.database, *rule.tenant):
                if source.startswith("path:"):
                    assert source[5:] in params, (path, source)
                if source.startswith("body:"):
                    assert spec.body is not None and source[5:] in spec.body["properties"], path
            if path.startswith("/admin/databases/<db>"):
                assert rule.database == ("path:db",), path


def test_mcp_tools_map_to_listed_routes_with_the_same_rule() -> None:
    for tool, (method, path) in permissions.TOOLS.items():
        rule = permissions.tool_rule(tool)
        assert rule is not permissions.DENY, tool
        assert rule is permissions.rule_for(method, path)
    assert permissions.tool_rule("tell").permission == "fact_write"
    assert "fact_write" not in permissions.permissions_of("reader")


def test_roles_nest() -> None:
    reader, writer, admin = (permissions.permissions_of(r) for r in ROLES)
    assert reader < writer < admin
    assert permissions.permissions_of("nobody") == frozenset()


# -- role matrix over a live server ------------------------------------------------------

DB, GHOST_DB, OTHER_DB = "matrix_db", "matrix_ghost", "matrix_other"
TENANT, GHOST_TENANT, OTHER_TENANT = "acme", "acme_ghost", "globex"
MATRIX_BODY = {"__matrix__": True}  # closed schemas reject it after authorization


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def keys(auth_server: Server) -> dict[str, str]:
    for name in (DB, OTHER_DB):
        auth_server.request("POST", "/databases", json={"name": name}, headers=bearer(ADMIN_KEY))

    def mint(role: str, **scope: list[str]) -> str:
        response = auth_server.request(
            "POST", "/auth/keys", json={"role": role, **scope}, headers=bearer(ADMIN_KEY)
        )
        assert response.status_code == 201, response.text
        return str(response.json()["key"])

    dbs, tenants = [DB, GHOST_DB], [TENANT, GHOST_TENANT]
    return {
        **{role: mint(role) for role in ROLES},
        "writer@tenant": mint("writer", databases=dbs, tenants=tenants),
        "reader@tenant": mint("reader", databases=dbs, tenants=tenants),
        "admin@db": mint("admin", databases=dbs),
        "admin@tenant": mint("admin", databases=dbs, tenants=tenants),
    }


def fill(uri: str, db: str, tenant: str) -> str:
    values = {"db": db, "tenant": tenant, "rule_id": "r_matrix_none", "key_id": "no-such-key",
              "name": "matrix-scope"}
    return re.sub(r"<([a-z_]+)(:[^>]*)?>", lambda m: values.get(m.group(1), "x"), uri)


def status_of(server: Server, method: str, uri: str, key: str | None, *, db: str, tenant: str,
              path_db: str | None = None) -> int:
    """The status of ``method uri`` with ``db``/``tenant`` in the headers and the path."""
    headers = {"X-Database": db, "X-Tenant-ID": tenant}
    if key is not None:
        headers.update(bearer(key))
    body = MATRIX_BODY if method in ("POST", "PATCH") else None
    # streamed: an MCP SSE route answers with headers and then keeps the stream open
    path = fill(uri, path_db or db, tenant)
    with server.client.stream(method, path, json=body, headers=headers, timeout=10) as response:
        return response.status_code


def routes_needing_a_key() -> Iterator[tuple[str, str, permissions.Rule]]:
    for method, uri in app_routes():
        rule = permissions.rule_for(method, uri)
        if not rule.is_public(Settings()):
            yield method, uri, rule


def test_role_matrix_unscoped_keys(auth_server: Server, keys: dict[str, str]) -> None:
    failures = []
    for method, uri, _ in routes_needing_a_key():
        needed = ROLES.index(least_role(method, uri))
        for role in ROLES:
            # paths name databases and tenants that do not exist: nothing gets deleted
            status = status_of(auth_server, method, uri, keys[role], db=DB, tenant=GHOST_TENANT,
                               path_db=GHOST_DB)
            allowed = ROLES.index(role) >= needed
            if allowed and status in (401, 403) or not allowed and status != 403:
                failures.append(f"{role} {method} {uri} -> {status}")
        anonymous = status_of(auth_server, method, uri, None, db=DB, tenant=GHOST_TENANT,
                              path_db=GHOST_DB)
        if anonymous != 401:
            failures.append(f"no key {method} {uri} -> {anonymous}")
    assert failures == []


def scope_kind(rule: permissions.Rule) -> str:
    if rule.unscoped:
        return "unscoped"
    if not rule.database and not rule.tenant:
        return "none"
    return "scoped"


def test_role_matrix_scoped_keys_in_and_out_of_scope(auth_server: Server, keys: dict[str, str]) -> None:
    failures = []
    for method, uri, rule in routes_needing_a_key():
        needed = ROLES.index(least_role(method, uri))
        kind = scope_kind(rule)
        # Query and body sources are not driven by the headers and path this matrix
        # sets: test_scope_read_from_bodies covers them.
        request_only = ("body:", "query:", "=")
        body_only = all(s.startswith(request_only) for s in (*rule.database, *rule.tenant))
        db_outside = any(not s.startswith(request_only) for s in rule.database)
        tenant_outside = any(not s.startswith(request_only) for s in rule.tenant)
        for name in ("writer@tenant", "reader@tenant", "admin@db", "admin@tenant"):
            role = name.split("@")[0]
            tenant_limited = name.endswith("@tenant")
            has_role = ROLES.index(role) >= needed
            inside = status_of(auth_server, method, uri, keys[name], db=DB, tenant=GHOST_TENANT,
                               path_db=GHOST_DB)
            expect_inside_denied = (
                not has_role
                or kind == "unscoped"
                or (rule.whole_database and tenant_limited and not body_only)
            )
            if expect_inside_denied != (inside == 403) or inside == 401:
                failures.append(f"{name} in scope {method} {uri} -> {inside}")
            if kind != "scoped" or body_only:
                continue
            for db, tenant in ((OTHER_DB, GHOST_TENANT), (DB, OTHER_TENANT)):
                if db == OTHER_DB and not db_outside:
                    continue
                if tenant == OTHER_TENANT and not (tenant_limited and tenant_outside):
                    continue
                outside = status_of(auth_server, method, uri, keys[name], db=db, tenant=tenant,
                                    path_db=db if db == OTHER_DB else GHOST_DB)
                if outside != 403:
                    failures.append(f"{name} out of scope ({db}/{tenant}) {method} {uri} -> {outside}")
    assert failures == []


@pytest.mark.parametrize(
    ("key", "method", "path", "body"),
    [
        ("admin@db", "POST", "/databases", {"name": OTHER_DB}),
        ("admin@db", "POST", "/admin/databases", {"name": "matrix_new"}),
        ("admin@tenant", "POST", "/databases", {"name": DB}),
        ("admin@db", "POST", "/admin/backups", {"database": OTHER_DB}),
        ("admin@db", "POST", f"/admin/backups?db={OTHER_DB}", {}),  # issue 14: ?db= too
        ("admin@db", "POST", "/admin/backups", {}),  # default database: out of scope
        ("admin@tenant", "POST", "/admin/backups", {"database": DB}),
        ("admin@tenant", "POST", f"/admin/databases/{DB}/tenants", {"name": OTHER_TENANT}),
        ("admin@tenant", "POST", f"/admin/databases/{DB}/tenants", {"tenantId": OTHER_TENANT}),
        ("admin@db", "POST", f"/admin/databases/{OTHER_DB}/tenants", {"name": TENANT}),
    ],
)
def test_scope_read_from_bodies(auth_server: Server, keys: dict[str, str], key: str,
                                method: str, path: str, body: dict[str, Any]) -> None:
    response = auth_server.request(method, path, json=body, headers=bearer(keys[key]))
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "FORBIDDEN"


def test_scoped_admin_may_act_inside_its_scope(auth_server: Server, keys: dict[str, str]) -> None:
    as_db_admin = bearer(keys["admin@db"])
    created = auth_server.request("POST", f"/admin/databases/{DB}/tenants", json={"name": "inside"},
                                  headers=as_db_admin)
    assert created.status_code in (200, 201)
    backup = auth_server.request("POST", "/admin/backups", json={"database": DB}, headers=as_db_admin)
    assert backup.status_code == 201


def test_invoke_applies_the_same_checks(auth_server: Server, keys: dict[str, str]) -> None:
    """MCP tools call endpoint.invoke(); it passes the same _build_call checks as REST."""
    import asyncio
    from types import SimpleNamespace

    from nocturnus.api import endpoint
    from nocturnus.api.security import Security
    from nocturnus.errors import Forbidden, Unauthorized
    from nocturnus.service.authenticator import Principal

    settings = Settings(auth="on")
    security = Security(settings)
    reader = Principal("k1", "r", "reader", (DB,), (TENANT,))
    security.authenticator.current_key = lambda key_id, now: reader  # type: ignore[method-assign]
    app = SimpleNamespace(ctx=SimpleNamespace(settings=settings, security=security, databases=None))

    def request(principal: Principal | None) -> Any:
        ctx = SimpleNamespace() if principal is None else SimpleNamespace(principal=principal)
        return SimpleNamespace(app=app, ctx=ctx)

    async def run(principal: Principal | None, path: str, database: str, tenant: str) -> None:
        await endpoint.invoke(request(principal), "POST", path, {"predicate": "p", "args": []},
                              database=database, tenant=tenant)

    with pytest.raises(Forbidden, match="lacks permission: fact_write"):
        asyncio.run(run(reader, "/tell", DB, TENANT))
    with pytest.raises(Forbidden, match="tenant 'default'"):
        asyncio.run(run(reader, "/ask", DB, "default"))
    with pytest.raises(Forbidden, match="database 'default'"):
        asyncio.run(run(reader, "/ask", "default", TENANT))
    with pytest.raises(Unauthorized):
        asyncio.run(run(None, "/ask", DB, TENANT))
    security.authenticator.current_key = lambda key_id, now: None  # type: ignore[method-assign]
    with pytest.raises(Unauthorized):  # revoked while its connection stays open
        asyncio.run(run(reader, "/ask", DB, TENANT))


def test_permission_denials_carry_the_envelope(auth_server: Server, keys: dict[str, str]) -> None:
    response: httpx.Response = auth_server.request(
        "POST", "/tell", tenant=TENANT, database=DB, headers=bearer(keys["reader"]),
        json={"predicate": "p", "args": ["a"]},
    )
    assert response.status_code == 403
    body = response.json()
    assert body["code"] == "FORBIDDEN"
    assert body["message"].endswith("(role=reader) lacks permission: fact_write")
    assert body["details"] == {"permission": "fact_write", "role": "reader"}
