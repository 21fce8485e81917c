"""How every ``nocturnus`` command talks to the terminal: one-line failures, progress.

A command a user can make fail (bad flag, wrong key, unreadable data dir, broken chain,
unreachable server) prints one ``nocturnus: error: ...`` line and exits 1, never a
traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click

from nocturnus.errors import NocturnusError
from nocturnus.progress import Progress


def fail(error: Exception | str) -> NoReturn:
    """Print the first line of ``error`` on stderr and exit 1."""
    message = error if isinstance(error, str) else str(error)
    first = message.splitlines()[0] if message.strip() else repr(error)
    click.echo(f"nocturnus: error: {first}", err=True)
    sys.exit(1)


@contextmanager
def failing_cleanly() -> Iterator[None]:
    """Turn the errors a user can cause into one line and exit status 1."""
    try:
        yield
    except (NocturnusError, OSError) as e:
        fail(e)


@contextmanager
def progress_bar(label: str) -> Iterator[Progress]:
    """A click progress bar on stderr, drawn once the total is known (TTY only)."""
    bar: Any = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if not sys.stderr.isatty():
            return
        if bar is None:
            bar = click.progressbar(length=max(total, 1), label=label, file=sys.stderr)
            bar.__enter__()
        bar.update(max(0, min(done, total) - bar.pos))

    try:
        yield update
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
