"""Options shared by the commands that work on a data dir, declared once."""

from __future__ import annotations

from pathlib import Path

import click

from nocturnus.settings import Settings, load_settings

data_dir_option = click.option(
    "--data-dir",
    default=None,
    type=click.Path(file_okay=False, path_type=Path),
    help="Data directory [NOCTURNUS_DATA_DIR, ./data]",
)
"""``--data-dir``: overrides ``NOCTURNUS_DATA_DIR`` for one command."""


def data_dir_settings(data_dir: Path | None) -> Settings:
    """The settings with ``--data-dir`` applied (None keeps env/default)."""
    return load_settings({"data_dir": data_dir})
