"""REST endpoints from conversation to facts (issue 19): ``POST /context`` with turns,
``/context/ingest``, ``/extract``, ``/extract/batch`` and ``/synthesize``.

The original's request and response shapes, plus what it lacks: provenance, ``dry``,
``warning`` on every route. The checks an LLM's reply must pass are declared here, from
the same field schemas as ``POST /tell`` and converted by the same function, so an
extracted fact is exactly as valid as a told one. The work is ``service/extraction``'s.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from sanic import Blueprint

from nocturnus.api import permissions
from nocturnus.api.context import (
    WINDOW_FIELDS,
    config_of,
    sessions_of,
    window_json,
    window_request,
)
from nocturnus.api.endpoint import Call, endpoint
from nocturnus.api.knowledge import (
    BOOL,
    LITERAL,
    MAX_RULE_BODY,
    TELL_BODY,
    TELL_FIELDS,
    goal_literal,
    teach_command,
    tell_command,
)
from nocturnus.api.ratelimit import TokenBuckets
from nocturnus.api.schema import ARGS, PREDICATE, SCOPE, Schema, nullable, obj, validate
from nocturnus.errors import (
    LlmFailed,
    LlmRateLimited,
    PayloadTooLarge,
    RateLimited,
    ValidationError,
)
from nocturnus.service.authenticator import ANONYMOUS
from nocturnus.service.commands import TeachRule, TellFact
from nocturnus.service.context import window as context_window
from nocturnus.service.context.window import WindowEntry
from nocturnus.service.extraction import synthesis, turns
from nocturnus.service.extraction.extractor import (
    Budget,
    Candidate,
    Extraction,
    Extractor,
    Found,
    Source,
)
from nocturnus.service.extraction.remember import Remembered, remember
from nocturnus.service.extraction.synthesis import Plan, Synthesis
from nocturnus.service.formats import fact_text

extraction_api = Blueprint("extraction")

MAX_TEXT = 200_000
"""Characters of one text or turn (the body limit bounds them all together)."""
MAX_EXTRACTED = 256
TEXT: Schema = {"type": "string", "minLength": 1, "maxLength": MAX_TEXT}
HINT: Schema = nullable({"type": "string", "maxLength": 20_000})
TURNS: Schema = {"type": "array", "items": TEXT, "minItems": 1, "maxItems": 256}
TURNS_DEFAULT_MAX_FACTS = 50
"""The original's default ``maxFacts`` of ``POST /context``."""

# -- what a reply must be: /tell's field schemas, /teach's literals ------------------------

REPLY_FACT = obj(
    ["predicate", "args"],
    predicate=TELL_FIELDS["predicate"],
    args=TELL_FIELDS["args"],
    negated=TELL_FIELDS["negated"],
    confidence=TELL_FIELDS["confidence"],
    turn=nullable({"type": "integer", "minimum": 0}),
)
REPLY_LITERAL = obj(
    ["predicate", "args"],
    predicate=LITERAL["properties"]["predicate"],
    args=LITERAL["properties"]["args"],
    negated=BOOL,
    naf=BOOL,
)
REPLY_RULE = obj(
    ["head", "body"],
    head=REPLY_LITERAL,
    body={"type": "array", "items": REPLY_LITERAL, "minItems": 1, "maxItems": MAX_RULE_BODY},
)
REPLY = obj(
    ["facts"],
    facts={"type": "array", "items": REPLY_FACT, "maxItems": MAX_EXTRACTED},
    rules=nullable({"type": "array", "items": REPLY_RULE, "maxItems": 64}),
)
SYNTHESIS_REPLY = obj(
    ["queries", "answer"],
    queries={
        "type": "array",
        "items": obj(["predicate", "args"], predicate=PREDICATE, args=ARGS, negated=BOOL),
        "maxItems": 8,
    },
    answer={"type": "string", "maxLength": 8000},
    confidence=TELL_FIELDS["confidence"],
    usedFacts=nullable({"type": "array", "items": {"type": "string"}, "maxItems": 500}),
    missingContext=nullable(
        {"type": "array", "items": {"type": "string", "maxLength": 500}, "maxItems": 32}
    ),
)


