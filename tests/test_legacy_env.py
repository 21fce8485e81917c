"""The original product's environment names as fallbacks for ours (issue 18, "Admin and
migration"): ours win, each one used is logged, unknown values fail loudly."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from nocturnus.errors import StartupError
from nocturnus.legacy_env import report
from nocturnus.settings import load_settings
from tests.server import TEST_MASTER_KEY, free_port


@pytest.mark.parametrize(
    ("env", "setting", "expected"),
    [
        ({"PORT": "9400"}, "port", 9400),
        ({"PORT": "9400", "NOCTURNUS_PORT": "9500"}, "port", 9500),
        ({"STORAGE_DIR": "/srv/noc"}, "data_dir", Path("/srv/noc")),
        ({"AUTH_ENABLED": "true"}, "auth", "on"),
        ({"AUTH_ENABLED": "FALSE"}, "auth", "off"),
        ({"AUTH_ENABLED": "true", "NOCTURNUS_AUTH": "off"}, "auth", "off"),
        ({"API_KEY": "shared-secret-0123456789"}, "auth", "on"),
        ({"API_KEY": "shared-secret-0123456789"}, "admin_key", "shared-secret-0123456789"),
        ({"AUTH_ENABLED": "false", "API_KEY": "shared-secret-0123456789"}, "auth", "on"),
        ({"CORS_ALLOWED_ORIGINS": "https://a.example"}, "cors_origins", "https://a.example"),
        ({"LOG_FILE": "/var/log/noc.log"}, "log_file", Path("/var/log/noc.log")),
        ({"LOG_LEVEL": "DEBUG", "NOCTURNUS_LOG_LEVEL": "WARNING"}, "log_level", "WARNING"),
        ({"TRUSTED_PROXY_IPS": "10.0.0.1"}, "trusted_proxies", "10.0.0.1"),
        ({"MAX_REQUEST_BODY_BYTES": "1024"}, "max_body_bytes", 1024),
        ({"ENCRYPTION_KEY": TEST_MASTER_KEY}, "master_key", TEST_MASTER_KEY),
        ({"NOCTURNUSAI_ADMIN_PASS": "p" * 16}, "bootstrap_password", "p" * 16),
        ({"NOCTURNUSAI_ADMIN_USER": "root"}, "bootstrap_user", "root"),
        ({"PORT": ""}, "port", 9300),
    ],
)
def test_fallbacks(env: dict[str, str], setting: str, expected: object) -> None:
    assert getattr(load_settings(environ=env), setting) == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"PORT": "http"}, "PORT, the original's name: setting port"),
        ({"AUTH_ENABLED": "yes please"}, "AUTH_ENABLED must be true or false"),
        ({"NOCTURNUSAI_ADMIN_PASS": "nocturnusai"}, "at least 16 characters"),
    ],
)
def test_bad_values_stop_start_up(env: dict[str, str], message: str) -> None:
    with pytest.raises(StartupError, match=message):
        load_settings(environ=env)


def test_report_names_what_was_used_ignored_and_unsupported() -> None:
    lines = report({"PORT": "1", "LOG_LEVEL": "x", "NOCTURNUS_LOG_LEVEL": "y", "TLS_ENABLED": "true"})
    assert lines == [
        ("info", "PORT (the original's name) sets NOCTURNUS_PORT"),
        ("info", "LOG_LEVEL is ignored: NOCTURNUS_LOG_LEVEL is set and wins"),
        ("warning", "TLS_ENABLED has no equivalent and is ignored: terminate TLS in a reverse proxy (see ops/)"),
    ]
    assert report({"HOME": "/root"}) == []


def test_a_server_started_with_the_original_names(tmp_path: Path) -> None:
    port = free_port()
    log_file = tmp_path / "nocturnus.log"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("NOCTURNUS_")},
        "PORT": str(port),
        "STORAGE_DIR": str(tmp_path / "store"),
        "ENCRYPTION_KEY": TEST_MASTER_KEY,
        "AUTH_ENABLED": "true",
        "API_KEY": "legacy-shared-secret-0123",
        "CORS_ALLOWED_ORIGINS": "https://app.example",
        "LOG_FILE": str(log_file),
        "REPLICATION_MODE": "FOLLOWER",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "nocturnus", "serve"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, "the server exited"
            try:
                if httpx.get(f"{url}/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)
        tenant = {"X-Tenant-ID": "t1"}
        assert httpx.post(f"{url}/tell", json={"predicate": "p", "args": ["a"]}, headers=tenant).status_code == 401
        told = httpx.post(
            f"{url}/tell", json={"predicate": "p", "args": ["a"]},
            headers={**tenant, "X-API-Key": "legacy-shared-secret-0123"},
        )
        assert told.status_code == 200
        preflight = httpx.options(
            f"{url}/tell",
            headers={"Origin": "https://app.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        assert (tmp_path / "store" / "default.db").exists()
    finally:
        process.terminate()
        process.wait(30)
    logged = log_file.read_text()
    for name, ours in [("PORT", "PORT"), ("STORAGE_DIR", "DATA_DIR"), ("ENCRYPTION_KEY", "MASTER_KEY"),
                       ("API_KEY", "ADMIN_KEY"), ("AUTH_ENABLED", "AUTH"), ("LOG_FILE", "LOG_FILE"),
                       ("CORS_ALLOWED_ORIGINS", "CORS_ORIGINS")]:
        assert f"{name} (the original's name) sets NOCTURNUS_{ours}" in logged
    assert "REPLICATION_MODE has no equivalent and is ignored" in logged
    assert "legacy-shared-secret" not in logged
    assert "POST /tell 200" in logged
