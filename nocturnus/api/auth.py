"""Key management, bootstrap, whoami, status and the audit trail (API.md §8).

Only admin keys hold ``key_manage``; a scoped admin sees and mints only keys inside its
own database/tenant scope, and nobody mints an admin key without being one. A key shown
here never carries its hash, and the key itself is in the answer to its creation only.
"""

from __future__ import annotations

import hmac
import time
from typing import Any

from sanic import Blueprint

from nocturnus.api.endpoint import Call, endpoint
from nocturnus.api.permissions import permissions_of
from nocturnus.api.schema import DATABASE_NAME, TENANT_NAME, Schema, nullable, obj
from nocturnus.api.security import Security, presented_key, security_of
from nocturnus.errors import (
    AuthDisabled,
    Forbidden,
    NotFound,
    RateLimited,
    Unauthorized,
    ValidationError,
)
from nocturnus.service import apikeys, audit
from nocturnus.service.apikeys import KeyChanges, KeyRecord, NewKey
from nocturnus.service.authenticator import Principal
from nocturnus.service.database import now_ms

auth = Blueprint("auth")

ROLE: Schema = {"type": "string", "enum": list(apikeys.ROLES)}
DATABASES: Schema = nullable(
    {"type": "array", "items": {"type": "string", "pattern": DATABASE_NAME}, "maxItems": 256}
)
TENANTS: Schema = nullable(
    {"type": "array", "items": {"type": "string", "pattern": TENANT_NAME}, "maxItems": 1024}
)
DESCRIPTION: Schema = nullable({"type": "string", "maxLength": 1000})
CREATE_KEY_BODY = obj(
    ["role"],
    role=ROLE,
    databases=DATABASES,
    tenants=TENANTS,
    description=DESCRIPTION,
    name=nullable({"type": "string", "minLength": 1, "maxLength": 128}),
    expiresInDays=nullable({"type": "integer", "minimum": 1, "maximum": 36_500}),
)
PATCH_KEY_BODY = obj(
    [],
    enabled=nullable({"type": "boolean"}),
    role=nullable(ROLE),
    databases=DATABASES,
    tenants=TENANTS,
    description=DESCRIPTION,
)
AUDIT_QUERY: dict[str, Schema] = {
    "since": {"type": "string", "pattern": r"^[0-9]{1,15}$"},
    "after": {"type": "string", "pattern": r"^[0-9]{1,15}$"},
    "limit": {"type": "string", "pattern": r"^[0-9]{1,5}$"},
}


def _managing(call: Call) -> Security:
    security = security_of(call.request)
    if not security.enabled:
        raise AuthDisabled(
            "Authentication is disabled (NOCTURNUS_AUTH=off): API keys cannot be managed"
        )
    return security


def _visible(principal: Principal, record: KeyRecord) -> bool:
    return principal.covers(record.databases, record.tenants)


def _find(call: Call, security: Security) -> KeyRecord:
    key_id = call.query["key_id"]
    record = security.system.root.keys.get(key_id)
    if record is None or not _visible(call.principal, record):
        raise NotFound(f"API key '{key_id}' not found", {"id": key_id})
    return record


def _check_grant(
    principal: Principal,
    role: str,
    databases: tuple[str, ...],
    tenants: tuple[str, ...],
) -> None:
    if role == "admin" and principal.role != "admin":
        raise Forbidden("Only admin keys can create or grant admin keys")
    if not principal.covers(databases, tenants):
        raise Forbidden(
            f"Key '{principal.name}' is limited to databases {list(principal.databases) or 'all'} "
            f"and tenants {list(principal.tenants) or 'all'}: a key it manages must stay inside",
        )


def _actor_id(principal: Principal) -> str:
    return principal.key_id or principal.source


