"""The service and API on a PostgreSQL store (issue 15): the same tests, another store.

Each test below runs an existing API test against a real server whose
``NOCTURNUS_STORE`` is a PostgreSQL database of its own (tests/pg.py): the seed's
curls, tell/ask, scopes, context, restarts, tenant deletion, and kill -9 under load.
Then what only PostgreSQL has: one-line start-up errors and ``nocturnus migrate``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.api import test_context as context_tests
from tests.api import test_crash as crash_tests
from tests.api import test_knowledge as knowledge_tests
from tests.api import test_restart as restart_tests
from tests.api import test_scopes as scope_tests
from tests.api import test_seed as seed_tests
from tests.server import TEST_MASTER_KEY, Server


def pg_server(data_dir: Path, url: str, **env: str) -> Server:
    return Server(data_dir, env={"NOCTURNUS_STORE": url, **env})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server on PostgreSQL for this module's shared-server tests."""
    from tests.pg import fresh_database

    with fresh_database() as url:
        srv = pg_server(tmp_path_factory.mktemp("pg") / "data", url).start()
        yield srv
        srv.stop()


@pytest.fixture
def fresh_server(tmp_path: Path, postgresql_url: str) -> Iterator[Server]:
    srv = pg_server(tmp_path / "data", postgresql_url)
    yield srv
    if srv.process is not None:
        srv.stop()


@pytest.fixture
def tenant() -> str:
    return "t_" + uuid.uuid4().hex[:12]


def test_seed_databases_and_tenants(server: Server) -> None:
    seed_tests.test_create_and_list_databases(server)
    seed_tests.test_tenants_see_only_their_own_facts(server)
    seed_tests.test_tenant_management_api(server)


def test_tell_and_ask(server: Server, tenant: str) -> None:
    knowledge_tests.test_grandparent_example_from_the_sdk_readme(server, tenant)
    knowledge_tests.test_conflict_strategies(server, "c" + tenant)
    knowledge_tests.test_atomic_bulk_is_all_or_nothing(server, "b" + tenant)
    knowledge_tests.test_database_rules_apply_to_every_tenant(server)


def test_scopes(server: Server, tenant: str) -> None:
    scope_tests.test_fork_isolation_and_scoped_questions(server, tenant)
    scope_tests.test_inference_never_joins_across_scopes(server, "i" + tenant)
    scope_tests.test_context_windows_follow_forks_and_deletes(server, "w" + tenant)


def test_the_seed_scope_curls(fresh_server: Server) -> None:
    scope_tests.test_the_seed_scope_curls_work_as_written(fresh_server)


def test_context(server: Server, tenant: str) -> None:
    context_tests.test_seed_context_curls(server)
    context_tests.test_identical_requests_give_identical_bytes(server, tenant, "predicate")
    context_tests.test_tenant_deletion_forgets_sessions(server, "d" + tenant)


def test_restart_gives_identical_answers(fresh_server: Server) -> None:
    restart_tests.test_restart_gives_identical_answers(fresh_server)


def test_restart_gives_identical_scope_answers(fresh_server: Server) -> None:
    scope_tests.test_restart_gives_identical_scope_answers(fresh_server)


def test_tenant_deletion_shreds_in_postgresql(fresh_server: Server, postgresql_url: str) -> None:
    """PostgreSQL sees only ciphertext, and a deleted tenant's key is gone from it."""
    fresh_server.start()
    secret = "ZEBRA-pg-plaintext-sentinel"
    r = fresh_server.request(
        "POST", "/tell", tenant="gone", json={"predicate": "likes", "args": [secret]}
    )
    assert r.status_code == 200, r.text
    with psycopg.connect(postgresql_url) as conn:
        dump = b"".join(
            bytes(row[0])
            for row in conn.execute(
                "SELECT convert_to(string_agg(t::text, ''), 'UTF8') FROM"
                " nocturnus_default.events t"
            )
        )
        assert secret.encode() not in dump and b"ZEBRA" not in dump
        (live,) = conn.execute(
            "SELECT count(*) FROM nocturnus_default.data_keys"
            " WHERE tenant = 'gone' AND wrapped IS NOT NULL"
        ).fetchone()
        assert live == 1
    r = fresh_server.request("DELETE", "/admin/databases/default/tenants/gone")
    assert r.status_code == 200, r.text
    r = fresh_server.request("POST", "/query", tenant="gone", json={"predicate": "likes", "args": ["?x"]})
    assert r.json()["results"] == []
    with psycopg.connect(postgresql_url) as conn:
        (live,) = conn.execute(
            "SELECT count(*) FROM nocturnus_default.data_keys"
            " WHERE tenant = 'gone' AND wrapped IS NOT NULL"
        ).fetchone()
        assert live == 0
    fresh_server.stop()
    fresh_server.start()
    r = fresh_server.request("POST", "/query", tenant="gone", json={"predicate": "likes", "args": ["?x"]})
    assert r.json()["results"] == []


def test_kill_9_under_load_loses_no_acknowledged_write(
    tmp_path: Path, postgresql_url: str
) -> None:
    crash_tests.kill_9_under_load(
        pg_server(tmp_path / "data", postgresql_url, NOCTURNUS_SNAPSHOT_EVERY="40")
    )


# -- what only PostgreSQL has -------------------------------------------------------


