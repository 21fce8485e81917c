"""Deployment files (ops/, loadtests/) are well-formed, and the cron backup script works
against a running server (issue 9)."""

from __future__ import annotations

import configparser
import os
import py_compile
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from nocturnus import cli
from tests.server import TEST_MASTER_KEY, Server, free_port

ROOT = Path(__file__).resolve().parents[1]
OPS = ROOT / "ops"


def test_loadtest_scripts_compile(tmp_path: Path) -> None:
    for script in sorted((ROOT / "loadtests").glob("*.py")):
        py_compile.compile(str(script), cfile=str(tmp_path / f"{script.stem}.pyc"), doraise=True)


def test_dockerfile_is_multi_stage_non_root_with_a_data_volume() -> None:
    lines = [line.strip() for line in (OPS / "Dockerfile").read_text().splitlines()]
    instructions = [line.split()[0] for line in lines if line and not line.startswith("#")]
    assert instructions.count("FROM") == 2
    assert any(line.startswith("COPY --from=build") for line in lines)
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    assert 'VOLUME ["/data"]' in lines
    assert any(line.startswith("HEALTHCHECK") for line in lines)
    assert "ENV NOCTURNUS_DATA_DIR=/data" not in lines  # set in the ENV block below
    assert any("NOCTURNUS_DATA_DIR=/data" in line for line in lines)
    ignore = (OPS / "Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[ignore.index("**") + 1 :]  # allow-list after "ignore everything"


def test_systemd_unit_runs_serve_as_an_unprivileged_user() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((OPS / "nocturnus.service").read_text())
    service = unit["Service"]
    assert service["User"] == "nocturnus"
    assert service["ExecStart"].endswith("nocturnus serve")
    assert service["KillSignal"] == "SIGTERM"
    assert service["StateDirectory"] == "nocturnus"
    assert unit["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    copy = tmp_path / "nocturnus.service"
    shutil.copy(OPS / "nocturnus.service", copy)
    result = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, check=False)
    assert "error" not in result.stderr.lower(), result.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (apt-get install prometheus)")
def test_prometheus_config_rules_and_alert_tests() -> None:
    prometheus = OPS / "prometheus"
    for args in (["check", "config", "prometheus.yml"], ["check", "rules", "alerts.yml"],
                 ["test", "rules", "alerts_test.yml"]):
        result = subprocess.run(["promtool", *args], cwd=prometheus, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr


def test_backup_script_is_valid_bash() -> None:
    script = OPS / "backup.sh"
    assert script.stat().st_mode & stat.S_IXUSR
    subprocess.run(["bash", "-n", str(script)], check=True)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", str(script)], check=True)


@pytest.mark.skipif("backup" not in cli.main.commands, reason="`nocturnus backup` not merged yet (issue 3)")
def test_backup_script_backs_up_every_database_of_a_running_server(tmp_path: Path) -> None:
    server = Server(tmp_path / "data").start()
    try:
        assert server.request("POST", "/databases", json={"name": "prod"}).status_code == 201
        told = server.request("POST", "/tell", tenant="acme", database="prod",
                              json={"predicate": "plan", "args": ["enterprise"]})
        assert told.status_code == 200
        wrapper = tmp_path / "nocturnus"
        wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m nocturnus "$@"\n')
        wrapper.chmod(0o755)
        env_file = tmp_path / "nocturnus.env"
        env_file.write_text(f"NOCTURNUS_MASTER_KEY={TEST_MASTER_KEY}\n")
        env = {
            **os.environ,
            "NOCTURNUS_ENV_FILE": str(env_file),
            "NOCTURNUS_DATA_DIR": str(server.data_dir),
            "BACKUP_DIR": str(tmp_path / "backups"),
            "NOCTURNUS_BIN": str(wrapper),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        env.pop("NOCTURNUS_MASTER_KEY", None)  # it must come from the env file
        result = subprocess.run(["bash", str(OPS / "backup.sh")], env=env, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        assert server.stop() == 0
    [run] = list((tmp_path / "backups").iterdir())
    assert sorted(p.name for p in run.iterdir()) == [
        "COMPLETE", "default.nocturnus-backup", "prod.nocturnus-backup",
    ]
    restored = Server(tmp_path / "restored")
    restore_env = {**os.environ, "NOCTURNUS_MASTER_KEY": TEST_MASTER_KEY, "PYTHONPATH": env["PYTHONPATH"]}
    restored.data_dir.mkdir()
    restore = subprocess.run(
        [str(wrapper), "restore", "--data-dir", str(restored.data_dir), "--in", str(run / "prod.nocturnus-backup")],
        env=restore_env, capture_output=True, text=True, check=False,
    )
    assert restore.returncode == 0, restore.stdout + restore.stderr
    restored.start()
    try:
        answer = restored.request("POST", "/ask", tenant="acme", database="prod",
                                  json={"predicate": "plan", "args": ["?p"]})
        assert answer.json()["bindings"] == [{"p": "enterprise"}]
    finally:
        restored.stop()


# -- several nodes behind a load balancer (issue 16, item 5) -------------------------

HAPROXY = shutil.which("haproxy")
COMPOSE = (
    [shutil.which("docker-compose")] if shutil.which("docker-compose") else None
)
COMPOSE_ENV = {"POSTGRES_PASSWORD": "pw", "NOCTURNUS_MASTER_KEY": TEST_MASTER_KEY,
               "NOCTURNUS_ADMIN_KEY": "admin-key-of-the-compose-test"}


@pytest.mark.skipif(HAPROXY is None, reason="haproxy not installed (apt-get install haproxy)")
def test_haproxy_config_is_valid() -> None:
    result = subprocess.run([HAPROXY, "-c", "-f", str(OPS / "haproxy.cfg")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(COMPOSE is None, reason="docker-compose not installed")
def test_compose_file_renders_two_nodes_on_postgresql_behind_haproxy() -> None:
    assert COMPOSE is not None
    result = subprocess.run([*COMPOSE, "-f", str(OPS / "compose.yaml"), "config"],
                            env={**os.environ, **COMPOSE_ENV}, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    rendered = result.stdout
    for service in ("postgres:", "node1:", "node2:", "haproxy:"):
        assert f"\n  {service}\n" in rendered, rendered
    assert rendered.count("NOCTURNUS_STORE: postgresql://nocturnus:pw@postgres:5432/") == 2
    assert "haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg" in rendered
    missing = {k: v for k, v in os.environ.items() if k not in COMPOSE_ENV}
    refused = subprocess.run([*COMPOSE, "-f", str(OPS / "compose.yaml"), "config"],
                             env=missing, capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and "set POSTGRES_PASSWORD" in refused.stderr


def local_haproxy_config(port: int, stats_port: int, nodes: dict[str, int]) -> str:
    """ops/haproxy.cfg for nodes on this machine (no Docker DNS, local ports)."""
    text = (OPS / "haproxy.cfg").read_text()
    text = re.sub(r"(?m)^resolvers docker\n(?:    .*\n)+", "", text)
    text = text.replace(" resolvers docker", "")
    for name, node_port in nodes.items():
        text = text.replace(f"{name}:9300", f"127.0.0.1:{node_port}")
    text = text.replace("bind :9300", f"bind 127.0.0.1:{port}")
    return text.replace("bind :8404", f"bind 127.0.0.1:{stats_port}")


def resident(node: Server) -> set[str]:
    check = node.client.get("/health").json()["checks"]["memory"]
    return set(check["resident"]["default"])


@pytest.mark.skipif(HAPROXY is None, reason="haproxy not installed (apt-get install haproxy)")
def test_hash_routing_keeps_each_tenant_on_one_node_and_fails_over(tmp_path: Path) -> None:
    """ops/haproxy.cfg in front of two real nodes on one PostgreSQL: every request of a
    tenant reaches the same node, and when that node stops its tenants are served by
    the other, from the shared log."""
    from tests.pg import fresh_database

    assert HAPROXY is not None
    with fresh_database() as url:
        env = {"NOCTURNUS_STORE": url, "NOCTURNUS_MEMORY_BUDGET_MB": "64"}
        nodes = {name: Server(tmp_path / name / "data", env=env) for name in ("node1", "node2")}
        for node in nodes.values():
            node.start()  # one after the other: the first creates the schemas
        port, stats_port = free_port(), free_port()
        config = tmp_path / "haproxy.cfg"
        config.write_text(local_haproxy_config(
            port, stats_port, {name: node.port for name, node in nodes.items()}))
        balancer = subprocess.Popen([HAPROXY, "-db", "-f", str(config)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
        try:
            for _ in range(300):  # both nodes pass two health checks
                try:
                    stats = client.get(f"http://127.0.0.1:{stats_port}/;csv").text
                except httpx.TransportError:
                    stats = ""
                if stats.count("\nnodes,node") == 2 and ",DOWN," not in stats and (
                    stats.count(",UP,") >= 2
                ):
                    break
                time.sleep(0.1)
            tenants = [f"t{i}" for i in range(16)]

            def ask(tenant: str) -> httpx.Response:
                return client.post("/ask", headers={"X-Tenant-ID": tenant},
                                   json={"predicate": "plan", "args": ["?p"]})

            for tenant in tenants:
                told = client.post("/tell", headers={"X-Tenant-ID": tenant},
                                   json={"predicate": "plan", "args": [tenant]})
                assert told.status_code == 200, told.text
                for _ in range(3):
                    assert ask(tenant).status_code == 200
            held = {name: resident(node) for name, node in nodes.items()}
            assert held["node1"] | held["node2"] == set(tenants)
            assert not held["node1"] & held["node2"]  # each tenant on one node only
            assert held["node1"] and held["node2"]

            assert nodes["node1"].stop() == 0
            for tenant in sorted(held["node1"]):
                answer = ask(tenant)
                assert answer.status_code == 200, answer.text
                assert answer.json()["bindings"] == [{"p": tenant}]
            assert resident(nodes["node2"]) == set(tenants)
        finally:
            client.close()
            balancer.terminate()
            balancer.wait(10)
            for node in nodes.values():
                if node.process is not None:
                    node.stop()
