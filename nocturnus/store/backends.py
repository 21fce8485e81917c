"""Which backend a store location names: the one place that picks a recorder module.

An empty location is the embedded default: one SQLite file per database in the data
dir. ``postgresql://...`` (or ``postgres://...``) is a PostgreSQL database holding one
schema per Nocturnus database. Nothing above the store names a backend.
"""

from __future__ import annotations

from pathlib import Path

from nocturnus.errors import StartupError
from nocturnus.store.recorder import Store
from nocturnus.store.sqlite import SqliteStore

POSTGRESQL_SCHEMES = ("postgresql://", "postgres://")


def open_store(location: str, data_dir: Path, *, pool_size: int = 10) -> Store:
    """The store at ``location`` (empty: the SQLite files of ``data_dir``).

    Nothing connects yet: a PostgreSQL store opens its pool on first use.

    :raises StartupError: ``location`` names no backend.
    """
    if not location:
        return SqliteStore(data_dir)
    if location.startswith(POSTGRESQL_SCHEMES):
        if pool_size < 2:
            # A maintenance transaction holds one connection and reads with another.
            raise StartupError(
                f"NOCTURNUS_STORE_POOL_SIZE must be at least 2, not {pool_size}"
            )
        # Imported here: a server on SQLite never loads the PostgreSQL driver.
        from nocturnus.store.postgresql import PostgresStore

        return PostgresStore(location, pool_size=pool_size)
    scheme = location.split("://", 1)[0] if "://" in location else location[:20]
    raise StartupError(
        f"NOCTURNUS_STORE must be empty (SQLite files in the data dir) or a "
        f"postgresql:// URL, not {scheme!r}"
    )


def describe_location(location: str, data_dir: Path) -> str:
    """Where the events live, for the start-up line: the data dir, or the PostgreSQL
    database (without its password) plus the data dir that still holds the master key."""
    if location.startswith(POSTGRESQL_SCHEMES):
        from nocturnus.store.postgresql import describe_url

        return f"store postgresql://{describe_url(location)}, data dir {data_dir.resolve()}"
    return f"data dir {data_dir.resolve()}"
