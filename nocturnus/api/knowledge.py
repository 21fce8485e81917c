"""REST endpoints for facts, rules and questions (API.md §3). Handlers stay thin."""

from __future__ import annotations

from typing import Any

import orjson
from sanic import Blueprint, HTTPResponse

from nocturnus.api import render
from nocturnus.api.endpoint import (
    NEXT_CURSOR_HEADER,
    Call,
    JsonPieces,
    endpoint,
    raw_json_response,
)
from nocturnus.api.schema import (
    ARGS,
    CONFIDENCE,
    CONFLICT_STRATEGY,
    METADATA,
    PREDICATE,
    SCOPE,
    SCOPE_NAME,
    TIMESTAMP,
    Schema,
    nullable,
    obj,
)
from nocturnus.engine.rules import BUILTIN_NAMES, Literal
from nocturnus.engine.terms import Const, Var, parse_term
from nocturnus.errors import ValidationError
from nocturnus.service import tenants
from nocturnus.service.answers import Page
from nocturnus.service.commands import MAIN_SCOPE, TeachRule, TellFact
from nocturnus.service.facts import FactKey
from nocturnus.service.formats import fact_text
from nocturnus.service.queries import AGGREGATE_OPERATIONS, aggregate

knowledge = Blueprint("knowledge")

MAX_METADATA_BYTES = 32 * 1024
MAX_METADATA_DEPTH = 16
"""Objects and arrays nested in ``metadata``, itself included (issue 14: a fact whose
metadata nested ~250 deep was taken, then every encoding of it failed: the event, the
snapshot, each answer carrying it)."""
MAX_RULE_BODY = 32
BOOL: Schema = nullable({"type": "boolean"})
LIMIT: Schema = nullable({"type": "integer", "minimum": 1})

TELL_FIELDS: dict[str, Schema] = {
    "predicate": PREDICATE,
    "args": ARGS,
    "negated": BOOL,
    "truthVal": BOOL,
    "scope": SCOPE,
    "confidence": CONFIDENCE,
    "ttl": nullable({"type": "integer", "minimum": 1}),
    "validFrom": TIMESTAMP,
    "validUntil": TIMESTAMP,
    "metadata": METADATA,
    "conflictStrategy": CONFLICT_STRATEGY,
}
TELL_BODY = obj(["predicate", "args"], **TELL_FIELDS)
BULK_BODY = obj(
    ["facts"],
    facts={"type": "array", "items": TELL_BODY, "minItems": 1, "maxItems": 10_000},
    atomic=BOOL,
)
PATTERN_FIELDS: dict[str, Schema] = {
    "predicate": PREDICATE,
    "args": ARGS,
    "negated": BOOL,
    "truthVal": BOOL,
    "scope": SCOPE,
}
PATTERN_BODY = obj(["predicate", "args"], **PATTERN_FIELDS)
SHAPES = ("full", "args", "bindings", "count")
PAGE_FIELDS: dict[str, Schema] = {
    "limit": LIMIT,
    "cursor": nullable({"type": "string", "minLength": 1, "maxLength": 8192}),
    "shape": nullable({"type": "string", "enum": list(SHAPES)}),
}
QUERY_BODY = obj(["predicate", "args"], **PATTERN_FIELDS, **PAGE_FIELDS)
ASK_BODY = obj(
    ["predicate", "args"],
    **PATTERN_FIELDS,
    withProof=BOOL,
    minConfidence=CONFIDENCE,
    **PAGE_FIELDS,
)
INFER_BODY = obj(
    ["predicate", "args"],
    **TELL_FIELDS,
    withProof=BOOL,
    minConfidence=CONFIDENCE,
    **PAGE_FIELDS,
)
AGGREGATE_BODY = obj(
    ["predicate", "args", "operation"],
    **PATTERN_FIELDS,
    operation={"type": "string", "enum": [*AGGREGATE_OPERATIONS, *(o.lower() for o in AGGREGATE_OPERATIONS)]},
    argIndex=nullable({"type": "integer", "minimum": 0, "maximum": 63}),
)
LITERAL = obj(
    ["predicate", "args"],
    predicate=PREDICATE,
    args=ARGS,
    negated=BOOL,
    naf=BOOL,
    truthVal=BOOL,
    scope=SCOPE,
    metadata=METADATA,
)
TEACH_BODY = obj(
    ["head", "body"],
    head=LITERAL,
    body={"type": "array", "items": LITERAL, "minItems": 1, "maxItems": MAX_RULE_BODY},
    scope=SCOPE,
    confidence=CONFIDENCE,
)
SCOPE_QUERY: dict[str, Schema] = {"scope": {"type": "string", "pattern": SCOPE_NAME}}
PROOF_QUERY: dict[str, Schema] = {
    "proof": {"type": "string", "enum": ["true", "false"]},
    "minConfidence": {"type": "string", "pattern": r"^(0(\.\d+)?|1(\.0+)?)$"},
}


