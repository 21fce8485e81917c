"""Storing what an extraction found: new facts only, each with its provenance.

Every fact carries ``metadata.extraction``: the provider and model, the prompt version,
the SHA-256 of the text it came from (the turn's, when known) and the turn's index, so
an agent can ask where a fact came from without the text itself being stored. A fact
already visible is not told again (:func:`~nocturnus.service.tenants.tell_new`), so
extracting the same text twice stores nothing new; the others follow the tenant's
conflict strategy. ``dry`` decides everything and stores nothing.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from nocturnus.errors import NocturnusError
from nocturnus.service import tenants
from nocturnus.service.commands import TellFact
from nocturnus.service.database import Database, DatabaseState
from nocturnus.service.extraction.extractor import Candidate, Extraction, Source
from nocturnus.service.tenants import BulkError

Db = Database[DatabaseState]


@dataclass(frozen=True, slots=True)
class Remembered:
    """The facts as told (provenance included) and what became of each."""

    facts: tuple[TellFact, ...]
    stored: tuple[int, ...] = ()
    known: tuple[int, ...] = ()
    errors: tuple[BulkError, ...] = ()
    rules_stored: int = 0
    rules_problem: str | None = None


def provenance(extraction: Extraction, source: Source, turn: int | None) -> dict[str, Any]:
    """``metadata.extraction`` of a fact found in ``source`` (its piece ``turn``)."""
    if not source.is_conversation:
        turn = None
    return {
        "provider": extraction.provider,
        "model": extraction.model,
        "prompt": extraction.prompt,
        "sourceSha256": source.digest(turn),
        "turn": turn,
    }


def told(
    candidate: Candidate, extraction: Extraction, source: Source, scope: str | None
) -> TellFact:
    """The command storing ``candidate``: into ``scope`` (when given), with provenance."""
    fact = candidate.fact
    metadata = {
        **fact.metadata,
        "extraction": provenance(extraction, source, candidate.turn),
    }
    return dataclasses.replace(fact, scope=scope or fact.scope, metadata=metadata)


async def remember(
    db: Db,
    tenant: str,
    extraction: Extraction,
    source: Source,
    scope: str | None,
    *,
    dry: bool,
) -> Remembered:
    """Store the extraction's new facts (and its rules, all or none) in ``scope``."""
    facts = tuple(told(c, extraction, source, scope) for c in extraction.found.facts)
    outcome = await tenants.tell_new(db, tenant, facts, dry=dry)
    rules = extraction.found.rules
    rules_stored, problem = 0, None
    if rules and not dry:
        if scope is not None:
            rules = tuple(dataclasses.replace(r, scope=scope) for r in rules)
        try:
            taught = await tenants.teach_many(db, tenant, rules)
        except NocturnusError as e:
            problem = f"the extracted rules were not stored: {e.message}"
        else:
            rules_stored = sum(1 for t in taught if t.stored)
    return Remembered(facts, outcome.stored, outcome.known, outcome.errors, rules_stored, problem)