@endpoint(
    auth,
    "POST",
    "/auth/keys",
    summary="Create an API key (the key is shown once)",
    body=CREATE_KEY_BODY,
    status=201,
)
async def create_key(call: Call) -> dict[str, Any]:
    security = _managing(call)
    body = call.body
    expires = body.get("expiresInDays")
    if expires is None and security.settings.key_default_expiry_days > 0:
        expires = security.settings.key_default_expiry_days
    spec = NewKey(
        role=body["role"],
        databases=tuple(body.get("databases") or ()),
        tenants=tuple(body.get("tenants") or ()),
        description=body.get("description") or "",
        name=body.get("name"),
        expires_in_days=expires,
    )
    _check_grant(call.principal, spec.role, spec.databases, spec.tenants)
    record, key = await apikeys.create_key(security.system, spec, _actor_id(call.principal))
    await security.record(
        call.request, call.principal, "key_created", target=record.id,
        details={"role": record.role, "databases": list(record.databases),
                 "tenants": list(record.tenants), "expiresAt": record.expires_at},
    )
    return {**apikeys.key_info(record, security.authenticator.last_used), "key": key}


BOOTSTRAP_BODY = obj(
    [],
    username=nullable({"type": "string", "maxLength": 256}),
    password=nullable({"type": "string", "maxLength": 1024}),
    # the original's field, then its Python SDK's (which sends no credentials: give
    # the password as the client's key instead)
    keyName=nullable({"type": "string", "minLength": 1, "maxLength": 128}),
    name=nullable({"type": "string", "minLength": 1, "maxLength": 128}),
    description=DESCRIPTION,
)


async def _check_bootstrap(call: Call, security: Security) -> None:
    """Refuse a bootstrap unless no key exists and the caller proves the password.

    The password comes as ``{username, password}`` (the original's body) or, for its
    SDK, as the presented key (``X-API-Key`` / ``Bearer``) with the configured user.
    A wrong one counts against the client address's lockout like a wrong key.

    :raises Forbidden: a key exists, or no bootstrap password is configured.
    :raises RateLimited: the address is locked out.
    :raises Unauthorized: wrong user or password.
    """
    if not security.bootstrap_required():
        raise Forbidden("Bootstrap is done: an API key exists already")
    settings = security.settings
    expected = settings.bootstrap_password
    if expected is None:
        raise Forbidden(
            "POST /auth/bootstrap is off: set NOCTURNUS_BOOTSTRAP_PASSWORD, or create the "
            "first key with `nocturnus keys create --role admin` (server stopped) or "
            "NOCTURNUS_ADMIN_KEY"
        )
    request = call.request
    client = security.client_address(request)
    now_s = time.monotonic()
    wait = security.failures.locked_for(client, now_s)
    if wait:
        raise RateLimited(
            f"Too many failed authentications from this address; retry in {wait} s",
            retry_after_s=wait,
        )
    body = call.body
    password = body.get("password")
    if password is None:
        password = presented_key(request) or ""
    user = body.get("username") or settings.bootstrap_user
    # both compared every time, in constant time: no early answer to time
    same_user = hmac.compare_digest(user.encode(), settings.bootstrap_user.encode())
    same_password = hmac.compare_digest(password.encode(), expected.encode())
    if not (same_user & same_password):
        await security.limits.fail(client, now_s)
        raise Unauthorized("Invalid bootstrap credentials")


@endpoint(
    auth,
    "POST",
    "/auth/bootstrap",
    summary="Create the first admin key while none exists (public; needs "
    "NOCTURNUS_BOOTSTRAP_PASSWORD)",
    body=BOOTSTRAP_BODY,
    body_required=False,
    status=201,
)
async def bootstrap(call: Call) -> dict[str, Any]:
    security = _managing(call)
    await _check_bootstrap(call, security)
    body = call.body
    spec = NewKey(
        role="admin",
        description=body.get("description") or "Initial admin key",
        name=body.get("keyName") or body.get("name") or "admin",
        expires_in_days=security.settings.key_default_expiry_days or None,
    )
    record, key = await apikeys.create_key(security.system, spec, "bootstrap", first=True)
    actor = {"keyId": None, "name": "bootstrap", "role": None,
             "client": security.client_address(call.request)}
    await audit.record(
        security.system, "key_bootstrapped", actor=actor, target=record.id,
        details={"role": record.role, "expiresAt": record.expires_at},
    )
    return {**apikeys.key_info(record, security.authenticator.last_used), "key": key}


@endpoint(auth, "GET", "/auth/keys", summary="List API keys (never a hash or a key)")
async def list_keys(call: Call) -> list[dict[str, Any]]:
    security = _managing(call)
    used = security.authenticator.last_used
    return [
        apikeys.key_info(r, used) for r in apikeys.list_keys(security.system)
        if _visible(call.principal, r)
    ]


