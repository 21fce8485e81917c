"""Numbered SQL migrations, one directory per backend, checked the same way for both.

Files are ``migrations/<backend>/NNNN_name.sql`` at the repository root (``sqlite``,
``postgresql``). Each backend records version, name, the file's sha256 and when it was
applied in its own ``schema_migrations`` table and applies each migration in one
transaction with its row (:mod:`nocturnus.store.sqlite`,
:mod:`nocturnus.store.postgresql`). Running them again does nothing; an applied
migration whose file has changed, or a store that knows migrations this code does not,
is refused (STYLE rule 11). This module holds what both share: finding the files and
checking the applied history against them.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from nocturnus.store.errors import MigrationError


def _migrations_root() -> Path:
    """``migrations/`` of a source checkout, else the copy a wheel ships as a package."""
    checkout = Path(__file__).resolve().parents[2] / "migrations"
    if checkout.is_dir():
        return checkout
    import nocturnus_migrations

    return Path(nocturnus_migrations.__file__).resolve().parent


MIGRATIONS_ROOT = _migrations_root()
BACKENDS = ("sqlite", "postgresql")
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


@dataclass(frozen=True, slots=True)
class Applied:
    """A row of ``schema_migrations``."""

    name: str
    sha256: str
    applied_ts_ms: int


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    version: int
    name: str
    applied_ts_ms: int | None


def migrations_dir(backend: str) -> Path:
    """The directory of ``backend``'s migrations."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}")
    return MIGRATIONS_ROOT / backend


def discover(directory: Path) -> list[Migration]:
    """Return the migrations in ``directory`` in version order.

    :raises MigrationError: a misnamed ``.sql`` file, a duplicate or a missing version.
    """
    found: list[Migration] = []
    try:
        paths = sorted(directory.glob("*.sql"))
    except OSError as e:
        raise MigrationError(f"cannot list migrations in {directory}: {e}") from e
    for path in paths:
        m = _NAME.match(path.name)
        if m is None:
            raise MigrationError(
                f"migration file {path.name} is not named NNNN_name.sql"
            )
        found.append(Migration(int(m.group(1)), m.group(2), path.read_text("utf-8")))
    for expected, migration in enumerate(found, start=1):
        if migration.version != expected:
            raise MigrationError(
                "migrations must be numbered 0001, 0002, ... without gaps or "
                f"duplicates; found {migration.label} where {expected:04d} was expected"
            )
    if not found:
        raise MigrationError(f"no migrations found in {directory}")
    return found


def pending(
    done: Mapping[int, Applied], migrations: list[Migration]
) -> list[Migration]:
    """Return the migrations not applied yet, after checking the applied ones.

    :raises MigrationError: the file of an applied migration changed, or the store has
        a migration this code does not know (it was written by a newer server).
    """
    known = {m.version: m for m in migrations}
    for version, applied in sorted(done.items()):
        m = known.get(version)
        if m is None:
            raise MigrationError(
                f"the database has migration {version:04d}_{applied.name}, which this "
                "server does not know: it was written by a newer version"
            )
        if m.sha256 != applied.sha256:
            raise MigrationError(
                f"migration {m.label}.sql was edited after it was applied; shipped "
                "migrations are never edited, add a new one instead"
            )
    return [m for m in migrations if m.version not in done]


def status(
    done: Mapping[int, Applied], migrations: list[Migration]
) -> list[MigrationStatus]:
    """Every known migration with when it was applied (read-only; ``migrate --list``)."""
    return [
        MigrationStatus(
            m.version,
            m.name,
            done[m.version].applied_ts_ms if m.version in done else None,
        )
        for m in migrations
    ]
