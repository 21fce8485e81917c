"""``GET /openapi.json``: generated from the endpoint declarations that serve the routes."""

from __future__ import annotations

import re
from typing import Any

from sanic import Blueprint

from nocturnus import __version__
from nocturnus.api.endpoint import ENDPOINTS, Call, EndpointSpec, endpoint
from nocturnus.api.permissions import rule_for

openapi = Blueprint("openapi")

ERROR_SCHEMA = {
    "type": "object",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "string"},
        "message": {"type": "string"},
        "details": {"type": ["object", "null"]},
    },
}


UNAVAILABLE = (
    "UNAVAILABLE: the store cannot take the request now (disk, writer, shutdown); "
    "WRITE_CONFLICT: another writer changed the data first, retry"
)
TENANT_UNAVAILABLE = (
    f"{UNAVAILABLE}; TENANT_DAMAGED: this tenant's stored history is damaged (a record "
    "failing its authentication tag, a data key removed without a deletion; details: "
    "database, tenant, seq): refused until the database is restored from a backup, "
    "other tenants are served"
)


def _openapi_path(path: str) -> tuple[str, list[str]]:
    names = re.findall(r"<([a-z_]+)>", path)
    return re.sub(r"<([a-z_]+)>", r"{\1}", path), names


def _operation(spec: EndpointSpec, path: str, params: list[str]) -> dict[str, Any]:
    parameters: list[dict[str, Any]] = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in params
    ]
    parameters += [
        {"name": n, "in": "query", "required": False, "schema": s} for n, s in spec.query.items()
    ]
    if spec.tenant:
        parameters.append(
            {"name": "X-Tenant-ID", "in": "header", "required": True,
             "schema": {"type": "string", "pattern": r"^[A-Za-z0-9_-]{1,128}$"}}
        )
    if spec.tenant and spec.transactional and not spec.passes_transaction:
        parameters.append(
            {"name": "X-Transaction-ID", "in": "header", "required": False,
             "description": "Run inside this transaction (writes wait for its commit)",
             "schema": {"type": "string", "maxLength": 128}}
        )
    if spec.database:
        parameters.append(
            {
                "name": "X-Database",
                "in": "header",
                "required": False,
                "schema": {
                    "type": "string",
                    "pattern": r"^[A-Za-z0-9_-]{1,64}$",
                    "default": "default",
                },
            }
        )
    error = {
        "description": "error",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}
        },
    }
    operation: dict[str, Any] = {
        "summary": spec.summary,
        "tags": [spec.tag],
        "operationId": f"{spec.method.lower()}_{re.sub(r'[^a-zA-Z0-9]+', '_', path).strip('_')}",
        "parameters": parameters,
        "responses": {
            str(spec.status): {
                "description": "success",
                "content": {spec.response_type.split(";")[0]: {"schema": {}}},
            },
            "4XX": error,
            "503": {**error, "description": UNAVAILABLE if not spec.tenant else TENANT_UNAVAILABLE},
        },
    }
    rule = rule_for(spec.method, path)
    if rule.permission is None:
        operation["security"] = []  # public
    else:
        operation["security"] = [{"bearerKey": []}, {"apiKeyHeader": []}]
        operation["x-permission"] = rule.permission
    if spec.body is not None:
        operation["requestBody"] = {
            "required": spec.body_required,
            "content": {"application/json": {"schema": spec.body}},
        }
    return operation


def build_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for spec in ENDPOINTS:
        for path in spec.paths:
            openapi_path, params = _openapi_path(path)
            paths.setdefault(openapi_path, {})[spec.method.lower()] = _operation(spec, path, params)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Nocturnus", "version": __version__},
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": {"Error": ERROR_SCHEMA},
            "securitySchemes": {  # API.md §8: needed when NOCTURNUS_AUTH=on
                "bearerKey": {"type": "http", "scheme": "bearer"},
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }


@endpoint(openapi, "GET", "/openapi.json", summary="This document")
async def document(call: Call) -> dict[str, Any]:
    return call.request.app.ctx.openapi
