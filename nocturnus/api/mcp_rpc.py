"""JSON-RPC 2.0 as MCP uses it, independent of the transport that carries it.

The transports (``nocturnus.api.mcp``) parse a body with :func:`parse`, which rejects what
is not a JSON-RPC message at all (HTTP 400 with the JSON-RPC error), then hand the
messages to :func:`answer`, which returns the response (a dict, a list for a batch, or
``None`` when nothing needs an answer: notifications and client responses).

Protocol versions: ``initialize`` answers with the version the client asks for when we
speak it, else with the newest we speak. Batches exist only in 2025-03-26 (added there,
removed in 2025-06-18), so a batch under any other version is rejected.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
from sanic import Request

from nocturnus import __version__
from nocturnus.api import jsonbody
from nocturnus.api.mcp_tools import HIDDEN_ALIASES, BoundTool, call_tool

log = logging.getLogger("nocturnus.mcp")

PROTOCOL_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")
LATEST_VERSION = PROTOCOL_VERSIONS[0]
BATCH_VERSIONS = frozenset({"2025-03-26"})
SSE_DEFAULT_VERSION = "2024-11-05"
"""Before ``initialize``: the HTTP+SSE transport is the 2024-11-05 one."""
HTTP_DEFAULT_VERSION = "2025-03-26"
"""Streamable HTTP without a negotiated version or header: what the spec says to assume."""

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

SERVER_NAME = "nocturnus"
INSTRUCTIONS = (
    "Nocturnus is a logic server. Use tell to store facts, teach to add rules, ask to "
    "answer questions by inference (args starting with ? are variables), query to match "
    "stored facts, context for the few facts that matter now. Every call acts on the "
    "database and tenant of this connection ({database}/{tenant})."
)


class Rejected(Exception):
    """A body that is no acceptable JSON-RPC message: answered with HTTP 400."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        id: Any = None,
        data: Any = None,
    ) -> None:
        super().__init__(message)
        self.status = 400
        self.response = error_response(id, code, message, data)


