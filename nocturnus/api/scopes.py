"""REST endpoints for scopes inside a tenant (API.md §4). Handlers stay thin.

Each body takes the names of API.md (``source``/``target``) and the upstream SDK's
(``sourceScope``/``targetScope``, ``scopeA``/``scopeB`` for diff). The side that may be
left out (or ``null``, the upstream "unscoped" partition) is ``main``: the fork's source,
the merge's and the diff's target.
"""

from __future__ import annotations

from typing import Any

from sanic import Blueprint

from nocturnus.api import render
from nocturnus.api.endpoint import Call, endpoint
from nocturnus.api.schema import SCOPE, SCOPE_NAME, Schema, nullable, obj, validate
from nocturnus.errors import Conflict, ValidationError
from nocturnus.service import scopes as service
from nocturnus.service.commands import MAIN_SCOPE

scopes = Blueprint("scopes")

FORK_BODY = obj([], source=SCOPE, target=SCOPE, sourceScope=SCOPE, targetScope=SCOPE)
DIFF_BODY = obj(
    [],
    source=SCOPE,
    target=SCOPE,
    sourceScope=SCOPE,
    targetScope=SCOPE,
    scopeA=SCOPE,
    scopeB=SCOPE,
)
MERGE_BODY = obj(
    [],
    source=SCOPE,
    target=SCOPE,
    sourceScope=SCOPE,
    targetScope=SCOPE,
    strategy=nullable({"type": "string", "enum": list(service.MERGE_STRATEGIES)}),
)
SCOPE_PATH: Schema = {"type": "string", "pattern": SCOPE_NAME}


def scope_name(body: dict[str, Any], *fields: str, default: str | None = None) -> str:
    """The scope named by any of ``fields`` (aliases); they must agree when several are given.

    :raises ValidationError: none given and no default, or two aliases disagree.
    """
    given = [(f, body[f]) for f in fields if body.get(f) is not None]
    if len({value for _, value in given}) > 1:
        names = " and ".join(f for f, _ in given)
        raise ValidationError(f"{names}: name different scopes", field=given[1][0])
    if given:
        return str(given[0][1])
    if default is not None:
        return default
    raise ValidationError(f"{fields[0]}: is required", field=fields[0])


@endpoint(
    scopes,
    "POST",
    "/scope/fork",
    summary="Copy a scope's facts and scoped rules into a new scope",
    body=FORK_BODY,
    tenant=True,
)
async def fork(call: Call) -> dict[str, Any]:
    body = call.body
    target = scope_name(body, "target", "targetScope")
    source = scope_name(body, "source", "sourceScope", default=MAIN_SCOPE)
    outcome = await service.fork(call.database, call.tenant_id, source, target)
    return {
        "source": outcome.source,
        "target": outcome.target,
        "copied": outcome.copied,
        "rules": outcome.rules,
    }


@endpoint(
    scopes,
    "POST",
    "/scope/diff",
    summary="Compare the facts of two scopes",
    body=DIFF_BODY,
    tenant=True,
)
async def diff(call: Call) -> dict[str, Any]:
    body = call.body
    source = scope_name(body, "source", "sourceScope", "scopeA")
    target = scope_name(body, "target", "targetScope", "scopeB", default=MAIN_SCOPE)
    found = await service.diff(call.database, call.tenant_id, source, target)
    return {
        "source": found.source,
        "target": found.target,
        "onlyInSource": [render.fact_atom(r) for r in found.only_in_source],
        "onlyInTarget": [render.fact_atom(r) for r in found.only_in_target],
        "conflicts": _conflicts(found),
        "same": found.same,
    }


@endpoint(
    scopes,
    "POST",
    "/scope/merge",
    summary="Merge one scope's facts into another",
    body=MERGE_BODY,
    tenant=True,
)
async def merge(call: Call) -> dict[str, Any]:
    body = call.body
    source = scope_name(body, "source", "sourceScope")
    target = scope_name(body, "target", "targetScope", default=MAIN_SCOPE)
    strategy = body.get("strategy") or service.DEFAULT_MERGE_STRATEGY
    try:
        outcome = await service.merge(
            call.database, call.tenant_id, source, target, strategy
        )
    except service.MergeRejected as e:
        raise Conflict(
            e.message, {"conflicts": _conflicts(e.diff), "strategy": strategy}
        ) from e
    return {
        "source": outcome.source,
        "target": outcome.target,
        "strategy": outcome.strategy,
        "merged": outcome.merged,
        "conflicts": outcome.conflicts,
    }


@endpoint(
    scopes,
    "GET",
    "/scopes",
    summary="The tenant's scope names, and each one's fact and rule counts",
    tenant=True,
)
async def list_scopes(call: Call) -> dict[str, Any]:
    found = await service.scopes(call.database, call.tenant_id)
    # ``scopes`` holds names, as the original and its SDK's list_scopes() read them.
    return {
        "scopes": [s.name for s in found],
        "details": [{"name": s.name, "facts": s.facts, "rules": s.rules} for s in found],
        "count": len(found),
    }


@endpoint(
    scopes,
    "DELETE",
    "/scope/<name>",
    summary="Delete a scope's facts and scoped rules",
    tenant=True,
)
async def delete(call: Call) -> dict[str, Any]:
    name = call.query["name"]
    validate(name, SCOPE_PATH, "scope")
    outcome = await service.delete(call.database, call.tenant_id, name)
    return {"deleted": outcome.facts, "scope": outcome.scope, "rules": outcome.rules}


def _conflicts(found: service.ScopeDiff) -> list[dict[str, Any]]:
    return [
        {"source": render.fact_atom(ours), "target": render.fact_atom(theirs)}
        for ours, theirs in found.conflicts
    ]
