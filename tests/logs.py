"""Open a SQLite event log file directly (tests that look at a server's files)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from nocturnus.store.crypto import MasterKey
from nocturnus.store.sealer import Sealer
from nocturnus.store.sqlite import SqliteRecorder


def sqlite_log(
    path: Path,
    database: str,
    key: MasterKey,
    *,
    readonly: bool = False,
    check_tail: int | None = 1000,
) -> Sealer:
    """The log of ``database`` in the file ``path``."""
    return Sealer.open(
        SqliteRecorder(Path(path), database, readonly=readonly), key, check_tail=check_tail
    )


def damaged_copy(template: Path, tmp_path: Path, *statements: str) -> Path:
    """A copy of the data dir ``template`` with ``statements`` run on its ``default``
    log, as an attacker or a failing disk would change the file behind the server."""
    data_dir = tmp_path / "data"
    shutil.copytree(template, data_dir)
    conn = sqlite3.connect(str(data_dir / "default.db"), isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()
    return data_dir
