"""REST endpoints for agents' context (API.md §5) and memory recall/priority (§3, §5).

Handlers parse the body into a service request, call ``service/context/`` and render
the upstream SDK's shapes (``OptimizedContext``, ``ContextDiff``, ``ContextSummary``).
"""

from __future__ import annotations

from typing import Any

from sanic import Blueprint

from nocturnus.api import render
from nocturnus.api.endpoint import Call, endpoint
from nocturnus.api.knowledge import (
    constants,
    goal_literal,
    negated_of,
    pattern,
    write_scope,
)
from nocturnus.api.schema import ARGS, PREDICATE, SCOPE, Schema, nullable, obj
from nocturnus.service import tenants
from nocturnus.service.context import diff as context_diff
from nocturnus.service.context import history
from nocturnus.service.context import summary as context_summary
from nocturnus.service.context import window as context_window
from nocturnus.service.context.sessions import Sessions
from nocturnus.service.context.window import (
    Bucket,
    ContextConfig,
    Window,
    WindowEntry,
    WindowRequest,
)
from nocturnus.service.facts import FactKey
from nocturnus.service.formats import FORMATS, fact_text, token_estimate

context_api = Blueprint("context")

BOOL: Schema = nullable({"type": "boolean"})
SESSION_ID: Schema = {"type": "string", "minLength": 1, "maxLength": 256}
GOAL = obj(
    ["predicate", "args"], predicate=PREDICATE, args=ARGS, negated=BOOL, truthVal=BOOL
)
BUCKET = obj(
    ["name"],
    name={"type": "string", "minLength": 1, "maxLength": 128},
    predicates=nullable({"type": "array", "items": PREDICATE, "maxItems": 256}),
    weight=nullable({"type": "number", "minimum": 0, "maximum": 1_000_000}),
)
WINDOW_FIELDS: dict[str, Schema] = {
    "scope": SCOPE,
    "sessionId": nullable(SESSION_ID),
    "maxFacts": nullable({"type": "integer", "minimum": 1, "maximum": 1000}),
    "goals": nullable({"type": "array", "items": GOAL, "maxItems": 32}),
    "predicates": nullable({"type": "array", "items": PREDICATE, "maxItems": 256}),
    "format": nullable({"type": "string", "enum": list(FORMATS)}),
    "includeRules": BOOL,
    "maxFactsPerPredicate": nullable(
        {"type": "integer", "minimum": 1, "maximum": 1000}
    ),
    "minSalience": nullable({"type": "number", "minimum": 0, "maximum": 1}),
    # the original's MCP ``context`` tool's legacy name of minSalience
    "minRelevance": nullable({"type": "number", "minimum": 0, "maximum": 1}),
    "autoResolveContradictions": BOOL,
    "relevanceBuckets": nullable({"type": "array", "items": BUCKET, "maxItems": 32}),
}
OPTIMIZE_BODY = obj([], **WINDOW_FIELDS)
DIFF_BODY = obj(["sessionId"], **{**WINDOW_FIELDS, "sessionId": SESSION_ID})
CLEAR_BODY = obj(["sessionId"], sessionId=SESSION_ID)
SUMMARY_BODY = obj([], scope=SCOPE)
FACT_FIELDS: dict[str, Schema] = {
    "predicate": PREDICATE,
    "args": ARGS,
    "negated": BOOL,
    "truthVal": BOOL,
    "scope": SCOPE,
}
PRIORITY_BODY = obj(
    ["predicate", "args", "priority"],
    **FACT_FIELDS,
    priority={"type": "number", "minimum": 0, "maximum": 1},
)
RECALL_BODY = obj(
    ["predicate", "args", "timestamp"],
    **FACT_FIELDS,
    timestamp={"type": "integer", "minimum": 0, "maximum": 2**53},
)


def config_of(call: Call) -> ContextConfig:
    """The context settings of the server ``call`` came to."""
    settings = call.request.app.ctx.settings
    return ContextConfig(settings.salience_half_life_ms)


def sessions_of(call: Call) -> Sessions:
    """The context sessions of the call's tenant: in the shared store, so every process
    continues them; a call inside a transaction keeps its own for the call only (the
    transaction's view leaves the tenant's sessions alone)."""
    databases = call.request.app.ctx.databases
    shared = None if call.in_transaction else databases.shared
    capacity = call.request.app.ctx.settings.context_sessions
    return Sessions(shared, call.database, call.tenant_id, capacity)


