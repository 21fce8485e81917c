"""MCP over HTTP (API.md §6): the HTTP+SSE transport and the Streamable HTTP transport.

* ``GET /mcp/sse`` opens a session: an ``endpoint`` event names
  ``/mcp/messages?sessionId=…``; each POST there is answered 202 at once and its JSON-RPC
  response comes back **on the stream**. The GET's headers (database, tenant, key) govern
  the whole session; a POST must come with the same key (and, where it names them, the
  same database and tenant).
* ``POST /mcp`` answers JSON-RPC in the HTTP response (``application/json``).
  ``initialize`` opens a session named by the ``Mcp-Session-Id`` response header;
  ``GET /mcp`` opens that session's server-to-client stream, ``DELETE /mcp`` ends it. Every
  request naming the session must come with the key, database and tenant that opened it.
  A POST without a session is served on its own.

A session found for anyone but its owner is unknown to them (404); sessions live in
memory, bounded per transport, per key and per tenant (:mod:`nocturnus.api.mcp_sessions`);
a stream ends when its client goes away, its session is deleted, or the server stops
(it does not hold up shutdown).
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson
from sanic import Blueprint, HTTPResponse, Request, Sanic

from nocturnus.api.endpoint import (
    Call,
    database_header,
    endpoint,
    json_response,
    tenant_header,
)
from nocturnus.api.mcp_rpc import (
    HTTP_DEFAULT_VERSION,
    INVALID_REQUEST,
    PROTOCOL_VERSIONS,
    SSE_DEFAULT_VERSION,
    Caller,
    Incoming,
    Rejected,
    Session,
    answer,
    error_response,
    parse,
)
from nocturnus.api.mcp_sessions import Owner, SessionLimits, Sessions
from nocturnus.api.mcp_tools import BoundTool, bind_tools
from nocturnus.errors import (
    Forbidden,
    NocturnusError,
    NotFound,
    Unavailable,
    ValidationError,
)
from nocturnus.service.authenticator import Principal
from nocturnus.settings import Settings

mcp = Blueprint("mcp")

DEFAULT_TENANT = "default"
SESSION_HEADER = "Mcp-Session-Id"
VERSION_HEADER = "MCP-Protocol-Version"
MAX_PENDING = 64
"""Unanswered messages one SSE session may have in flight before POSTs get 503."""
SHUTDOWN_STEP_S = 2.5
"""Longest wait of each shutdown step: in-flight SSE calls, then the streams' ends."""
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


class EventStream:
    """One open ``text/event-stream`` response: queued events, keepalives, a clean end."""

    def __init__(self) -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.done = asyncio.Event()
        self.is_closing = False

    def push(self, message: Any) -> None:
        self._queue.put_nowait(
            b"event: message\ndata: " + orjson.dumps(message) + b"\n\n"
        )

    def close(self) -> None:
        if not self.is_closing:
            self.is_closing = True
            self._queue.put_nowait(None)

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def run(self, request: Request, first: bytes, keepalive_s: float) -> None:
        """Send ``first``, then queued events and keepalive comments until closed.

        When the client goes away Sanic cancels the handler; the caller's ``finally``
        cleans up.
        """
        try:
            response = await request.respond(
                content_type="text/event-stream", headers=SSE_HEADERS
            )
            await response.send(first)
            while True:
                try:
                    item = await asyncio.wait_for(self._queue.get(), keepalive_s)
                except TimeoutError:
                    await response.send(b": keepalive\n\n")
                    continue
                if item is None:
                    break
                await response.send(item)
            await response.eof()
        finally:
            self.is_closing = True
            self.done.set()


@dataclass(slots=True, eq=False)
class SseSession:
    """An HTTP+SSE session: its stream, the GET that governs it, its in-flight calls."""

    session: Session
    request: Request
    database: str
    tenant: str
    stream: EventStream = field(default_factory=EventStream)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def spawn(self, incoming: Incoming, tools: dict[str, BoundTool]) -> None:
        caller = Caller(self.request, self.database, self.tenant, tools, self.session)
        task = asyncio.get_running_loop().create_task(self._deliver(incoming, caller))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _deliver(self, incoming: Incoming, caller: Caller) -> None:
        response = await answer(incoming, caller)
        if response is not None and not self.stream.is_closing:
            self.stream.push(response)

    async def finish(self) -> None:
        """Let in-flight calls deliver their answers, then end the stream."""
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=SHUTDOWN_STEP_S)
        self.stream.close()


