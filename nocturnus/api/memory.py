"""REST endpoints of memory upkeep (issue 18): consolidate, decay, salient queries.

The original's routes and shapes (its SDK's ``ConsolidationResult``, ``DecayResult``);
what each does is ``service/memory.py``'s.
"""

from __future__ import annotations

from typing import Any

from sanic import Blueprint

from nocturnus.api import render
from nocturnus.api.context import FACT_FIELDS, config_of
from nocturnus.api.endpoint import Call, endpoint
from nocturnus.api.knowledge import negated_of, pattern
from nocturnus.api.schema import SCOPE, Schema, nullable, obj
from nocturnus.service import memory

memory_api = Blueprint("memory")

CONSOLIDATE_BODY = obj(
    [], scope=SCOPE, minCount=nullable({"type": "integer", "minimum": 2, "maximum": 1_000_000})
)
THRESHOLD: Schema = nullable({"type": "number", "minimum": 0, "maximum": 1})
DECAY_BODY = obj([], scope=SCOPE, threshold=THRESHOLD)
SALIENT_BODY = obj(
    ["predicate", "args"],
    **FACT_FIELDS,
    limit=nullable({"type": "integer", "minimum": 1, "maximum": 10_000}),
    minSalience=THRESHOLD,
)


@endpoint(
    memory_api,
    "POST",
    "/memory/consolidate",
    "/memory/compress",
    summary=(
        "Summarize groups of facts sharing a first argument into"
        " <predicate>_consolidated facts"
    ),
    body=CONSOLIDATE_BODY,
    tenant=True,
    body_required=False,
)
async def consolidate(call: Call) -> dict[str, Any]:
    body = call.body
    done = await memory.consolidate(
        call.database,
        call.tenant_id,
        body.get("scope"),
        body.get("minCount") or memory.DEFAULT_MIN_COUNT,
    )
    return {
        "factsConsolidated": len(done.told),
        "newFacts": [render.fact_atom(r) for r in done.told],
        "retracted": [render.fact_atom(r) for r in done.retracted],
        "timestamp": done.now,
    }


@endpoint(
    memory_api,
    "POST",
    "/memory/decay",
    "/memory/cleanup",
    summary="Remove expired facts; over capacity, also the least salient below a threshold",
    body=DECAY_BODY,
    tenant=True,
    body_required=False,
)
async def decay(call: Call) -> dict[str, Any]:
    body = call.body
    threshold = body.get("threshold")
    done = await memory.decay(
        call.database,
        call.tenant_id,
        body.get("scope"),
        call.request.app.ctx.settings.memory_max_facts,
        memory.DEFAULT_THRESHOLD if threshold is None else float(threshold),
        config_of(call),
    )
    return {
        "expiredCount": len(done.expired),
        "evictedCount": len(done.evicted),
        "removedAtoms": [render.fact_atom(r) for r in (*done.expired, *done.evicted)],
        "timestamp": done.now,
    }


@endpoint(
    memory_api,
    "POST",
    "/memory/query/salient",
    summary="Facts matching a pattern, most salient first (a bare array)",
    body=SALIENT_BODY,
    tenant=True,
)
async def salient(call: Call) -> list[dict[str, Any]]:
    body = call.body
    found = await memory.salient(
        call.database,
        call.tenant_id,
        body["predicate"],
        negated_of(body),
        pattern(body["args"]),
        body.get("scope"),
        limit=body.get("limit") or 50,
        min_salience=body.get("minSalience") or 0.0,
        cfg=config_of(call),
    )
    return [{**render.fact_atom(record), "salience": score} for record, score in found]