def window_request(body: dict[str, Any]) -> WindowRequest:
    """The body of ``/context/optimize``, ``/memory/context`` or ``/context/diff``."""
    goals = tuple(goal_literal(g) for g in body.get("goals") or ())
    predicates = body.get("predicates")
    buckets = tuple(
        Bucket(
            b["name"],
            frozenset(b["predicates"]) if b.get("predicates") is not None else None,
            1.0 if b.get("weight") is None else float(b["weight"]),
        )
        for b in body.get("relevanceBuckets") or ()
    )
    return WindowRequest(
        scope=body.get("scope"),
        max_facts=body.get("maxFacts") or 25,
        goals=goals,
        predicates=frozenset(predicates) if predicates is not None else None,
        fmt=body.get("format") or "predicate",
        include_rules=body.get("includeRules") is not False,
        max_per_predicate=body.get("maxFactsPerPredicate"),
        min_salience=_first(body, "minSalience", "minRelevance") or 0.0,
        auto_resolve=body.get("autoResolveContradictions") is not False,
        buckets=buckets,
        session_id=body.get("sessionId"),
    )


def _first(body: dict[str, Any], *names: str) -> Any:
    """The value of the first of ``names`` given (not null) in ``body``, else None."""
    return next((body[n] for n in names if body.get(n) is not None), None)


# -- rendering ----------------------------------------------------------------------


def entry_json(entry: WindowEntry) -> dict[str, Any]:
    """An Atom plus ``salience``, ``category``, ``charCount`` and ``provenance``."""
    if entry.record is not None:
        atom = render.fact_atom(entry.record)
    else:
        atom = render.derived_atom(entry.key, entry.confidence)
    prov = entry.provenance
    atom["salience"] = entry.salience
    atom["category"] = entry.category
    atom["charCount"] = len(entry.line)
    atom["provenance"] = (
        None
        if prov is None
        else {
            "rule": prov.rule,
            "premises": list(prov.premises),
            "supports": list(prov.supports),
        }
    )
    return atom


def window_json(window: Window) -> dict[str, Any]:
    return {
        "windowId": window.window_id,
        "entries": [entry_json(e) for e in window.entries],
        "relevantRules": list(window.relevant_rules),
        "totalFactsAvailable": window.total_available,
        "totalFactsIncluded": len(window.entries),
        "deduplicationSavings": window.deduplication_savings,
        "contradictionsFound": len(window.contradictions),
        "contradictionsResolved": window.contradictions_resolved,
        "contradictions": [
            {
                "predicate": c.positive.predicate,
                "args": list(c.positive.args),
                "scope": c.positive.scope,
                "positiveSalience": c.positive_salience,
                "negativeSalience": c.negative_salience,
            }
            for c in window.contradictions
        ],
        "bucketStats": {
            name: {
                "factsIncluded": s.included,
                "maxAllocation": s.max_allocation,
                "minSalience": s.min_salience,
                "maxSalience": s.max_salience,
            }
            for name, s in window.bucket_stats.items()
        },
        "totalCharCount": len(window.text),
        "goalDriven": window.goal_driven,
        "knowledgeGeneration": window.knowledge_generation,
        "generatedAt": window.generated_at,
        "format": window.fmt,
        "formattedText": window.text,
        "tokenEstimate": token_estimate(window.text),
    }


def removed_json(key: FactKey) -> dict[str, Any]:
    name = "/".join([key.predicate, *(str(a) for a in key.args)])
    if key.negated:
        name = "!" + name
    if key.scope != "main":
        name += "@" + key.scope
    return {
        "key": name,
        "predicate": key.predicate,
        "args": list(key.args),
        "negated": key.negated,
        "scope": key.scope,
    }


# -- context windows ----------------------------------------------------------------


@endpoint(
    context_api,
    "POST",
    "/context/optimize",
    summary="The most salient facts now, goal-driven when goals are given",
    body=OPTIMIZE_BODY,
    tenant=True,
    body_required=False,
)
async def optimize(call: Call) -> dict[str, Any]:
    window = await context_window.optimize(
        call.database,
        call.tenant_id,
        window_request(call.body),
        config_of(call),
        sessions_of(call),
    )
    return window_json(window)


