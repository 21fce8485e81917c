"""The options every client command shares, and where their values come from.

Each of ``--url``, ``--key``, ``--database`` and ``--tenant`` is taken from the flag,
else its environment variable (``NOCTURNUS_URL``, ``NOCTURNUS_API_KEY``,
``NOCTURNUS_DATABASE``, ``NOCTURNUS_TENANT``; the original's ``NOCTURNUSAI_*`` names
too), else the saved login (``nocturnus login``), else the default (the local server,
database and tenant ``default``). The saved key is sent only to the saved URL, never
to another server named by ``--url``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from nocturnus.cli.client import DEFAULT_URL, Client
from nocturnus.cli.output import failing_cleanly
from nocturnus.cli.profile import Login, load_login

DEFAULT_NAME = "default"


@dataclass(frozen=True, slots=True)
class Remote:
    """What a client command works with: the server's client and the output wanted."""

    client: Client
    as_json: bool


def same_server(a: str, b: str) -> bool:
    """Whether two URLs name the same server (a trailing ``/`` aside)."""
    return a.rstrip("/") == b.rstrip("/")


def resolve(
    url: str | None,
    key: str | None,
    database: str | None,
    tenant: str | None,
    login: Login | None,
) -> Client:
    """The client the flags/environment (given) and the saved ``login`` describe."""
    saved = login or Login(url=DEFAULT_URL)
    url = url or saved.url
    if key is None and same_server(saved.url, url):
        key = saved.key
    return Client(
        url=url,
        key=key or None,
        database=database or saved.database or DEFAULT_NAME,
        tenant=tenant or saved.tenant or DEFAULT_NAME,
    )


CLIENT_OPTIONS = (
    click.option(
        "--url",
        envvar=["NOCTURNUS_URL", "NOCTURNUSAI_URL"],
        default=None,
        help=f"Server URL [NOCTURNUS_URL, the saved login, {DEFAULT_URL}]",
    ),
    click.option(
        "--key",
        envvar=["NOCTURNUS_API_KEY", "NOCTURNUSAI_API_KEY"],
        default=None,
        help="API key [NOCTURNUS_API_KEY, the saved login's key for its URL]",
    ),
    click.option(
        "--database",
        "-d",
        envvar=["NOCTURNUS_DATABASE", "NOCTURNUSAI_DATABASE"],
        default=None,
        help="Database [NOCTURNUS_DATABASE, the saved login, default]",
    ),
    click.option(
        "--tenant",
        "-t",
        envvar=["NOCTURNUS_TENANT", "NOCTURNUSAI_TENANT"],
        default=None,
        help="Tenant [NOCTURNUS_TENANT, the saved login, default]",
    ),
    click.option(
        "--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of text"
    ),
)


def client_command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Give a command the shared options; it receives a :class:`Remote` first.

    A refusal of the server, an unreachable server or a bad saved login ends the
    command with one ``nocturnus: error:`` line and status 1.
    """

    @functools.wraps(fn)
    def run(
        *args: Any,
        url: str | None,
        key: str | None,
        database: str | None,
        tenant: str | None,
        as_json: bool,
        **kwargs: Any,
    ) -> Any:
        with failing_cleanly():
            client = resolve(url, key, database, tenant, load_login())
            return fn(Remote(client, as_json), *args, **kwargs)

    command: Callable[..., Any] = run
    for option in reversed(CLIENT_OPTIONS):
        command = option(command)
    return command
