"""Extraction without an LLM: the lines of the text that are facts in the text syntax.

The original product's fallback reads lines shaped ``pred(a, b)``; ours reads any fact
of the text syntax (``customer_tier(acme, enterprise).``, ``NOT paid(o7)``,
``budget(alice, 1000) {confidence: 0.9}``), a line at a time. Blank lines and lines
starting with ``#`` or ``//`` are skipped; so is every line that is not made only of
facts with arguments (prose, questions, rules), which is what keeps a sentence such as
``Thanks.`` from becoming a fact. Each fact then passes the ``/tell`` checks.
"""

from __future__ import annotations

from dataclasses import dataclass

from nocturnus.engine.syntax import ParseError, Tell, parse
from nocturnus.errors import ValidationError
from nocturnus.service.commands import TellFact
from nocturnus.service.extraction.extractor import (
    Candidate,
    Contract,
    Extraction,
    Found,
    Source,
)

MAX_FACTS_PER_LINE = 64
SKIPPED_PREFIXES = ("#", "//")


@dataclass(frozen=True, slots=True)
class Lines:
    """The facts read from a source, and how many lines were not facts."""

    facts: tuple[Candidate, ...]
    skipped: int


def read_lines(source: Source, contract: Contract) -> Lines:
    """Every fact written in ``source``'s pieces, with the piece (turn) it came from."""
    facts: list[Candidate] = []
    skipped = 0
    for turn, piece in enumerate(source.pieces):
        for number, line in enumerate(piece.splitlines(), 1):
            text = line.strip()
            if not text or text.startswith(SKIPPED_PREFIXES):
                continue
            found = _facts_of(text, contract, f"pieces[{turn}] line {number}: ")
            if found is None:
                skipped += 1
                continue
            facts.extend(Candidate(fact, turn) for fact in found)
    return Lines(tuple(facts), skipped)


def _facts_of(text: str, contract: Contract, field: str) -> list[TellFact] | None:
    try:
        statements = parse(text, max_statements=MAX_FACTS_PER_LINE)
    except ParseError:
        return None
    if not statements or not all(
        isinstance(s, Tell) and s.atom.args for s in statements
    ):
        return None
    try:
        return [
            contract.read_fact(s.body(), field)
            for s in statements
            if isinstance(s, Tell)
        ]
    except ValidationError:
        return None


def extract(source: Source, contract: Contract) -> Extraction:
    """The text-syntax facts of ``source`` as an extraction by provider ``none``."""
    lines = read_lines(source, contract)
    warning = None
    if lines.skipped:
        warning = (
            f"no LLM is configured: {lines.skipped} line(s) were not facts written as "
            "pred(a, b) and were skipped"
        )
    elif not lines.facts:
        warning = "no LLM is configured and the text holds no facts written as pred(a, b)"
    return Extraction(Found(lines.facts), "none", None, None, warning)