class FactContract:
    """Replies and text-syntax facts, checked as ``POST /tell`` checks its body."""

    schema: dict[str, Any] = REPLY

    def read_reply(self, data: Any, turns: int) -> Found:
        validate(data, REPLY, "reply")
        facts = []
        for i, item in enumerate(data["facts"]):
            turn = item.get("turn")
            if turn is not None and turn >= turns:
                raise ValidationError(
                    f"reply.facts[{i}].turn: there are only {turns} turns",
                    field=f"reply.facts[{i}].turn",
                )
            body = {k: v for k, v in item.items() if k != "turn"}
            facts.append(Candidate(tell_command(body, f"reply.facts[{i}]."), turn))
        rules = tuple(teach_command(r) for r in data.get("rules") or ())
        return Found(tuple(facts), rules)

    def read_fact(self, body: dict[str, Any], field: str) -> TellFact:
        validate(body, TELL_BODY, field.rstrip(": "))
        return tell_command(body, field)


class SynthesisContract:
    """The ``synthesize`` prompt's reply: goals as ``/ask`` reads them, an answer."""

    schema: dict[str, Any] = SYNTHESIS_REPLY

    def read_plan(self, data: Any) -> Plan:
        validate(data, SYNTHESIS_REPLY, "reply")
        return Plan(
            tuple(goal_literal(q) for q in data["queries"]),
            data["answer"],
            data.get("confidence"),
            tuple(data.get("usedFacts") or ()),
            tuple(data.get("missingContext") or ()),
        )


FACTS = FactContract()
SYNTHESIS = SynthesisContract()

# -- bodies --------------------------------------------------------------------------------

CONTEXT_BODY = obj(
    [], **WINDOW_FIELDS, turns=nullable(TURNS), contextHint=HINT, dry=BOOL
)
INGEST_BODY = obj(["text"], **WINDOW_FIELDS, text=TEXT, contextHint=HINT, dry=BOOL)
EXTRACT_FIELDS: dict[str, Schema] = {
    "assert": BOOL,
    "rules": BOOL,
    "scope": SCOPE,
    "context": HINT,
}
EXTRACT_BODY = obj(["text"], text=TEXT, **EXTRACT_FIELDS)
BATCH_BODY = obj(
    ["texts"],
    texts={"type": "array", "items": TEXT, "minItems": 1, "maxItems": 100},
    **EXTRACT_FIELDS,
)
SYNTHESIZE_BODY = obj(
    ["question"], question={"type": "string", "minLength": 1, "maxLength": 8000}, scope=SCOPE
)

# -- per-request state: the extractor, the LLM quota, the token budget ---------------------


def extractor_of(call: Call) -> Extractor:
    extractor: Extractor = call.request.app.ctx.extractor
    return extractor


def budget_of(call: Call) -> Budget:
    return Budget(call.request.app.ctx.settings.llm_request_tokens)


def charge_llm(call: Call) -> None:
    """Count a request that will call the LLM against its caller's per-minute quota.

    :raises RateLimited: ``NOCTURNUS_LLM_CALLS_PER_MINUTE`` spent for this key (or, with
        auth off, this client address).
    """
    quotas: TokenBuckets | None = call.request.app.ctx.llm_quotas
    if quotas is None or not extractor_of(call).configured:
        return
    principal = call.principal
    if principal is not ANONYMOUS and principal.key_id is not None:
        who = "key:" + principal.key_id
    else:
        who = "ip:" + call.request.app.ctx.security.client_address(call.request)
    quota = quotas.take(who, "llm", time.monotonic())
    if quota is not None and not quota.allowed:
        raise RateLimited(
            f"LLM calls are limited to {quota.limit} requests a minute per key",
            quota.retry_after_s,
            {"limit": quota.limit},
        )


def check_extract(call: Call) -> None:
    """``POST /context`` with turns writes: the key needs ``extract`` as well."""
    if call.principal is not ANONYMOUS:
        permissions.check_permission(call.principal, permissions.data("extract"))


# -- rendering -----------------------------------------------------------------------------


def fact_json(fact: TellFact) -> dict[str, Any]:
    """An extracted fact: the ``/tell`` fields an extraction sets, and its provenance."""
    return {
        "predicate": fact.predicate,
        "args": list(fact.args),
        "negated": fact.negated,
        "scope": fact.scope,
        "confidence": fact.confidence,
        "provenance": fact.metadata.get("extraction"),
    }


def rule_json(rule: TeachRule) -> dict[str, Any]:
    return {"head": rule.head, "body": list(rule.body)}


