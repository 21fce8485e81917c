"""The MCP tool catalogue: every tool of API.md §6 and the REST route it runs through.

A tool is a thin alias of its REST twin: its input schema is the twin's declared body (or
query and path parameters), and a call goes through :func:`nocturnus.api.endpoint.invoke`,
so validation, permissions and database/tenant scope checks are exactly the REST ones and
``structuredContent`` is exactly the REST answer. A tool whose twin is not registered in
this build is not offered at all, so nothing half-works.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from sanic import Request

from nocturnus.api.endpoint import EndpointSpec, find_endpoint, invoke
from nocturnus.api.errors import render_error
from nocturnus.api.schema import SCOPE_NAME, Schema, obj, validate


@dataclass(frozen=True, slots=True)
class Tool:
    """One catalogue entry: what an agent sees, and the REST route that serves it."""

    name: str
    title: str
    description: str
    method: str
    path: str
    path_args: dict[str, Schema] = field(default_factory=dict)
    """Arguments that fill the twin's ``<path>`` parameters, in order, with their schema."""
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False


_SCOPE_ARG: Schema = {"type": "string", "pattern": SCOPE_NAME}

CATALOGUE: tuple[Tool, ...] = (
    Tool(
        "tell",
        "Tell a fact",
        "Store a fact predicate(args...) for this tenant. Args are strings or numbers, echoed "
        "back exactly. Optional: negated, scope (default main), confidence 0..1, ttl (ms), "
        "validFrom/validUntil (epoch ms), metadata, conflictStrategy (REJECT, NEWEST_WINS, "
        "CONFIDENCE, KEEP_BOTH). Telling a known fact again changes nothing. Same as POST /tell.",
        "POST",
        "/tell",
        idempotent=True,
    ),
    Tool(
        "teach",
        "Teach a rule",
        "Teach this tenant a rule: head :- body. Literals are {predicate, args}; args starting "
        "with ? are variables; a body literal may be negated (the negative fact must hold) or "
        "naf (negation as failure); comparisons lt gt le ge eq neq are built in. Rules must be "
        "range-restricted and stratified. Same as POST /teach.",
        "POST",
        "/teach",
        idempotent=True,
    ),
    Tool(
        "ask",
        "Ask by inference",
        "Answer a goal {predicate, args} by logical inference over facts and rules; args "
        "starting with ? are variables. Returns results, bindings and count; withProof adds "
        "proofs; minConfidence filters; scope restricts to one scope; limit pages (pass the "
        "answer's nextCursor as cursor for the next page); shape args, bindings or count "
        "gives a compact answer. Same as POST /ask.",
        "POST",
        "/ask",
        read_only=True,
        idempotent=True,
    ),
    Tool(
        "forget",
        "Forget a fact",
        "Retract one stored fact {predicate, args, negated?, scope?}; everything derived from "
        "it disappears at once. Answers retracted: 0 when nothing matched. Same as POST /forget.",
        "POST",
        "/forget",
        destructive=True,
        idempotent=True,
    ),
    Tool(
        "query",
        "Match stored facts",
        "Pattern-match stored facts only (no rules): {predicate, args} with ?variables as "
        "wildcards, optional scope; limit/cursor pages and shape (args, bindings, count) as "
        "for ask. Same as POST /query.",
        "POST",
        "/query",
        read_only=True,
        idempotent=True,
    ),
    Tool(
        "retract_pattern",
        "Retract facts by pattern",
        "Retract every stored fact matching {predicate, args} where ?variables are wildcards "
        "(scope default main). Returns the retracted facts. Same as POST /retract/pattern.",
        "POST",
        "/retract/pattern",
        destructive=True,
        idempotent=True,
    ),
    Tool(
        "bulk_assert",
        "Tell many facts",
        "Store many facts in one call: {facts: [tell arguments...], atomic?}. With atomic "
        "true all or nothing; otherwise each fact is tried and failures are listed by index. "
        "Same as POST /assert/facts.",
        "POST",
        "/assert/facts",
        idempotent=True,
    ),
    Tool(
        "predicates",
        "List predicates",
        "List the tenant's predicates with arity, fact count and rule count, optionally for "
        "one scope. Same as GET /predicates.",
        "GET",
        "/predicates",
        read_only=True,
        idempotent=True,
    ),
    Tool(
        "aggregate",
        "Aggregate answers",
        "COUNT, SUM, MIN, MAX or AVG over the answers of a goal {predicate, args} (rules take "
        "part); argIndex picks the argument for SUM/MIN/MAX/AVG. Same as POST /aggregate.",
        "POST",
        "/aggregate",
        read_only=True,
        idempotent=True,
    ),
    Tool(
        "recall",
        "Recall the past",
        "The facts matching {predicate, args} as the tenant knew them at timestamp (epoch ms), "
        "from the event log. Same as POST /memory/recall.",
        "POST",
        "/memory/recall",
        read_only=True,
        idempotent=True,
    ),
    Tool(
        "context",
        "Optimized context window",
        "The few facts that matter now, ranked by salience: maxFacts, goals (facts proving "
        "them rank first), predicates filter, scope, format (structured, natural, predicate), "
        "sessionId to remember the window for context_diff. Same as POST /context/optimize.",
        "POST",
        "/context/optimize",
    ),
    Tool(
        "context_diff",
        "Context changes",
        "Only what changed in the context window since this sessionId's last window: added, "
        "removed, unchanged count. Same as POST /context/diff.",
        "POST",
        "/context/diff",
    ),
    Tool(
        "clear_session",
        "Clear a context session",
        "Forget the last window remembered for a context sessionId. "
        "Same as POST /context/session/clear.",
        "POST",
        "/context/session/clear",
        destructive=True,
        idempotent=True,
    ),
    Tool(
        "fork_scope",
        "Fork a scope",
        "Copy a scope's facts and scoped rules into a new, empty scope to reason "
        "hypothetically. Same as POST /scope/fork.",
        "POST",
        "/scope/fork",
    ),
    Tool(
        "diff_scope",
        "Compare scopes",
        "Facts only in the source scope, only in the target, conflicts (same fact, opposite "
        "negation) and the count of identical facts. Same as POST /scope/diff.",
        "POST",
        "/scope/diff",
        read_only=True,
        idempotent=True,
    ),
    Tool(
        "merge_scope",
        "Merge scopes",
        "Merge a source scope into a target with strategy SOURCE_WINS (default), TARGET_WINS, "
        "KEEP_BOTH or REJECT (any conflict: nothing changes). Same as POST /scope/merge.",
        "POST",
        "/scope/merge",
        destructive=True,
    ),
    Tool(
        "list_scopes",
        "List scopes",
        "The tenant's scopes with their fact counts. Same as GET /scopes.",
        "GET",
        "/scopes",
        read_only=True,
        idempotent=True,
    ),
    Tool(
        "delete_scope",
        "Delete a scope",
        "Delete a scope and every fact in it. Same as DELETE /scope/{name}.",
        "DELETE",
        "/scope/<name>",
        path_args={"scope": _SCOPE_ARG},
        destructive=True,
        idempotent=True,
    ),
    Tool(
        "compress",
        "Consolidate memory",
        "Summarize: every first argument shared by at least minCount (5) facts of one "
        "predicate gets one <predicate>_consolidated(first, count) fact; the originals stay. "
        "Same as POST /memory/compress.",
        "POST",
        "/memory/compress",
        idempotent=True,
    ),
    Tool(
        "cleanup",
        "Clean up memory",
        "Remove facts that can never be visible again (expired TTL or validUntil) and, when "
        "the tenant holds more facts than the server allows, the least salient below "
        "threshold (0.05). Same as POST /memory/cleanup.",
        "POST",
        "/memory/cleanup",
        destructive=True,
        idempotent=True,
    ),
    Tool(
        "process_turns",
        "Remember conversation turns",
        "Give the conversation's new turns: their facts are extracted (by the server's LLM, "
        "or lines written as pred(a, b) without one) and stored with provenance, and the "
        "context window comes back (facts, briefingDelta of what is new for this "
        "sessionId, warning). Storing the same turns twice stores nothing new; dry "
        "previews. Same as POST /context with turns.",
        "POST",
        "/context",
        idempotent=True,
    ),
    Tool(
        "ingest",
        "Ingest a text",
        "Extract a text's facts, store them, and get an optimized context window (goals, "
        "maxFacts, sessionId as for context). Same as POST /context/ingest.",
        "POST",
        "/context/ingest",
        idempotent=True,
    ),
    Tool(
        "extract",
        "Extract facts with the LLM",
        "Turn a text into facts (and rules with rules: true) with the server's LLM; assert: "
        "true stores the new ones. Needs an LLM (LLM_NOT_CONFIGURED otherwise). Same as "
        "POST /extract.",
        "POST",
        "/extract",
        idempotent=True,
    ),
    Tool(
        "synthesize",
        "Answer from the knowledge base",
        "Answer a question from the stored facts and rules only: the answer, its derivation, "
        "the queries run and what context is missing. A question written as a goal "
        "(parent(?x, bob)) needs no LLM. Same as POST /synthesize.",
        "POST",
        "/synthesize",
        read_only=True,
        idempotent=True,
    ),
)


