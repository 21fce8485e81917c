"""The ``nocturnus`` command: a thin click layer over service and store functions.

One module per group of commands: :mod:`serve` (the server), :mod:`ops` (operations on
a data dir), :mod:`keys` (API keys on a stopped data dir). Each command parses its
arguments, calls a function tests can call directly, and prints the result; shared
options live in :mod:`options`, terminal output and one-line failures in :mod:`output`.
"""

from __future__ import annotations

from typing import Any

import click

from nocturnus.cli import keys, ops, serve


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
):
    main.add_command(command)


def run(args: list[str] | None = None) -> Any:
    """Entry point for tests: run the CLI in-process without exiting."""
    return main.main(args=args, standalone_mode=False)
