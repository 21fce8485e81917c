"""A PostgreSQL of their own for tests: a uniquely named database, dropped afterwards.

The server is ``NOCTURNUS_TEST_POSTGRESQL`` (default: the local one, user postgres).
When it cannot be reached the PostgreSQL tests are skipped with the reason, printed
once in the summary, unless ``NOCTURNUS_TEST_REQUIRE_POSTGRESQL=1`` (``.ci/run`` sets
it): then each of them fails, loudly.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

ADMIN_URL = os.environ.get(
    "NOCTURNUS_TEST_POSTGRESQL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REQUIRED = os.environ.get("NOCTURNUS_TEST_REQUIRE_POSTGRESQL") == "1"
SKIP_REASON = "PostgreSQL tests skipped"


@functools.cache
def unavailable() -> str | None:
    """Why the test PostgreSQL cannot be used, or None when it can."""
    try:
        psycopg.connect(ADMIN_URL, connect_timeout=3).close()
    except psycopg.Error as e:
        first = " ".join(str(e).split())[:200]
        return f"{SKIP_REASON}: no PostgreSQL at {ADMIN_URL} ({first})"
    return None


def require() -> None:
    """Skip (or, when required, fail) the calling test without a PostgreSQL."""
    reason = unavailable()
    if reason is None:
        return
    if REQUIRED:
        pytest.fail(f"NOCTURNUS_TEST_REQUIRE_POSTGRESQL=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@contextmanager
def fresh_database(encoding: str | None = None) -> Iterator[str]:
    """A new, empty PostgreSQL database; yields its URL and drops it afterwards.

    ``encoding`` (e.g. ``SQL_ASCII``, what initdb in the C locale makes) instead of the
    server's default.
    """
    require()
    name = f"noct_test_{uuid.uuid4().hex[:16]}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if encoding is not None:
        create = sql.SQL("{} ENCODING {} LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0").format(
            create, sql.Literal(encoding)
        )
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(create)
    try:
        yield _with_dbname(ADMIN_URL, name)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)
                )
            )


def _with_dbname(url: str, name: str) -> str:
    """``url`` naming database ``name`` instead (kept a URL: NOCTURNUS_STORE is one)."""
    parts = conninfo_to_dict(url)
    user = parts.get("user", "")
    password = f":{parts['password']}" if parts.get("password") else ""
    auth = f"{user}{password}@" if user else ""
    return f"postgresql://{auth}{parts.get('host', '127.0.0.1')}:{parts.get('port', 5432)}/{name}"