@endpoint(
    context_api,
    "POST",
    "/memory/context",
    summary="The context window (optimize's shape plus the upstream ContextWindow fields)",
    body=OPTIMIZE_BODY,
    tenant=True,
    body_required=False,
)
async def memory_context(call: Call) -> dict[str, Any]:
    window = await context_window.optimize(
        call.database,
        call.tenant_id,
        window_request(call.body),
        config_of(call),
        sessions_of(call),
    )
    answer = window_json(window)
    distribution: dict[str, int] = {}
    for entry in window.entries:
        distribution[entry.key.predicate] = distribution.get(entry.key.predicate, 0) + 1
    answer["facts"] = [
        {
            k: v
            for k, v in entry_json(e).items()
            if k not in ("category", "charCount", "provenance")
        }
        for e in window.entries
    ]
    answer["totalAvailable"] = window.total_available
    answer["windowSize"] = len(window.entries)
    answer["predicateDistribution"] = dict(sorted(distribution.items()))
    answer["rules"] = list(window.relevant_rules)
    return answer


@endpoint(
    context_api,
    "POST",
    "/context/diff",
    summary="Only what changed since this session's last window",
    body=DIFF_BODY,
    tenant=True,
)
async def diff(call: Call) -> dict[str, Any]:
    result = await context_diff.diff(
        call.database,
        call.tenant_id,
        window_request(call.body),
        config_of(call),
        sessions_of(call),
    )
    return {
        "previousWindowId": result.previous_window_id,
        "currentWindowId": result.window.window_id,
        "added": [entry_json(e) for e in result.added],
        "removed": [removed_json(k) for k in result.removed],
        "unchanged": result.unchanged,
        "fullRefreshRecommended": result.full_refresh,
        "reason": result.reason,
        "knowledgeGeneration": result.window.knowledge_generation,
        "generatedAt": result.window.generated_at,
        "formattedText": result.text,
        "tokenEstimate": token_estimate(result.text),
    }


@endpoint(
    context_api,
    "POST",
    "/context/session/clear",
    summary="Forget a context session's last window",
    body=CLEAR_BODY,
    tenant=True,
)
async def clear_session(call: Call) -> dict[str, Any]:
    session_id = call.body["sessionId"]
    cleared = await context_diff.clear_session(sessions_of(call), session_id)
    return {"cleared": cleared, "sessionId": session_id}


@endpoint(
    context_api,
    "POST",
    "/context/summary",
    summary="Fact and predicate counts, TTL and contradiction figures, top salient facts",
    body=SUMMARY_BODY,
    tenant=True,
    body_required=False,
)
async def summary(call: Call) -> dict[str, Any]:
    result = await context_summary.summary(
        call.database, call.tenant_id, call.body.get("scope"), config_of(call)
    )
    return {
        "totalFacts": result.total_facts,
        "predicateCount": result.predicate_count,
        "topPredicates": [
            {"predicate": p, "count": n} for p, n in result.top_predicates
        ],
        "factsWithTtl": result.facts_with_ttl,
        "factsExpiringWithin1h": result.expiring_within_1h,
        "contradictions": result.contradictions,
        "topSalientFacts": [entry_json(e) for e in result.top_salient],
        "totalCharCount": result.total_chars,
        "knowledgeGeneration": result.knowledge_generation,
        "generatedAt": result.generated_at,
    }


# -- memory -------------------------------------------------------------------------


@endpoint(
    context_api,
    "POST",
    "/memory/priority",
    "/memory/prioritize",
    summary="Set a stored fact's explicit salience priority (0..1)",
    body=PRIORITY_BODY,
    tenant=True,
)
async def set_priority(call: Call) -> dict[str, Any]:
    body = call.body
    key = FactKey(
        write_scope(body), body["predicate"], negated_of(body), constants(body["args"])
    )
    outcome = await tenants.set_priority(
        call.database, call.tenant_id, key, float(body["priority"])
    )
    return {
        "fact": render.fact_atom(outcome.record),
        "priority": outcome.priority,
        "changed": outcome.changed,
        "message": f"Priority set: {outcome.priority} for {fact_text(key)}",
    }


@endpoint(
    context_api,
    "POST",
    "/memory/recall",
    "/memory/query/temporal",
    summary="Facts as the tenant knew them at a past moment (from the event log)",
    body=RECALL_BODY,
    tenant=True,
)
async def recall(call: Call) -> list[dict[str, Any]]:
    """A bare array, the original's and its SDK's shape (``recall``, ``temporal_query``)."""
    body = call.body
    records = await history.recall(
        call.database,
        call.tenant_id,
        body["predicate"],
        negated_of(body),
        pattern(body["args"]),
        body.get("scope"),
        body["timestamp"],
    )
    return [render.fact_atom(r) for r in records]
