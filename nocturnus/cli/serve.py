"""``nocturnus serve``: the HTTP server (REST, MCP, admin) in the foreground."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from nocturnus.cli.options import data_dir_option
from nocturnus.cli.output import fail
from nocturnus.errors import NocturnusError
from nocturnus.logs import configure_logging
from nocturnus.settings import load_settings


@click.command()
@click.option(
    "--host", default=None, help="Address to listen on [NOCTURNUS_HOST, 127.0.0.1]"
)
@click.option("--port", default=None, type=int, help="TCP port [NOCTURNUS_PORT, 9300]")
@data_dir_option
def serve(host: str | None, port: int | None, data_dir: Path | None) -> None:
    """Start the HTTP server (REST, MCP, admin) until SIGINT or SIGTERM.

    Before listening it takes the data dir's lock and opens every database once:
    a wrong master key or a changed, removed or reordered event in a log's tail
    stops it with one line naming the database and the seq.
    """
    from nocturnus.api.app import create_app
    from nocturnus.service.datadir import check_data_dir
    from nocturnus.store.backends import describe_location
    from nocturnus.store.dirlock import DataDirLock
    from nocturnus.store.files import private_dir

    try:
        settings = load_settings({"host": host, "port": port, "data_dir": data_dir})
        configure_logging(settings.log_format, settings.log_level)
        private_dir(settings.data_dir)
        logging.basicConfig(
            level=settings.log_level,
            format="%(asctime)s %(levelname)s %(name)s %(message)s",
        )
        app = create_app(settings)  # settings errors first, before the data dir
        # held while serving: offline commands that write refuse to run beside it
        lock = DataDirLock(settings.data_dir).acquire("serve")
        check_data_dir(settings)
    except (NocturnusError, OSError) as e:
        fail(e)
    _quiet_sanic()
    listening = (
        f"Nocturnus listening on http://{settings.host}:{settings.port} "
        f"({describe_location(settings.store, settings.data_dir)})"
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
        fail(e)
    finally:
        lock.release()


def _quiet_sanic() -> None:
    for name in ("sanic.root", "sanic.server", "sanic.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
