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

A session found for anyone but its owner is unknown to them (404). Sessions are records
in the shared state store, bounded per transport, per key and per tenant
(:mod:`nocturnus.api.mcp_sessions`), so any process of a deployment serves any session
(issue 16): a POST is answered by the process it lands on; an SSE answer whose stream
another process holds goes there as mail (:mod:`nocturnus.api.mcp_mail`). A stream ends
when its client goes away, its session is deleted (by any process), or the server stops
(it does not hold up shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
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
from nocturnus.api.mcp_mail import SKIPPED, Box, MailPoller
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
from nocturnus.api.mcp_sessions import (
    LIVE_TTL_S,
    REFRESH_S,
    Found,
    Owner,
    SessionLimits,
    SessionRecord,
    SessionTable,
)
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

if TYPE_CHECKING:
    from nocturnus.service.databases import Databases
    from nocturnus.service.shared import Shared

log = logging.getLogger("nocturnus.mcp")

mcp = Blueprint("mcp")

DEFAULT_TENANT = "default"
SESSION_HEADER = "Mcp-Session-Id"
VERSION_HEADER = "MCP-Protocol-Version"
MAX_PENDING = 64
"""Unanswered messages one SSE session may have in flight before POSTs get 503."""
SHUTDOWN_STEP_S = 2.5
"""Longest wait of each shutdown step: in-flight SSE calls, then the streams' ends."""
HTTP_TTL_FLOOR_S = 86_400.0
"""A Streamable HTTP session unused this long (or ``mcp_session_idle_s`` if longer) is
forgotten: its record expires."""
LIVENESS_S = 1.0
"""How often a process holding GET streams checks that their sessions still exist."""
ERROR_PAUSE_S = 1.0
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
class HeldStream:
    """A GET stream of a Streamable HTTP session, held by this process."""

    stream: EventStream
    claim: str
    version: int


@dataclass(frozen=True, slots=True)
class Turn:
    """The place of an SSE answer on its stream: its number, and the version of its
    placeholder when the stream is on another process (None: on this one)."""

    seq: int
    placeholder: int | None


@dataclass(slots=True, eq=False)
class HeldSse:
    """An SSE session's stream, held by this process."""

    stream: EventStream


@dataclass(slots=True)
class McpState:
    """``app.ctx.mcp``: the tools, the session tables, and what this process holds.

    Sessions live in the shared store (:mod:`nocturnus.api.mcp_sessions`); this process
    holds only live connections: SSE streams (``sse_held``; their mail comes through
    ``mail``), GET streams (``get_held``), and the calls it is answering (``calls``,
    per session, whichever process holds its stream). One background task
    (:meth:`upkeep`) collects mail, keeps the held streams' records alive and ends GET
    streams whose session ended elsewhere.
    """

    tools: dict[str, BoundTool]
    sse: SessionTable
    http: SessionTable
    keepalive_s: float
    holder: str
    mail: MailPoller
    sse_held: dict[str, HeldSse] = field(default_factory=dict)
    get_held: dict[str, HeldStream] = field(default_factory=dict)
    calls: dict[str, set[asyncio.Task[None]]] = field(default_factory=dict)
    chores: set[asyncio.Task[None]] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=dict)
    """Open sessions per transport (every process's), as last counted for /metrics."""
    _upkeep: asyncio.Task[None] | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _closing: bool = False

    @classmethod
    def create(cls, settings: Settings, databases: Callable[[], Databases]) -> McpState:
        limits = SessionLimits(
            total=settings.mcp_sessions,
            per_key=settings.mcp_sessions_per_key,
            per_tenant=settings.mcp_sessions_per_tenant,
            idle_s=settings.mcp_session_idle_s,
        )

        def shared() -> Shared:
            return databases().shared

        holder = secrets.token_hex(8)
        return cls(
            tools=bind_tools(),
            sse=SessionTable("sse", "SSE", limits, ttl_s=LIVE_TTL_S, shared=shared),
            http=SessionTable(
                "http",
                "Streamable HTTP",
                limits,
                ttl_s=max(float(settings.mcp_session_idle_s), HTTP_TTL_FLOOR_S),
                shared=shared,
            ),
            keepalive_s=settings.mcp_keepalive_ms / 1000,
            holder=holder,
            mail=MailPoller(holder, shared, databases, MAX_PENDING),
        )

    # -- calls of SSE sessions ----------------------------------------------------------

    async def take_turn(self, found: Found) -> Turn:
        """Number the answer of a POST about to be accepted (its place on the stream)."""
        record = found.record
        seq = await self.mail.number(record.id)
        if record.holder == self.holder:
            self.mail.expect(record.id, seq)
            return Turn(seq, None)
        version = await self.mail.reserve(record.holder or "", record.id, seq)
        return Turn(seq, version)

    def spawn(
        self, found: Found, incoming: Incoming, caller: Caller, turn: Turn | None
    ) -> None:
        """Answer ``incoming`` in the background onto the session's stream."""
        session_id = found.record.id
        task = asyncio.get_running_loop().create_task(
            self._serve(found, incoming, caller, turn)
        )
        calls = self.calls.setdefault(session_id, set())
        calls.add(task)

        def done(task: asyncio.Task[None]) -> None:
            calls.discard(task)
            if not calls and self.calls.get(session_id) is calls:
                del self.calls[session_id]

        task.add_done_callback(done)

    async def _serve(
        self, found: Found, incoming: Incoming, caller: Caller, turn: Turn | None
    ) -> None:
        record = found.record
        elsewhere = turn is not None and turn.placeholder is not None
        response: Any = None
        try:
            response = await self._answer(found, incoming, caller, turn)
            if turn is not None and elsewhere:
                await self.mail.deposit(
                    record.holder or "",
                    record.id,
                    turn.seq,
                    record.owner.database,
                    record.owner.tenant,
                    response,
                )
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception(
                "MCP session %s: the answer could not be delivered", record.id
            )
        finally:
            if turn is not None and not elsewhere:  # the stream is here: straight to it
                self.mail.arrive(
                    record.id, turn.seq, SKIPPED if response is None else response
                )

    async def _answer(
        self, found: Found, incoming: Incoming, caller: Caller, turn: Turn | None
    ) -> Any:
        """The response, its placeholder kept alive meanwhile when it has one."""
        session = caller.session
        assert session is not None
        keeper = None
        if turn is not None and turn.placeholder is not None:
            keep = self.mail.keep(
                found.record.holder or "", session.id, turn.seq, turn.placeholder
            )
            keeper = asyncio.get_running_loop().create_task(keep)
        try:
            response = await answer(incoming, caller)
        finally:
            if keeper is not None:
                keeper.cancel()
        if (
            response is not None
            and session.protocol_version != found.record.protocol_version
        ):
            response = await self._initialized(found, session, response)
        return response

    async def _initialized(self, found: Found, session: Session, response: Any) -> Any:
        """Store the version ``initialize`` negotiated; a session another process
        initialized meanwhile answers as already initialized."""
        version = session.protocol_version
        while True:
            updated = replace(found.record, protocol_version=version)
            if await self.sse.put(updated, expect=found.version) is not None:
                return response
            again = await self.sse.find(found.record.id)
            if again is None:
                return response  # the stream ended: nobody will read it
            if again.record.protocol_version is not None:
                return error_response(
                    response.get("id"),
                    INVALID_REQUEST,
                    "Invalid Request: this session is already initialized",
                )
            found = again

    # -- held streams ------------------------------------------------------------------

    def hold_sse(
        self, session_id: str, held: HeldSse, database: str, tenant: str
    ) -> None:
        self.sse_held[session_id] = held
        self.mail.attach(session_id, Box(held.stream, database, tenant))
        self._start_upkeep()

    def hold_get(self, session_id: str, held: HeldStream) -> None:
        self.get_held[session_id] = held
        self._start_upkeep()

    def close_get(self, session_id: str) -> None:
        held = self.get_held.get(session_id)
        if held is not None:
            held.stream.close()

    async def after(self, chore: Coroutine[Any, Any, None]) -> None:
        """Run a store chore of a stream's end to completion, even when the handler that
        asks for it is being cancelled (its client left)."""
        task = asyncio.get_running_loop().create_task(chore)
        self.chores.add(task)
        task.add_done_callback(self.chores.discard)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)

    async def count_sessions(self) -> None:
        self.counts = {
            "sse": len(await self.sse.scan()),
            "http": len(await self.http.scan()),
        }

    def _start_upkeep(self) -> None:
        self._wake.set()
        if self._upkeep is None and not self._closing:
            self._upkeep = asyncio.get_running_loop().create_task(self.upkeep())

    async def upkeep(self) -> None:
        """Collect mail, keep held streams' records alive, end GET streams whose session
        ended elsewhere; idle while this process holds no stream."""
        next_check = next_refresh = time.monotonic()
        while not self._closing:
            if not self.sse_held and not self.get_held:
                self._wake.clear()
                await self._wake.wait()
                continue
            wait_s = LIVENESS_S
            try:
                if self.sse_held:
                    await self.mail.collect()
                    wait_s = self.mail.interval_s
                now = time.monotonic()
                if now >= next_check and self.get_held:
                    await self._check_get_streams()
                    next_check = now + LIVENESS_S
                if now >= next_refresh:
                    await self._refresh()
                    next_refresh = now + REFRESH_S
            except Exception:
                # the store unreachable for a while: try again, never stop
                log.exception("MCP upkeep failed; retrying")
                wait_s = ERROR_PAUSE_S
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait_s)

    async def _check_get_streams(self) -> None:
        claims = await self.http.stream_claims()
        for session_id, held in list(self.get_held.items()):
            if claims.get(session_id) != held.claim:
                held.stream.close()  # deleted, or ended to make room, by any process

    async def _refresh(self) -> None:
        """Write the held streams' records and claims again before they expire; a
        stream whose record or claim is gone ends."""
        for session_id, sse in list(self.sse_held.items()):
            found = await self.sse.find(session_id)
            if found is not None and await self.sse.put(
                found.record, expect=found.version
            ):
                continue
            # Written meanwhile by another process (initialize): that write kept it.
            if await self.sse.find(session_id) is None:
                sse.stream.close()
        for session_id, held in list(self.get_held.items()):
            version = await self.http.keep_stream(session_id, held.claim, held.version)
            found = await self.http.find(session_id) if version is not None else None
            if version is None or found is None:
                held.stream.close()
                continue
            held.version = version
            # An open stream is a use: its session does not expire under it.
            await self.http.put(
                replace(found.record, used_s=self.http.now()), expect=found.version
            )

    async def close(self) -> None:
        """End every stream, letting in-flight calls answer first; bounded in time."""
        calls = [task for tasks in self.calls.values() for task in tasks]
        if calls:
            await asyncio.wait(calls, timeout=SHUTDOWN_STEP_S)
        if self.sse_held:
            with contextlib.suppress(Exception):
                await self.mail.collect()  # answers other processes deposited meanwhile
        self._closing = True
        self._wake.set()
        streams = [held.stream for held in self.sse_held.values()]
        streams += [held.stream for held in self.get_held.values()]
        for stream in streams:
            stream.close()
        waits = [asyncio.ensure_future(s.done.wait()) for s in streams]
        if waits:
            _, pending = await asyncio.wait(waits, timeout=SHUTDOWN_STEP_S)
            for waiter in pending:
                waiter.cancel()
        if self.chores:
            await asyncio.wait(set(self.chores), timeout=SHUTDOWN_STEP_S)
        if self._upkeep is not None:
            self._upkeep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._upkeep


