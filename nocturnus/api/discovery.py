"""What an agent reads to learn the server: ``/llm.txt`` and an A2A agent card.

Both are public, as in the original, and generated from what serves the requests: the
manual from the endpoint declarations (the OpenAPI document), the card's skills from
the MCP tool catalogue. Neither names a database, a tenant or a key.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from sanic import Blueprint, HTTPResponse, Request

from nocturnus import __version__
from nocturnus.api.endpoint import Call, endpoint
from nocturnus.api.mcp_rpc import LATEST_VERSION, SERVER_NAME
from nocturnus.api.mcp_tools import CATALOGUE

discovery = Blueprint("discovery")

DESCRIPTION = (
    "An event-sourced, multi-tenant logic server for AI agents: facts, rules with "
    "proofs, scopes, memory upkeep and context windows, over REST and MCP."
)

_PREAMBLE = f"""# Nocturnus {__version__}

> {DESCRIPTION}

## Conventions
- `X-Database`: the database (default `default`); `X-Tenant-ID`: the tenant, required on
  every data route (facts, rules, questions, scopes, context, memory).
- With authentication on, send a key as `Authorization: Bearer <key>` or `X-API-Key`.
- Every error is `{{"code", "message", "details"}}` with a 4xx status.
- MCP: `POST /mcp` (streamable HTTP) or `GET /mcp/sse`; the tools mirror the routes below.
- `GET /openapi.json` holds every body schema.

## Routes
"""


def llm_text(document: dict[str, Any]) -> str:
    """The manual: every route of ``document`` (an OpenAPI document), grouped by area."""
    areas: dict[str, list[str]] = defaultdict(list)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            public = " (public)" if operation.get("security") == [] else ""
            line = f"- `{method.upper()} {path}`: {operation['summary']}{public}"
            areas[operation["tags"][0]].append(line)
    sections = [f"### {area}\n" + "\n".join(lines) for area, lines in sorted(areas.items())]
    return _PREAMBLE + "\n\n".join(sections) + "\n"


def base_url(request: Request) -> str:
    """The URL the client reached the server at (as its ``Host`` header says)."""
    return f"{request.scheme}://{request.host}"


def agent_card(base: str, auth_enabled: bool) -> dict[str, Any]:
    """The A2A agent card, shaped as the original's: skills are the MCP tools."""
    return {
        "name": SERVER_NAME,
        "description": DESCRIPTION,
        "url": base,
        "version": __version__,
        "documentationUrl": f"{base}/llm.txt",
        "provider": {"organization": "Nocturnus", "url": base},
        "capabilities": {
            "streaming": True,
            "pushNotifications": False,
            "stateTransitionHistory": True,
        },
        "authentication": {
            "schemes": ["bearer", "apiKey"] if auth_enabled else [],
            "required": auth_enabled,
        },
        "defaultInputModes": ["application/json"],
        "defaultOutputModes": ["application/json", "text/plain"],
        "skills": [
            {
                "id": tool.name,
                "name": tool.title,
                "description": tool.description,
                "tags": ["read-only" if tool.read_only else "writes"],
                "examples": [],
            }
            for tool in CATALOGUE
        ],
        "protocolSupport": {
            "mcp": {
                "endpoint": f"{base}/mcp",
                "sseEndpoint": f"{base}/mcp/sse",
                "protocolVersion": LATEST_VERSION,
            },
            "rest": {"baseUrl": base, "openapi": f"{base}/openapi.json"},
        },
    }


@endpoint(
    discovery,
    "GET",
    "/llm.txt",
    summary="A Markdown manual of every route, for language models (public)",
    response_type="text/markdown; charset=utf-8",
)
async def manual(call: Call) -> HTTPResponse:
    text = llm_text(call.request.app.ctx.openapi)
    return HTTPResponse(text, content_type="text/markdown; charset=utf-8")


@endpoint(
    discovery,
    "GET",
    "/.well-known/agent.json",
    summary="The A2A agent card: skills (the MCP tools) and endpoints (public)",
)
async def card(call: Call) -> dict[str, Any]:
    request = call.request
    return agent_card(base_url(request), request.app.ctx.security.enabled)