# -- body → domain objects ------------------------------------------------------------

def negated_of(body: dict[str, Any]) -> bool:
    """``negated:true`` or the upstream ``truthVal:false`` both mean explicit negation."""
    return bool(body.get("negated")) or body.get("truthVal") is False


def constants(args: list[Const], field: str = "args") -> tuple[Const, ...]:
    """Fact arguments: no variables allowed."""
    for i, value in enumerate(args):
        if type(value) is str:
            if not value.startswith("?"):  # what parse_term reads as a constant
                continue
        elif type(value) is int or type(value) is float:
            continue
        if isinstance(parse_term(value), Var):
            raise ValidationError(
                f"{field}[{i}]: a fact cannot contain the variable {value!r}", field=f"{field}[{i}]"
            )
    return tuple(args)


def pattern(args: list[Const]) -> tuple[Var | Const, ...]:
    return tuple(parse_term(a) for a in args)


def write_scope(body: dict[str, Any]) -> str:
    return body.get("scope") or MAIN_SCOPE


def checked_metadata(body: dict[str, Any], field: str = "") -> dict[str, Any]:
    """The body's ``metadata`` (``{}`` when absent), bounded in size and depth.

    The size is measured first, in C, so the depth walk only ever sees 32 KiB; a
    value too deep for orjson itself to encode is too deep for us as well.

    :raises ValidationError: larger than ``MAX_METADATA_BYTES`` as JSON, or nested
        deeper than ``MAX_METADATA_DEPTH``.
    """
    metadata: dict[str, Any] = body.get("metadata") or {}
    if not metadata:
        return metadata
    label = f"{field}metadata"
    too_deep = ValidationError(
        f"{label}: nested deeper than {MAX_METADATA_DEPTH} levels", field=label
    )
    try:
        size = len(orjson.dumps(metadata))
    except orjson.JSONEncodeError:  # beyond orjson's nesting limit
        raise too_deep from None
    if size > MAX_METADATA_BYTES:
        raise ValidationError(f"{label}: larger than 32 KiB as JSON", field=label)
    if nesting_depth(metadata) > MAX_METADATA_DEPTH:
        raise too_deep
    return metadata


