"""``nocturnus serve``: the HTTP server (REST, MCP, admin) in the foreground."""

from __future__ import annotations

import logging
import os
import threading
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import click

from nocturnus.cli.options import data_dir_option
from nocturnus.cli.output import fail
from nocturnus.errors import NocturnusError
from nocturnus.legacy_env import report
from nocturnus.logs import configure_logging
from nocturnus.settings import Settings, load_settings

if TYPE_CHECKING:
    from sanic.worker.manager import WorkerManager

    from nocturnus.api.app import NocturnusApp


@click.command()
@click.option(
    "--host", default=None, help="Address to listen on [NOCTURNUS_HOST, 127.0.0.1]"
)
@click.option("--port", default=None, type=int, help="TCP port [NOCTURNUS_PORT, 9300]")
@click.option(
    "--workers",
    default=None,
    type=int,
    help="Server processes sharing the port and the store [NOCTURNUS_WORKERS, 1]",
)
@data_dir_option
def serve(
    host: str | None, port: int | None, workers: int | None, data_dir: Path | None
) -> None:
    """Start the HTTP server (REST, MCP, admin) until SIGINT or SIGTERM.

    Before listening it takes the data dir's lock (shared with other servers) and
    opens every database once: a wrong master key or a changed, removed or
    reordered event in a log's tail stops it with one line naming the database and
    the seq. With --workers N, N processes serve every database and tenant,
    following each other's writes through the store (README: Many processes).
    """
    from nocturnus.api.app import create_app
    from nocturnus.service.datadir import check_data_dir
    from nocturnus.store.backends import describe_location
    from nocturnus.store.dirlock import DataDirLock
    from nocturnus.store.files import private_dir

    try:
        settings = load_settings(
            {"host": host, "port": port, "workers": workers, "data_dir": data_dir}
        )
        _configure(settings)
        log = logging.getLogger("nocturnus.settings")
        for level, line in report(os.environ):  # the original's names, once
            log.log(logging.WARNING if level == "warning" else logging.INFO, line)
        private_dir(settings.data_dir)
        app = create_app(settings)  # settings errors first, before the data dir
        # held while serving, shared with other servers: offline commands that
        # rewrite the logs refuse to run beside it
        lock = DataDirLock(settings.data_dir).acquire("serve", shared=True)
        check_data_dir(settings)
    except (NocturnusError, OSError) as e:
        fail(e)
    processes = "" if settings.workers == 1 else f", {settings.workers} workers"
    listening = (
        f"Nocturnus listening on http://{settings.host}:{settings.port} "
        f"({describe_location(settings.store, settings.data_dir)}{processes})"
    )
    if settings.log_format == "json":
        logging.getLogger("nocturnus").info(listening)
    else:
        click.echo(listening)
    try:
        if settings.workers == 1:
            app.run(
                host=settings.host,
                port=settings.port,
                single_process=True,
                access_log=False,
                debug=False,
            )
        else:
            from sanic import Sanic

            Sanic.unregister_app(app)  # it checked the settings; each worker builds its own
            _serve_workers(settings)
    except NocturnusError as e:
        fail(e)
    finally:
        lock.release()


def _serve_workers(settings: Settings) -> None:
    """Sanic's worker manager: this process supervises, each worker builds its own app
    (a fresh process: nothing of this one's state is shared but the listening port)."""
    from sanic import Sanic
    from sanic.worker.loader import AppLoader

    loader = AppLoader(factory=partial(worker_app, settings))
    app = loader.load()

    @app.main_process_ready
    async def supervise(app: NocturnusApp) -> None:
        threading.Thread(
            target=_restart_failed_workers, args=(app.manager,), daemon=True,
            name="nocturnus-supervisor",
        ).start()

    app.prepare(
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        access_log=False,
        debug=False,
    )
    Sanic.serve(primary=app, app_loader=loader)


RESTART_CHECK_S = 1.0
RESTART_BACKOFF_S = 5.0


def _restart_failed_workers(manager: WorkerManager) -> None:
    """Restart a worker that died (``kill -9``, the OOM killer) while the server runs.

    Sanic's manager keeps the survivors serving but never restarts a failed worker on
    its own; this asks its monitor to, as a worker asking for its own restart would,
    at most once per RESTART_BACKOFF_S per worker (a worker that cannot start is not
    restarted in a tight loop). The new worker catches up from the store like any
    process that starts.
    """
    from sanic.worker.constants import ProcessState

    asked: dict[str, float] = {}
    while not manager._shutting_down:
        time.sleep(RESTART_CHECK_S)
        now = time.monotonic()
        for process in manager.transient_processes:
            if manager._shutting_down:
                return
            if process.state is not ProcessState.FAILED or process.is_alive():
                continue
            if now - asked.get(process.name, -RESTART_BACKOFF_S) < RESTART_BACKOFF_S:
                continue
            asked[process.name] = now
            logging.getLogger("nocturnus").warning(
                "worker %s (pid %s) died; restarting it", process.name, process.pid
            )
            manager.monitor_publisher.send(process.name)


def worker_app(settings: Settings) -> NocturnusApp:
    """The app of one worker process, logging as the CLI configured it."""
    from nocturnus.api.app import create_app

    _configure(settings)
    return create_app(settings)


def _configure(settings: Settings) -> None:
    configure_logging(settings.log_format, settings.log_level, log_file=settings.log_file)
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    for name in ("sanic.root", "sanic.server", "sanic.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
