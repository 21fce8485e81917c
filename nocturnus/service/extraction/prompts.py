"""The prompts, read from versioned files shipped in the package (``prompts/*.md``).

A prompt file is never edited once released: a change is a new file (``extract.v2.md``)
and a new :data:`EXTRACT` / :data:`SYNTHESIZE` name here, so the ``prompt`` recorded in
a fact's provenance always names the exact instructions it was extracted with.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

EXTRACT = "extract.v1"
SYNTHESIZE = "synthesize.v1"


@dataclass(frozen=True, slots=True)
class Prompt:
    """A prompt's versioned name (``extract.v1``) and its text."""

    name: str
    text: str


@cache
def prompt(name: str) -> Prompt:
    """The prompt file ``prompts/<name>.md``.

    :raises FileNotFoundError: no such prompt in the package (a packaging bug).
    """
    path = resources.files("nocturnus.service.extraction").joinpath("prompts", f"{name}.md")
    return Prompt(name, path.read_text(encoding="utf-8"))
