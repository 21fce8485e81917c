"""Bad input always gets a 4xx in the error envelope, never a 500."""

from __future__ import annotations

import pytest

from tests.server import Server

BAD_BODIES = [
    ("/tell", b"{not json", "body"),
    ("/tell", b"[1, 2]", "body"),
    ("/tell", b'{"predicate": "p", "args": ["a"], "bogus": 1}', "bogus"),
    ("/tell", b'{"predicate": "p", "args": ["a", null]}', "args[1]"),
    ("/tell", b'{"predicate": "p", "args": ["a", true]}', "args[1]"),
    ("/tell", b'{"predicate": "", "args": []}', "predicate"),
    ("/tell", b'{"predicate": "p"}', "args"),
    ("/tell", b'{"predicate": "p", "args": ["?x"]}', "args[0]"),
    ("/tell", b'{"predicate": "p", "args": ["a"], "confidence": 2}', "confidence"),
    ("/tell", b'{"predicate": "p", "args": ["a"], "scope": "bad scope"}', "scope"),
    ("/tell", b'{"predicate": "p", "args": ["a"], "conflictStrategy": "WHATEVER"}', "conflictStrategy"),
    ("/ask", b'{"predicate": 5, "args": []}', "predicate"),
    ("/teach", b'{"head": {"predicate": "p", "args": ["?x"]}, "body": []}', "body"),
    ("/aggregate", b'{"predicate": "p", "args": ["?x"], "operation": "MEDIAN"}', "operation"),
    ("/assert/facts", b'{"facts": []}', "facts"),
]


@pytest.mark.parametrize(("path", "raw", "field"), BAD_BODIES)
def test_bad_bodies_are_400_naming_the_field(server: Server, tenant: str, path: str, raw: bytes, field: str) -> None:
    response = server.request("POST", path, tenant=tenant, content=raw,
                              headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert body["details"]["field"] == field


def test_bad_headers(server: Server) -> None:
    bad_tenant = server.request("POST", "/ask", tenant="no spaces!", json={"predicate": "p", "args": []})
    assert bad_tenant.status_code == 400 and bad_tenant.json()["details"]["field"] == "X-Tenant-ID"
    unknown_db = server.request("POST", "/ask", tenant="t", database="nope_db", json={"predicate": "p", "args": []})
    assert unknown_db.status_code == 404 and unknown_db.json()["code"] == "NOT_FOUND"


def test_unknown_route_and_method(server: Server) -> None:
    missing = server.request("GET", "/no/such/route")
    assert missing.status_code == 404 and missing.json()["code"] == "NOT_FOUND"
    wrong = server.request("DELETE", "/tell")
    assert wrong.status_code == 405 and wrong.json()["code"] == "METHOD_NOT_ALLOWED"


def test_request_id_is_echoed_or_generated(server: Server) -> None:
    echoed = server.request("GET", "/health/live", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["X-Request-ID"] == "abc-123"
    assert len(server.request("GET", "/health/live").headers["X-Request-ID"]) == 32


def test_admin_errors(server: Server) -> None:
    assert server.request("DELETE", "/admin/databases/default").status_code == 400
    assert server.request("DELETE", "/admin/databases/never_made").status_code == 404
    assert server.request("POST", "/databases", json={"name": "bad name"}).status_code == 400
    assert server.request("POST", "/databases", json={"name": "_system"}).status_code == 400
    assert server.request("GET", "/admin/databases/never_made/tenants").status_code == 404
    assert server.request("DELETE", "/admin/databases/default/tenants/ghost").status_code == 404
