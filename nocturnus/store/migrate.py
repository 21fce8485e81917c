"""Numbered SQL migrations, applied at open, each in one transaction with its row.

Files are ``migrations/NNNN_name.sql`` at the repository root. ``schema_migrations``
records version, name, the file's sha256 and when it was applied. Running the
migrations again does nothing; an applied migration whose file has changed, or a
database that knows migrations this code does not, is refused (STYLE rule 11).
"""

from __future__ import annotations

import hashlib
import re
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from nocturnus.store.errors import MigrationError, storage_error


def _migrations_dir() -> Path:
    """``migrations/`` of a source checkout, else the copy a wheel ships as a package."""
    checkout = Path(__file__).resolve().parents[2] / "migrations"
    if checkout.is_dir():
        return checkout
    import nocturnus_migrations

    return Path(nocturnus_migrations.__file__).resolve().parent


MIGRATIONS_DIR = _migrations_dir()
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version       INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL,
    sha256        TEXT    NOT NULL,
    applied_ts_ms INTEGER NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class MigrationStatus:
    version: int
    name: str
    applied_ts_ms: int | None


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
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
                f"migrations must be numbered 0001, 0002, ... without gaps or duplicates; "
                f"found {migration.version:04d}_{migration.name} where {expected:04d} was expected"
            )
    if not found:
        raise MigrationError(f"no migrations found in {directory}")
    return found


def split_statements(sql: str) -> list[str]:
    """Split a script into complete statements (triggers' ``BEGIN ... END`` included)."""
    statements: list[str] = []
    pending = ""
    for line in sql.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            if _has_code(pending):
                statements.append(pending.strip())
            pending = ""
    if _has_code(pending):
        raise MigrationError(
            f"migration ends with an incomplete statement: {pending.strip()[:60]!r}"
        )
    return statements


def _has_code(sql: str) -> bool:
    return any(
        line.strip() and not line.strip().startswith("--") for line in sql.splitlines()
    )


def applied(conn: sqlite3.Connection) -> dict[int, tuple[str, str, int]]:
    """Return version -> (name, sha256, applied_ts_ms) of the applied migrations."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    ).fetchone()
    if exists is None:
        return {}
    rows = conn.execute(
        "SELECT version, name, sha256, applied_ts_ms FROM schema_migrations"
    )
    return {v: (n, h, t) for v, n, h, t in rows}


def check(conn: sqlite3.Connection, migrations: list[Migration]) -> list[Migration]:
    """Return the pending migrations after checking the applied ones against the files.

    :raises MigrationError: the file of an applied migration changed, or the database
        has a migration this code does not know (it was written by a newer server).
    """
    done = applied(conn)
    known = {m.version: m for m in migrations}
    for version, (name, sha, _) in sorted(done.items()):
        m = known.get(version)
        if m is None:
            raise MigrationError(
                f"the database has migration {version:04d}_{name}, which this server does "
                "not know: it was written by a newer version"
            )
        if m.sha256 != sha:
            raise MigrationError(
                f"migration {version:04d}_{m.name}.sql was edited after it was applied; "
                "shipped migrations are never edited, add a new one instead"
            )
    return [m for m in migrations if m.version not in done]


def apply_migrations(
    conn: sqlite3.Connection, migrations: list[Migration] | None = None
) -> list[Migration]:
    """Apply the pending migrations, each in one transaction with its row; return them.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Safe against a
    second process migrating the same file at the same time: the pending list is
    re-read under the write lock.
    """
    migrations = discover() if migrations is None else migrations
    applied_now: list[Migration] = []
    try:
        conn.execute(_CREATE_TABLE)
        if not check(conn, migrations):
            return applied_now
        for m in migrations:
            conn.execute("BEGIN IMMEDIATE")
            try:
                if m.version in applied(conn):
                    conn.execute("ROLLBACK")
                    continue
                for statement in split_statements(m.sql):
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, sha256, applied_ts_ms)"
                    " VALUES (?, ?, ?, ?)",
                    (m.version, m.name, m.sha256, int(time.time() * 1000)),
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            applied_now.append(m)
    except sqlite3.Error as e:
        raise MigrationError(
            f"cannot apply migrations: {storage_error(e, 'migrating').message}"
        ) from e
    return applied_now


def status(
    conn: sqlite3.Connection, migrations: list[Migration] | None = None
) -> list[MigrationStatus]:
    """List every known migration with when it was applied (read-only; ``migrate --list``)."""
    migrations = discover() if migrations is None else migrations
    try:
        done = applied(conn)
    except sqlite3.Error as e:
        raise storage_error(e, "listing migrations") from e
    return [
        MigrationStatus(
            m.version, m.name, done[m.version][2] if m.version in done else None
        )
        for m in migrations
    ]
