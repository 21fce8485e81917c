"""Declaring an HTTP endpoint once: route, aliases, headers it needs, body schema, docs.

The :func:`endpoint` decorator registers the Sanic routes, parses the ``X-Database`` and
``X-Tenant-ID`` headers, validates the JSON body against the declared schema and turns the
handler's dict into a JSON response. The same declarations feed ``/openapi.json`` and the
route census tests, so every route is described by what actually serves it.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import orjson
from sanic import Blueprint, HTTPResponse, Request

from nocturnus.api import jsonbody, permissions
from nocturnus.api.schema import DATABASE_NAME, TENANT_NAME, Schema, validate
from nocturnus.errors import Unauthorized, ValidationError, WriteContention
from nocturnus.service import transactions
from nocturnus.service.authenticator import ANONYMOUS, Principal
from nocturnus.service.database import Database, DatabaseState
from nocturnus.service.databases import DEFAULT_DATABASE


@dataclass(frozen=True, slots=True)
class EndpointSpec:
    """What one endpoint serves; used for routing, docs and the census tests."""

    method: str
    paths: tuple[str, ...]
    summary: str
    tag: str
    body: Schema | None = None
    tenant: bool = False
    database: bool = False
    body_required: bool = True
    query: dict[str, Schema] = field(default_factory=dict)
    status: int = 200
    response_type: str = "application/json"
    transactional: bool = True
    """A data route that runs inside the transaction ``X-Transaction-ID`` names."""
    passes_transaction: bool = False
    """The header is not this route's: its calls (MCP tools) or its path (``/tx/*``)."""
    pins_tenant: bool = True
    """A tenant route that uses the projection: under a memory budget the tenant stays
    in memory while the request runs. False for the live feed: it reads the log only,
    and would otherwise hold the tenant for as long as the stream is open."""


@dataclass(slots=True)
class Call:
    """One parsed request: the database and tenant it targets and its validated body."""

    request: Request
    body: dict[str, Any]
    db: Database[DatabaseState] | None
    tenant: str | None
    query: dict[str, str]
    principal: Principal = ANONYMOUS
    in_transaction: bool = False
    """It runs on a transaction's view (``X-Transaction-ID``): what it keeps besides
    the view (context sessions) lasts for the call only."""

    @property
    def database(self) -> Database[DatabaseState]:
        assert self.db is not None, "endpoint declared without database=True"
        return self.db

    @property
    def tenant_id(self) -> str:
        assert self.tenant is not None, "endpoint declared without tenant=True"
        return self.tenant


Handler = Callable[
    [Call], Awaitable["dict[str, Any] | list[Any] | HTTPResponse | JsonPieces | None"]
]
ENDPOINTS: list[EndpointSpec] = []
_HANDLERS: dict[tuple[str, str], tuple[EndpointSpec, Handler]] = {}
_PATH_PARAM = re.compile(r"<[^>]*>")
_TENANT_NAME = re.compile(TENANT_NAME)
_DATABASE_NAME = re.compile(DATABASE_NAME)


class JsonResponse(HTTPResponse):
    """An HTTPResponse whose header values are cleaned without ``str.translate``.

    Sanic strips CR, LF and NUL from every header name and value with
    ``str.translate``, which raises and swallows a KeyError for each character that
    stays: about a thousand instructions per character, every response. Here a
    value holding none of the three is returned as it is (the translation would
    return an equal string); any other goes through Sanic's own translation.
    """

    __slots__ = ()

    @staticmethod
    def _sanitize_header_value(value: str) -> str:
        if "\r" in value or "\n" in value or "\x00" in value:
            return HTTPResponse._sanitize_header_value(value)
        return value


@dataclass(frozen=True, slots=True)
class JsonPieces:
    """A JSON body given as pieces to concatenate (answers rendered in bulk).

    REST sends a large one in chunks as they are joined, with its length known in
    advance: no copy of the whole body is made, and the client reads while the
    server joins; other surfaces (MCP) decode the joined body.
    """

    pieces: list[bytes]
    headers: dict[str, str] = field(default_factory=dict)

    def joined(self) -> bytes:
        return b"".join(self.pieces)


STREAM_CHUNK_BYTES = 1 << 20
"""Bodies above this are streamed in chunks of about this size."""


async def send_pieces(request: Request, body: JsonPieces, status: int) -> None:
    """Respond with ``body``, streaming it past :data:`STREAM_CHUNK_BYTES`."""
    pieces = body.pieces
    size = sum(map(len, pieces))
    headers = {**body.headers, "content-length": str(size)}
    response = await request.respond(
        status=status, headers=headers, content_type="application/json"
    )
    start = 0
    gathered = 0
    for end, piece in enumerate(pieces, 1):
        gathered += len(piece)
        if gathered >= STREAM_CHUNK_BYTES or end == len(pieces):
            await response.send(b"".join(pieces[start:end]))
            start, gathered = end, 0
    await response.eof()