class _Failure(Exception):
    """A request that gets a JSON-RPC error response."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code, self.message, self.data = code, message, data


@dataclass(slots=True)
class Session:
    """Protocol state of one MCP session (either transport)."""

    id: str
    default_version: str
    protocol_version: str | None = None
    """Negotiated by ``initialize``; ``None`` before it."""

    @property
    def version(self) -> str:
        return self.protocol_version or self.default_version


@dataclass(slots=True)
class Caller:
    """What one exchange runs as.

    ``request`` is the HTTP request whose headers govern the calls (the SSE stream's GET
    or the streamable POST itself): tool calls pass it to the REST twin, so permission and
    scope checks see the same key and headers a REST call would.
    """

    request: Request
    database: str
    tenant: str
    tools: Mapping[str, BoundTool]
    session: Session | None = None


@dataclass(slots=True)
class Message:
    """One validated incoming JSON-RPC message, or the error answering an invalid one."""

    method: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    id: Any = None
    has_id: bool = False
    error: dict[str, Any] | None = None

    @property
    def is_request(self) -> bool:
        return self.has_id and self.method is not None

    @property
    def is_initialize(self) -> bool:
        return self.is_request and self.method == "initialize"


@dataclass(slots=True)
class Incoming:
    messages: list[Message]
    is_batch: bool

    @property
    def needs_answer(self) -> bool:
        return any(m.is_request or m.error is not None for m in self.messages)

    @property
    def is_initialize(self) -> bool:
        return not self.is_batch and self.messages[0].is_initialize


def error_response(
    id: Any, code: int, message: str, data: Any = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": id, "error": error}


def parse(raw: bytes, version: str) -> Incoming:
    """Parse a body into messages.

    :raises Rejected: not JSON (-32700), not a JSON-RPC message (-32600), an empty batch,
        or a batch under a protocol version without batches.
    """
    try:
        payload = jsonbody.loads(raw)
    except orjson.JSONDecodeError as e:
        raise Rejected(PARSE_ERROR, f"Parse error: {e}") from None
    except jsonbody.WideInteger as e:
        raise Rejected(INVALID_REQUEST, f"Invalid Request: {e}") from None
    if isinstance(payload, list):
        if version not in BATCH_VERSIONS:
            raise Rejected(
                INVALID_REQUEST,
                f"Invalid Request: JSON-RPC batches are not part of MCP {version} "
                f"(only of {', '.join(sorted(BATCH_VERSIONS))})",
            )
        if not payload:
            raise Rejected(INVALID_REQUEST, "Invalid Request: empty batch")
        messages = [_message(item) for item in payload]
        for m in messages:
            if m.is_initialize:
                m.error = error_response(
                    m.id,
                    INVALID_REQUEST,
                    "Invalid Request: initialize must not be part of a batch",
                )
        return Incoming(messages, is_batch=True)
    message = _message(payload)
    if message.error is not None:
        error = message.error["error"]
        raise Rejected(error["code"], error["message"], id=message.error["id"])
    return Incoming([message], is_batch=False)


def _message(item: Any) -> Message:
    if not isinstance(item, dict):
        return _invalid(None, "a JSON-RPC message must be an object")
    has_id = "id" in item
    id = item.get("id")
    if has_id and (isinstance(id, bool) or not isinstance(id, (str, int))):
        return _invalid(None, "id must be a string or an integer")
    if item.get("jsonrpc") != "2.0":
        return _invalid(id, 'jsonrpc must be exactly "2.0"')
    if "method" not in item:
        if has_id and ("result" in item) != ("error" in item):
            return Message(
                id=id, has_id=True
            )  # a client's response; we never ask, so ignore
        return _invalid(id, "method is required")
    method = item["method"]
    if not isinstance(method, str):
        return _invalid(id, "method must be a string")
    params = item.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, (dict, list)):
        return _invalid(id, "params must be an object")
    if isinstance(params, list):
        if not has_id:
            return Message(
                method=method
            )  # a notification gets no answer, not even an error
        return Message(
            method=method,
            id=id,
            has_id=True,
            error=error_response(
                id, INVALID_PARAMS, "Invalid params: params must be an object"
            ),
        )
    return Message(method=method, params=params, id=id, has_id=has_id)


def _invalid(id: Any, reason: str) -> Message:
    return Message(
        error=error_response(id, INVALID_REQUEST, f"Invalid Request: {reason}")
    )


async def answer(incoming: Incoming, caller: Caller) -> Any:
    """Process every message; the response(s), or ``None`` when nothing is answered."""
    responses = []
    for message in incoming.messages:
        response = await _answer_one(message, caller)
        if response is not None:
            responses.append(response)
    if not responses:
        return None
    return responses if incoming.is_batch else responses[0]


async def _answer_one(message: Message, caller: Caller) -> dict[str, Any] | None:
    if message.error is not None:
        return message.error
    if message.method is None:
        return None  # a client response
    if not message.has_id:
        # Notifications (initialized, cancelled, progress...) need nothing from us: we
        # do not hold the lifecycle against clients, and tool calls never outlive their
        # request. They are never answered, not even with an error.
        return None
    try:
        result = await _call(message.method, message.params, caller)
    except _Failure as f:
        return error_response(message.id, f.code, f.message, f.data)
    except Exception:
        log.exception("MCP method %s failed", message.method)
        return error_response(
            message.id, INTERNAL_ERROR, "Internal error; this is a bug"
        )
    return {"jsonrpc": "2.0", "id": message.id, "result": result}


async def _call(method: str, params: dict[str, Any], caller: Caller) -> dict[str, Any]:
    if method == "initialize":
        return _initialize(params, caller)
    if method == "ping":
        return {}
    if method == "tools/list":
        if params.get("cursor") is not None:
            raise _Failure(
                INVALID_PARAMS,
                "Invalid params: unknown cursor (tools/list has one page)",
            )
        return {"tools": [t.listing() for t in caller.tools.values()]}
    if method == "tools/call":
        return await _call_tool(params, caller)
    raise _Failure(METHOD_NOT_FOUND, f"Method not found: {method}")


def _initialize(params: dict[str, Any], caller: Caller) -> dict[str, Any]:
    # The original's SDK (nocturnusai.mcp) sends initialize without params: no
    # protocolVersion is our latest, as an unsupported one is.
    requested = params.get("protocolVersion", LATEST_VERSION)
    if not isinstance(requested, str):
        raise _Failure(
            INVALID_PARAMS, "Invalid params: protocolVersion must be a string"
        )
    for name in ("capabilities", "clientInfo"):
        if name in params and not isinstance(params[name], dict):
            raise _Failure(INVALID_PARAMS, f"Invalid params: {name} must be an object")
    session = caller.session
    if session is None:
        raise _Failure(INVALID_REQUEST, "Invalid Request: initialize needs a session")
    if session.protocol_version is not None:
        raise _Failure(
            INVALID_REQUEST, "Invalid Request: this session is already initialized"
        )
    version = requested if requested in PROTOCOL_VERSIONS else LATEST_VERSION
    session.protocol_version = version
    return {
        "protocolVersion": version,
        "capabilities": {"tools": {"listChanged": False}},
        "serverInfo": {
            "name": SERVER_NAME,
            "title": "Nocturnus",
            "version": __version__,
        },
        "instructions": INSTRUCTIONS.format(
            database=caller.database, tenant=caller.tenant
        ),
    }


async def _call_tool(params: dict[str, Any], caller: Caller) -> dict[str, Any]:
    name = params.get("name")
    if not isinstance(name, str):
        raise _Failure(INVALID_PARAMS, "Invalid params: name (a string) is required")
    arguments = params.get("arguments")
    if arguments is None:
        arguments = {}
    if not isinstance(arguments, dict):
        raise _Failure(INVALID_PARAMS, "Invalid params: arguments must be an object")
    bound = caller.tools.get(HIDDEN_ALIASES.get(name, name))
    if bound is None:
        raise _Failure(INVALID_PARAMS, f"Unknown tool: {name}", {"tool": name})
    return await call_tool(
        bound, caller.request, arguments, database=caller.database, tenant=caller.tenant
    )
