"""How every ``nocturnus`` command talks to the terminal: one-line failures, progress,
tables for people and JSON for scripts.

A command a user can make fail (bad flag, wrong key, unreadable data dir, broken chain,
unreachable server) prints one ``nocturnus: error: ...`` line and exits 1, never a
traceback.
"""

from __future__ import annotations

import json
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


def table(columns: list[str], rows: list[list[Any]]) -> str:
    """Rows as aligned text columns under a header, for people (``--json`` is for
    scripts). ``None`` shows as ``-``; other values as their text."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def print_json(data: Any) -> None:
    """``data`` as indented JSON on stdout (what ``--json`` prints)."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False))
