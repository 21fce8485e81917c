"""Declaring an HTTP endpoint once: route, aliases, headers it needs, body schema, docs.

The :func:`endpoint` decorator registers the Sanic routes, parses the ``X-Database`` and
``X-Tenant-ID`` headers, validates the JSON body against the declared schema and turns the
handler's dict into a JSON response. The same declarations feed ``/openapi.json`` and the
route census tests, so every route is described by what actually serves it.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from sanic import Blueprint, HTTPResponse, Request

from nocturnus.api.schema import DATABASE_NAME, TENANT_NAME, Schema, validate
from nocturnus.errors import ValidationError
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


@dataclass(slots=True)
class Call:
    """One parsed request: the database and tenant it targets and its validated body."""

    request: Request
    body: dict[str, Any]
    db: Database[DatabaseState] | None
    tenant: str | None
    query: dict[str, str]

    @property
    def database(self) -> Database[DatabaseState]:
        assert self.db is not None, "endpoint declared without database=True"
        return self.db

    @property
    def tenant_id(self) -> str:
        assert self.tenant is not None, "endpoint declared without tenant=True"
        return self.tenant


Handler = Callable[[Call], Awaitable["dict[str, Any] | list[Any] | HTTPResponse"]]
ENDPOINTS: list[EndpointSpec] = []
_HANDLERS: dict[tuple[str, str], tuple[EndpointSpec, Handler]] = {}


def json_response(data: Any, status: int = 200) -> HTTPResponse:
    return HTTPResponse(orjson.dumps(data), status=status, content_type="application/json")


def parse_json_body(request: Request) -> Any:
    raw = request.body
    if not raw or not raw.strip():
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise ValidationError(f"body: not valid JSON ({e})", field="body") from None


def tenant_header(request: Request) -> str:
    """:raises ValidationError: missing, blank or malformed ``X-Tenant-ID``."""
    value = request.headers.get("X-Tenant-ID", "").strip()
    if not value:
        raise ValidationError("Missing required header: X-Tenant-ID", field="X-Tenant-ID")
    if not re.fullmatch(TENANT_NAME, value):
        raise ValidationError(
            f"X-Tenant-ID: {value[:80]!r} does not match {TENANT_NAME}", field="X-Tenant-ID"
        )
    return value


def database_header(request: Request) -> str:
    value = request.headers.get("X-Database", "").strip() or DEFAULT_DATABASE
    if not re.fullmatch(DATABASE_NAME, value):
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
) -> Callable[[Handler], Handler]:
    """Register ``handler`` on every path in ``paths`` for ``method``."""
    spec = EndpointSpec(
        method=method,
        paths=paths,
        summary=summary,
        tag=blueprint.name,
        body=body,
        tenant=tenant,
        database=database or tenant,
        body_required=body_required,
        query=query or {},
        status=status,
        response_type=response_type,
    )
    ENDPOINTS.append(spec)

    def decorate(handler: Handler) -> Handler:
        async def route(request: Request, **path_params: str) -> HTTPResponse:
            call = _parse(request, spec)
            call.query.update(path_params)
            result = await handler(call)
            if isinstance(result, HTTPResponse):
                return result
            return json_response(result, spec.status)

        for path in paths:
            _HANDLERS[(method, path)] = (spec, handler)
            name = f"{method.lower()}_{re.sub(r'[^a-z0-9]+', '_', path.lower()).strip('_')}"
            blueprint.add_route(route, path, methods=[method], name=name or "root")
        return handler

    return decorate


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
    call = _build_call(request, spec, body, database, tenant if spec.tenant else None)
    call.query.update(path_params or {})
    result = await handler(call)
    if isinstance(result, HTTPResponse):
        return orjson.loads(result.body or b"null")
    return result


def _parse(request: Request, spec: EndpointSpec) -> Call:
    tenant = tenant_header(request) if spec.tenant else None
    database = database_header(request) if spec.database else None
    body = parse_json_body(request) if spec.body is not None else None
    call = _build_call(request, spec, body, database, tenant)
    query = {name: value for name, value in request.args.items() if name in spec.query}
    flat = {name: values[0] for name, values in query.items()}
    for name, value in flat.items():
        validate(value, spec.query[name], name)
    call.query.update(flat)
    return call


def _build_call(
    request: Request, spec: EndpointSpec, parsed: Any, database: str | None, tenant: str | None
) -> Call:
    db = None
    if spec.database and database is not None:
        db = request.app.ctx.databases.get(database)
    body: dict[str, Any] = {}
    if spec.body is not None:
        if parsed is None:
            if spec.body_required:
                raise ValidationError("body: a JSON object is required", field="body")
            parsed = {}
        validate(parsed, spec.body)
        body = parsed
    return Call(request=request, body=body, db=db, tenant=tenant, query={})