def stored_json(done: Remembered) -> dict[str, Any]:
    """What storing an extraction did: counts, and every fact refused with its reason."""
    return {
        "stored": len(done.stored),
        "alreadyKnown": len(done.known),
        "rejected": [
            {"fact": fact_text(done.facts[e.index].key), "code": e.code, "message": e.message}
            for e in done.errors
        ],
        "rulesStored": done.rules_stored,
    }


def warning_of(extraction: Extraction, done: Remembered) -> str | None:
    """Every problem short of an error, in one line (the original's ``warning``)."""
    parts = [extraction.warning] if extraction.warning else []
    if done.errors:
        parts.append(f"{len(done.errors)} fact(s) were refused (see rejected)")
    if done.rules_problem:
        parts.append(done.rules_problem)
    return "; ".join(parts) or None


def turn_fact(entry: WindowEntry) -> dict[str, Any]:
    """A window entry in ``POST /context``'s shape (the SDK's ``TurnFact``: arguments as
    strings, provenance as ``"rule ← premise, …"``)."""
    prov = entry.provenance
    provenance = None
    if prov is not None and prov.rule:
        provenance = f"{prov.rule} ← {', '.join(prov.premises)}"
    return {
        "predicate": entry.key.predicate,
        "args": [str(a) for a in entry.key.args],
        "negated": entry.key.negated,
        "scope": entry.key.scope,
        "salience": entry.salience,
        "provenance": provenance,
    }


# -- routes --------------------------------------------------------------------------------


@endpoint(
    extraction_api,
    "POST",
    "/context",
    summary=(
        "With turns: extract their facts, store them, answer a window (else a window, "
        "as /context/optimize)"
    ),
    body=CONTEXT_BODY,
    tenant=True,
    body_required=False,
    transactional=False,
)
async def context(call: Call) -> dict[str, Any]:
    body = call.body
    if body.get("turns") is None:
        if body.get("contextHint") is not None or body.get("dry") is not None:
            raise ValidationError(
                "contextHint and dry go with turns; without turns /context answers a "
                "window as /context/optimize does",
                field="turns",
            )
        return await _window(call)
    check_extract(call)
    charge_llm(call)
    window = window_request(body)
    if body.get("maxFacts") is None:
        window = dataclasses.replace(window, max_facts=TURNS_DEFAULT_MAX_FACTS)
    req = turns.TurnsRequest(
        tuple(body["turns"]), window, body.get("contextHint"), bool(body.get("dry"))
    )
    done = await turns.process(
        call.database,
        call.tenant_id,
        extractor_of(call),
        FACTS,
        req,
        config_of(call),
        budget_of(call),
        sessions_of(call),
    )
    entries = done.window.entries
    return {
        "facts": [turn_fact(e) for e in entries],
        "totalFactsInKB": done.total_facts,
        "factsReturned": len(entries),
        "contradictions": len(done.window.contradictions),
        "newFactsExtracted": len(done.remembered.stored),
        "warning": warning_of(done.extraction, done.remembered),
        "briefingDelta": done.briefing,
        "sessionId": window.session_id,
        "factsExtracted": len(done.remembered.facts),
        "extracted": [fact_json(f) for f in done.remembered.facts],
        **stored_json(done.remembered),
        "extractionProvider": _provider(done.extraction),
        "dry": req.dry,
    }


async def _window(call: Call) -> dict[str, Any]:
    """The body's window, as ``POST /context/optimize`` answers it."""
    window = await context_window.optimize(
        call.database,
        call.tenant_id,
        window_request(call.body),
        config_of(call),
        sessions_of(call),
    )
    return window_json(window)


def _provider(extraction: Extraction) -> str | None:
    return None if extraction.provider == "none" else extraction.provider


@endpoint(
    extraction_api,
    "POST",
    "/context/ingest",
    summary="Extract a text's facts, store them, answer an optimized window",
    body=INGEST_BODY,
    tenant=True,
    transactional=False,
)
async def ingest(call: Call) -> dict[str, Any]:
    body = call.body
    charge_llm(call)
    source = Source((body["text"],), body.get("contextHint"))
    extraction = await turns.extract_or_warn(extractor_of(call), source, FACTS, budget_of(call))
    scope = body.get("scope")
    dry = bool(body.get("dry"))
    done = await remember(call.database, call.tenant_id, extraction, source, scope, dry=dry)
    window = await _window(call)
    for entry in window["entries"]:  # the SDK's ContextEntry: arguments as strings
        entry["args"] = [str(a) for a in entry["args"]]
    return {
        "extracted": [
            {**fact_json(f), "confidence": 1.0 if f.confidence is None else f.confidence}
            for f in done.facts
        ],
        "extractionProvider": _provider(extraction),
        "context": window,
        **stored_json(done),
        "warning": warning_of(extraction, done),
        "dry": dry,
    }


