"""``POST /context`` with turns: a conversation in, its facts stored, a window out.

1. The turns are extracted (the LLM, or text-syntax lines without one), with the
   session's previous turns as the hint when the caller gives none (kept in the shared
   store, so any process continues a conversation: ``context/sessions.py``).
2. The new facts are stored in the request's scope (``remember``).
3. The window is built as ``/context/optimize`` builds it; with a session, as
   ``/context/diff`` does, and the facts that entered it since the session's last window
   become ``briefing``, one plain sentence each (the ``natural`` format, no LLM).

A failing provider (timeout, rate limit, error) or a text over the token budget never
fails the call: nothing is extracted and ``warning`` says why, as in the original.
"""

from __future__ import annotations

from dataclasses import dataclass

from nocturnus.errors import LlmFailed, PayloadTooLarge, RateLimited
from nocturnus.service.context import diff as context_diff
from nocturnus.service.context import window as context_window
from nocturnus.service.context.sessions import (
    TURNS,
    Sessions,
    decode_turns,
    encode_turns,
)
from nocturnus.service.context.window import ContextConfig, Window, WindowRequest
from nocturnus.service.database import Database, DatabaseState
from nocturnus.service.extraction import fallback
from nocturnus.service.extraction.extractor import (
    Budget,
    Contract,
    Extraction,
    Extractor,
    Found,
    Source,
)
from nocturnus.service.extraction.remember import Remembered, remember
from nocturnus.service.formats import sentence

Db = Database[DatabaseState]

HINT_TURNS = 6
"""Turns of a session kept as the next call's hint."""
HINT_CHARS = 4000
"""The longest hint kept (its newest characters)."""


@dataclass(frozen=True, slots=True)
class TurnsRequest:
    """A ``POST /context`` body with ``turns``."""

    turns: tuple[str, ...]
    window: WindowRequest
    context_hint: str | None = None
    dry: bool = False


@dataclass(frozen=True, slots=True)
class TurnsOutcome:
    """What the turns gave: the extraction, what was stored, the window, the briefing."""

    extraction: Extraction
    remembered: Remembered
    window: Window
    briefing: str | None
    total_facts: int


async def extract_or_warn(
    extractor: Extractor, source: Source, contract: Contract, budget: Budget
) -> Extraction:
    """The extraction of ``source``; a provider failure is a warning, not an error."""
    if not extractor.configured:
        return fallback.extract(source, contract)
    try:
        return await extractor.extract(source, contract, budget)
    except (LlmFailed, RateLimited, PayloadTooLarge) as e:
        provider = extractor.require()
        return Extraction(
            Found(), provider.name, provider.model, None, f"extraction failed: {e.message}"
        )


async def process(
    db: Db,
    tenant: str,
    extractor: Extractor,
    contract: Contract,
    req: TurnsRequest,
    cfg: ContextConfig,
    budget: Budget,
    sessions: Sessions,
) -> TurnsOutcome:
    """Extract, store, and build the window of one call (see the module)."""
    session = req.window.session_id
    hint = req.context_hint
    if hint is None and session is not None:
        hint = await _hint_of(sessions, session)
    source = Source(req.turns, hint, is_conversation=True)
    extraction = await extract_or_warn(extractor, source, contract, budget)
    remembered = await remember(
        db, tenant, extraction, source, req.window.scope, dry=req.dry
    )
    briefing = None
    if session is None:
        window = await context_window.optimize(db, tenant, req.window, cfg, sessions)
    else:
        diff = await context_diff.diff(db, tenant, req.window, cfg, sessions)
        window = diff.window
        if diff.previous_window_id is not None:
            briefing = "\n".join(
                sentence(e.key, e.confidence, req.window.scope is None) for e in diff.added
            )
        await sessions.update(TURNS, session, lambda kept: _kept(kept, req.turns))
    state, _ = await db.current(tenant)
    return TurnsOutcome(extraction, remembered, window, briefing, state.fact_count())


async def _hint_of(sessions: Sessions, session: str) -> str | None:
    """The session's kept turns, one per line; None when none are kept."""
    kept = await sessions.read(TURNS, session)
    if kept is None:
        return None
    return "\n".join(decode_turns(kept[0])) or None


def _kept(stored: bytes | None, turns: tuple[str, ...]) -> bytes:
    """The session's newest turns, ``turns`` after those ``stored``: at most
    :data:`HINT_TURNS`, the newest :data:`HINT_CHARS` characters (exact bounds; the
    sessions kept per tenant are bounded as every context session is, ``sessions.py``).
    """
    recent = (*(decode_turns(stored) if stored is not None else ()), *turns)[-HINT_TURNS:]
    while len(recent) > 1 and sum(map(len, recent)) > HINT_CHARS:
        recent = recent[1:]
    return encode_turns(tuple(t[-HINT_CHARS:] for t in recent))