@mcp.before_server_start
async def open_mcp(app: Sanic) -> None:
    def databases() -> Databases:
        opened: Databases | None = app.ctx.databases
        assert opened is not None, "the databases open before any request"
        return opened

    app.ctx.mcp = McpState.create(app.ctx.settings, databases)


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
    session_id = secrets.token_hex(16)
    now = state.sse.now()
    owner = Owner(call.principal.key_id, database, tenant)
    record = SessionRecord(session_id, owner, now, now, holder=state.holder)
    # A live stream is never ended to make room: a full bound refuses (503).
    await state.sse.open(record, make_room=False)
    held = HeldSse(EventStream())
    state.hold_sse(session_id, held, database, tenant)
    first = f"event: endpoint\ndata: /mcp/messages?sessionId={session_id}\n\n".encode()
    try:
        await held.stream.run(request, first, state.keepalive_s)
    finally:
        state.sse_held.pop(session_id, None)
        state.mail.detach(session_id)
        for task in list(state.calls.get(session_id, ())):
            task.cancel()
        await state.after(_end_sse(state, session_id))


async def _end_sse(state: McpState, session_id: str) -> None:
    await state.sse.remove(session_id)
    await state.mail.forget(state.holder, session_id)


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
        found = await state.sse.find(session_id) if _is_session_id(session_id) else None
        session_owner = found.record.owner if found is not None else None
        owner = _sse_caller(request, call.principal, session_owner)
    except NocturnusError as e:
        return _rpc_failure(e)
    held = state.sse_held.get(session_id)
    if (
        found is None
        or owner != found.record.owner
        or (held is not None and held.stream.is_closing)
    ):
        return _rpc_error(
            404, INVALID_REQUEST, f"Unknown or closed MCP session {session_id!r}"
        )
    record = found.record
    session = Session(session_id, SSE_DEFAULT_VERSION, record.protocol_version)
    try:
        incoming = parse(request.body, session.version)
    except Rejected as e:
        return json_response(e.response, e.status)
    turn = None
    if incoming.needs_answer:
        # Answers not yet on the stream: known whole on the stream's process; elsewhere
        # every process's calls in flight and answers waiting, but not the calls the
        # stream's own process is answering.
        waiting = await state.mail.backlog(record.holder or "", session_id)
        if waiting >= MAX_PENDING:
            return _rpc_error(
                503,
                INVALID_REQUEST,
                "Too many unanswered messages on this session's stream",
            )
        turn = await state.take_turn(found)
    # The POST runs as itself: its key is the session's (checked above), database and
    # tenant are the session's, so permissions are checked as at the GET.
    caller = Caller(
        request, record.owner.database, record.owner.tenant, state.tools, session
    )
    state.spawn(found, incoming, caller, turn)
    return json_response({"accepted": True}, 202)


