"""``nocturnus keys create|list|revoke`` on a stopped server's data dir (issue 7)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from nocturnus.cli import main
from tests.server import TEST_MASTER_KEY, Server

ENV = {"NOCTURNUS_MASTER_KEY": TEST_MASTER_KEY}


def keys(*args: str, data_dir: Path) -> tuple[int, str, str]:
    runner = CliRunner()
    result = runner.invoke(main, ["keys", *args, "--data-dir", str(data_dir)], env=ENV)
    return result.exit_code, result.stdout, result.stderr


def test_bootstrap_list_use_and_revoke_offline(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    code, out, err = keys("create", "--role", "admin", "--name", "boot", "--quiet", data_dir=data_dir)
    assert code == 0, err
    admin_key = out.strip()
    assert admin_key.startswith("nct_") and len(admin_key) == 47
    code, out, err = keys("create", "--role", "writer", "--database", "production",
                          "--tenant", "acme_corp", data_dir=data_dir)
    assert code == 0 and "shown only once" in out
    writer_key = out.strip().splitlines()[-1]
    code, out, _ = keys("list", "--json", data_dir=data_dir)
    listed = json.loads(out)
    assert (listed[0]["name"], listed[0]["role"]) == ("boot", "admin")
    assert listed[1]["databases"] == ["production"] and listed[1]["tenants"] == ["acme_corp"]
    assert admin_key not in out and writer_key not in out and "argon2" not in out
    code, table, _ = keys("list", data_dir=data_dir)
    assert code == 0 and "boot" in table and admin_key[:12] in table

    server = Server(data_dir, env={"NOCTURNUS_AUTH": "on"}).start()
    try:
        me = server.request("GET", "/auth/whoami", headers={"X-API-Key": admin_key})
        assert me.status_code == 200 and me.json()["name"] == "boot"
        # the server holds the data dir: offline commands refuse, in one line
        code, _, err = keys("list", data_dir=data_dir)
        assert code == 1 and "in use" in err and "/auth/keys" in err
        assert len(err.strip().splitlines()) == 1
        trail = server.request("GET", "/admin/audit", headers={"X-API-Key": admin_key}).json()
        assert [e["actor"]["name"] for e in trail["events"] if e["action"] == "key_created"] == ["cli", "cli"]
    finally:
        assert server.stop() == 0

    code, out, _ = keys("revoke", listed[0]["id"], data_dir=data_dir)
    assert code == 0 and "Revoked" in out
    code, _, err = keys("revoke", listed[0]["id"], data_dir=data_dir)
    assert code == 1 and "not found" in err
    server.start()
    try:
        gone = server.request("GET", "/auth/whoami", headers={"X-API-Key": admin_key})
        assert gone.status_code == 401
        status = server.request("GET", "/auth/status").json()
        assert status["keyCount"] == 1 and status["bootstrapRequired"] is False
    finally:
        server.stop()


def test_bad_arguments_fail_cleanly(tmp_path: Path) -> None:
    code, _, err = keys("create", "--role", "reader", "--database", "bad name", data_dir=tmp_path)
    assert code == 1 and "--database" in err
    code, _, _ = keys("create", "--role", "root", data_dir=tmp_path)
    assert code == 2


def test_bootstrap_is_required_with_no_keys(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", env={"NOCTURNUS_AUTH": "on"}).start()
    try:
        assert server.request("GET", "/auth/status").json()["bootstrapRequired"] is True
        assert server.request("GET", "/databases").status_code == 401
    finally:
        server.stop()
    assert "no API key exists" in server.output()