NEXT_CURSOR_HEADER = "X-Next-Cursor"
"""Where a bare-array answer (``/infer``) puts the cursor of its next page."""


def json_response(data: Any, status: int = 200) -> HTTPResponse:
    return JsonResponse(orjson.dumps(data), status=status, content_type="application/json")


def raw_json_response(
    body: bytes, status: int = 200, headers: dict[str, str] | None = None
) -> HTTPResponse:
    """A response of JSON already encoded (answers rendered in bulk)."""
    return JsonResponse(
        body, status=status, headers=headers, content_type="application/json"
    )


NO_BODY: Any = object()
"""What :func:`parse_json_body` returns for an empty body (JSON ``null`` is a body)."""


def parse_json_body(request: Request) -> Any:
    """The request's JSON body, or :data:`NO_BODY` when it sent none.

    :raises ValidationError: not JSON, or an integer wider than 64 bits.
    """
    raw = request.body
    if not raw or not raw.strip():
        return NO_BODY
    try:
        return jsonbody.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ValidationError(f"body: not valid JSON ({e})", field="body") from None
    except jsonbody.WideInteger as e:
        raise ValidationError(f"body: {e}", field="body") from None


def tenant_header(request: Request, default: str | None = None) -> str:
    """``X-Tenant-ID``; ``default`` stands in for a missing or blank one (MCP only).

    :raises ValidationError: missing or blank without a default, or malformed.
    """
    value = request.headers.get("X-Tenant-ID", "").strip() or default
    if not value:
        raise ValidationError("Missing required header: X-Tenant-ID", field="X-Tenant-ID")
    if not _TENANT_NAME.fullmatch(value):
        raise ValidationError(
            f"X-Tenant-ID: {value[:80]!r} does not match {TENANT_NAME}", field="X-Tenant-ID"
        )
    return value


def database_header(request: Request) -> str:
    value = request.headers.get("X-Database", "").strip() or DEFAULT_DATABASE
    if not _DATABASE_NAME.fullmatch(value):
        raise ValidationError(
            f"X-Database: {value[:80]!r} does not match {DATABASE_NAME}", field="X-Database"
        )
    return value


def endpoint(
    blueprint: Blueprint,
    method: str,
    *paths: str,
    summary: str,
    body: Schema | None = None,
    tenant: bool = False,
    database: bool = False,
    body_required: bool = True,
    query: dict[str, Schema] | None = None,
    status: int = 200,
    response_type: str = "application/json",
    transactional: bool = True,
    passes_transaction: bool = False,
    pins_tenant: bool = True,
    database_in_path: bool = False,
) -> Callable[[Handler], Handler]:
    """Register ``handler`` on every path in ``paths`` for ``method``.

    ``tenant`` reads ``X-Tenant-ID`` and, unless ``database_in_path`` (admin routes
    naming the database in their path), ``X-Database`` too.
    """
    spec = EndpointSpec(
        method=method,
        paths=paths,
        summary=summary,
        tag=blueprint.name,
        body=body,
        tenant=tenant,
        database=(database or tenant) and not database_in_path,
        body_required=body_required,
        query=query or {},
        status=status,
        response_type=response_type,
        transactional=transactional,
        passes_transaction=passes_transaction,
        pins_tenant=pins_tenant,
    )
    ENDPOINTS.append(spec)

    def decorate(handler: Handler) -> Handler:
        for path in paths:
            _HANDLERS[(method, path)] = (spec, handler)
            name = f"{method.lower()}_{re.sub(r'[^a-z0-9]+', '_', path.lower()).strip('_')}"
            route = _route(spec, path, handler)
            blueprint.add_route(route, path, methods=[method], name=name or "root")
        return handler

    return decorate


def _route(
    spec: EndpointSpec, path: str, handler: Handler
) -> Callable[..., Coroutine[Any, Any, HTTPResponse | None]]:
    async def route(request: Request, **path_params: str) -> HTTPResponse | None:
        call = _parse(request, spec, path, path_params)
        result = await run_handler(call, spec, path, handler)
        if request.responded:  # the handler streamed its own response (MCP's SSE)
            return None
        if isinstance(result, HTTPResponse):
            return result
        if isinstance(result, JsonPieces):
            if sum(map(len, result.pieces)) <= STREAM_CHUNK_BYTES:
                return raw_json_response(result.joined(), spec.status, result.headers)
            await send_pieces(request, result, spec.status)
            return None
        return json_response(result, spec.status)

    return route