@dataclass(slots=True, eq=False)
class HttpSession:
    """A Streamable HTTP session; ``stream`` is its optional ``GET /mcp`` stream."""

    session: Session
    stream: EventStream | None = None

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()


@dataclass(slots=True)
class McpState:
    """``app.ctx.mcp``: the tools this build offers and the open sessions."""

    tools: dict[str, BoundTool]
    sse: Sessions[SseSession]
    http: Sessions[HttpSession]
    keepalive_s: float

    @classmethod
    def create(cls, settings: Settings) -> McpState:
        limits = SessionLimits(
            total=settings.mcp_sessions,
            per_key=settings.mcp_sessions_per_key,
            per_tenant=settings.mcp_sessions_per_tenant,
            idle_s=settings.mcp_session_idle_s,
        )
        return cls(
            tools=bind_tools(),
            sse=Sessions("SSE", limits),
            http=Sessions("Streamable HTTP", limits),
            keepalive_s=settings.mcp_keepalive_ms / 1000,
        )

    async def close(self) -> None:
        """End every stream, letting in-flight SSE calls answer first; bounded in time."""
        streams = []
        finishing = []
        for sse in self.sse:
            finishing.append(sse.finish())
            streams.append(sse.stream)
        for http in self.http:
            if http.stream is not None:
                http.close()
                streams.append(http.stream)
        await asyncio.gather(*finishing)
        waits = [asyncio.ensure_future(s.done.wait()) for s in streams]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=SHUTDOWN_STEP_S)
            for waiter in pending:
                waiter.cancel()


@mcp.before_server_start
async def open_mcp(app: Sanic) -> None:
    app.ctx.mcp = McpState.create(app.ctx.settings)


@mcp.before_server_stop
async def close_mcp(app: Sanic) -> None:
    if app.ctx.mcp is not None:
        await app.ctx.mcp.close()


def _state(request: Request) -> McpState:
    state: McpState = request.app.ctx.mcp
    return state


# -- checks shared by the routes --------------------------------------------------------