HIDDEN_ALIASES: dict[str, str] = {
    "assert_fact": "tell",
    "assert_rule": "teach",
    "infer": "ask",
    "retract": "forget",
    "context_window": "context",
    "temporal_query": "recall",
    "consolidate": "compress",
    "decay": "cleanup",
}
"""The original's legacy tool names: callable, never listed (as the original does), so
agents written against it keep working while ``tools/list`` stays one name per tool."""


@dataclass(frozen=True, slots=True)
class BoundTool:
    """A catalogue entry whose twin route is registered, with the schema it validates."""

    tool: Tool
    path: str
    spec: EndpointSpec
    input_schema: Schema

    def listing(self) -> dict[str, Any]:
        """The ``tools/list`` entry."""
        tool = self.tool
        return {
            "name": tool.name,
            "title": tool.title,
            "description": tool.description,
            "inputSchema": self.input_schema,
            "annotations": {
                "title": tool.title,
                "readOnlyHint": tool.read_only,
                "destructiveHint": tool.destructive,
                "idempotentHint": tool.idempotent,
                "openWorldHint": False,
            },
        }


def bind_tools(catalogue: tuple[Tool, ...] = CATALOGUE) -> dict[str, BoundTool]:
    """Every catalogued tool whose REST twin this build registers, by name."""
    bound: dict[str, BoundTool] = {}
    for tool in catalogue:
        found = find_endpoint(tool.method, tool.path)
        if found is None:
            continue
        path, spec = found
        bound[tool.name] = BoundTool(tool, path, spec, _input_schema(tool, spec))
    return bound


