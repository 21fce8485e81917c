"""The seed document's curls (SEED-multi-tenancy.txt), exactly as written."""

from __future__ import annotations

from tests.server import Server


def test_create_and_list_databases(server: Server) -> None:
    created = server.request("POST", "/databases", json={"name": "production"})
    assert created.status_code in (200, 201)
    assert created.headers["content-type"].startswith("application/json")
    assert created.json()["name"] == "production"
    again = server.request("POST", "/databases", json={"name": "production"})
    assert again.status_code == 200 and again.json()["created"] is False
    listed = server.request("GET", "/databases").json()["databases"]
    names = [d["name"] for d in listed]
    assert "default" in names and "production" in names


def test_tenants_see_only_their_own_facts(server: Server) -> None:
    server.request("POST", "/databases", json={"name": "production"})
    told = server.request(
        "POST", "/tell", database="production", tenant="acme_corp",
        json={"predicate": "plan", "args": ["enterprise"]},
    )
    assert told.status_code == 200, told.text
    assert told.json()["fact"]["args"] == ["enterprise"]
    globex = server.request(
        "POST", "/ask", database="production", tenant="globex_inc",
        json={"predicate": "plan", "args": ["?tier"]},
    )
    assert globex.status_code == 200
    assert globex.json()["results"] == []
    acme = server.request(
        "POST", "/ask", database="production", tenant="acme_corp",
        json={"predicate": "plan", "args": ["?tier"]},
    ).json()
    assert [r["args"] for r in acme["results"]] == [["enterprise"]]
    assert acme["bindings"] == [{"tier": "enterprise"}]


def test_missing_tenant_header_is_a_validation_error(server: Server) -> None:
    response = server.request("POST", "/tell", json={"predicate": "plan", "args": ["x"]})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "VALIDATION_ERROR"
    assert body["message"] == "Missing required header: X-Tenant-ID"


def test_tenant_management_api(server: Server) -> None:
    server.request("POST", "/databases", json={"name": "production"})
    created = server.request(
        "POST", "/admin/databases/production/tenants", json={"name": "tm_corp"}
    )
    assert created.status_code == 201 and created.json()["created"] is True
    assert server.request(
        "POST", "/admin/databases/production/tenants", json={"name": "tm_corp"}
    ).json()["created"] is False
    server.request("POST", "/tell", database="production", tenant="tm_corp",
                   json={"predicate": "seat", "args": ["a"]})
    listed = server.request("GET", "/admin/databases/production/tenants").json()["tenants"]
    mine = [t for t in listed if t["name"] == "tm_corp"]
    assert mine and mine[0]["facts"] == 1
    deleted = server.request("DELETE", "/admin/databases/production/tenants/tm_corp")
    assert deleted.status_code == 200
    assert deleted.json() == {"deleted": "tm_corp", "facts": 1, "rules": 0}
    gone = server.request("POST", "/ask", database="production", tenant="tm_corp",
                          json={"predicate": "seat", "args": ["?x"]}).json()
    assert gone["results"] == []