def find_endpoint(method: str, path: str) -> tuple[str, EndpointSpec] | None:
    """The registered path matching ``path`` and its spec, or ``None`` when not registered.

    Path parameter names are ignored (``/scope/<name>`` matches ``/scope/<scope>``), so a
    caller (MCP's tool catalogue) can name a route before another module settles on them.
    """
    wanted = _PATH_PARAM.sub("<>", path)
    for registered_method, registered_path in _HANDLERS:
        if registered_method == method and _PATH_PARAM.sub("<>", registered_path) == wanted:
            return registered_path, _HANDLERS[(registered_method, registered_path)][0]
    return None


async def invoke(
    request: Request,
    method: str,
    path: str,
    body: Any,
    *,
    database: str,
    tenant: str,
    path_params: dict[str, str] | None = None,
) -> Any:
    """Run the endpoint ``method path`` for another surface (MCP) with the same checks.

    Validation (and every other check of the endpoint layer) is exactly what the REST
    route applies; only the transport differs. Returns the handler's JSON-able result.
    """
    spec, handler = _HANDLERS[(method, path)]
    params = path_params or {}
    call = _build_call(
        request, spec, path, body, database, tenant if spec.tenant else None, params
    )
    call.query.update(params)
    result = await run_handler(call, spec, path, handler)
    if isinstance(result, HTTPResponse):
        return orjson.loads(result.body or b"null")
    if isinstance(result, JsonPieces):
        return orjson.loads(result.joined())
    return result


# -- transactions (issue 18) ----------------------------------------------------------

TRANSACTION_HEADER = "X-Transaction-ID"


async def run_handler(call: Call, spec: EndpointSpec, path: str, handler: Handler) -> Any:
    """Run ``handler``, inside the transaction ``X-Transaction-ID`` names, if any.

    Every data route (``tenant=True``) honours the header, unless declared
    ``transactional=False``; routes that ``passes_transaction`` leave it to their calls
    (MCP tools) or read the id from their path (``/tx/*``); any other route refuses it
    (400) rather than act at once.
    """
    tx_id = call.request.headers.get(TRANSACTION_HEADER)
    if tx_id is not None and not spec.passes_transaction and not (
        spec.tenant and spec.transactional
    ):
        raise ValidationError(
            f"{TRANSACTION_HEADER}: {spec.method} {path} cannot run inside a transaction",
            field=TRANSACTION_HEADER,
        )
    # Under a memory budget the tenant's projection stays in memory while the request
    # runs (service/residency.py); without one nothing is counted.
    db = call.db if spec.tenant and spec.pins_tenant else None
    if db is not None and db.residency is None:
        db = None
    if db is not None:
        db.pin(call.tenant_id)
    try:
        if tx_id is None or spec.passes_transaction:
            return await handler(call)
        return await _in_transaction(call, spec, path, handler, tx_id.strip())
    finally:
        if db is not None:
            db.unpin(call.tenant_id)


async def _in_transaction(
    call: Call, spec: EndpointSpec, path: str, handler: Handler, tx_id: str
) -> Any:
    """Run ``handler`` on the transaction's view; keep the request if it wrote.

    A write is kept only if the transaction's steps are still those its view was built
    from; when a request on another process (or here) added one first, the request is
    decided again on the newer steps (each attempt on a view of its own).

    :raises NotFound: unknown or ended transaction. :raises Forbidden: another key's.
    :raises ValidationError: another database or tenant's.
    :raises Conflict: the transaction's earlier writes no longer apply.
    :raises WriteContention: its steps kept changing under every attempt.
    """
    request = call.request
    store: transactions.TransactionStore = request.app.ctx.transactions
    owner = transactions.owner_of(call.principal)
    db, tenant = call.database, call.tenant_id
    inside = dataclasses.replace(call, in_transaction=True)
    for _ in range(transactions.MAX_ATTEMPTS):
        tx = await store.find(db, tenant, owner, tx_id)
        run = step_runner(request, call.principal, tx.tenant)
        staged = await transactions.stage(db, tx, run)
        step = transactions.Step(spec.method, path, call.body, dict(call.query))
        try:
            result = await handler(dataclasses.replace(inside, db=staged.as_database()))
        except BaseException:
            transactions.abandon_view(tx, staged)
            store.release(tx)
            raise
        wrote = transactions.record(
            tx, staged, step, request.app.ctx.settings.transaction_steps
        )
        if not wrote:
            store.release(tx)
            break
        if await store.keep(db, tx):
            break
    else:
        raise WriteContention(
            f"Transaction '{tx_id}' kept changing under each of "
            f"{transactions.MAX_ATTEMPTS} attempts of this write; retry it",
            {"transactionId": tx_id, "attempts": transactions.MAX_ATTEMPTS},
        )
    if isinstance(result, dict):
        result = {**result, "transactionId": tx.id, "buffered": wrote}
    elif isinstance(result, (HTTPResponse, JsonPieces)):  # rendered in bulk (/ask)
        result.headers[TRANSACTION_HEADER] = tx.id
    return result


