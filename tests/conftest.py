from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server import Server


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One shared server for API tests; tests isolate themselves with unique tenants."""
    srv = Server(tmp_path_factory.mktemp("shared") / "data").start()
    yield srv
    srv.stop()


@pytest.fixture
def tenant() -> str:
    return "t_" + uuid.uuid4().hex[:12]


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Server]:
    """A server of its own, for restart and lifecycle tests."""
    srv = Server(tmp_path / "data")
    yield srv
    if srv.process is not None:
        srv.stop()


ADMIN_KEY = "test-admin-key-0123456789abcdef"


@pytest.fixture(scope="session")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A shared server with auth on and ``ADMIN_KEY`` as its bootstrap admin key (issue 7).

    Rate limits and the failed-auth lockout are off here (their own tests use their own
    servers), so tests sharing it cannot lock each other out.
    """
    env = {
        "NOCTURNUS_AUTH": "on",
        "NOCTURNUS_ADMIN_KEY": ADMIN_KEY,
        "NOCTURNUS_AUTH_FAILURES_PER_MINUTE": "0",
        "NOCTURNUS_RATE_LIMIT_READER_RPM": "0",
        "NOCTURNUS_RATE_LIMIT_WRITER_RPM": "0",
        "NOCTURNUS_RATE_LIMIT_ADMIN_RPM": "0",
    }
    srv = Server(tmp_path_factory.mktemp("auth") / "data", env=env).start()
    yield srv
    srv.stop()


@pytest.fixture
def postgresql_url() -> Iterator[str]:
    """A PostgreSQL database of this test's own (see tests/pg.py)."""
    from tests.pg import fresh_database

    with fresh_database() as url:
        yield url


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say once why the PostgreSQL tests were skipped (the README's plain run)."""
    from tests.pg import SKIP_REASON

    skipped = terminalreporter.stats.get("skipped", [])
    reasons = {
        str(report.longrepr[2]) if isinstance(report.longrepr, tuple) else ""
        for report in skipped
    }
    for reason in sorted(r for r in reasons if SKIP_REASON in r):
        terminalreporter.write_line(reason.removeprefix("Skipped: "))
