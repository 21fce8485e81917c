"""Two servers on one store, as real processes (issue 16): two ``nocturnus serve`` on one
SQLite data dir (what ``--workers 2`` runs), or two nodes on a PostgreSQL database of
their own."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

from tests.server import Server


def two_servers(
    backend: str, tmp_path: Path, env: dict[str, str], *, graceful: bool = False
) -> Iterator[tuple[Server, Server]]:
    """Two running servers on one store of ``backend`` ("sqlite" or "postgresql"), both
    with ``env``; see :func:`running` for ``graceful``."""
    if backend == "sqlite":
        pair = (Server(tmp_path / "data", env=env), Server(tmp_path / "data", env=env))
        yield from running(pair, graceful=graceful)
        return
    from tests.pg import fresh_database

    with fresh_database() as url:
        env = {**env, "NOCTURNUS_STORE": url}
        pair = (Server(tmp_path / "a", env=env), Server(tmp_path / "b", env=env))
        yield from running(pair, graceful=graceful)


def running(
    pair: tuple[Server, Server], *, graceful: bool = False
) -> Iterator[tuple[Server, Server]]:
    """``pair`` started, then stopped: killed (``SIGKILL``), or when ``graceful`` stopped
    with ``SIGTERM`` and checked to have logged no traceback."""
    pair[0].start()
    pair[1].start()
    try:
        yield pair
    finally:
        for server in pair:
            if server.process is not None:
                server.stop(signal.SIGTERM if graceful else signal.SIGKILL)
        if graceful:
            for server in pair:
                assert "Traceback" not in server.output()
