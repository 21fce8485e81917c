"""Databases, tenants and database-wide rules (API.md §2, §3 "Database rules").

These routes take the database from the body or the path and ignore ``X-Database``: the
upstream SDK sends ``X-Database: production`` while creating ``production``.
"""

from __future__ import annotations

from typing import Any

from sanic import Blueprint

from nocturnus.api import render
from nocturnus.api.endpoint import Call, endpoint, json_response
from nocturnus.api.knowledge import CONFLICT_STRATEGY, TEACH_BODY, teach_command
from nocturnus.api.schema import DATABASE_NAME, TENANT_NAME, Schema, obj, validate
from nocturnus.api.security import security_of
from nocturnus.errors import NotFound, ValidationError
from nocturnus.service import tenants
from nocturnus.service.backup import take_backup
from nocturnus.service.database import Database, DatabaseState
from nocturnus.service.databases import DEFAULT_DATABASE, DatabaseInfo

admin = Blueprint("admin")

CREATE_DATABASE_BODY = obj(
    ["name"],
    name={"type": "string", "pattern": DATABASE_NAME},
    defaultConflictStrategy=CONFLICT_STRATEGY,
    isMultiTenant={"type": ["boolean", "null"]},
)
CREATE_TENANT_BODY = {
    # name or the upstream SDK's tenantId (name wins): the schema says "at least one".
    **obj(
        [],
        name={"type": "string", "pattern": TENANT_NAME},
        tenantId={"type": "string", "pattern": TENANT_NAME},
    ),
    "minProperties": 1,
}
BACKUP_BODY = obj([], database={"type": "string", "pattern": DATABASE_NAME})
BACKUP_QUERY: dict[str, Schema] = {"db": {"type": "string", "pattern": DATABASE_NAME}}


async def _audit(call: Call, action: str, target: str, **details: Any) -> None:
    await security_of(call.request).record(
        call.request, call.principal, action, target=target, details=details
    )


def _database_info(info: DatabaseInfo, db: Database[DatabaseState] | None) -> dict[str, Any]:
    return {
        "name": info.name,
        "createdAt": info.created_at,
        "defaultConflictStrategy": info.default_conflict_strategy,
        "isMultiTenant": True,
        "tenants": len(db.tenant_names) if db is not None else 0,
        "events": db.head if db is not None else 0,
    }


def _path_database(call: Call) -> Database[DatabaseState]:
    name = call.query["db"]
    validate(name, {"type": "string", "pattern": DATABASE_NAME}, "database")
    return call.request.app.ctx.databases.get(name)


def _path_tenant(call: Call) -> str:
    tenant = call.query["tenant"]
    validate(tenant, {"type": "string", "pattern": TENANT_NAME}, "tenant")
    return tenant


@endpoint(
    admin,
    "POST",
    "/databases",
    "/admin/databases",
    summary="Create a database (idempotent)",
    body=CREATE_DATABASE_BODY,
)
async def create_database(call: Call) -> Any:
    databases = call.request.app.ctx.databases
    strategy = call.body.get("defaultConflictStrategy") or "REJECT"
    info, created = await databases.create(call.body["name"], strategy)
    if created:
        await _audit(call, "database_created", info.name)
    answer = {**_database_info(info, databases.get(info.name)), "created": created}
    return json_response(answer, 201 if created else 200)


@endpoint(admin, "GET", "/databases", "/admin/databases", summary="List databases")
async def list_databases(call: Call) -> dict[str, Any]:
    databases = call.request.app.ctx.databases
    visible = [i for i in databases.infos() if call.principal.allows_database(i.name)]
    return {"databases": [_database_info(i, databases.get(i.name)) for i in visible]}


@endpoint(admin, "DELETE", "/admin/databases/<db>", summary="Delete a database and its log")
async def delete_database(call: Call) -> dict[str, Any]:
    name = call.query["db"]
    validate(name, {"type": "string", "pattern": DATABASE_NAME}, "database")
    await call.request.app.ctx.databases.delete(name)
    await _audit(call, "database_deleted", name)
    return {"deleted": name}


@endpoint(admin, "GET", "/admin/databases/<db>/tenants", summary="List a database's tenants")
async def list_tenants(call: Call) -> dict[str, Any]:
    infos = [
        t for t in await tenants.list_tenants(_path_database(call))
        if call.principal.allows_tenant(t.name)
    ]
    return {
        "tenants": [
            {"name": t.name, "createdAt": t.created_at, "facts": t.facts, "rules": t.rules}
            for t in infos
        ],
        "count": len(infos),
    }


