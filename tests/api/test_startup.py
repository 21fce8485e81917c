"""Start-up refuses damaged logs and wrong keys with one line (issue 3)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nocturnus.service import tenants
from nocturnus.service.commands import TellFact
from nocturnus.service.databases import Databases
from nocturnus.store.crypto import parse_master_key
from tests.logs import damaged_copy
from tests.server import TEST_MASTER_KEY, Server, free_port

OTHER_KEY = "ff" * 32


def serve(data_dir: Path, key: str = TEST_MASTER_KEY) -> subprocess.CompletedProcess[str]:
    """Run ``nocturnus serve`` expecting it to refuse to start."""
    env = {**os.environ, "NOCTURNUS_MASTER_KEY": key}
    return subprocess.run(
        [sys.executable, "-m", "nocturnus", "serve", "--port", str(free_port()),
         "--data-dir", str(data_dir)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("nocturnus: error: ")
    return lines[0]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir with 20 events in ``default`` (seqs 1..20), written offline."""
    data_dir = tmp_path_factory.mktemp("template") / "data"

    async def write() -> None:
        databases = Databases(data_dir, parse_master_key(TEST_MASTER_KEY, "test"))
        await databases.open()
        db = databases.get("default")
        for i in range(20):
            await tenants.tell(db, "acme", TellFact("p", (f"a{i}",)))
        await databases.close()

    asyncio.run(write())
    return data_dir


@pytest.mark.parametrize(
    ("statements", "seq"),
    [
        (["UPDATE events SET ts_ms = ts_ms + 1 WHERE seq = 15"], 15),
        (["UPDATE events SET payload = zeroblob(length(payload)) WHERE seq = 12"], 12),
        (["DELETE FROM events WHERE seq = 17"], 17),
        (["DELETE FROM events WHERE seq = 20"], 20),
        (
            [
                "UPDATE events SET seq = -1 WHERE seq = 13",
                "UPDATE events SET seq = 13 WHERE seq = 14",
                "UPDATE events SET seq = 14 WHERE seq = -1",
            ],
            13,
        ),
    ],
    ids=["changed-ts", "changed-payload", "removed", "removed-last", "reordered"],
)
def test_damaged_tail_stops_start_up_naming_the_seq(
    template: Path, tmp_path: Path, statements: list[str], seq: int
) -> None:
    line = one_error_line(serve(damaged_copy(template, tmp_path, *statements)))
    assert "database 'default'" in line and f"seq {seq}" in line


def test_wrong_master_key_is_one_line(template: Path, tmp_path: Path) -> None:
    line = one_error_line(serve(damaged_copy(template, tmp_path), key=OTHER_KEY))
    assert "wrong master key" in line and TEST_MASTER_KEY not in line and OTHER_KEY not in line


def test_an_offline_writer_is_refused_beside_a_server(fresh_server: Server) -> None:
    # Servers share the data dir (issue 16: tests/api/test_nodes.py runs two); a
    # command that rewrites the logs offline does not run beside one.
    fresh_server.start()
    env = {**os.environ, "NOCTURNUS_MASTER_KEY": TEST_MASTER_KEY}
    line = one_error_line(subprocess.run(
        [sys.executable, "-m", "nocturnus", "snapshot", "--data-dir", str(fresh_server.data_dir)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    ))
    assert "in use by nocturnus serve" in line
    assert f"pid {fresh_server.process.pid}" in line  # type: ignore[union-attr]


def test_generated_master_key_warning_is_printed_once(tmp_path: Path) -> None:
    server = Server(tmp_path / "data", env={"NOCTURNUS_MASTER_KEY": ""})
    server.start()
    try:
        assert (tmp_path / "data" / "master.key").is_file()
    finally:
        assert server.stop() == 0
    assert server.output().count("NO MASTER KEY GIVEN") == 1
