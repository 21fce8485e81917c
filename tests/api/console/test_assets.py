"""The console's files: served by the server itself, without a key, under a strict CSP,
and shipped inside the wheel (issue 21)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from nocturnus.api.console.assets import load_assets
from nocturnus.api.console.routes import CONTENT_SECURITY_POLICY
from tests.server import Server

REPO = Path(__file__).resolve().parents[3]
STATIC = REPO / "nocturnus" / "api" / "console" / "static"


def shipped_files() -> list[str]:
    return sorted(str(p.relative_to(STATIC)) for p in STATIC.rglob("*") if p.is_file())


def test_every_file_under_static_is_loaded() -> None:
    assert sorted(load_assets()) == shipped_files()


@pytest.mark.parametrize(
    "path, content_type",
    [
        ("/console", "text/html"),
        ("/console/console.css", "text/css"),
        ("/console/js/app.js", "text/javascript"),
        ("/console/js/proof.js", "text/javascript"),
    ],
)
def test_files_are_served_without_a_key_under_the_policy(
    auth_server: Server, path: str, content_type: str
) -> None:
    response = auth_server.request("GET", path)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(content_type)
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "no-referrer"
    again = auth_server.request(
        "GET", path, headers={"If-None-Match": response.headers["etag"]}
    )
    assert again.status_code == 304 and again.content == b""


def test_an_unknown_module_is_a_404_envelope(auth_server: Server) -> None:
    response = auth_server.request("GET", "/console/js/nope.js")
    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"
    assert "nope.js" in response.json()["message"]


def test_the_page_loads_only_its_own_files() -> None:
    """No CDN, no inline script or style: the page loads only shipped files."""
    html = (STATIC / "index.html").read_text()
    assert "<script>" not in html and "style=" not in html and "<style" not in html
    for url in re.findall(r'(?:src|href)="([^"#]+)"', html):
        if url.startswith("data:"):
            continue
        assert url.startswith("/console/"), url
        assert url.removeprefix("/console/") in shipped_files(), url
    for module in (STATIC / "js").glob("*.js"):
        source = module.read_text()
        parses_html = (
            r"\.(innerHTML|outerHTML)\s*[+]?=|insertAdjacentHTML|document\.write"
        )
        assert re.search(parses_html, source) is None, module.name
        assert "http://" not in source.replace("http://www.w3.org/2000/svg", ""), (
            module.name
        )
        assert "https://" not in source, module.name
        for target in re.findall(r'from "([^"]+)"', source):
            assert target.startswith("./") and (STATIC / "js" / target[2:]).is_file(), (
                target
            )


def test_the_wheel_ships_the_console(tmp_path: Path) -> None:
    """Built from a copy of the checkout, as `pip wheel` would for a release."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for name in ("nocturnus", "migrations"):
        shutil.copytree(
            REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__")
        )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(tmp_path / "dist"),
            str(source),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("nocturnus-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in shipped_files():
        assert f"nocturnus/api/console/static/{name}" in names
