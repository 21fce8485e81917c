"""Fixtures of the service tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(params=["sqlite", "postgresql"])
def location(request: pytest.FixtureRequest) -> Iterator[str]:
    """Where a test's store is: the data dir's SQLite files, or a PostgreSQL database
    of its own."""
    if request.param == "sqlite":
        yield ""
        return
    from tests.pg import fresh_database

    with fresh_database() as url:
        yield url
