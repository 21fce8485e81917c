"""Start-up refusal without auth off loopback, and CORS (issue 7)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from nocturnus.api.security import check_exposure, is_loopback
from nocturnus.errors import StartupError
from nocturnus.settings import Settings
from tests.server import TEST_MASTER_KEY, Server, free_port


def serve(args: list[str], env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    import os

    full_env = {**os.environ, "NOCTURNUS_MASTER_KEY": TEST_MASTER_KEY, **env}
    return subprocess.run(
        [sys.executable, "-m", "nocturnus", "serve", "--port", str(free_port()),
         "--data-dir", str(tmp_path / "data"), *args],
        env=full_env, capture_output=True, text=True, timeout=60, check=False,
    )


def test_auth_off_on_all_interfaces_refuses_to_start(tmp_path: Path) -> None:
    result = serve(["--host", "0.0.0.0"], {"NOCTURNUS_AUTH": "off"}, tmp_path)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "refusing to listen on 0.0.0.0" in lines[0] and "NOCTURNUS_AUTH=on" in lines[0]
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NOCTURNUS_AUTH": "maybe"}, "must be off or on"),
        ({"NOCTURNUS_AUTH": "on", "NOCTURNUS_ADMIN_KEY": "short"}, "at least 16"),
        ({"NOCTURNUS_ALLOW_INSECURE": "perhaps"}, "allow_insecure"),
    ],
)
def test_bad_security_settings_fail_in_one_line(tmp_path: Path, env: dict[str, str], message: str) -> None:
    result = serve([], env, tmp_path)
    assert result.returncode == 1
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("host", "auth", "insecure", "allowed"),
    [
        ("127.0.0.1", "off", False, True),
        ("127.0.0.2", "off", False, True),
        ("::1", "off", False, True),
        ("localhost", "off", False, True),
        ("0.0.0.0", "off", False, False),
        ("::", "off", False, False),
        ("203.0.113.9", "off", False, False),
        ("example.com", "off", False, False),
        ("0.0.0.0", "off", True, True),
        ("0.0.0.0", "on", False, True),
    ],
)
def test_exposure_rule(host: str, auth: str, insecure: bool, allowed: bool) -> None:
    settings = Settings(host=host, auth=auth, allow_insecure=insecure)
    if allowed:
        check_exposure(settings)
    else:
        with pytest.raises(StartupError, match="refusing"):
            check_exposure(settings)
    assert is_loopback("127.0.0.1") and not is_loopback("0.0.0.0")


# -- CORS ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cors_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"NOCTURNUS_CORS_ORIGINS": "https://app.example, https://admin.example/"}
    srv = Server(Path(tmp_path_factory.mktemp("cors")) / "data", env=env).start()
    yield srv
    srv.stop()


def preflight(server: Server, origin: str) -> object:
    return server.request("OPTIONS", "/tell", headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, x-tenant-id, authorization",
    })


def test_cors_allows_listed_origins_only(cors_server: Server) -> None:
    allowed = preflight(cors_server, "https://app.example")
    assert allowed.status_code == 204  # type: ignore[attr-defined]
    headers = allowed.headers  # type: ignore[attr-defined]
    assert headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "POST" in headers["Access-Control-Allow-Methods"]
    assert "X-Tenant-ID" in headers["Access-Control-Allow-Headers"]
    assert "Authorization" in headers["Access-Control-Allow-Headers"]
    assert preflight(cors_server, "https://admin.example").status_code == 204  # type: ignore[attr-defined]
    refused = preflight(cors_server, "https://evil.example")
    assert refused.status_code == 403 and refused.json()["code"] == "FORBIDDEN"  # type: ignore[attr-defined]
    assert "Access-Control-Allow-Origin" not in refused.headers  # type: ignore[attr-defined]
    answer = cors_server.request("GET", "/health/live", headers={"Origin": "https://app.example"})
    assert answer.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "X-Request-ID" in answer.headers["Access-Control-Expose-Headers"]
    foreign = cors_server.request("GET", "/health/live", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in foreign.headers


def test_cors_is_off_by_default(server: Server) -> None:
    refused = preflight(server, "https://app.example")
    assert refused.status_code == 403  # type: ignore[attr-defined]
    answer = server.request("GET", "/health/live", headers={"Origin": "https://app.example"})
    assert "Access-Control-Allow-Origin" not in answer.headers
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["X-Frame-Options"] == "DENY"