def _is_session_id(value: str) -> bool:
    """Whether ``value`` could name a session at all (a shared-store key part may not
    hold the separator)."""
    return "\x1f" not in value


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
        found = (
            await _http_session(request, owner)
            if SESSION_HEADER in request.headers
            else None
        )
        negotiated = found.record.protocol_version if found is not None else None
        header_version = _version_header(request, negotiated)
    except NocturnusError as e:
        return _rpc_failure(e)
    version = negotiated or header_version or HTTP_DEFAULT_VERSION
    try:
        incoming = parse(request.body, version)
    except Rejected as e:
        return json_response(e.response, e.status)
    opening = found is None and incoming.is_initialize
    session = None
    if opening:
        session = Session(secrets.token_hex(16), HTTP_DEFAULT_VERSION)
    elif found is not None:
        session = Session(found.record.id, HTTP_DEFAULT_VERSION, negotiated)
    response = await answer(
        incoming, Caller(request, database, tenant, state.tools, session)
    )
    if response is None:
        return HTTPResponse(status=202)
    reply = json_response(response)
    if session is None or (opening and "result" not in response):
        return reply  # no session, or a failed initialize: it opens none
    if opening:
        now = state.http.now()
        record = SessionRecord(
            session.id, owner, now, now, protocol_version=session.protocol_version
        )
        try:
            ended = await state.http.open(record, make_room=True)
        except Unavailable as e:
            return _rpc_failure(e)
        for old in ended:
            state.close_get(old.id)  # held elsewhere: that process sees its claim gone
    reply.headers[SESSION_HEADER] = session.id
    return reply


