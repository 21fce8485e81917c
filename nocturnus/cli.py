"""The ``nocturnus`` command: a thin click layer over service and store functions.

Every command prints one clear line and exits non-zero on failure, never a traceback for
an error a user can cause (bad flag, wrong key, unreadable data dir).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from nocturnus.errors import NocturnusError
from nocturnus.logs import configure_logging
from nocturnus.settings import load_settings


def _fail(error: Exception) -> None:
    click.echo(f"nocturnus: error: {error}", err=True)
    sys.exit(1)


@click.group()
@click.version_option(package_name="nocturnus")
def main() -> None:
    """Nocturnus: an event-sourced, multi-tenant logic server for AI agents."""


@main.command()
@click.option("--host", default=None, help="Address to listen on [NOCTURNUS_HOST, 127.0.0.1]")
@click.option("--port", default=None, type=int, help="TCP port [NOCTURNUS_PORT, 9300]")
@click.option(
    "--data-dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Data directory [NOCTURNUS_DATA_DIR, ./data]",
)
def serve(host: str | None, port: int | None, data_dir: Path | None) -> None:
    """Start the HTTP server (REST, MCP, admin) until SIGINT or SIGTERM."""
    from nocturnus.api.app import create_app

    try:
        settings = load_settings({"host": host, "port": port, "data_dir": data_dir})
        configure_logging(settings.log_format, settings.log_level)
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        app = create_app(settings)
    except (NocturnusError, OSError) as e:
        _fail(e)
        return
    _quiet_sanic()
    listening = (
        f"Nocturnus listening on http://{settings.host}:{settings.port} "
        f"(data dir {settings.data_dir.resolve()})"
    )
    if settings.log_format == "json":
        logging.getLogger("nocturnus").info(listening)
    else:
        click.echo(listening)
    try:
        app.run(
            host=settings.host,
            port=settings.port,
            single_process=True,
            access_log=False,
            debug=False,
        )
    except NocturnusError as e:
        _fail(e)


def _quiet_sanic() -> None:
    for name in ("sanic.root", "sanic.server", "sanic.access"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run(args: list[str] | None = None) -> Any:
    """Entry point for tests: run the CLI in-process without exiting."""
    return main.main(args=args, standalone_mode=False)