async def _extract_one(
    call: Call, text: str, budget: Budget
) -> tuple[Extraction, Remembered]:
    body = call.body
    source = Source((text,), body.get("context"))
    extraction = await extractor_of(call).extract(
        source, FACTS, budget, rules=bool(body.get("rules"))
    )
    done = await remember(
        call.database,
        call.tenant_id,
        extraction,
        source,
        body.get("scope"),
        dry=not body.get("assert"),
    )
    return extraction, done


def _extracted_json(extraction: Extraction, done: Remembered, asserted: bool) -> dict[str, Any]:
    return {
        "facts": [fact_json(f) for f in done.facts],
        "rules": [rule_json(r) for r in extraction.found.rules],
        "asserted": len(done.stored) if asserted else 0,
        **stored_json(done),
        "warning": warning_of(extraction, done),
    }


@endpoint(
    extraction_api,
    "POST",
    "/extract",
    summary="Extract facts (and rules) from a text with the LLM; store them with assert",
    body=EXTRACT_BODY,
    tenant=True,
    transactional=False,
)
async def extract(call: Call) -> dict[str, Any]:
    provider = extractor_of(call).require()
    charge_llm(call)
    extraction, done = await _extract_one(call, call.body["text"], budget_of(call))
    return {
        **_extracted_json(extraction, done, bool(call.body.get("assert"))),
        "provider": provider.name,
        "model": provider.model,
        "prompt": extraction.prompt,
    }


@endpoint(
    extraction_api,
    "POST",
    "/extract/batch",
    summary="Extract facts from several texts with the LLM (one token budget for all)",
    body=BATCH_BODY,
    tenant=True,
    transactional=False,
)
async def extract_batch(call: Call) -> dict[str, Any]:
    provider = extractor_of(call).require()
    charge_llm(call)
    budget = budget_of(call)
    asserted = bool(call.body.get("assert"))
    results: list[dict[str, Any]] = []
    stopped: str | None = None
    for text in call.body["texts"]:
        if stopped is not None:
            results.append(_not_extracted(text, stopped))
            continue
        try:
            extraction, done = await _extract_one(call, text, budget)
        except (LlmFailed, LlmRateLimited) as e:
            # the provider is down or throttling: the texts after this one are not sent
            stopped = f"not extracted: the provider failed on an earlier text ({e.message})"
            results.append(_not_extracted(text, f"extraction failed: {e.message}"))
            continue
        except PayloadTooLarge as e:  # a later, shorter text may still fit
            results.append(_not_extracted(text, f"not extracted: {e.message}"))
            continue
        results.append({"text": text, **_extracted_json(extraction, done, asserted)})
    return {"results": results, "provider": provider.name, "model": provider.model}


def _not_extracted(text: str, reason: str) -> dict[str, Any]:
    return {"text": text, "facts": [], "rules": [], "asserted": 0, "warning": reason}


@endpoint(
    extraction_api,
    "POST",
    "/synthesize",
    summary="Answer a question from the knowledge base: derivation, queries run, what is missing",
    body=SYNTHESIZE_BODY,
    tenant=True,
    transactional=False,
)
async def synthesize(call: Call) -> dict[str, Any]:
    question = call.body["question"]
    if synthesis.goal_of(question) is None:
        extractor_of(call).require()
        charge_llm(call)
    done: Synthesis = await synthesis.synthesize(
        call.database,
        call.tenant_id,
        extractor_of(call),
        SYNTHESIS,
        question,
        call.body.get("scope"),
        budget_of(call),
    )
    return {
        "answer": done.answer,
        "derivation": [
            {"fact": s.fact, "type": s.kind, "rule": s.rule, "premises": list(s.premises)}
            for s in done.derivation
        ],
        "missingContext": list(done.missing),
        "confidence": done.confidence,
        "queriesExecuted": list(done.queries),
        "provider": None if done.provider == "none" else done.provider,
        "model": done.model,
        "prompt": done.prompt,
        "warning": done.warning,
    }
