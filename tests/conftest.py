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
