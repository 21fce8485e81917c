"""Census of the docs: every declared setting and every CLI command is in the README."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from nocturnus.cli import main
from nocturnus.settings import SETTINGS

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_every_setting_is_documented(setting) -> None:
    assert f"`NOCTURNUS_{setting.name.upper()}`" in README


def _commands(group: click.Group, prefix: str = "nocturnus") -> list[str]:
    names = []
    for name, command in group.commands.items():
        names.append(f"{prefix} {name}")
        if isinstance(command, click.Group):
            names.extend(_commands(command, f"{prefix} {name}"))
    return names


@pytest.mark.parametrize("command", _commands(main))
def test_every_cli_command_is_documented(command: str) -> None:
    assert command in README
