"""``GET /admin/databases/{db}/facts``: a whole tenant's facts without knowing its
predicates (the original's admin route; issue 18, "Admin and migration")."""

from __future__ import annotations

import time

from tests.api.test_auth import admin, bearer, make_key, unique
from tests.server import Server


def facts(server: Server, db: str, tenant: str | None, query: str = "", **kwargs) -> dict:
    headers = {"X-Tenant-ID": tenant} if tenant else {}
    response = server.request("GET", f"/admin/databases/{db}/facts{query}", headers=headers, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def test_every_visible_fact_in_order_paged_and_by_scope(server: Server, tenant: str) -> None:
    db = unique("facts")
    server.request("POST", "/databases", json={"name": db})
    told = [
        {"predicate": "parent", "args": ["bob", "carol"]},
        {"predicate": "parent", "args": ["alice", "bob"]},
        {"predicate": "age", "args": ["alice", 41]},
        {"predicate": "draft", "args": ["x"], "scope": "what-if"},
        {"predicate": "gone", "args": ["soon"], "ttl": 1},
    ]
    for body in told:
        response = server.request("POST", "/tell", tenant=tenant, database=db, json=body)
        assert response.status_code == 200, response.text
    time.sleep(0.01)  # the ttl of 1 ms has run out

    everything = facts(server, db, tenant)
    listed = [(f["predicate"], f["args"], f["scope"]) for f in everything["facts"]]
    assert listed == [
        ("age", ["alice", 41], "main"),
        ("draft", ["x"], "what-if"),
        ("parent", ["alice", "bob"], "main"),
        ("parent", ["bob", "carol"], "main"),
    ]
    assert (everything["count"], everything["total"], everything["nextOffset"]) == (4, 4, None)

    first = facts(server, db, tenant, "?limit=3")
    rest = facts(server, db, tenant, f"?limit=3&offset={first['nextOffset']}")
    assert first["nextOffset"] == 3 and rest["nextOffset"] is None
    assert first["facts"] + rest["facts"] == everything["facts"]

    assert [f["args"] for f in facts(server, db, tenant, "?scope=what-if")["facts"]] == [["x"]]
    # the database is the path's: X-Database is not read here
    other = server.request(
        "GET", f"/admin/databases/{db}/facts", tenant=tenant, database="no_such_db"
    )
    assert other.json()["total"] == 4
    assert facts(server, "default", tenant)["total"] == 0


def test_bad_requests_are_4xx(server: Server, tenant: str) -> None:
    missing = server.request("GET", "/admin/databases/default/facts")
    assert (missing.status_code, missing.json()["details"]["field"]) == (400, "X-Tenant-ID")
    unknown = server.request("GET", "/admin/databases/nope_nope/facts", tenant=tenant)
    assert unknown.status_code == 404
    for query in ("?limit=0", "?limit=20000", "?offset=-1", "?limit=x"):
        response = server.request("GET", f"/admin/databases/default/facts{query}", tenant=tenant)
        assert response.status_code == 400, query
    in_tx = server.request(
        "GET", "/admin/databases/default/facts", tenant=tenant, headers={"X-Transaction-ID": "tx_1"}
    )
    assert in_tx.status_code == 400


def test_keys_see_only_their_tenants(auth_server: Server) -> None:
    db = unique("scoped")
    admin(auth_server, "POST", "/databases", json={"name": db})
    admin(auth_server, "POST", "/tell", json={"predicate": "p", "args": ["a"]},
          headers={"X-Database": db, "X-Tenant-ID": "acme"})
    reader = make_key(auth_server, "reader", databases=[db], tenants=["acme"])["key"]
    path = f"/admin/databases/{db}/facts"
    own = auth_server.request("GET", path, headers={**bearer(reader), "X-Tenant-ID": "acme"})
    assert own.status_code == 200 and own.json()["total"] == 1
    other = auth_server.request("GET", path, headers={**bearer(reader), "X-Tenant-ID": "globex"})
    assert other.status_code == 403
    other_db = auth_server.request(
        "GET", "/admin/databases/default/facts", headers={**bearer(reader), "X-Tenant-ID": "acme"}
    )
    assert other_db.status_code == 403
    anonymous = auth_server.request("GET", path, headers={"X-Tenant-ID": "acme"})
    assert anonymous.status_code == 401
