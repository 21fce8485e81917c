"""The migration runner: order, idempotence, and refusing edited or unknown history."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from nocturnus.store import migrate
from nocturnus.store.errors import MigrationError
from nocturnus.store.sqlite import applied as applied_migrations
from nocturnus.store.sqlite import apply_migrations


def write(directory: Path, name: str, sql: str) -> None:
    directory.mkdir(exist_ok=True)
    (directory / name).write_text(sql)


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    c = sqlite3.connect(str(tmp_path / "m.db"), isolation_level=None)
    yield c
    c.close()


@pytest.mark.parametrize("backend", migrate.BACKENDS)
def test_repo_migrations_are_found(backend: str) -> None:
    found = migrate.discover(migrate.migrations_dir(backend))
    assert found[0].version == 1 and found[0].name == "events"
    assert migrate.MIGRATIONS_ROOT.name == "migrations"


def test_apply_in_order_and_rerun_is_a_no_op(
    tmp_path: Path, conn: sqlite3.Connection
) -> None:
    d = tmp_path / "migrations"
    write(d, "0001_a.sql", "CREATE TABLE a (x INTEGER);\n-- a comment\n")
    write(
        d,
        "0002_b.sql",
        "CREATE TABLE b (x INTEGER);\n"
        "CREATE TRIGGER b_t AFTER INSERT ON b BEGIN\n  INSERT INTO a VALUES (new.x);\nEND;\n",
    )
    applied = apply_migrations(conn, migrate.discover(d))
    assert [m.version for m in applied] == [1, 2]
    assert apply_migrations(conn, migrate.discover(d)) == []
    conn.execute("INSERT INTO b VALUES (5)")
    assert conn.execute("SELECT x FROM a").fetchall() == [(5,)]
    status = migrate.status(applied_migrations(conn), migrate.discover(d))
    assert [(s.version, s.applied_ts_ms is not None) for s in status] == [
        (1, True),
        (2, True),
    ]


def test_a_failing_migration_leaves_no_trace(
    tmp_path: Path, conn: sqlite3.Connection
) -> None:
    d = tmp_path / "migrations"
    write(d, "0001_a.sql", "CREATE TABLE a (x INTEGER);")
    write(d, "0002_bad.sql", "CREATE TABLE c (x INTEGER);\nTHIS IS NOT SQL;")
    with pytest.raises(MigrationError):
        apply_migrations(conn, migrate.discover(d))
    tables = {
        r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
    }
    assert "a" in tables and "c" not in tables
    assert set(applied_migrations(conn)) == {1}


def test_edited_migration_is_refused(tmp_path: Path, conn: sqlite3.Connection) -> None:
    d = tmp_path / "migrations"
    write(d, "0001_a.sql", "CREATE TABLE a (x INTEGER);")
    apply_migrations(conn, migrate.discover(d))
    write(d, "0001_a.sql", "CREATE TABLE a (x INTEGER, y TEXT);")
    with pytest.raises(MigrationError, match="edited"):
        apply_migrations(conn, migrate.discover(d))


def test_unknown_newer_migration_is_refused(
    tmp_path: Path, conn: sqlite3.Connection
) -> None:
    d = tmp_path / "migrations"
    write(d, "0001_a.sql", "CREATE TABLE a (x INTEGER);")
    write(d, "0002_b.sql", "CREATE TABLE b (x INTEGER);")
    apply_migrations(conn, migrate.discover(d))
    (d / "0002_b.sql").unlink()
    with pytest.raises(MigrationError, match="newer"):
        apply_migrations(conn, migrate.discover(d))


@pytest.mark.parametrize(
    "names",
    [
        ["1_a.sql"],
        ["0001_a.sql", "0003_c.sql"],
        ["0001_a.sql", "0001_b.sql"],
        ["0001_A.sql"],
    ],
)
def test_badly_numbered_files_are_refused(tmp_path: Path, names: list[str]) -> None:
    d = tmp_path / "migrations"
    for name in names:
        write(d, name, "SELECT 1;")
    with pytest.raises(MigrationError):
        migrate.discover(d)


def test_installed_copy_of_the_migrations_matches_the_checkout() -> None:
    """A wheel ships migrations/ as the data package nocturnus_migrations (issue 9 note)."""
    import nocturnus_migrations

    shipped = Path(nocturnus_migrations.__file__).resolve().parent
    for backend in migrate.BACKENDS:
        assert sorted(p.name for p in (shipped / backend).glob("*.sql")) == sorted(
            p.name for p in migrate.migrations_dir(backend).glob("*.sql")
        )
