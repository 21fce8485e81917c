"""Which backend a store location names: the one place that picks a recorder module.

An empty location is the embedded default: one SQLite file per database in the data
dir. Nothing above the store names a backend.
"""

from __future__ import annotations

from pathlib import Path

from nocturnus.store.recorder import Store
from nocturnus.store.sqlite import SqliteStore


def open_store(location: str, data_dir: Path) -> Store:
    """The store at ``location`` (empty: the SQLite files of ``data_dir``)."""
    return SqliteStore(data_dir)
