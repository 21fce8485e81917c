"""The ``nocturnus`` command: a thin click layer over service and store functions.

One module per group of commands: :mod:`serve` (the server), :mod:`ops` (operations on
a data dir), :mod:`keys` (API keys on a stopped data dir), and the client of a running
server over HTTP: :mod:`knowledge` (tell, ask, teach, forget, context, import,
export-text), :mod:`account` (login, logout, dbs, auth) and :mod:`repl`. Each command
parses its arguments, calls a function tests can call directly, and prints the result;
shared options live in :mod:`options` (data dir) and :mod:`connection` (server), the
HTTP calls in :mod:`client`, terminal output and one-line failures in :mod:`output`.
"""

from __future__ import annotations

from typing import Any

import click

from nocturnus.cli import account, keys, knowledge, ops, repl, serve


@click.group()
@click.version_option(package_name="nocturnus")
def main() -> None:
    """Nocturnus: an event-sourced, multi-tenant logic server for AI agents."""


for command in (
    serve.serve,
    ops.replay,
    ops.verify,
    ops.snapshot,
    ops.backup,
    ops.restore,
    ops.compact,
    ops.export,
    ops.rotate_master_key,
    ops.migrate,
    keys.keys,
    # the client of a running server (HTTP)
    knowledge.tell,
    knowledge.ask,
    knowledge.teach,
    knowledge.forget,
    knowledge.context,
    knowledge.import_text,
    knowledge.export_text,
    account.login,
    account.logout,
    account.dbs,
    account.auth,
    repl.repl,
):
    main.add_command(command)


def run(args: list[str] | None = None) -> Any:
    """Entry point for tests: run the CLI in-process without exiting."""
    return main.main(args=args, standalone_mode=False)