async def _http_session(request: Request, owner: Owner) -> Found:
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
    found = None
    if _is_session_id(session_id):
        found = await _state(request).http.get(session_id, owner)
    if found is None:
        raise NotFound(
            f"Unknown or ended MCP session {session_id!r}", {"sessionId": session_id}
        )
    return found


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
    state = _state(request)
    try:
        _check_origin(request)
        found = await _http_session(request, _http_caller(call))
        _version_header(request, found.record.protocol_version)
    except NocturnusError as e:
        return _rpc_failure(e)
    if not _accepts(request, "text/event-stream"):
        return _rpc_error(
            406, INVALID_REQUEST, "Not Acceptable: this stream is text/event-stream"
        )
    session_id = found.record.id
    claim = f"{state.holder}:{secrets.token_hex(8)}"
    version = await state.http.claim_stream(session_id, claim)
    if version is None:
        return _rpc_error(
            409, INVALID_REQUEST, "This session already has an open stream"
        )
    held = HeldStream(EventStream(), claim, version)
    state.hold_get(session_id, held)
    try:
        # We send no server-initiated messages yet; the stream carries keepalives and ends
        # with the session, as the transport spec allows.
        await held.stream.run(request, b": stream open\n\n", state.keepalive_s)
    finally:
        if state.get_held.get(session_id) is held:
            del state.get_held[session_id]
        await state.after(state.http.release_stream(session_id, claim))
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
    state = _state(request)
    try:
        _check_origin(request)
        found = await _http_session(request, _http_caller(call))
    except NocturnusError as e:
        return _rpc_failure(e)
    session_id = found.record.id
    await state.http.remove(session_id)
    state.close_get(session_id)  # held elsewhere: that process sees its claim gone
    return json_response({"deleted": session_id})
