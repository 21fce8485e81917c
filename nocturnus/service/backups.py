"""Online backups of one database into ``<data dir>/backups`` (``POST /admin/backups``).

The copy is made by SQLite's backup API in the database's writer thread, so it is
consistent while requests keep writing. It holds the encrypted events and wrapped data
keys, never the master key: restoring it needs the same master key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nocturnus.service.database import Database, now_ms
from nocturnus.store.backup import write_backup
from nocturnus.store.sealer import Sealer

BACKUP_DIR = "backups"


@dataclass(frozen=True, slots=True)
class Backup:
    database: str
    path: Path
    created_at: int
    size_bytes: int
    head: int


async def backup_database(database: Database[Any], data_dir: Path) -> Backup:
    """Copy ``database``'s log to ``data_dir/backups/<name>-<epoch ms>.db``."""
    created_at = now_ms()
    dest = data_dir / BACKUP_DIR / f"{database.name}-{created_at}.db"

    def copy(log: Sealer) -> tuple[int, int]:
        dest.parent.mkdir(parents=True, exist_ok=True)
        write_backup(log, dest, {})
        return dest.stat().st_size, log.head()

    size, head = await database.writer.run(copy)
    return Backup(database.name, dest, created_at, size, head)
