"""Data files are private to the server's user (issue 14, item 8): the data dir was
created 0755 and every log 0644, world-readable ciphertext, wrapped keys and names."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tests.server import Server


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_dir_is_0700_and_every_file_in_it_0600(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)  # the usual umask: it must not widen anything
    try:
        data_dir = tmp_path / "fresh" / "data"
        server = Server(data_dir, env={"NOCTURNUS_MASTER_KEY": ""}).start()
        try:
            r = server.request("POST", "/tell", tenant="acme", json={"predicate": "p", "args": [1]})
            assert r.status_code == 200
            assert server.request("POST", "/admin/backups").status_code == 201
            assert mode(data_dir) == 0o700
            assert mode(data_dir / "backups") == 0o700
            files = [p for p in data_dir.rglob("*") if p.is_file() and not p.name.startswith(".health")]
            names = {p.name for p in files}
            assert {"_system.db", "default.db", "default.db-wal", "master.key", ".lock"} <= names
            wide = {p.name: oct(mode(p)) for p in files if mode(p) != 0o600}
            assert wide == {}
        finally:
            server.stop()
    finally:
        os.umask(old_umask)
