"""Who may call what: one table from every route (and MCP tool) to its permission.

Each route has a :class:`Rule`: the permission a key's role must hold, and where the
database and tenant it touches are read from — headers for data routes, the path for
admin routes, the body for creations. :func:`authorize` checks both; the endpoint layer
calls it for REST routes and for MCP's :func:`~nocturnus.api.endpoint.invoke` alike, and
the auth middleware checks the permission of every routed request (MCP transports
included) before any handler runs.

A route missing from :data:`ROUTES` is refused (deny by default); the census test lists
every route the app registers and fails on any that is missing or public by accident.
Routes of other areas (scopes, context, MCP, metrics) are listed here before they exist
so that they are protected the moment they are registered.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from nocturnus.errors import Forbidden
from nocturnus.service.authenticator import Principal

# -- permissions and roles ------------------------------------------------------------

READER_PERMISSIONS = frozenset(
    {"connect", "inference", "fact_read", "rule_read", "scope_read", "memory_read"}
)
WRITER_PERMISSIONS = READER_PERMISSIONS | {
    "fact_write", "rule_write", "scope_write", "memory_write",
}
ADMIN_PERMISSIONS = WRITER_PERMISSIONS | {
    "database_list", "database_create", "database_delete", "database_rules",
    "tenant_list", "tenant_create", "tenant_delete",
    "backup", "key_manage", "audit_read", "metrics_read",
}
PERMISSIONS = ADMIN_PERMISSIONS
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "reader": READER_PERMISSIONS,
    "writer": frozenset(WRITER_PERMISSIONS),
    "admin": frozenset(ADMIN_PERMISSIONS),
}

HEADER = "header"


@dataclass(frozen=True, slots=True)
class Rule:
    """The permission a route needs and where its database/tenant scope is read.

    ``database``/``tenant`` list the sources tried in order: ``"header"``
    (``X-Database`` / ``X-Tenant-ID`` as the endpoint parsed them), ``"path:NAME"``,
    ``"query:NAME"``, ``"body:FIELD"``, or ``"=VALUE"`` (a constant default).
    ``whole_database`` marks actions on every tenant of a database, refused to
    tenant-limited keys; ``unscoped`` needs a key with no database/tenant lists at all;
    ``public_if`` names a boolean setting that makes the route public. ``detail`` names
    the permission that shows more of a public route (per-database figures, issue 14): a
    key presented there is authenticated, and the route answers that key more when it
    holds the permission without limits.
    """

    permission: str | None
    database: tuple[str, ...] = ()
    tenant: tuple[str, ...] = ()
    whole_database: bool = False
    unscoped: bool = False
    public_if: str | None = None
    detail: str | None = None
    reads_body: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        body = any(s.startswith("body:") for s in (*self.database, *self.tenant))
        object.__setattr__(self, "reads_body", body)

    def is_public(self, settings: Any) -> bool:
        if self.permission is None:
            return True
        return self.public_if is not None and bool(getattr(settings, self.public_if))


PUBLIC = Rule(None)
DETAIL = "metrics_read"
"""What a key needs to see per-database figures in ``/metrics`` and ``/health``."""
CONNECT = Rule("connect")


def data(permission: str) -> Rule:
    """A data route: database and tenant from the ``X-Database``/``X-Tenant-ID`` headers."""
    return Rule(permission, database=(HEADER,), tenant=(HEADER,))


def on_database(permission: str, *, whole: bool) -> Rule:
    return Rule(permission, database=("path:db",), whole_database=whole)


ROUTES: dict[tuple[str, str], Rule] = {
    # operations
    ("GET", "/health"): Rule(None, detail=DETAIL),
    ("GET", "/health/live"): PUBLIC,
    ("GET", "/health/ready"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    # the web console (issue 21): static files only, no data. The page asks for a key
    # and sends it on each call to the API, where every call is checked as usual.
    ("GET", "/console"): PUBLIC,
    ("GET", "/console/console.css"): PUBLIC,
    ("GET", "/console/js/<module>"): PUBLIC,
    ("GET", "/metrics"): Rule(
        DETAIL, unscoped=True, public_if="metrics_public", detail=DETAIL
    ),
    # facts
    ("POST", "/tell"): data("fact_write"),
    ("POST", "/assert/fact"): data("fact_write"),
    ("POST", "/assert/facts"): data("fact_write"),
    ("POST", "/forget"): data("fact_write"),
    ("POST", "/retract"): data("fact_write"),
    ("POST", "/retract/pattern"): data("fact_write"),
    # rules
    ("POST", "/teach"): data("rule_write"),
    ("POST", "/assert/rule"): data("rule_write"),
    ("GET", "/rules"): data("rule_read"),
    ("DELETE", "/rules/<rule_id>"): data("rule_write"),
    # questions
    ("POST", "/ask"): data("inference"),
    ("POST", "/infer"): data("inference"),
    ("POST", "/query"): data("fact_read"),
    ("GET", "/predicates"): data("fact_read"),
    ("POST", "/aggregate"): data("fact_read"),
    # the text syntax (issue 18): each statement of a script is also checked against
    # what its REST twin needs (tell/retract: fact_write, rules and constraints:
    # rule_write), so a reader may run questions and tests only
    ("POST", "/execute"): data("inference"),
    ("POST", "/assert/template"): data("rule_write"),
    ("POST", "/test"): data("inference"),
    ("GET", "/constraints"): data("rule_read"),
    ("DELETE", "/constraints/<constraint_id>"): data("rule_write"),
    # scopes (issue 5)
    ("GET", "/scopes"): data("scope_read"),
    ("POST", "/scope/diff"): data("scope_read"),
    ("POST", "/scope/fork"): data("scope_write"),
    ("POST", "/scope/merge"): data("scope_write"),
    ("DELETE", "/scope/<name>"): data("scope_write"),
    # context and memory (issue 6)
    ("POST", "/context/optimize"): data("memory_read"),
    ("POST", "/memory/context"): data("memory_read"),
    ("POST", "/context/diff"): data("memory_read"),
    ("POST", "/context/summary"): data("memory_read"),
    ("POST", "/context/session/clear"): data("memory_read"),
    ("POST", "/memory/recall"): data("memory_read"),
    ("POST", "/memory/query/temporal"): data("memory_read"),
    ("POST", "/memory/priority"): data("memory_write"),
    # memory upkeep (issue 18)
    ("POST", "/memory/prioritize"): data("memory_write"),
    ("POST", "/memory/consolidate"): data("memory_write"),
    ("POST", "/memory/compress"): data("memory_write"),
    ("POST", "/memory/decay"): data("memory_write"),
    ("POST", "/memory/cleanup"): data("memory_write"),
    ("POST", "/memory/query/salient"): data("memory_read"),
    ("GET", "/memory/events"): data("memory_read"),
    ("GET", "/memory/stream"): data("memory_read"),
    # transactions (issue 18): writers; each buffered write also needs its route's rule
    ("POST", "/tx/begin"): data("fact_write"),
    ("POST", "/tx/commit/<tx_id>"): data("fact_write"),
    ("POST", "/tx/rollback/<tx_id>"): data("fact_write"),
    # MCP transports (issue 8): a valid key; every tool is checked like its REST twin
    ("POST", "/mcp"): CONNECT,
    ("GET", "/mcp"): CONNECT,
    ("DELETE", "/mcp"): CONNECT,
    ("GET", "/mcp/sse"): CONNECT,
    ("POST", "/mcp/messages"): CONNECT,
    # databases and tenants (admin; the database is in the path or body, never a header)
    ("POST", "/databases"): Rule("database_create", database=("body:name",), whole_database=True),
    ("POST", "/admin/databases"): Rule(
        "database_create", database=("body:name",), whole_database=True
    ),
    ("GET", "/databases"): Rule("database_list"),  # filtered to the key's scope
    ("GET", "/admin/databases"): Rule("database_list"),
    ("DELETE", "/admin/databases/<db>"): on_database("database_delete", whole=True),
    ("GET", "/admin/databases/<db>/tenants"): on_database("tenant_list", whole=False),
    ("POST", "/admin/databases/<db>/tenants"): Rule(
        "tenant_create", database=("path:db",), tenant=("body:name", "body:tenantId")
    ),
    ("DELETE", "/admin/databases/<db>/tenants/<tenant>"): Rule(
        "tenant_delete", database=("path:db",), tenant=("path:tenant",)
    ),
    ("GET", "/admin/databases/<db>/facts"): Rule(
        "fact_read", database=("path:db",), tenant=(HEADER,)
    ),
    ("POST", "/admin/databases/<db>/rules"): on_database("database_rules", whole=True),
    ("GET", "/admin/databases/<db>/rules"): on_database("database_rules", whole=False),
    ("DELETE", "/admin/databases/<db>/rules/<rule_id>"): on_database("database_rules", whole=True),
    ("POST", "/admin/backups"): Rule(
        "backup", database=("query:db", "body:database", "=default"), whole_database=True
    ),
    ("GET", "/admin/audit"): Rule("audit_read", unscoped=True),
    # keys: the handlers keep a scoped admin inside its own scope
    ("GET", "/auth/status"): PUBLIC,
    # the first admin key, while none exists: proven by NOCTURNUS_BOOTSTRAP_PASSWORD
    ("POST", "/auth/bootstrap"): PUBLIC,
    # what an agent reads to learn the server (the original's public paths)
    ("GET", "/llm.txt"): PUBLIC,
    ("GET", "/.well-known/agent.json"): PUBLIC,
    ("GET", "/auth/whoami"): CONNECT,
    ("POST", "/auth/keys"): Rule("key_manage"),
    ("GET", "/auth/keys"): Rule("key_manage"),
    ("GET", "/auth/keys/<key_id>"): Rule("key_manage"),
    ("PATCH", "/auth/keys/<key_id>"): Rule("key_manage"),
    ("DELETE", "/auth/keys/<key_id>"): Rule("key_manage"),
}

# MCP tools (API.md §6) run through their REST twin, so they need what the twin needs.
TOOLS: dict[str, tuple[str, str]] = {
    "tell": ("POST", "/tell"),
    "teach": ("POST", "/teach"),
    "ask": ("POST", "/ask"),
    "forget": ("POST", "/forget"),
    "query": ("POST", "/query"),
    "retract_pattern": ("POST", "/retract/pattern"),
    "bulk_assert": ("POST", "/assert/facts"),
    "predicates": ("GET", "/predicates"),
    "aggregate": ("POST", "/aggregate"),
    "recall": ("POST", "/memory/recall"),
    "context": ("POST", "/context/optimize"),
    "context_diff": ("POST", "/context/diff"),
    "clear_session": ("POST", "/context/session/clear"),
    "fork_scope": ("POST", "/scope/fork"),
    "diff_scope": ("POST", "/scope/diff"),
    "merge_scope": ("POST", "/scope/merge"),
    "list_scopes": ("GET", "/scopes"),
    "delete_scope": ("DELETE", "/scope/<name>"),
    "compress": ("POST", "/memory/compress"),
    "cleanup": ("POST", "/memory/cleanup"),
}

_PARAM = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)(?::[^>]*)?>")


def template_key(path: str) -> str:
    """``/scope/<name:str>`` → ``/scope/<>``: routes match whatever their params are named."""
    path = path if path.startswith("/") else "/" + path
    return _PARAM.sub("<>", path)


_INDEX: dict[tuple[str, str], Rule] = {
    (method, template_key(path)): rule for (method, path), rule in ROUTES.items()
}
DENY = Rule("__no_rule__")


@lru_cache(maxsize=1024)
def rule_for(method: str, path: str) -> Rule:
    """The rule of ``method path`` (a route template); :data:`DENY` when none is listed.

    Remembered per (method, template): every request asks (issue 3's /tell budget).
    """
    found = _RESOLVED.get((method, path))
    if found is None:
        found = _RESOLVED[(method, path)] = _INDEX.get((method, template_key(path)), DENY)
    return found


_RESOLVED: dict[tuple[str, str], Rule] = {}


def tool_rule(tool: str) -> Rule:
    method, path = TOOLS[tool]
    return rule_for(method, path)


def permissions_of(role: str) -> frozenset[str]:
    return ROLE_PERMISSIONS.get(role, frozenset())


def sees_detail(principal: Principal | None) -> bool:
    """True when ``principal`` may see what :data:`DETAIL` guards: every database's
    name and figures (an unscoped key holding it; with auth off, the loopback caller)."""
    return (
        principal is not None
        and DETAIL in permissions_of(principal.role)
        and not principal.is_scoped
    )


def _label(principal: Principal) -> str:
    return f"Key '{principal.name}' (role={principal.role})"


def check_permission(principal: Principal, rule: Rule) -> None:
    """:raises Forbidden: the principal's role lacks the rule's permission."""
    if rule.permission is None:
        return
    if rule.permission not in permissions_of(principal.role):
        if rule is DENY:
            raise Forbidden("No permission rule covers this route; it is refused")
        raise Forbidden(
            f"{_label(principal)} lacks permission: {rule.permission}",
            {"permission": rule.permission, "role": principal.role},
        )
    if rule.unscoped and principal.is_scoped:
        raise Forbidden(
            f"{_label(principal)} is limited to some databases or tenants; "
            "this route needs a key without such limits",
            {"permission": rule.permission},
        )


def _resolve(
    sources: tuple[str, ...],
    header: str | None,
    params: Mapping[str, str],
    body: Mapping[str, Any] | None,
) -> tuple[bool, str | None]:
    """(known, value): ``known`` is False while a body source awaits the parsed body."""
    for source in sources:
        if source == HEADER:
            if header is not None:
                return True, header
        elif source.startswith("path:"):
            value = params.get(source[5:])
            if value is not None:
                return True, value
        elif source.startswith("query:"):
            value = params.get(source)  # the endpoint passes query values so prefixed
            if value is not None:
                return True, value
        elif source.startswith("body:"):
            if body is None:
                return False, None
            value = body.get(source[5:])
            if isinstance(value, str) and value:
                return True, value
        elif source.startswith("="):
            return True, source[1:]
    return True, None


def authorize(
    principal: Principal,
    rule: Rule,
    *,
    database: str | None = None,
    tenant: str | None = None,
    params: Mapping[str, str] | None = None,
    body: Mapping[str, Any] | None = None,
) -> None:
    """Check the rule's permission and the database/tenant the request targets.

    Call it once before the body is parsed (``body=None``: body sources are skipped) and,
    for rules that read the body, once more with the validated body.

    :raises Forbidden: missing permission, or a database/tenant outside the key's scope.
    """
    check_permission(principal, rule)
    if not principal.is_scoped:
        return
    params = params or {}
    known, db_name = _resolve(rule.database, database, params, body)
    if known and db_name is not None and not principal.allows_database(db_name):
        raise Forbidden(
            f"Key '{principal.name}' is not authorized for database '{db_name}'",
            {"database": db_name},
        )
    if rule.whole_database and principal.tenants and (known and db_name is not None):
        raise Forbidden(
            f"Key '{principal.name}' is limited to some tenants and cannot act on the "
            f"whole database '{db_name}'",
            {"database": db_name},
        )
    known, tenant_name = _resolve(rule.tenant, tenant, params, body)
    if tenant_name is None and HEADER in rule.tenant and principal.tenants:
        raise Forbidden(
            f"Key '{principal.name}' is limited to some tenants; this route must name one "
            "with X-Tenant-ID",
            {"tenant": None},
        )
    if known and tenant_name is not None and not principal.allows_tenant(tenant_name):
        raise Forbidden(
            f"Key '{principal.name}' is not authorized for tenant '{tenant_name}'",
            {"tenant": tenant_name},
        )