def step_runner(
    request: Request, principal: Principal, tenant: str
) -> transactions.StepRunner:
    """Re-runs a buffered write's route on a staged database (a commit, a new view).

    The route's rule is checked again with the key now using the transaction: its role
    or scopes may have changed since the write was buffered.
    """

    async def run(step: transactions.Step, db: Database[DatabaseState]) -> Any:
        _, handler = _HANDLERS[(step.method, step.path)]
        if principal is not ANONYMOUS:
            permissions.authorize(
                principal,
                permissions.rule_for(step.method, step.path),
                database=db.name,
                tenant=tenant,
                params=step.params,
                body=step.body,
            )
        call = Call(
            request, step.body, db, tenant, dict(step.params), principal, in_transaction=True
        )
        result = await handler(call)
        if isinstance(result, HTTPResponse):
            return orjson.loads(result.body or b"null")
        if isinstance(result, JsonPieces):
            return orjson.loads(result.joined())
        return result

    return run


def _parse(
    request: Request, spec: EndpointSpec, path: str, path_params: dict[str, str]
) -> Call:
    tenant = tenant_header(request) if spec.tenant else None
    database = database_header(request) if spec.database else None
    body = parse_json_body(request) if spec.body is not None else NO_BODY
    query = {name: value for name, value in request.args.items() if name in spec.query}
    flat = {name: values[0] for name, values in query.items()}
    # Query values a permission rule may name ("query:db") are authorized too.
    scoped = {**path_params, **{f"query:{k}": v for k, v in flat.items()}}
    call = _build_call(request, spec, path, body, database, tenant, scoped)
    for name, value in flat.items():
        validate(value, spec.query[name], name)
    call.query.update(flat)
    call.query.update(path_params)
    return call


def principal_of(request: Request) -> Principal:
    """The caller of ``request`` as it stands now (ANONYMOUS when auth is off).

    Re-read on every call, so a key revoked or changed while a long-lived connection
    (an MCP stream) stays open counts at once.

    :raises Unauthorized: auth is on and the request carries no (longer) valid key.
    """
    security = getattr(request.app.ctx, "security", None)
    if security is None or not security.enabled:
        return ANONYMOUS
    principal = getattr(request.ctx, "principal", None)
    if principal is None:
        raise Unauthorized(
            "API key required. Provide via X-API-Key header or Authorization: Bearer <key>"
        )
    generation = getattr(request.ctx, "principal_generation", None)
    current: Principal | None = security.current(principal, generation)
    if current is None:
        raise Unauthorized("Invalid, disabled, or expired API key")
    return current


def sees_detail(request: Request) -> bool:
    """May ``request`` see every database's name and figures (``/metrics``, ``/health``)?

    With auth off (loopback only) yes; else only a key holding ``metrics_read``
    without limits, which the security middleware has then authenticated (issue 14).
    """
    security = getattr(request.app.ctx, "security", None)
    return security is None or bool(security.sees_detail(request))


def _build_call(
    request: Request,
    spec: EndpointSpec,
    path: str,
    parsed: Any,
    database: str | None,
    tenant: str | None,
    path_params: dict[str, str],
) -> Call:
    """Authorize, then resolve the database and validate the body.

    The REST route and :func:`invoke` (MCP) both pass here, so both get the same
    permission and database/tenant scope checks (issue 7), before anything is read.
    """
    rule = permissions.rule_for(spec.method, path)
    principal = ANONYMOUS
    if not rule.is_public(request.app.ctx.settings):
        principal = principal_of(request)
    if principal is not ANONYMOUS:
        permissions.authorize(
            principal, rule, database=database, tenant=tenant, params=path_params
        )
    db = None
    if spec.database and database is not None:
        db = request.app.ctx.databases.get(database)
    body: dict[str, Any] = {}
    if spec.body is not None:
        if parsed is NO_BODY:
            if spec.body_required:
                raise ValidationError("body: a JSON object is required", field="body")
            parsed = {}
        # Anything sent is checked, ``null`` included: it is not an absent body
        # (issue 14: /context/optimize took ``null`` for ``{}``).
        validate(parsed, spec.body)
        body = parsed
    if rule.reads_body and principal is not ANONYMOUS:
        permissions.authorize(
            principal, rule, database=database, tenant=tenant, params=path_params, body=body
        )
    return Call(request=request, body=body, db=db, tenant=tenant, query={}, principal=principal)