def serve(data_dir: Path, store: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ, "NOCTURNUS_MASTER_KEY": TEST_MASTER_KEY, "NOCTURNUS_STORE": store,
        **extra,
    }
    return subprocess.run(
        [sys.executable, "-m", "nocturnus", "serve", "--port", "1", "--data-dir", str(data_dir)],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )


@pytest.mark.parametrize(
    ("store", "pool", "says"),
    [
        ("postgresql://postgres@127.0.0.1:1/postgres", "10", "it is unreachable"),
        ("postgresql://nobody_at_all@127.0.0.1:5432/postgres", "10", "refused the credentials"),
        ("postgresql://postgres@127.0.0.1:5432/noct_missing_db", "10", "does not exist"),
        ("mysql://127.0.0.1/x", "10", "must be empty"),
        ("postgresql://postgres@127.0.0.1:5432/postgres", "1", "at least 2"),
    ],
)
def test_start_up_errors_are_one_line(tmp_path: Path, store: str, pool: str, says: str) -> None:
    from tests.pg import require

    require()
    result = serve(tmp_path / "data", store, NOCTURNUS_STORE_POOL_SIZE=pool)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nocturnus: error: "), result.stderr
    assert says in lines[0], lines[0]
    assert "Traceback" not in result.stderr


def test_a_pending_migration_stops_the_start_until_migrate(
    tmp_path: Path, postgresql_url: str
) -> None:
    server = pg_server(tmp_path / "data", postgresql_url).start()
    server.stop()
    with psycopg.connect(postgresql_url, autocommit=True) as conn:
        conn.execute("DELETE FROM nocturnus_default.schema_migrations")
        conn.execute("DROP TABLE nocturnus_default.compacted")
        conn.execute("DROP TABLE nocturnus_default.snapshot_parts, nocturnus_default.snapshots,"
                     " nocturnus_default.meta, nocturnus_default.data_keys,"
                     " nocturnus_default.events")
    result = serve(tmp_path / "data", postgresql_url)
    assert result.returncode == 1
    assert "needs migration 0001_events: run `nocturnus migrate`" in result.stderr
    env = {**os.environ, "NOCTURNUS_MASTER_KEY": TEST_MASTER_KEY, "NOCTURNUS_STORE": postgresql_url}
    listed = subprocess.run(
        [sys.executable, "-m", "nocturnus", "migrate", "--list", "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "default: 0001_events pending" in listed.stdout
    done = subprocess.run(
        [sys.executable, "-m", "nocturnus", "migrate", "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "default: applied 0001_events" in done.stdout


def test_a_sql_ascii_database_starts_again_and_keeps_text(tmp_path: Path) -> None:
    """A database made by initdb in the C locale is SQL_ASCII: its text must still come
    back as text (it came back as bytes, and the second start refused the "edited"
    migrations). Found bringing up ops/compose.yaml."""
    from tests.pg import fresh_database

    with fresh_database(encoding="SQL_ASCII") as url:
        for _ in range(2):
            server = pg_server(tmp_path / "data", url).start()
            told = server.request("POST", "/tell", tenant="acme",
                                  json={"predicate": "plan", "args": ["naïve ✓"]})
            assert told.status_code == 200, told.text
            answer = server.request("POST", "/ask", tenant="acme",
                                    json={"predicate": "plan", "args": ["?p"]})
            assert answer.json()["bindings"] == [{"p": "naïve ✓"}]
            assert server.stop() == 0


def test_operations_on_a_postgresql_store(tmp_path: Path, postgresql_url: str) -> None:
    """verify, export, backup, restore (into SQLite, and back), compact, replay."""
    from click.testing import CliRunner

    from nocturnus.cli import main

    def cli(*args: str, store: str = postgresql_url, data_dir: Path = tmp_path / "data") -> str:
        result = CliRunner(
            env={"NOCTURNUS_MASTER_KEY": TEST_MASTER_KEY, "NOCTURNUS_STORE": store}
        ).invoke(main, [*args, "--data-dir", str(data_dir)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    server = pg_server(tmp_path / "data", postgresql_url).start()
    try:
        restart_tests.populate(server)
        server.request("POST", "/tell", tenant="gone", json={"predicate": "p", "args": [1]})
        assert server.request("DELETE", "/admin/databases/default/tenants/gone").status_code == 200
    finally:
        server.stop()
    assert "default: OK" in cli("verify")
    exported = cli("export", "--db", "default", "--tenant", "acme")
    assert '"predicate":"parent"' in exported
    assert "replayed" in cli("replay", "--db", "default", "--workers", "1")
    cli("backup", "--db", "default", "--out", str(tmp_path / "default.bak"))
    sqlite_dir = tmp_path / "sqlite-data"
    assert "restored database 'default'" in cli(
        "restore", "--in", str(tmp_path / "default.bak"), store="", data_dir=sqlite_dir
    )
    assert cli("export", "--db", "default", "--tenant", "acme", store="", data_dir=sqlite_dir) == exported
    assert "dropped 2 events" in cli("compact", "--db", "default")
    assert "default: OK" in cli("verify", "--db", "default")
    assert cli("export", "--db", "default", "--tenant", "acme") == exported
    replaced = cli("restore", "--in", str(tmp_path / "default.bak"), "--replace")
    assert "replaced database 'default'" in replaced
    assert cli("export", "--db", "default", "--tenant", "acme") == exported
    assert "up to date" in cli("migrate")