def _input_schema(tool: Tool, spec: EndpointSpec) -> Schema:
    """The twin's body schema, or an object of its query and path parameters."""
    if spec.body is not None:
        schema = copy.deepcopy(spec.body)
        if tool.path_args:
            schema.setdefault("properties", {}).update(copy.deepcopy(tool.path_args))
            schema["required"] = [*schema.get("required", []), *tool.path_args]
        return schema
    properties = {**copy.deepcopy(spec.query), **copy.deepcopy(tool.path_args)}
    return obj(list(tool.path_args), **properties)


def _path_params(path: str) -> list[str]:
    return [p.split(":")[0] for p in re.findall(r"<([^>]+)>", path)]


async def call_tool(
    bound: BoundTool,
    request: Request,
    arguments: Mapping[str, Any],
    *,
    database: str,
    tenant: str,
) -> dict[str, Any]:
    """Run ``bound`` through its REST twin and shape the ``CallToolResult``.

    A failure the REST route would answer with an error envelope becomes a result with
    ``isError: true`` carrying that envelope, so the agent sees the same code and message.
    """
    tool, spec = bound.tool, bound.spec
    try:
        if spec.body is None or tool.path_args:
            # What REST checks on the query string and path; invoke checks the body.
            validate(dict(arguments), bound.input_schema)
        params = {
            name: str(arguments[arg])
            for name, arg in zip(_path_params(bound.path), tool.path_args, strict=True)
        }
        rest = {k: v for k, v in arguments.items() if k not in tool.path_args}
        if spec.body is None:
            body, params = None, {**rest, **params}
        else:
            body = rest
        answer = await invoke(
            request,
            tool.method,
            bound.path,
            body,
            database=database,
            tenant=tenant,
            path_params=params,
        )
    except Exception as e:  # noqa: BLE001 — whatever REST would render, rendered the same
        envelope = orjson.loads(render_error(request, e).body or b"{}")
        return _result(envelope, is_error=True)
    if not isinstance(answer, dict):
        answer = {"result": answer}
    return _result(answer, is_error=False)


def _result(structured: dict[str, Any], *, is_error: bool) -> dict[str, Any]:
    # The spec asks tools with structured output to also send it serialised as text, for
    # clients older than 2025-06-18.
    text = orjson.dumps(structured).decode()
    return {
        "content": [{"type": "text", "text": text}],
        "structuredContent": structured,
        "isError": is_error,
    }