@endpoint(
    admin,
    "POST",
    "/admin/databases/<db>/tenants",
    summary="Create a tenant (idempotent)",
    body=CREATE_TENANT_BODY,
)
async def create_tenant(call: Call) -> Any:
    db = _path_database(call)
    name = call.body.get("name") or call.body.get("tenantId")
    if not name:
        raise ValidationError("name: is required", field="name")
    created = await tenants.create_tenant(db, name)
    if created:
        await _audit(call, "tenant_created", f"{db.name}/{name}")
    return json_response(
        {"name": name, "database": db.name, "created": created}, 201 if created else 200
    )


@endpoint(
    admin,
    "DELETE",
    "/admin/databases/<db>/tenants/<tenant>",
    summary="Delete a tenant and all its data",
)
async def delete_tenant(call: Call) -> dict[str, Any]:
    db = _path_database(call)
    tenant = _path_tenant(call)
    info = await tenants.delete_tenant(db, tenant)
    if info is None:
        raise NotFound(f"Tenant '{tenant}' not found in database '{db.name}'")
    await _audit(call, "tenant_deleted", f"{db.name}/{tenant}", facts=info.facts, rules=info.rules)
    return {"deleted": tenant, "facts": info.facts, "rules": info.rules}


FACTS_QUERY: dict[str, Schema] = {
    "scope": {"type": "string", "minLength": 1, "maxLength": 128},
    "offset": {"type": "string", "pattern": r"^[0-9]{1,9}$"},
    "limit": {"type": "string", "pattern": r"^[0-9]{1,5}$"},
}
MAX_FACTS_PAGE = 10_000


@endpoint(
    admin,
    "GET",
    "/admin/databases/<db>/facts",
    summary="List a tenant's facts visible now (X-Tenant-ID; ?scope, ?offset, ?limit)",
    tenant=True,
    database_in_path=True,
    transactional=False,
    query=FACTS_QUERY,
)
async def list_facts(call: Call) -> dict[str, Any]:
    limit = int(call.query.get("limit", "1000"))
    if not 1 <= limit <= MAX_FACTS_PAGE:
        raise ValidationError(f"limit: must be 1 to {MAX_FACTS_PAGE}", field="limit")
    page = await tenants.list_facts(
        _path_database(call),
        call.tenant_id,
        call.query.get("scope"),
        offset=int(call.query.get("offset", "0")),
        limit=limit,
    )
    return {
        "facts": [render.fact_atom(r) for r in page.facts],
        "count": len(page.facts),
        "total": page.total,
        "nextOffset": page.next_offset,
    }


@endpoint(
    admin,
    "POST",
    "/admin/databases/<db>/rules",
    summary="Teach a rule to every tenant of a database",
    body=TEACH_BODY,
)
async def teach_database_rule(call: Call) -> dict[str, Any]:
    outcome = await tenants.teach_database_rule(_path_database(call), teach_command(call.body))
    return {"stored": outcome.stored, "rule": render.rule_info(outcome.record)}


@endpoint(admin, "GET", "/admin/databases/<db>/rules", summary="List database-wide rules")
async def list_database_rules(call: Call) -> dict[str, Any]:
    records = tenants.database_rules(_path_database(call))
    return {"rules": [render.rule_info(r) for r in records], "count": len(records)}


@endpoint(
    admin,
    "DELETE",
    "/admin/databases/<db>/rules/<rule_id>",
    summary="Remove a database-wide rule",
)
async def remove_database_rule(call: Call) -> dict[str, Any]:
    rule_id = call.query["rule_id"]
    await tenants.remove_database_rule(_path_database(call), rule_id)
    return {"deleted": rule_id}


@endpoint(
    admin,
    "POST",
    "/admin/backups",
    summary="Back up a database into <data dir>/backups (restorable with nocturnus restore)",
    body=BACKUP_BODY,
    body_required=False,
    status=201,
    query=BACKUP_QUERY,
)
async def create_backup(call: Call) -> dict[str, Any]:
    ctx = call.request.app.ctx
    named = call.query.get("db"), call.body.get("database")
    if named[0] and named[1] and named[0] != named[1]:
        raise ValidationError(
            f"?db={named[0]} and the body's database {named[1]!r} disagree", field="db"
        )
    name = named[0] or named[1] or DEFAULT_DATABASE
    backup = await take_backup(
        ctx.databases, name, retention_days=ctx.settings.backup_retention
    )
    await _audit(
        call, "backup_created", name, file=backup.path.name, bytes=backup.size_bytes,
        pruned=len(backup.pruned),
    )
    return {
        "database": backup.info.database,
        "path": str(backup.path),
        "createdAt": backup.info.taken_at,
        "bytes": backup.size_bytes,
        "head": backup.info.head,
        "pruned": len(backup.pruned),
    }
