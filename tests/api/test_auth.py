"""API keys with roles and scopes, with auth on (issue 7, API.md §8, the seed's examples)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from nocturnus.service.codec import CODEC
from nocturnus.service.events import KeyCreated
from nocturnus.store.crypto import parse_master_key
from tests.conftest import ADMIN_KEY
from tests.logs import sqlite_log
from tests.server import TEST_MASTER_KEY, Server


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def admin(server: Server, method: str, path: str, **kwargs: Any) -> httpx.Response:
    headers = {**bearer(ADMIN_KEY), **kwargs.pop("headers", {})}
    return server.request(method, path, headers=headers, **kwargs)


def make_key(server: Server, role: str, databases: list[str] | None = None,
             tenants: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"role": role, **extra}
    if databases is not None:
        body["databases"] = databases
    if tenants is not None:
        body["tenants"] = tenants
    response = admin(server, "POST", "/auth/keys", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


# -- the seed: "Tenant Management API" and "Scoped API Keys", exactly as written ------

def test_seed_tenant_management_with_admin_key(auth_server: Server) -> None:
    assert admin(auth_server, "POST", "/databases", json={"name": "production"}).status_code in (200, 201)
    listed = admin(auth_server, "GET", "/admin/databases/production/tenants")
    assert listed.status_code == 200 and "tenants" in listed.json()
    created = admin(auth_server, "POST", "/admin/databases/production/tenants",
                    headers={"Content-Type": "application/json"}, json={"name": "seed_tm_corp"})
    assert created.status_code in (200, 201) and created.json()["name"] == "seed_tm_corp"
    names = [t["name"] for t in admin(auth_server, "GET", "/admin/databases/production/tenants").json()["tenants"]]
    assert "seed_tm_corp" in names
    deleted = admin(auth_server, "DELETE", "/admin/databases/production/tenants/seed_tm_corp")
    assert deleted.status_code == 200 and deleted.json()["deleted"] == "seed_tm_corp"
    # the same routes without a key are refused
    assert auth_server.request("GET", "/admin/databases/production/tenants").status_code == 401


def test_seed_scoped_writer_key_end_to_end(auth_server: Server) -> None:
    admin(auth_server, "POST", "/databases", json={"name": "production"})
    admin(auth_server, "POST", "/databases", json={"name": "staging"})
    response = admin(auth_server, "POST", "/auth/keys", headers={"Content-Type": "application/json"},
                     json={"role": "writer", "databases": ["production"], "tenants": ["acme_corp"],
                           "description": "Acme Corp writer key"})
    assert response.status_code == 201, response.text
    info = response.json()
    key = info["key"]
    assert key.startswith("nct_") and len(key) == 47
    assert info["prefix"] == key[:12]
    assert {info["role"], *info["databases"], *info["tenants"]} == {"writer", "production", "acme_corp"}
    assert info["description"] == "Acme Corp writer key"

    def call(method: str, path: str, database: str | None = "production",
             tenant: str | None = "acme_corp", **kw: Any) -> httpx.Response:
        return auth_server.request(method, path, database=database, tenant=tenant,
                                   headers=bearer(key), **kw)

    told = call("POST", "/tell", json={"predicate": "plan", "args": ["enterprise"]})
    assert told.status_code == 200, told.text
    asked = call("POST", "/ask", json={"predicate": "plan", "args": ["?tier"]})
    assert asked.json()["bindings"] == [{"tier": "enterprise"}]

    # another tenant of the same database, and another database: 403, no data
    for denied in (
        call("POST", "/ask", tenant="globex_inc", json={"predicate": "plan", "args": ["?tier"]}),
        call("POST", "/tell", tenant="globex_inc", json={"predicate": "plan", "args": ["free"]}),
        call("POST", "/ask", database="staging", json={"predicate": "plan", "args": ["?tier"]}),
        call("POST", "/ask", database=None, json={"predicate": "plan", "args": ["?tier"]}),
        call("GET", "/rules", database="default"),
    ):
        assert denied.status_code == 403, denied.text
        body = denied.json()
        assert body["code"] == "FORBIDDEN" and "results" not in body
    # admin routes: 403 whatever the database or tenant named
    for method, path, body in (
        ("GET", "/databases", None),
        ("POST", "/databases", {"name": "production"}),
        ("GET", "/admin/databases/production/tenants", None),
        ("POST", "/admin/databases/production/tenants", {"name": "acme_corp"}),
        ("DELETE", "/admin/databases/production/tenants/acme_corp", None),
        ("DELETE", "/admin/databases/production", None),
        ("POST", "/admin/databases/production/rules",
         {"head": {"predicate": "p", "args": ["?x"]}, "body": [{"predicate": "q", "args": ["?x"]}]}),
        ("POST", "/auth/keys", {"role": "reader"}),
        ("GET", "/auth/keys", None),
        ("GET", "/admin/audit", None),
        ("POST", "/admin/backups", {"database": "production"}),
    ):
        denied = call(method, path, json=body)
        assert denied.status_code == 403, (method, path, denied.text)
    # the write went where it was allowed, and nowhere else
    acme = admin(auth_server, "POST", "/ask", database="production", tenant="acme_corp",
                 json={"predicate": "plan", "args": ["?tier"]}).json()
    assert acme["count"] == 1
    globex = admin(auth_server, "POST", "/ask", database="production", tenant="globex_inc",
                   json={"predicate": "plan", "args": ["?tier"]}).json()
    assert globex["results"] == []


# -- key management ---------------------------------------------------------------------

def test_key_infos_never_show_a_hash_or_the_key(auth_server: Server) -> None:
    created = make_key(auth_server, "reader", name="lister", description="d")
    listed = admin(auth_server, "GET", "/auth/keys")
    assert listed.status_code == 200
    infos = listed.json()
    assert isinstance(infos, list)
    mine = [k for k in infos if k["id"] == created["id"]]
    assert mine and mine[0]["name"] == "lister" and mine[0]["prefix"] == created["prefix"]
    one = admin(auth_server, "GET", f"/auth/keys/{created['id']}").json()
    for info in (*infos, one):
        assert "key" not in info and "hash" not in info
        assert created["key"] not in str(info) and "argon2" not in str(info)
    assert set(one) == {"id", "name", "prefix", "role", "databases", "tenants", "description",
                        "createdAt", "createdBy", "lastUsedAt", "expiresAt", "enabled"}
    assert admin(auth_server, "GET", "/auth/keys/no-such-key").status_code == 404


def test_keys_are_stored_only_as_argon2id_hashes(auth_server: Server) -> None:
    created = make_key(auth_server, "writer", ["production"], ["acme_corp"])
    key = created["key"]
    assert auth_server.request("GET", "/auth/whoami", headers=bearer(key)).status_code == 200
    secret = key.encode()
    for path in Path(auth_server.data_dir).rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert secret not in data and secret[12:] not in data, path
    assert key not in auth_server.output()
    log = sqlite_log(auth_server.data_dir / "_system.db", "_system",
                        parse_master_key(TEST_MASTER_KEY, "test"), readonly=True)
    try:
        events = [CODEC.decode(r.kind, r.body) for r in log.read(tenant="") if r.body is not None]
    finally:
        log.close()
    mine = [e for e in events if isinstance(e, KeyCreated) and e.id == created["id"]]
    assert len(mine) == 1
    assert mine[0].hash.startswith("$argon2id$") and key not in repr(mine[0])


def test_revoke_takes_effect_on_the_next_request(auth_server: Server) -> None:
    tenant = unique("rv")
    created = make_key(auth_server, "writer", tenants=[tenant])
    key = created["key"]
    tell = {"predicate": "p", "args": ["a"]}
    assert auth_server.request("POST", "/tell", tenant=tenant, json=tell, headers=bearer(key)).status_code == 200
    revoked = admin(auth_server, "DELETE", f"/auth/keys/{created['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked"] == created["id"]
    after = auth_server.request("POST", "/tell", tenant=tenant, json=tell, headers=bearer(key))
    assert after.status_code == 401 and after.json()["code"] == "UNAUTHORIZED"
    assert admin(auth_server, "GET", f"/auth/keys/{created['id']}").status_code == 404
    assert admin(auth_server, "DELETE", f"/auth/keys/{created['id']}").status_code == 404


def test_patch_changes_role_scope_and_enabled_at_once(auth_server: Server) -> None:
    tenant, other = unique("pa"), unique("pb")
    created = make_key(auth_server, "reader", tenants=[tenant])
    key = created["key"]
    tell = {"predicate": "p", "args": ["a"]}
    assert auth_server.request("POST", "/tell", tenant=tenant, json=tell, headers=bearer(key)).status_code == 403
    patched = admin(auth_server, "PATCH", f"/auth/keys/{created['id']}",
                    json={"role": "writer", "tenants": [tenant, other], "description": "now writes"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["role"] == "writer" and patched.json()["tenants"] == [tenant, other]
    assert auth_server.request("POST", "/tell", tenant=other, json=tell, headers=bearer(key)).status_code == 200
    assert admin(auth_server, "PATCH", f"/auth/keys/{created['id']}", json={"enabled": False}).json()["enabled"] is False
    assert auth_server.request("POST", "/tell", tenant=other, json=tell, headers=bearer(key)).status_code == 401
    admin(auth_server, "PATCH", f"/auth/keys/{created['id']}", json={"enabled": True})
    assert auth_server.request("GET", "/auth/whoami", headers=bearer(key)).status_code == 200
    bad = admin(auth_server, "PATCH", f"/auth/keys/{created['id']}", json={"role": "root"})
    assert bad.status_code == 400 and bad.json()["details"]["field"] == "role"
    assert admin(auth_server, "PATCH", f"/auth/keys/{created['id']}", json={"bogus": 1}).status_code == 400


def test_a_key_cannot_revoke_or_disable_itself(auth_server: Server) -> None:
    own = make_key(auth_server, "admin")
    me = bearer(own["key"])
    revoked = auth_server.request("DELETE", f"/auth/keys/{own['id']}", headers=me)
    assert revoked.status_code == 400 and "itself" in revoked.json()["message"]
    disabled = auth_server.request("PATCH", f"/auth/keys/{own['id']}", headers=me, json={"enabled": False})
    assert disabled.status_code == 400
    env_self = admin(auth_server, "DELETE", "/auth/keys/env-admin")
    assert env_self.status_code == 400
    assert auth_server.request("GET", "/auth/whoami", headers=me).json()["role"] == "admin"


def test_only_admins_mint_admins_and_scoped_admins_stay_in_scope(auth_server: Server) -> None:
    scoped = make_key(auth_server, "admin", databases=["production"])
    as_scoped = bearer(scoped["key"])
    inside = auth_server.request("POST", "/auth/keys", headers=as_scoped,
                                 json={"role": "reader", "databases": ["production"], "tenants": ["x"]})
    assert inside.status_code == 201
    for body in ({"role": "reader"}, {"role": "reader", "databases": ["staging"]},
                 {"role": "admin", "databases": ["production", "staging"]}):
        outside = auth_server.request("POST", "/auth/keys", headers=as_scoped, json=body)
        assert outside.status_code == 403, body
    # a scoped admin sees only keys inside its scope
    visible = {k["id"] for k in auth_server.request("GET", "/auth/keys", headers=as_scoped).json()}
    assert inside.json()["id"] in visible
    unscoped = make_key(auth_server, "reader")
    assert unscoped["id"] not in visible
    assert auth_server.request("GET", f"/auth/keys/{unscoped['id']}", headers=as_scoped).status_code == 404
    assert auth_server.request("DELETE", f"/auth/keys/{unscoped['id']}", headers=as_scoped).status_code == 404
    widened = auth_server.request("PATCH", f"/auth/keys/{inside.json()['id']}", headers=as_scoped,
                                  json={"databases": []})
    assert widened.status_code == 403
    # writers and readers cannot manage keys at all
    writer = make_key(auth_server, "writer")
    assert auth_server.request("POST", "/auth/keys", headers=bearer(writer["key"]),
                               json={"role": "admin"}).status_code == 403


def test_create_key_validation(auth_server: Server) -> None:
    for body, field in (
        ({}, "role"),
        ({"role": "root"}, "role"),
        ({"role": "reader", "databases": ["bad name"]}, "databases[0]"),
        ({"role": "reader", "tenants": "acme"}, "tenants"),
        ({"role": "reader", "expiresInDays": 0}, "expiresInDays"),
        ({"role": "reader", "extra": 1}, "extra"),
    ):
        response = admin(auth_server, "POST", "/auth/keys", json=body)
        assert response.status_code == 400, body
        assert response.json()["details"]["field"] == field


def test_expiring_key_reports_its_expiry(auth_server: Server) -> None:
    created = make_key(auth_server, "reader", expiresInDays=2)
    assert created["expiresAt"] == created["createdAt"] + 2 * 86_400_000
    assert auth_server.request("GET", "/auth/whoami", headers=bearer(created["key"])).status_code == 200


def test_whoami_and_status(auth_server: Server) -> None:
    created = make_key(auth_server, "reader", ["production"], ["acme_corp"], name="me")
    me = auth_server.request("GET", "/auth/whoami", headers={"X-API-Key": created["key"]}).json()
    assert me["keyId"] == created["id"] and me["name"] == "me" and me["role"] == "reader"
    assert "fact_write" not in me["permissions"] and "inference" in me["permissions"]
    assert me["databases"] == ["production"] and me["tenants"] == ["acme_corp"]
    status = auth_server.request("GET", "/auth/status")
    assert status.status_code == 200
    assert status.json()["mode"] == "on" and status.json()["authEnabled"] is True
    assert status.json()["bootstrapRequired"] is False
    assert auth_server.request("GET", "/auth/whoami").status_code == 401


def test_missing_bad_and_malformed_keys_are_401(auth_server: Server) -> None:
    for headers in ({}, bearer("nct_" + "A" * 43), bearer("not-a-key"), {"Authorization": "Basic abc"},
                    {"X-API-Key": ""}):
        response = auth_server.request("POST", "/ask", tenant="t", headers=headers,
                                       json={"predicate": "p", "args": []})
        assert response.status_code == 401, headers
        assert response.json()["code"] == "UNAUTHORIZED"
        assert response.headers["X-Request-ID"]
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
    lower = auth_server.request("GET", "/auth/whoami", headers={"Authorization": f"bearer {ADMIN_KEY}"})
    assert lower.status_code == 200


def test_public_routes_need_no_key(auth_server: Server) -> None:
    for path in ("/health", "/health/live", "/health/ready", "/openapi.json", "/auth/status"):
        assert auth_server.request("GET", path).status_code == 200, path


def test_audit_trail_records_admin_actions(auth_server: Server) -> None:
    name = unique("audited")
    since = admin(auth_server, "GET", "/admin/audit").json()["next"] or 0
    admin(auth_server, "POST", "/databases", json={"name": name})
    admin(auth_server, "POST", f"/admin/databases/{name}/tenants", json={"name": "acme"})
    created = make_key(auth_server, "reader", databases=[name])
    admin(auth_server, "PATCH", f"/auth/keys/{created['id']}", json={"description": "x"})
    admin(auth_server, "DELETE", f"/auth/keys/{created['id']}")
    backup = admin(auth_server, "POST", "/admin/backups", json={"database": name})
    assert backup.status_code == 201 and Path(backup.json()["path"]).is_file()
    admin(auth_server, "DELETE", f"/admin/databases/{name}/tenants/acme")
    admin(auth_server, "DELETE", f"/admin/databases/{name}")
    auth_server.request("GET", "/auth/whoami", headers={"X-API-Key": unique("wrong") + "x" * 20})
    trail = admin(auth_server, "GET", f"/admin/audit?after={since}").json()["events"]
    actions = [(e["action"], e["target"]) for e in trail]
    for expected in (("database_created", name), ("tenant_created", f"{name}/acme"),
                     ("key_created", created["id"]), ("key_updated", created["id"]),
                     ("key_revoked", created["id"]), ("backup_created", name),
                     ("tenant_deleted", f"{name}/acme"), ("database_deleted", name)):
        assert expected in actions, expected
    by_env = next(e for e in trail if e["action"] == "database_created" and e["target"] == name)
    assert by_env["actor"]["keyId"] == "env-admin" and by_env["actor"]["client"] == "127.0.0.1"
    assert created["key"] not in str(trail)
    since_ms = admin(auth_server, "GET", "/admin/audit?since=99999999999999").json()
    assert since_ms["events"] == [] and since_ms["count"] == 0
    assert admin(auth_server, "GET", "/admin/audit?since=abc").status_code == 400


def test_scoped_listings_hide_other_names(auth_server: Server) -> None:
    db = unique("listed")
    admin(auth_server, "POST", "/databases", json={"name": db})
    for tenant in ("mine", "theirs"):
        admin(auth_server, "POST", f"/admin/databases/{db}/tenants", json={"name": tenant})
    scoped = make_key(auth_server, "admin", databases=[db], tenants=["mine"])
    as_scoped = bearer(scoped["key"])
    databases = auth_server.request("GET", "/databases", headers=as_scoped).json()["databases"]
    assert [d["name"] for d in databases] == [db]
    tenants = auth_server.request("GET", f"/admin/databases/{db}/tenants", headers=as_scoped).json()
    assert [t["name"] for t in tenants["tenants"]] == ["mine"]
    # a tenant-limited admin cannot act on the whole database
    assert auth_server.request("DELETE", f"/admin/databases/{db}", headers=as_scoped).status_code == 403
    assert auth_server.request("POST", "/databases", headers=as_scoped, json={"name": db}).status_code == 403
    assert auth_server.request("POST", f"/admin/databases/{db}/tenants", headers=as_scoped,
                               json={"name": "theirs2"}).status_code == 403
    assert auth_server.request("POST", f"/admin/databases/{db}/tenants", headers=as_scoped,
                               json={"tenantId": "mine"}).status_code == 200


@pytest.mark.parametrize("path", ["/auth/keys", "/auth/keys/some-id"])
def test_key_management_is_refused_with_auth_off(server: Server, path: str) -> None:
    response = server.request("GET", path)
    assert response.status_code == 400 and response.json()["code"] == "AUTH_DISABLED"
    created = server.request("POST", "/auth/keys", json={"role": "admin"})
    assert created.status_code == 400 and created.json()["code"] == "AUTH_DISABLED"


def test_whoami_and_status_with_auth_off(server: Server) -> None:
    me = server.request("GET", "/auth/whoami").json()
    assert me["mode"] == "off" and me["role"] == "admin" and me["name"] == "anonymous"
    status = server.request("GET", "/auth/status").json()
    assert status == {"mode": "off", "authEnabled": False, "bootstrapRequired": False,
                      "keyCount": 0, "hasKeys": False}