def _check_origin(request: Request) -> None:
    """Refuse browser requests from other sites (DNS rebinding; MCP transports spec).

    Clients that are not browsers send no ``Origin``; a browser page is let in only from a
    loopback origin.

    :raises Forbidden: an ``Origin`` that is not loopback.
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return
    host = urlsplit(origin).hostname if "://" in origin else None
    if host not in _LOOPBACK:
        raise Forbidden(f"Origin {origin[:100]!r} is not allowed", {"field": "Origin"})


def _accepts(request: Request, mime: str) -> bool:
    accept = request.headers.get("Accept")
    if not accept:
        return True
    kind = mime.split("/")[0]
    for part in accept.split(","):
        value = part.split(";")[0].strip().lower()
        if value in (mime, f"{kind}/*", "*/*"):
            return True
    return False


def _rpc_error(status: int, code: int, message: str, data: Any = None) -> HTTPResponse:
    """A JSON-RPC error without an id (the transport refused the message before reading it)."""
    return json_response(error_response(None, code, message, data), status)


def _rpc_failure(error: NocturnusError) -> HTTPResponse:
    """A transport-level refusal on a JSON-RPC route: its HTTP status, a JSON-RPC body."""
    data = {"code": error.code, "details": error.details}
    return _rpc_error(error.status, INVALID_REQUEST, error.message, data)


def _version_header(request: Request, negotiated: str | None) -> str | None:
    """The ``MCP-Protocol-Version`` header, checked.

    :raises ValidationError: a version we do not speak, or not the session's.
    """
    value = request.headers.get(VERSION_HEADER)
    if value is None:
        return None
    value = value.strip()
    if value not in PROTOCOL_VERSIONS:
        raise ValidationError(
            f"{VERSION_HEADER}: {value[:40]!r} is not supported "
            f"(supported: {', '.join(PROTOCOL_VERSIONS)})",
            field=VERSION_HEADER,
            details={"supported": list(PROTOCOL_VERSIONS), "requested": value[:40]},
        )
    if negotiated is not None and value != negotiated:
        raise ValidationError(
            f"{VERSION_HEADER}: {value!r} differs from the session's negotiated {negotiated!r}",
            field=VERSION_HEADER,
        )
    return value


# -- HTTP+SSE (2024-11-05) -----------------------------------------------------------


@endpoint(
    mcp,
    "GET",
    "/mcp/sse",
    summary="MCP HTTP+SSE transport: open a session stream",
    passes_transaction=True,
)
async def sse_open(call: Call) -> None:
    request = call.request
    _check_origin(request)
    database = database_header(request)
    tenant = tenant_header(request, DEFAULT_TENANT)
    # An unknown database is refused now (404), not at every tool call.
    request.app.ctx.databases.get(database)
    state = _state(request)
    session_id = uuid.uuid4().hex
    sse = SseSession(
        Session(session_id, SSE_DEFAULT_VERSION), request, database, tenant
    )
    # A live stream is never ended to make room: a full bound refuses (503).
    owner = Owner(call.principal.key_id, database, tenant)
    state.sse.add(session_id, sse, owner, make_room=False)
    first = f"event: endpoint\ndata: /mcp/messages?sessionId={session_id}\n\n".encode()
    try:
        await sse.stream.run(request, first, state.keepalive_s)
    finally:
        state.sse.remove(session_id)
        for task in list(sse.tasks):
            task.cancel()


@endpoint(
    mcp,
    "POST",
    "/mcp/messages",
    summary="MCP HTTP+SSE transport: send a JSON-RPC message; the answer comes on the stream",
    query={"sessionId": {"type": "string", "minLength": 1, "maxLength": 64}},
    passes_transaction=True,
)
async def sse_message(call: Call) -> HTTPResponse:
    request = call.request
    try:
        _check_origin(request)
        session_id = call.query.get("sessionId")
        if not session_id:
            raise ValidationError(
                "sessionId: query parameter is required", field="sessionId"
            )
    except NocturnusError as e:
        return _rpc_failure(e)
    state = _state(request)
    try:
        owner = _sse_caller(request, call.principal, state.sse.owner_of(session_id))
    except NocturnusError as e:
        return _rpc_failure(e)
    sse = state.sse.get(session_id, owner) if owner is not None else None
    if sse is None or sse.stream.is_closing:
        return _rpc_error(
            404, INVALID_REQUEST, f"Unknown or closed MCP session {session_id!r}"
        )
    try:
        incoming = parse(request.body, sse.session.version)
    except Rejected as e:
        return json_response(e.response, e.status)
    if incoming.needs_answer and len(sse.tasks) + sse.stream.pending >= MAX_PENDING:
        return _rpc_error(
            503,
            INVALID_REQUEST,
            "Too many unanswered messages on this session's stream",
        )
    sse.spawn(incoming, state.tools)
    return json_response({"accepted": True}, 202)


def _sse_caller(
    request: Request, principal: Principal, session_owner: Owner | None
) -> Owner | None:
    """Who posts to an SSE session: the POST's key, and its database and tenant where
    its headers name them (the GET's where they do not: the GET governs the session).
    ``None`` when there is no such session.

    :raises ValidationError: a malformed ``X-Database`` or ``X-Tenant-ID`` (whether or
        not the session exists, so the answer tells nothing about it).
    """
    named_database = request.headers.get("X-Database", "").strip()
    database = database_header(request) if named_database else None
    tenant = tenant_header(request, DEFAULT_TENANT)
    if session_owner is None:
        return None
    if not request.headers.get("X-Tenant-ID", "").strip():
        tenant = session_owner.tenant
    return Owner(principal.key_id, database or session_owner.database, tenant)


# -- Streamable HTTP (2025-03-26 and later) ------------------------------------------


@endpoint(
    mcp,
    "POST",
    "/mcp",
    summary="MCP Streamable HTTP transport: send JSON-RPC",
    passes_transaction=True,
)
async def http_message(call: Call) -> HTTPResponse:
    request = call.request
    state = _state(request)
    try:
        _check_origin(request)
        if not _accepts(request, "application/json"):
            return _rpc_error(
                406, INVALID_REQUEST, "Not Acceptable: answers are application/json"
            )
        database = database_header(request)
        tenant = tenant_header(request, DEFAULT_TENANT)
        owner = Owner(call.principal.key_id, database, tenant)
        http = _http_session(request, owner) if SESSION_HEADER in request.headers else None
        negotiated = http.session.protocol_version if http is not None else None
        header_version = _version_header(request, negotiated)
    except NocturnusError as e:
        return _rpc_failure(e)
    version = negotiated or header_version or HTTP_DEFAULT_VERSION
    try:
        incoming = parse(request.body, version)
    except Rejected as e:
        return json_response(e.response, e.status)
    opening = http is None and incoming.is_initialize
    if opening:
        http = HttpSession(Session(uuid.uuid4().hex, HTTP_DEFAULT_VERSION))
    session = http.session if http is not None else None
    response = await answer(
        incoming, Caller(request, database, tenant, state.tools, session)
    )
    if response is None:
        return HTTPResponse(status=202)
    reply = json_response(response)
    if http is None or (opening and "result" not in response):
        return reply  # no session, or a failed initialize: it opens none
    if opening:
        try:
            ended = state.http.add(http.session.id, http, owner, make_room=True)
        except Unavailable as e:
            return _rpc_failure(e)
        for old in ended:
            old.close()
    reply.headers[SESSION_HEADER] = http.session.id
    return reply


def _http_session(request: Request, owner: Owner) -> HttpSession:
    """The session named by ``Mcp-Session-Id`` if ``owner`` opened it (issue 14).

    :raises ValidationError: no ``Mcp-Session-Id``.
    :raises NotFound: an unknown session, or one another key (or the same key on
        another database or tenant) opened: the two are told apart by nobody.
    """
    session_id = request.headers.get(SESSION_HEADER)
    if not session_id:
        raise ValidationError(
            f"{SESSION_HEADER}: header is required", field=SESSION_HEADER
        )
    http = _state(request).http.get(session_id, owner)
    if http is None:
        raise NotFound(
            f"Unknown or ended MCP session {session_id!r}", {"sessionId": session_id}
        )
    return http


def _http_caller(call: Call) -> Owner:
    """The key, database and tenant of a request naming a Streamable HTTP session."""
    request = call.request
    return Owner(
        call.principal.key_id,
        database_header(request),
        tenant_header(request, DEFAULT_TENANT),
    )


@endpoint(
    mcp,
    "GET",
    "/mcp",
    summary="MCP Streamable HTTP transport: the session's server stream",
    passes_transaction=True,
)
async def http_stream(call: Call) -> HTTPResponse | None:
    request = call.request
    try:
        _check_origin(request)
        http = _http_session(request, _http_caller(call))
        _version_header(request, http.session.protocol_version)
    except NocturnusError as e:
        return _rpc_failure(e)
    if not _accepts(request, "text/event-stream"):
        return _rpc_error(
            406, INVALID_REQUEST, "Not Acceptable: this stream is text/event-stream"
        )
    if http.stream is not None and not http.stream.is_closing:
        return _rpc_error(
            409, INVALID_REQUEST, "This session already has an open stream"
        )
    stream = http.stream = EventStream()
    try:
        # We send no server-initiated messages yet; the stream carries keepalives and ends
        # with the session, as the transport spec allows.
        await stream.run(request, b": stream open\n\n", _state(request).keepalive_s)
    finally:
        if http.stream is stream:
            http.stream = None
    return None


@endpoint(
    mcp,
    "DELETE",
    "/mcp",
    summary="MCP Streamable HTTP transport: end the session",
    passes_transaction=True,
)
async def http_end(call: Call) -> HTTPResponse:
    request = call.request
    try:
        _check_origin(request)
        http = _http_session(request, _http_caller(call))
    except NocturnusError as e:
        return _rpc_failure(e)
    _state(request).http.remove(http.session.id)
    http.close()
    return json_response({"deleted": http.session.id})
