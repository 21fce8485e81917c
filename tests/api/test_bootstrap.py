"""``POST /auth/bootstrap``: the first admin key over HTTP, as the original offers it
(issue 18, "Admin and migration"). The SDK's ``bootstrap`` is driven in test_sdk.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import Server

PASSWORD = "bootstrap-password-0123"


def start(tmp_path: Path, **env: str) -> Server:
    return Server(tmp_path / "data", env={"NOCTURNUS_AUTH": "on", **env}).start()


@pytest.fixture
def bootstrappable(tmp_path: Path) -> Iterator[Server]:
    srv = start(tmp_path, NOCTURNUS_BOOTSTRAP_PASSWORD=PASSWORD)
    yield srv
    srv.stop()


def test_first_admin_key_once_with_the_password(bootstrappable: Server) -> None:
    server = bootstrappable
    assert server.request("GET", "/auth/status").json()["bootstrapRequired"] is True

    wrong = server.request("POST", "/auth/bootstrap", json={"username": "admin", "password": "nope"})
    assert (wrong.status_code, wrong.json()["code"]) == (401, "UNAUTHORIZED")
    other_user = server.request(
        "POST", "/auth/bootstrap", json={"username": "root", "password": PASSWORD}
    )
    assert other_user.status_code == 401

    made = server.request(
        "POST", "/auth/bootstrap",
        json={"username": "admin", "password": PASSWORD, "keyName": "ops"},
    )
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["name"], body["role"], body["databases"], body["tenants"]) == ("ops", "admin", [], [])
    assert body["key"].startswith(body["prefix"])

    whoami = server.request("GET", "/auth/whoami", headers={"Authorization": f"Bearer {body['key']}"})
    assert (whoami.json()["keyId"], whoami.json()["role"]) == (body["id"], "admin")

    again = server.request("POST", "/auth/bootstrap", json={"username": "admin", "password": PASSWORD})
    assert (again.status_code, again.json()["code"]) == (403, "FORBIDDEN")
    status = server.request("GET", "/auth/status").json()
    assert (status["bootstrapRequired"], status["keyCount"]) == (False, 1)

    audit = server.request(
        "GET", "/admin/audit", headers={"Authorization": f"Bearer {body['key']}"}
    ).json()["events"]
    assert [e["target"] for e in audit if e["action"] == "key_bootstrapped"] == [body["id"]]


def test_bad_passwords_lock_the_address_out(tmp_path: Path) -> None:
    server = start(
        tmp_path, NOCTURNUS_BOOTSTRAP_PASSWORD=PASSWORD, NOCTURNUS_AUTH_FAILURES_PER_MINUTE="2"
    )
    try:
        codes = [
            server.request("POST", "/auth/bootstrap", json={"password": f"guess-{i}"}).status_code
            for i in range(3)
        ]
        assert codes == [401, 401, 429]
        locked = server.request("POST", "/auth/bootstrap", json={"password": PASSWORD})
        assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    finally:
        server.stop()


def test_off_without_a_password_and_with_auth_off(tmp_path: Path, server: Server) -> None:
    no_password = start(tmp_path)
    try:
        refused = no_password.request("POST", "/auth/bootstrap", json={"password": PASSWORD})
        assert refused.status_code == 403
        assert "NOCTURNUS_BOOTSTRAP_PASSWORD" in refused.json()["message"]
    finally:
        no_password.stop()
    off = server.request("POST", "/auth/bootstrap", json={})
    assert (off.status_code, off.json()["code"]) == (400, "AUTH_DISABLED")


def test_an_env_admin_key_means_no_bootstrap(tmp_path: Path) -> None:
    server = start(
        tmp_path, NOCTURNUS_BOOTSTRAP_PASSWORD=PASSWORD, NOCTURNUS_ADMIN_KEY="env-admin-key-0123456789"
    )
    try:
        refused = server.request("POST", "/auth/bootstrap", json={"password": PASSWORD})
        assert refused.status_code == 403
    finally:
        server.stop()


def test_a_short_password_stops_start_up(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="at least 16 characters"):
        start(tmp_path, NOCTURNUS_BOOTSTRAP_PASSWORD="short")