@endpoint(auth, "GET", "/auth/keys/<key_id>", summary="Show one API key")
async def get_key(call: Call) -> dict[str, Any]:
    security = _managing(call)
    return apikeys.key_info(_find(call, security), security.authenticator.last_used)


@endpoint(
    auth,
    "PATCH",
    "/auth/keys/<key_id>",
    summary="Change a key's role, scope, description or enabled flag",
    body=PATCH_KEY_BODY,
)
async def patch_key(call: Call) -> dict[str, Any]:
    security = _managing(call)
    record = _find(call, security)
    body = call.body
    changes = KeyChanges(
        enabled=body.get("enabled"),
        role=body.get("role"),
        databases=None if body.get("databases") is None else tuple(body["databases"]),
        tenants=None if body.get("tenants") is None else tuple(body["tenants"]),
        description=body.get("description"),
    )
    if record.id == call.principal.key_id and changes.enabled is False:
        raise ValidationError("A key cannot disable itself", field="enabled")
    _check_grant(
        call.principal,
        changes.role or record.role,
        record.databases if changes.databases is None else changes.databases,
        record.tenants if changes.tenants is None else changes.tenants,
    )
    updated = await apikeys.update_key(security.system, record.id, changes)
    security.authenticator.forget(record.id)
    await security.record(
        call.request, call.principal, "key_updated", target=record.id,
        details={k: (list(v) if isinstance(v, tuple) else v)
                 for k, v in body.items() if v is not None},
    )
    return apikeys.key_info(updated, security.authenticator.last_used)


@endpoint(
    auth,
    "DELETE",
    "/auth/keys/<key_id>",
    summary="Revoke an API key (effective on the next request)",
)
async def revoke_key(call: Call) -> dict[str, Any]:
    security = _managing(call)
    key_id = call.query["key_id"]
    if key_id == call.principal.key_id:
        raise ValidationError("A key cannot revoke itself", field="id")
    record = _find(call, security)
    await apikeys.revoke_key(security.system, record.id, _actor_id(call.principal))
    security.authenticator.forget(record.id)
    security.buckets.forget(record.id)
    await security.record(call.request, call.principal, "key_revoked", target=record.id)
    return {"revoked": record.id, "id": record.id, "message": "Key revoked"}


@endpoint(auth, "GET", "/auth/whoami", summary="The calling key: role, permissions and scope")
async def whoami(call: Call) -> dict[str, Any]:
    security = security_of(call.request)
    principal = call.principal
    return {
        "mode": security.settings.auth,
        "authEnabled": security.enabled,
        "keyId": principal.key_id,
        "name": principal.name,
        "role": principal.role,
        "source": principal.source,
        "permissions": sorted(permissions_of(principal.role)),
        "databases": list(principal.databases),
        "tenants": list(principal.tenants),
    }


@endpoint(auth, "GET", "/auth/status", summary="Authentication mode (public)")
async def status(call: Call) -> dict[str, Any]:
    security = security_of(call.request)
    count = security.system.root.keys.count_live(now_ms()) if security.system else 0
    return {
        "mode": security.settings.auth,
        "authEnabled": security.enabled,
        "bootstrapRequired": security.bootstrap_required(),
        "keyCount": count,
        "hasKeys": count > 0 or security.authenticator.has_env_admin,
    }


@endpoint(
    auth,
    "GET",
    "/admin/audit",
    summary="The audit trail (admin keys without scope limits)",
    query=AUDIT_QUERY,
)
async def read_audit(call: Call) -> dict[str, Any]:
    security = security_of(call.request)
    entries = await audit.read(
        security.system,
        since_ms=int(call.query.get("since", "0")),
        after_seq=int(call.query.get("after", "0")),
        limit=int(call.query.get("limit", "1000")),
    )
    return {
        "events": [
            {"seq": e.seq, "at": e.at, "action": e.action, "outcome": e.outcome,
             "actor": e.actor, "target": e.target, "details": e.details}
            for e in entries
        ],
        "count": len(entries),
        "next": entries[-1].seq if entries else None,
    }