def nesting_depth(value: Any) -> int:
    """Levels of objects and arrays in a parsed JSON value (a scalar is 0), without
    recursion, so any depth the parser returned is measured."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in children)
    return deepest


def tell_command(body: dict[str, Any], field: str = "") -> TellFact:
    metadata = checked_metadata(body, field)
    return TellFact(
        predicate=body["predicate"],
        args=constants(body["args"], f"{field}args"),
        negated=negated_of(body),
        scope=write_scope(body),
        confidence=body.get("confidence"),
        ttl=body.get("ttl"),
        valid_from=body.get("validFrom"),
        valid_until=body.get("validUntil"),
        metadata=metadata,
        conflict_strategy=body.get("conflictStrategy"),
    )


def goal_literal(body: dict[str, Any]) -> Literal:
    if body["predicate"] in BUILTIN_NAMES:
        raise ValidationError(
            f"predicate: {body['predicate']!r} is a built-in and cannot be asked", field="predicate"
        )
    return Literal(body["predicate"], pattern(body["args"]), negated_of(body))


def rule_literal(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "predicate": data["predicate"],
        "args": list(data["args"]),
        "negated": negated_of(data),
        "naf": bool(data.get("naf")),
    }


def teach_command(body: dict[str, Any]) -> TeachRule:
    head = body["head"]
    if head.get("naf"):
        raise ValidationError("head.naf: a rule head cannot be negation as failure", field="head.naf")
    return TeachRule(
        head=rule_literal(head),
        body=tuple(rule_literal(b) for b in body["body"]),
        scope=body.get("scope"),
        confidence=body.get("confidence"),
    )


# -- facts ----------------------------------------------------------------------------

@endpoint(knowledge, "POST", "/tell", "/assert/fact", summary="Store a fact", body=TELL_BODY, tenant=True)
async def tell(call: Call) -> dict[str, Any]:
    outcome = await tenants.tell(call.database, call.tenant_id, tell_command(call.body))
    answer: dict[str, Any] = {
        "stored": outcome.stored,
        "fact": render.fact_atom(outcome.record),
        "message": outcome.message,
    }
    if outcome.replaced:
        answer["replaced"] = [render.fact_atom(r) for r in outcome.replaced]
    return answer


@endpoint(knowledge, "POST", "/assert/facts", summary="Store many facts in one append", body=BULK_BODY, tenant=True)
async def tell_many(call: Call) -> dict[str, Any]:
    limit = call.request.app.ctx.settings.max_bulk_facts
    facts = call.body["facts"]
    if len(facts) > limit:
        raise ValidationError(f"facts: at most {limit} facts per call", field="facts")
    cmds = [tell_command(f, f"facts[{i}].") for i, f in enumerate(facts)]
    outcome = await tenants.tell_many(call.database, call.tenant_id, cmds, bool(call.body.get("atomic")))
    return {
        "asserted": outcome.asserted,
        "failed": len(outcome.errors),
        "errors": [{"index": e.index, "code": e.code, "message": e.message} for e in outcome.errors],
    }


@endpoint(knowledge, "POST", "/forget", "/retract", summary="Remove one fact", body=PATTERN_BODY, tenant=True)
async def forget(call: Call) -> dict[str, Any]:
    body = call.body
    key = FactKey(write_scope(body), body["predicate"], negated_of(body), constants(body["args"]))
    outcome = await tenants.forget(call.database, call.tenant_id, key)
    return {"retracted": len(outcome.records), "message": f"Forgotten: {fact_text(key)}"}


@endpoint(knowledge, "POST", "/retract/pattern", summary="Remove every fact matching a pattern", body=PATTERN_BODY, tenant=True)
async def retract_pattern(call: Call) -> dict[str, Any]:
    body = call.body
    outcome = await tenants.retract_pattern(
        call.database, call.tenant_id, body["predicate"], negated_of(body), pattern(body["args"]), write_scope(body)
    )
    atoms = [render.fact_atom(r) for r in outcome.records]
    return {"retracted": len(atoms), "facts": atoms, "atoms": atoms}


# -- rules ----------------------------------------------------------------------------

@endpoint(knowledge, "POST", "/teach", "/assert/rule", summary="Teach a rule to this tenant", body=TEACH_BODY, tenant=True)
async def teach(call: Call) -> dict[str, Any]:
    outcome = await tenants.teach(call.database, call.tenant_id, teach_command(call.body))
    text = outcome.record.rule.text()
    return {
        "stored": outcome.stored,
        "rule": render.rule_info(outcome.record),
        "message": ("Rule stored: " if outcome.stored else "Rule already known: ") + text,
    }


@endpoint(knowledge, "GET", "/rules", summary="The database's rules and this tenant's own", tenant=True)
async def list_rules(call: Call) -> dict[str, Any]:
    records = await tenants.rules(call.database, call.tenant_id)
    return {"rules": [render.rule_info(r) for r in records], "count": len(records)}


@endpoint(knowledge, "DELETE", "/rules/<rule_id>", summary="Remove one of this tenant's rules", tenant=True)
async def remove_rule(call: Call) -> dict[str, Any]:
    rule_id = call.query["rule_id"]
    await tenants.remove_rule(call.database, call.tenant_id, rule_id)
    return {"deleted": rule_id}


# -- questions ------------------------------------------------------------------------

def shape_of(body: dict[str, Any], with_proof: bool) -> str:
    """The requested answer shape, checked against the other options.

    :raises ValidationError: ``count`` with a limit or cursor, or proofs in a
        compact shape.
    """
    shape: str = body.get("shape") or "full"
    if shape == "count" and (body.get("limit") is not None or body.get("cursor")):
        raise ValidationError(
            "shape: count answers how many answers there are; limit and cursor "
            "do not apply",
            field="shape",
        )
    if with_proof and shape != "full":
        raise ValidationError(
            f"shape: proofs come with full answers only, not with {shape!r}",
            field="shape",
        )
    return shape


def shaped(page: Page, goal: Literal, shape: str, *, bindings: bool) -> JsonPieces:
    """An answer page as a JSON object in ``shape`` (rendered in bulk).

    ``full`` is ``{"results":[Atom…], "bindings":[…]?, "count"}``; ``args`` is
    ``{"results":[[arg…]…], "scopes":[…], "count"}``; ``bindings`` is
    ``{"bindings":[…], "count"}``. ``nextCursor`` follows when more answers remain.
    """
    bulk = render.BulkAnswers(page.answers)
    out: list[bytes] = []
    if shape == "full":
        out.append(b'{"results":')
        bulk.atoms(out)
        if bindings:
            out.append(b',"bindings":')
            bulk.bindings(goal, out)
    elif shape == "args":
        out.append(b'{"results":')
        bulk.args(out)
        out.append(b',"scopes":')
        bulk.scopes(out)
    else:
        out.append(b'{"bindings":')
        bulk.bindings(goal, out)
    out += [b',"count":', str(len(bulk)).encode()]
    if page.next_cursor is not None:
        out += [b',"nextCursor":', orjson.dumps(page.next_cursor)]
    out.append(b"}")
    return JsonPieces(out)


@endpoint(knowledge, "POST", "/ask", summary="Answer a goal by inference", body=ASK_BODY, tenant=True)
async def ask(call: Call) -> dict[str, Any] | JsonPieces:
    body = call.body
    goal = goal_literal(body)
    with_proof = bool(body.get("withProof"))
    shape = shape_of(body, with_proof)
    scope = body.get("scope")
    min_confidence = body.get("minConfidence")
    if shape == "count":
        count = await tenants.count_answers(
            call.database, call.tenant_id, goal, scope, min_confidence=min_confidence
        )
        return {"count": count}
    asked = await tenants.ask_page(
        call.database,
        call.tenant_id,
        goal,
        scope,
        min_confidence=min_confidence,
        limit=body.get("limit"),
        cursor=body.get("cursor"),
        with_proof=with_proof,
    )
    if asked.proved is None:
        return shaped(asked.page, goal, shape, bindings=True)
    bind = render.binder(goal)
    answer: dict[str, Any] = {
        "results": [render.answer_atom(a) for a in asked.proved],
        "bindings": [bind(a) for a in asked.proved],
        "count": len(asked.proved),
    }
    if asked.page.next_cursor is not None:
        answer["nextCursor"] = asked.page.next_cursor
    return answer


@endpoint(
    knowledge, "POST", "/infer", summary="Answer a goal by inference (bare array, upstream shape)",
    body=INFER_BODY, tenant=True, query=PROOF_QUERY,
)
async def infer(call: Call) -> dict[str, Any] | HTTPResponse | JsonPieces:
    body = call.body
    goal = goal_literal(body)
    with_proof = call.query.get("proof") == "true" or bool(body.get("withProof"))
    shape = shape_of(body, with_proof)
    scope = body.get("scope")
    min_confidence = body.get("minConfidence")
    if "minConfidence" in call.query:
        min_confidence = float(call.query["minConfidence"])
    elif min_confidence is None:
        min_confidence = body.get("confidence")
    if shape == "count":
        count = await tenants.count_answers(
            call.database, call.tenant_id, goal, scope, min_confidence=min_confidence
        )
        return {"count": count}
    asked = await tenants.ask_page(
        call.database,
        call.tenant_id,
        goal,
        scope,
        min_confidence=min_confidence,
        limit=body.get("limit"),
        cursor=body.get("cursor"),
        with_proof=with_proof,
    )
    headers = {}
    if asked.page.next_cursor is not None:
        headers[NEXT_CURSOR_HEADER] = asked.page.next_cursor
    if asked.proved is None:
        if shape != "full":
            return shaped(asked.page, goal, shape, bindings=True)
        out: list[bytes] = []
        render.BulkAnswers(asked.page.answers).atoms(out)
        return JsonPieces(out, headers)
    results = []
    for a in asked.proved:
        atom = render.answer_atom(a, upstream_steps=True)
        results.append({"result": atom, "proof": atom.pop("proof", None)})
    return raw_json_response(orjson.dumps(results), headers=headers)


@endpoint(
    knowledge, "POST", "/query", summary="Match stored facts (no rules)", body=QUERY_BODY,
    tenant=True,
)
async def query(call: Call) -> dict[str, Any] | JsonPieces:
    body = call.body
    shape = shape_of(body, False)
    page = await tenants.match_page(
        call.database,
        call.tenant_id,
        body["predicate"],
        negated_of(body),
        pattern(body["args"]),
        body.get("scope"),
        limit=None if shape == "count" else body.get("limit"),
        cursor=body.get("cursor"),
    )
    if shape == "count":
        return {"count": len(page.answers)}
    goal = Literal(body["predicate"], pattern(body["args"]), negated_of(body))
    return shaped(page, goal, shape, bindings=False)


@endpoint(knowledge, "GET", "/predicates", summary="Predicates with fact and rule counts", tenant=True, query=SCOPE_QUERY)
async def predicates(call: Call) -> dict[str, Any]:
    stats = await tenants.predicates(call.database, call.tenant_id, call.query.get("scope"))
    return {
        "predicates": [
            {
                "predicate": s.predicate,
                "arity": s.arity,
                "factCount": s.fact_count,
                "ruleCount": s.rule_count,
                "hasRules": s.rule_count > 0,
            }
            for s in stats
        ],
        "totalPredicates": len(stats),
        "totalFacts": sum(s.fact_count for s in stats),
        "totalRules": sum(s.rule_count for s in stats),
    }


@endpoint(knowledge, "POST", "/aggregate", summary="COUNT/SUM/MIN/MAX/AVG over the answers of a goal", body=AGGREGATE_BODY, tenant=True)
async def aggregate_answers(call: Call) -> dict[str, Any]:
    body = call.body
    goal = goal_literal(body)
    answers = await tenants.ask(call.database, call.tenant_id, goal, body.get("scope"))
    operation = body["operation"].upper()
    result = aggregate(answers, operation, body.get("argIndex") or 0)
    return {
        "operation": result.operation,
        "predicate": goal.predicate,
        "result": result.result,
        "matchedFacts": result.matched,
    }
